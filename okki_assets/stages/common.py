"""What the stages share: the DuckDB connection opener, the clock and client stats."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any

import duckdb

#: Opens a DuckDB connection for one unit of work (``WarehouseResource.get_connection``).
Connect = Callable[[], AbstractContextManager[duckdb.DuckDBPyConnection]]


def now() -> datetime:
    return datetime.now(tz=UTC)


def stats_delta(after: dict[str, Any], before: dict[str, Any]) -> dict[str, float | int]:
    """What a client's numeric stats grew by over one partition."""
    out: dict[str, float | int] = {}
    for key, value in after.items():
        if isinstance(value, int | float):
            diff = value - before.get(key, 0)
            out[key] = round(diff, 3) if isinstance(diff, float) else diff
    return out
