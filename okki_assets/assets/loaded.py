"""loaded_companies: the cleaned companies written to the target, in batches, with the load
ledger in DuckDB.

This module holds the asset's definition, its metadata and its check ``load_reconciled``; the
work is the stage ``load_partition`` (stages/load.py).
"""

# No `from __future__ import annotations`: Dagster reads the asset's annotations at runtime.

from collections.abc import Iterator
from contextlib import closing
from datetime import timedelta
from typing import Any

import dagster as dg

from okki_assets.assets.common import (
    GROUP,
    CheckOutcome,
    ErrorsAsFailure,
    emit,
    partitioned_checks_allowed,
    specs,
)
from okki_assets.metadata import table_metadata
from okki_assets.resources import TargetResource, WarehouseResource
from okki_assets.stages.load import LoadSummary, load_partition
from okki_assets.storage import LedgerStatus

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


def log_load(context: dg.AssetExecutionContext, summary: LoadSummary) -> None:
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


def load_metadata(summary: LoadSummary) -> dict[str, Any]:
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


def load_reconciled(summary: LoadSummary) -> CheckOutcome:
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
