"""loaded_companies: the cleaned companies written to the target, in batches, with the load
ledger in DuckDB.

Everything about this asset is here: its definition, its stage (``load_partition``: one
partition's new and changed records and tombstones sent, each outcome kept in the ledger), and
its check ``load_reconciled``. What to send is decided in loading.py, the record's shape in
mapping.py.
"""

# No `from __future__ import annotations`: Dagster reads the asset's annotations at runtime.

import time
from collections import Counter
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import dagster as dg
import pandas as pd

from okki_assets import storage
from okki_assets.assets.common import (
    GROUP,
    CheckOutcome,
    ErrorsAsFailure,
    emit,
    partitioned_checks_allowed,
    specs,
)
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
from okki_assets.metadata import table_metadata
from okki_assets.resources import TargetResource, WarehouseResource
from okki_assets.stages.common import Connect, now, stats_delta
from okki_assets.storage import LedgerStatus
from okki_assets.targets import KIND_LAND_ONLY, RecordVersion, Target, TargetSettings
from okki_assets.targets.http import new_attempt

ASSET = "loaded_companies"
TARGET_POOL = "okki_target"
LOAD_RECONCILED = "load_reconciled"
# The daily sync lands loaded_companies at least once a day: one missed day warns, two fail.
FRESHNESS = dg.FreshnessPolicy.time_window(
    fail_window=timedelta(hours=50), warn_window=timedelta(hours=26)
)
# Always present (0 when none), so that the UI plots each across partitions without gaps.
LOAD_STATUSES = tuple(status.value for status in LedgerStatus if status is not LedgerStatus.SENDING)


def build_loaded_companies(
    partitions_def: dg.PartitionsDefinition,
    policy: dg.BackfillPolicy,
    upstream: dg.AssetsDefinition,
) -> dg.AssetsDefinition:
    with partitioned_checks_allowed():

        @dg.asset(
            group_name=GROUP,
            partitions_def=partitions_def,
            backfill_policy=policy,
            deps=[upstream],
            pool=TARGET_POOL,
            kinds={"duckdb"},
            freshness_policy=FRESHNESS,
            check_specs=specs(
                ASSET,
                partitions_def,
                (
                    LOAD_RECONCILED,
                    True,
                    "Every cleaned row and every deletion is loaded, unchanged, landed or"
                    " superseded; none failed or rejected.",
                ),
            ),
        )
        def loaded_companies(
            context: dg.AssetExecutionContext, target: TargetResource, warehouse: WarehouseResource
        ) -> Iterator[Any]:
            """Cleaned companies written to the target in batches, skipping unchanged and stale.

            Re-running is safe: the load ledger skips what the target already has, never sends
            an older version over a newer one, and each attempt carries its own Idempotency-Key,
            kept with the ledger's claim, so a resend of an attempt is not applied twice.
            """
            outcomes: list[CheckOutcome] = []
            with ErrorsAsFailure():
                mapping = target.mapping()
                with closing(target.open()) as client:
                    client.check()
                    for key in context.partition_keys:
                        with warehouse.load_lock():  # one load per DuckDB file at a time
                            summary = load_partition(
                                client,
                                warehouse.get_connection,
                                key,
                                context.run.run_id,
                                mapping,
                                batch_size=target.batch_size,
                            )
                        log_load(context, summary)
                        context.add_asset_metadata(
                            {**load_metadata(summary), **target.settings_used()},
                            partition_key=key,
                        )
                        outcomes.append(load_reconciled(summary))
            yield dg.MaterializeResult()
            yield from emit(context, ASSET, outcomes)

    return loaded_companies


def log_load(context: dg.AssetExecutionContext, summary: "LoadSummary") -> None:
    if summary.land_only:
        context.log.info(
            "%s: land-only mode (no TARGET_URL): %d records landed, nothing sent",
            summary.partition_key,
            summary.landed,
        )
    else:
        context.log.info(
            "%s: %d sent in %d batches %s, %d unchanged skipped, %d stale skipped",
            summary.partition_key,
            summary.sent,
            summary.batches,
            dict(summary.statuses),
            summary.skipped_unchanged,
            summary.skipped_stale,
        )
    for error in summary.errors[:5]:
        context.log.warning("%s: batch failed: %s", summary.partition_key, error)


def load_metadata(summary: "LoadSummary") -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "mode": "land-only: nothing sent (TARGET_URL unset)" if summary.land_only else "target",
        "sent": summary.sent,
        "batches": summary.batches,
        "skipped_unchanged": summary.skipped_unchanged,
        "skipped_stale": summary.skipped_stale,
        "landed": summary.landed,
        "tombstones": summary.tombstones,
        "tombstones_quarantined": summary.tombstones_quarantined,
        "superseded_in_window": summary.superseded,
        "failed": summary.failed,
        "duration_seconds": round(summary.seconds, 2),
        **{f"status_{k}": int(summary.statuses.get(k, 0)) for k in LOAD_STATUSES},
        **{
            f"status_{k}": int(v)
            for k, v in sorted(summary.statuses.items())
            if k not in LOAD_STATUSES
        },
        **summary.client_stats,
    }
    return metadata


def load_reconciled(summary: "LoadSummary") -> CheckOutcome:
    bad = summary.unreconciled
    metadata: dict[str, Any] = {"unreconciled": len(bad), "failed": summary.failed}
    if not bad.empty:
        metadata["unreconciled_rows"] = table_metadata(bad)
    return CheckOutcome(
        summary.partition_key,
        LOAD_RECONCILED,
        bad.empty,
        description=f"{len(bad)} records (cleaned rows or deletions) not loaded",
        metadata=metadata,
    )


# --- the stage: one partition's load ------------------------------------------------------


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
    summary.unreconciled = reconcile(connect, partition_key, plan.deletions)
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
    try:
        results = client.write_batch(records, claim.attempt, _versions(batch))
        outcomes = [(cid, r.status, r.error) for cid, r in zip(ids, results, strict=True)]
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
        storage.record_outcomes(conn, outcomes, run_id, now())
    if gave_up is not None:
        raise gave_up


def _versions(batch: pd.DataFrame) -> list[RecordVersion]:
    """The version of each record of the batch, as the ledger claims it."""
    times = pd.to_datetime(batch["update_time"], utc=True)
    return [
        RecordVersion(None if pd.isna(t) else t.to_pydatetime(), str(h))
        for t, h in zip(times, batch["content_hash"], strict=True)
    ]


def reconcile(
    connect: Connect, partition_key: str, deletions: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Cleaned rows and tombstones (``deletions``) of the partition that are neither loaded,
    unchanged, landed nor superseded."""
    with connect() as conn:
        return storage.unreconciled_rows(conn, partition_key, deletions)
