"""The target of land-only mode (no TARGET_URL): sends nothing, cannot be audited.

The load stage sees ``kind == "land-only"`` and records each version as landed in the ledger
without calling ``write_batch``; the audit sees ``TargetNotAuditable`` and says "target not
audited".
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from okki_assets.clients.http import CallStats
from okki_assets.errors import TargetNotAuditable
from okki_assets.targets.port import KIND_LAND_ONLY, RecordResult, RecordVersion, TargetRow


class LandOnlyTarget:
    """A null target with the lifecycle of the others."""

    kind = KIND_LAND_ONLY

    def __init__(self) -> None:
        self.stats = CallStats()

    def check(self) -> None:
        return None

    def write_batch(
        self,
        records: list[dict[str, Any]],
        attempt: str,
        versions: Sequence[RecordVersion] | None = None,
    ) -> list[RecordResult]:
        raise TargetNotAuditable("land-only mode (no TARGET_URL): nothing is written")

    def read_back(self) -> Iterator[TargetRow]:
        raise TargetNotAuditable("target not audited: land-only mode (no TARGET_URL)")

    def close(self) -> None:
        return None
