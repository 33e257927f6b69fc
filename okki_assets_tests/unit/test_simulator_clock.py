"""The simulator's own OKKI time text agrees with the client's parser, from independent code.

The simulator is the oracle: it keeps its own copy of OKKI's time rule (docs/okki-api.md) and
imports nothing of the client's, so both sides are checked against each other here.
"""

from __future__ import annotations

import ast
import datetime as dt
import pathlib

import pytest

from okki_assets.okki_time import CHINA_TZ, format_okki_time, parse_okki_time
from okki_assets.simulator.clock import okki_text, parse_text, to_china

SIMULATOR = pathlib.Path(__file__).parents[2] / "okki_assets" / "simulator"


@pytest.mark.parametrize(
    "moment",
    [
        dt.datetime(2024, 3, 1, 0, 0, 0),  # midnight
        dt.datetime(2024, 2, 29, 23, 59, 59),  # a leap day's last second
        dt.datetime(1970, 1, 1),  # OKKI's "never set"
        dt.datetime(2026, 12, 31, 16, 0, 0, tzinfo=dt.UTC),  # aware: the next China day
    ],
)
def test_the_simulators_time_text_is_what_the_client_parses(moment: dt.datetime) -> None:
    text = okki_text(moment)
    assert text == format_okki_time(moment)
    parsed = parse_okki_time(text)
    assert parsed is not None
    assert parsed.replace(tzinfo=None) == to_china(moment)
    assert parse_text(text) == to_china(moment)


def test_the_simulator_parses_exact_times_and_dates_only() -> None:
    assert parse_text("2024-03-01") == dt.datetime(2024, 3, 1)
    assert parse_text("2024-03-01 08:09:10") == dt.datetime(2024, 3, 1, 8, 9, 10)
    # padding, a T separator and an impossible date are not OKKI times for the server
    for text in (" 2024-03-01", "2024-03-01T08:09:10", "2024-13-01", "2024-03-01 24:00:00"):
        assert parse_text(text) is None
    assert to_china(dt.datetime(2024, 3, 1, 0, 0, tzinfo=CHINA_TZ)) == dt.datetime(2024, 3, 1)


def test_the_simulator_imports_nothing_of_the_code_it_checks() -> None:
    shared = {"okki_assets.errors", "okki_assets.gc_pause"}  # the error tree and a GC helper
    for path in SIMULATOR.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            for name in names:
                if name.startswith("okki_assets.") and not name.startswith("okki_assets.simulator"):
                    assert name in shared, f"{path.name} imports {name}"
