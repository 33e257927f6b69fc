"""The target port: the one interface every destination of loaded_companies implements.

An adapter turns mapped records (mapping.py) into writes at its destination and reads them back
for the audit. Everything that decides *what* to send stays above the port: the load ledger, the
version order, land-only mode (assets/loaded.py, loading.py). An adapter only writes what it is
given, says per record what became of it, and reads its destination back.

- ``write_batch(records, attempt, versions)``: ``records`` are mapped records; a tombstone is
  ``{"id": ..., "deleted": True}``; ``versions`` (when given, one per record) are the versions
  the ledger carries for them, for a target that guards against an older version landing over
  a newer one (a concurrent run); a target without such a guard ignores them. One
  ``RecordResult`` per record, in order. Transient failures are retried inside the adapter with
  the same ``attempt`` (so a resend is never applied twice); a permanent refusal of one record
  is that record's ``rejected`` with the target's reason, not an exception; a failure of the
  whole batch raises a ``TargetError`` subclass. A record the target keeps a newer version of
  is ``unchanged`` (with the reason in ``error``).
- ``read_back()``: every record at the target, paged, as ``TargetRow``; a target that cannot be
  read raises ``TargetNotAuditable``.
- ``check()``: validate the configuration (and connect, where that is cheap) once; a bad setting
  raises a ``TargetError``/``ConfigError`` with one clear line that never shows a secret.

``open_target`` (okki_assets/targets/__init__.py) picks the adapter from ``TARGET_URL``'s scheme;
an adapter module outside this package's core (the Kingdee one, ``k3cloud.py``) exposes
``open_target(url: str, settings: TargetSettings) -> Target``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from okki_assets.errors import TargetNotAuditable

__all__ = [
    "KIND_LAND_ONLY",
    "RecordResult",
    "RecordVersion",
    "Stats",
    "Target",
    "TargetNotAuditable",
    "TargetRow",
    "TargetSettings",
]

KIND_LAND_ONLY = "land-only"

#: The statuses a ``RecordResult`` may carry.
STATUSES = ("created", "updated", "unchanged", "deleted", "rejected")


@dataclass(frozen=True)
class RecordResult:
    """The target's verdict on one record: created, updated, unchanged, deleted or rejected."""

    id: str
    status: str
    error: str | None = None  # the target's own reason for "rejected" (never a secret)
    #: The record's own id at the target (Kingdee's FCUSTID), when the target has one and
    #: it is known; kept with the ledger row.
    target_id: str | None = None


@dataclass(frozen=True)
class RecordVersion:
    """The version of one record as the ledger knows it (versions.py): OKKI's update time (or a
    tombstone's delete time), the record's content hash, when it was observed (None: not
    known, older than any observation), and the ledger row's last yield (None: never yielded):
    a version observed before it is superseded whatever its time."""

    update_time: datetime | None
    content_hash: str
    observed_at: datetime | None = None
    yielded_at: datetime | None = None


@dataclass(frozen=True)
class TargetRow:
    """One record read back from the target."""

    id: str  # the mapped record's "id" (text)
    values: dict[str, Any] | None  # the mapped values as stored (None when only a hash is known)
    content_hash: str | None  # the project's canonical hash of the mapped record, when known
    deleted: bool  # soft-deleted (or forbidden) at the target


@dataclass(frozen=True)
class TargetSettings:
    """The settings of every adapter besides the URL (each uses what applies to it)."""

    token: str = ""  # bearer token of the HTTP batch API (TARGET_TOKEN)
    batch_size: int = 500  # records per batch
    read_timeout: float = 30.0  # seconds to wait for an answer
    retry_base_delay: float = 0.5  # seconds before the first retry (doubles each time)
    table: str = "okki_companies"  # SQL targets: the table, may be "schema.table" (TARGET_TABLE)
    #: Kingdee K/3 Cloud: the K3CLOUD_* settings by name (k3cloud.py reads them); secrets inside
    k3cloud: Mapping[str, Any] = field(default_factory=dict, repr=False)


class Stats(Protocol):
    """Counters of an adapter's traffic (``CallStats`` of clients/http.py fits)."""

    def as_metadata(self) -> dict[str, int | float]: ...


@runtime_checkable
class Target(Protocol):
    """A destination of loaded_companies (see the module docstring)."""

    kind: str  # "http", "sql", "k3cloud", "land-only"

    @property
    def stats(self) -> Stats: ...

    def check(self) -> None: ...

    def write_batch(
        self,
        records: list[dict[str, Any]],
        attempt: str,
        versions: Sequence[RecordVersion] | None = None,
    ) -> list[RecordResult]: ...

    def read_back(self) -> Iterator[TargetRow]: ...

    def close(self) -> None: ...
