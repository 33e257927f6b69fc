"""raw_companies -> cleaned_companies -> loaded_companies, one sync window per partition.

The assets orchestrate only: they loop over the run's partitions (one, or a range in a
single-run backfill), call the stage functions in stages.py, and report per-partition metadata
and per-partition check results. Their data lives in DuckDB tables written by storage.py, so
they return no value to an IO manager.
"""

# No `from __future__ import annotations` here: Dagster reads these annotations at runtime.

from collections.abc import Iterator, Sequence
from datetime import timedelta
from typing import Any

import dagster as dg

from okki_assets import checks, stages
from okki_assets.checks import CheckOutcome
from okki_assets.errors import OkkiAssetsError
from okki_assets.resources import OkkiResource, TargetResource, WarehouseResource
from okki_assets.storage import LedgerStatus

GROUP = "okki"
API_POOL = "okki_api"
TARGET_POOL = "okki_target"
DEFAULT_QUARANTINE_THRESHOLD = 0.05
WARN = dg.AssetCheckSeverity.WARN
# The daily sync lands loaded_companies at least once a day: one missed day warns, two fail.
FRESHNESS = dg.FreshnessPolicy.time_window(
    fail_window=timedelta(hours=50), warn_window=timedelta(hours=26)
)
# Always present (0 when none), so that the UI plots each across partitions without gaps.
LOAD_STATUSES = tuple(s.value for s in LedgerStatus if s is not LedgerStatus.SENDING)


