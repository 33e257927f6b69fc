"""The target port: what the load and reconcile stages need from any target.

(The shape agreed for every adapter: the batch API, SQL databases, Kingdee, land-only.)
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from okki_assets.clients.http import CallStats
from okki_assets.clients.target import RecordResult
from okki_assets.errors import TargetError

__all__ = ["BatchWriter", "RecordResult", "Target", "TargetNotAuditable", "TargetRow"]


class TargetNotAuditable(TargetError):
    """The target cannot be read back (land-only, or an API without a read)."""


@dataclass(frozen=True)
class TargetRow:
    """One record read back from the target."""

    id: str  # the mapped record's "id"
    values: dict[str, Any] | None  # the mapped values as stored (None when only a hash is known)
    content_hash: str | None  # the project's hash of the mapped record, when computable
    deleted: bool  # soft-deleted / forbidden at the target


class Target(Protocol):
    kind: str

    def check(self) -> None: ...

    def write_batch(self, records: list[dict[str, Any]], attempt: str) -> list[RecordResult]: ...

    def read_back(self) -> Iterator[TargetRow]: ...

    def close(self) -> None: ...


class BatchWriter(Protocol):
    """What the load stage needs: batches written, calls counted (every adapter but land-only)."""

    @property
    def stats(self) -> CallStats: ...

    def write_batch(self, records: list[dict[str, Any]], attempt: str) -> list[RecordResult]: ...
