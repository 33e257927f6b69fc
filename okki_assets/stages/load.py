"""One partition's load (``load_partition``): its new and changed records and tombstones sent
to the target in batches, each outcome kept in the load ledger.

What to send is decided in loading.py, the record's shape in mapping.py.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import pandas as pd

from okki_assets import storage
from okki_assets.errors import (
    TargetAuthError,
    TargetError,
    TargetPermanentError,
    TargetRetriesExhausted,
    TargetSchemaError,
    TargetUnreachable,
)
from okki_assets.identity import ledger_ids
from okki_assets.loading import plan_load
from okki_assets.mapping import TargetMapping
from okki_assets.stages.common import Connect, now, stats_delta
from okki_assets.storage import LedgerStatus
from okki_assets.targets import KIND_LAND_ONLY, RecordVersion, Target, TargetSettings
from okki_assets.targets.http import new_attempt


@dataclass
class LoadSummary:
    partition_key: str
    land_only: bool
    candidates: int = 0
    sent: int = 0
    batches: int = 0
    skipped_unchanged: int = 0
    skipped_stale: int = 0
    lost_claim: int = 0
    landed: int = 0
    tombstones: int = 0
    tombstones_quarantined: int = 0
    superseded: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    unreconciled: pd.DataFrame = field(default_factory=pd.DataFrame)
    client_stats: dict[str, float | int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def failed(self) -> int:
        return self.statuses.get(LedgerStatus.FAILED, 0)


def _batches(frame: pd.DataFrame, size: int) -> Iterator[pd.DataFrame]:
    for offset in range(0, len(frame), size):
        yield frame.iloc[offset : offset + size]


def load_partition(
    client: Target,
    connect: Connect,
    partition_key: str,
    run_id: str,
    mapping: TargetMapping,
    *,
    batch_size: int = TargetSettings.batch_size,
) -> LoadSummary:
    """Send one partition's new and changed records (and tombstones) and keep the ledger."""
    started = time.monotonic()
    land_only = client.kind == KIND_LAND_ONLY
    summary = LoadSummary(partition_key, land_only=land_only)
    with connect() as conn:
        cleaned = storage.read_cleaned(conn, partition_key)
        deleted = storage.read_deleted(conn, partition_key)
        ids = list(cleaned["company_id"].astype("int64")) + list(
            ledger_ids(deleted["company_id"]).dropna()
        )
        ledger = storage.ledger_rows(conn, ids)
    plan = plan_load(cleaned, deleted, ledger, mapping, partition_key)
    summary.candidates = len(plan.to_send)
    summary.skipped_unchanged, summary.skipped_stale = plan.skipped_unchanged, plan.skipped_stale
    summary.tombstones = plan.tombstones
    summary.tombstones_quarantined = plan.tombstones_quarantined
    summary.superseded = plan.superseded
    claims = plan.to_send[
        ["company_id", "partition_key", "content_hash", "update_time", "observed_at"]
    ]
    with connect() as conn:
        storage.advance_unchanged(conn, plan.advance)

    if land_only:
        with connect() as conn:
            summary.landed = storage.record_landed(conn, claims, run_id, now())
        summary.statuses[LedgerStatus.LANDED] = summary.landed
    else:
        before = client.stats.as_metadata()
        for batch in _batches(plan.to_send, batch_size):
            _send_batch(client, connect, batch, run_id, summary)
        summary.client_stats = stats_delta(client.stats.as_metadata(), before)
    summary.unreconciled = unreconciled(connect, partition_key, plan.deletions)
    summary.seconds = time.monotonic() - started
    return summary


def _send_batch(
    client: Target, connect: Connect, batch: pd.DataFrame, run_id: str, summary: LoadSummary
) -> None:
    with connect() as conn:
        claim = storage.claim_for_sending(
            conn,
            batch[["company_id", "partition_key", "content_hash", "update_time", "observed_at"]],
            run_id,
            attempt=new_attempt(),
        )
    summary.lost_claim += len(batch) - len(claim.ids)
    batch = batch[batch["company_id"].isin(claim.ids)]
    if batch.empty:
        return
    records = list(batch["record"])
    ids = [int(c) for c in batch["company_id"]]
    gave_up: TargetRetriesExhausted | TargetUnreachable | None = None
    target_ids: dict[int, str] = {}
    try:
        results = client.write_batch(records, claim.attempt, _versions(batch))
        outcomes = [(cid, r.status, r.error) for cid, r in zip(ids, results, strict=True)]
        target_ids = {cid: r.target_id for cid, r in zip(ids, results, strict=True) if r.target_id}
    except (TargetAuthError, TargetSchemaError):  # no later batch would fare better
        raise
    except (TargetPermanentError, TargetError) as e:
        summary.errors.append(str(e))
        outcomes = [(cid, LedgerStatus.FAILED.value, str(e)[:500]) for cid in ids]
        if isinstance(e, TargetRetriesExhausted | TargetUnreachable):
            gave_up = e  # the target is not answering: the next batches would fare no better
    summary.batches += 1
    summary.sent += len(records)
    summary.statuses.update(status for _, status, _ in outcomes)
    with connect() as conn:
        storage.record_outcomes(conn, outcomes, run_id, now(), target_ids)
    if gave_up is not None:
        raise gave_up


def _versions(batch: pd.DataFrame) -> list[RecordVersion]:
    """The version of each record of the batch, as the ledger claims it."""
    times = pd.to_datetime(batch["update_time"], utc=True)
    seen = pd.to_datetime(batch["observed_at"], utc=True)
    yields = pd.to_datetime(batch["yielded_at"], utc=True)
    return [
        RecordVersion(
            None if pd.isna(t) else t.to_pydatetime(),
            str(h),
            None if pd.isna(o) else o.to_pydatetime(),
            None if pd.isna(y) else y.to_pydatetime(),
        )
        for t, h, o, y in zip(times, batch["content_hash"], seen, yields, strict=True)
    ]


def unreconciled(
    connect: Connect, partition_key: str, deletions: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Cleaned rows and tombstones (``deletions``) of the partition that are neither loaded,
    unchanged, landed nor superseded."""
    with connect() as conn:
        return storage.unreconciled_rows(conn, partition_key, deletions)