def build_assets(
    partitions_def: dg.PartitionsDefinition,
    *,
    quarantine_threshold: float = DEFAULT_QUARANTINE_THRESHOLD,
) -> list[dg.AssetsDefinition]:
    """The three assets over ``partitions_def`` (built here so definitions.py sets the start)."""

    with checks.partitioned_checks_allowed():
        policy = dg.BackfillPolicy.single_run()

        @dg.asset(
            group_name=GROUP,
            partitions_def=partitions_def,
            backfill_policy=policy,
            pool=API_POOL,
            kinds={"duckdb"},
            check_specs=checks.specs(
                "raw_companies",
                partitions_def,
                (
                    checks.RAW_COMPLETE,
                    False,
                    "Every company OKKI lists for the window has one raw row in DuckDB (counted"
                    " in the table), those info reported deleted or refused included.",
                ),
            ),
        )
        def raw_companies(
            context: dg.AssetExecutionContext,
            okki: OkkiResource,
            target: TargetResource,
            warehouse: WarehouseResource,
        ) -> Iterator[Any]:
            """The window's companies as OKKI sent them: list record + info payload per company.

            Re-running is safe: the pull is staged and replaces exactly its partition in one
            transaction at the end; a failed pull leaves the previous copy untouched. The info
            payloads it fetched are kept as they arrive, so the next pull of the partition asks
            OKKI only for the companies (or the versions) it does not have yet.
            """
            outcomes: list[CheckOutcome] = []
            with _failure_on_error():
                # Settings the later steps need fail now, before OKKI is called or a row written.
                okki.check()
                target.check()
                with warehouse.get_connection():
                    pass
            with _failure_on_error(), okki.session(warehouse.get_connection) as client:
                for key in context.partition_keys:
                    s = stages.pull_partition(
                        client,
                        warehouse.get_connection,
                        key,
                        context.run.run_id,
                        refresh_info=okki.refresh_info,
                    )
                    context.log.info(
                        f"{key}: {s.stored} companies stored ({s.info_requested} info calls,"
                        f" {s.info_reused} reused, {s.info_resumed} resumed from an interrupted"
                        f" pull, {len(s.deleted_while_syncing)} deleted while"
                        f" syncing) in {s.seconds:.1f}s"
                    )
                    metadata = s.metadata()
                    if s.deleted_while_syncing:
                        metadata["deleted_while_syncing_ids"] = ", ".join(
                            s.deleted_while_syncing[:50]
                        )
                    context.add_asset_metadata(metadata, partition_key=key)
                    outcomes.append(
                        CheckOutcome(
                            key,
                            checks.RAW_COMPLETE,
                            s.accounted,
                            description=f"{s.distinct} listed, {s.stored_in_duckdb} in DuckDB",
                            metadata={
                                "okki_total_item_reported": s.total_item,
                                "distinct_companies": s.distinct,
                                "stored": s.stored,
                                "stored_in_duckdb": s.stored_in_duckdb,
                                "distinct_in_duckdb": s.distinct_in_duckdb,
                                "deleted_while_syncing": len(s.deleted_while_syncing),
                                "info_refused": len(s.info_refused),
                                "info_ahead_of_list": len(s.info_ahead_of_list),
                                "list_passes_until_stable": s.passes,
                            },
                        )
                    )
            yield dg.MaterializeResult()
            yield from checks.emit(context, "raw_companies", outcomes)

        @dg.asset(
            group_name=GROUP,
            partitions_def=partitions_def,
            backfill_policy=policy,
            deps=[raw_companies],
            kinds={"pandas", "duckdb"},
            check_specs=checks.specs(
                "cleaned_companies",
                partitions_def,
                (
                    checks.SCHEMA_VALID,
                    True,
                    "The stored cleaned rows validate against the CleanedCompany model.",
                ),
                (checks.COMPANY_ID_UNIQUE, True, "company_id is unique within the partition."),
                (
                    checks.QUARANTINE_RATIO,
                    False,
                    f"At most {quarantine_threshold:.0%} of the window's rows are quarantined.",
                ),
            ),
        )
        def cleaned_companies(
            context: dg.AssetExecutionContext, warehouse: WarehouseResource
        ) -> Iterator[Any]:
            """Typed, normalised companies; invalid rows go to quarantined_companies with reasons.

            Re-running is safe: cleaned and quarantined rows of the partition are replaced in one
            transaction.
            """
            outcomes: list[CheckOutcome] = []
            with _failure_on_error():
                for key in context.partition_keys:
                    s = stages.clean_partition(warehouse.get_connection, key, context.run.run_id)
                    context.log.info(
                        f"{key}: {s.cleaned} cleaned, {s.quarantined} quarantined of {s.raw}"
                    )
                    context.add_asset_metadata(_clean_metadata(s), partition_key=key)
                    outcomes += _clean_outcomes(s, quarantine_threshold)
            yield dg.MaterializeResult()
            yield from checks.emit(context, "cleaned_companies", outcomes)

        @dg.asset(
            group_name=GROUP,
            partitions_def=partitions_def,
            backfill_policy=policy,
            deps=[cleaned_companies],
            pool=TARGET_POOL,
            kinds={"duckdb"},
            freshness_policy=FRESHNESS,
            check_specs=checks.specs(
                "loaded_companies",
                partitions_def,
                (
                    checks.LOAD_RECONCILED,
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
            with _failure_on_error():
                mapping = target.mapping()
                client = target.open()
                try:
                    for key in context.partition_keys:
                        with warehouse.load_lock():  # one load per DuckDB file at a time
                            s = stages.load_partition(
                                client,
                                warehouse.get_connection,
                                key,
                                context.run.run_id,
                                mapping,
                                batch_size=target.batch_size,
                            )
                        _log_load(context, s)
                        context.add_asset_metadata(_load_metadata(s), partition_key=key)
                        outcomes.append(_load_outcome(s))
                finally:
                    if client is not None:
                        client.close()
            yield dg.MaterializeResult()
            yield from checks.emit(context, "loaded_companies", outcomes)

    return [raw_companies, cleaned_companies, loaded_companies]


class _failure_on_error:
    """Turn the project's own errors into one clear ``dg.Failure`` (no wall of traceback)."""

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> None:
        if isinstance(exc, OkkiAssetsError):
            # The message names what to fix; the chain of causes would only bury it.
            text = " ".join(str(exc).split())  # one line, whatever a library put in it
            raise dg.Failure(
                description=f"{type(exc).__name__}: {text}", allow_retries=False
            ) from None


def _clean_metadata(s: stages.CleanSummary) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "dagster/row_count": s.cleaned,
        "raw_rows": s.raw,
        "cleaned": s.cleaned,
        "quarantined": s.quarantined,
        "quarantine_ratio": round(s.quarantine_ratio, 4),
        "quarantine_reasons": checks.counts_markdown(s.reasons),
        "field_issues": checks.counts_markdown(s.field_issues),
        "duration_seconds": round(s.seconds, 2),
    }
    metadata.update({f"flag_{k}": int(v) for k, v in s.field_issues.items()})
    if not s.preview.empty:
        metadata["preview"] = checks.markdown_rows(s.preview, limit=5)
    return metadata


def _clean_outcomes(s: stages.CleanSummary, threshold: float) -> Sequence[CheckOutcome]:
    failures = s.stored_failures
    schema_meta: dict[str, Any] = {
        "num_failures": len(failures),
        "quarantined_by_schema": s.failure_case_count,
    }
    shown = failures if not failures.empty else s.failure_cases
    if not shown.empty:
        schema_meta["failure_cases"] = checks.table_metadata(shown)
    return [
        CheckOutcome(
            s.partition_key,
            checks.SCHEMA_VALID,
            failures.empty,
            description=f"{len(failures)} failure cases in the stored rows",
            metadata=schema_meta,
        ),
        CheckOutcome(
            s.partition_key,
            checks.COMPANY_ID_UNIQUE,
            not s.duplicate_ids,
            description=f"{len(s.duplicate_ids)} company_id values stored more than once",
            metadata={
                "duplicates": len(s.duplicate_ids),
                "duplicate_ids": ", ".join(map(str, s.duplicate_ids[:50])),
            },
        ),
        CheckOutcome(
            s.partition_key,
            checks.QUARANTINE_RATIO,
            s.quarantine_ratio <= threshold,
            severity=WARN,
            description=f"{s.quarantined} of {s.raw} rows quarantined",
            metadata={
                "quarantined": s.quarantined,
                "ratio": round(s.quarantine_ratio, 4),
                "threshold": threshold,
                "reasons": checks.counts_markdown(s.reasons),
                **(
                    {"quarantined_rows": checks.table_metadata(s.quarantine_sample)}
                    if not s.quarantine_sample.empty
                    else {}
                ),
            },
        ),
    ]


def _log_load(context: dg.AssetExecutionContext, s: stages.LoadSummary) -> None:
    if s.land_only:
        context.log.info(
            f"{s.partition_key}: land-only mode (no TARGET_URL): {s.landed} records landed,"
            " nothing sent"
        )
    else:
        context.log.info(
            f"{s.partition_key}: {s.sent} sent in {s.batches} batches {dict(s.statuses)},"
            f" {s.skipped_unchanged} unchanged skipped, {s.skipped_stale} stale skipped"
        )
    for error in s.errors[:5]:
        context.log.warning(f"{s.partition_key}: batch failed: {error}")


def _load_metadata(s: stages.LoadSummary) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "mode": "land-only: nothing sent (TARGET_URL unset)" if s.land_only else "target",
        "sent": s.sent,
        "batches": s.batches,
        "skipped_unchanged": s.skipped_unchanged,
        "skipped_stale": s.skipped_stale,
        "landed": s.landed,
        "tombstones": s.tombstones,
        "tombstones_quarantined": s.tombstones_quarantined,
        "superseded_in_window": s.superseded,
        "failed": s.failed,
        "duration_seconds": round(s.seconds, 2),
        **{f"status_{k}": int(s.statuses.get(k, 0)) for k in LOAD_STATUSES},
        **{f"status_{k}": int(v) for k, v in sorted(s.statuses.items()) if k not in LOAD_STATUSES},
        **s.client_stats,
    }
    return metadata


def _load_outcome(s: stages.LoadSummary) -> CheckOutcome:
    bad = s.unreconciled
    metadata: dict[str, Any] = {"unreconciled": len(bad), "failed": s.failed}
    if not bad.empty:
        metadata["unreconciled_rows"] = checks.table_metadata(bad)
    return CheckOutcome(
        s.partition_key,
        checks.LOAD_RECONCILED,
        bad.empty,
        description=f"{len(bad)} records (cleaned rows or deletions) not loaded",
        metadata=metadata,
    )
