"""raw_companies: the window's companies as OKKI sent them, one list record and info payload
each, in DuckDB.

This module holds the asset's definition, its metadata and its check ``raw_complete`` (every
company OKKI listed has one raw row); the pull itself is the stage ``pull_partition``
(stages/window_pull.py).
"""

# No `from __future__ import annotations`: Dagster reads the asset's annotations at runtime.

from collections.abc import Iterator
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
from okki_assets.resources import OkkiResource, TargetResource, WarehouseResource
from okki_assets.stages.window_pull import PullSummary, pull_partition

ASSET = "raw_companies"
API_POOL = "okki_api"
RAW_COMPLETE = "raw_complete"


def build_raw_companies(
    partitions_def: dg.PartitionsDefinition, policy: dg.BackfillPolicy
) -> dg.AssetsDefinition:
    with partitioned_checks_allowed():

        @dg.asset(
            group_name=GROUP,
            partitions_def=partitions_def,
            backfill_policy=policy,
            pool=API_POOL,
            kinds={"duckdb"},
            check_specs=specs(
                ASSET,
                partitions_def,
                (
                    RAW_COMPLETE,
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
            with ErrorsAsFailure():
                # Settings the later steps need fail now, before OKKI is called or a row written.
                okki.check()
                target.check()
                warehouse.check()
            used = {**okki.settings_used(), **target.settings_used()}  # which OKKI, which target
            with ErrorsAsFailure(), okki.session(warehouse.get_connection) as client:
                for key in context.partition_keys:
                    summary = pull_partition(
                        client,
                        warehouse.get_connection,
                        key,
                        context.run.run_id,
                        refresh_info=okki.refresh_info,
                    )
                    log_pull(context, summary)
                    context.add_asset_metadata(
                        {**pull_metadata(summary), **used}, partition_key=key
                    )
                    outcomes.append(raw_complete(summary))
            yield dg.MaterializeResult()
            yield from emit(context, ASSET, outcomes)

    return raw_companies


def log_pull(context: dg.AssetExecutionContext, summary: PullSummary) -> None:
    context.log.info(
        "%s: %d companies stored (%d info calls, %d reused, %d resumed from an"
        " interrupted pull, %d deleted while syncing) in %.1fs",
        summary.partition_key,
        summary.stored,
        summary.info_requested,
        summary.info_reused,
        summary.info_resumed,
        len(summary.deleted_while_syncing),
        summary.seconds,
    )


def pull_metadata(summary: PullSummary) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "dagster/row_count": summary.stored,
        "fetched": summary.stored,
        "okki_total_item_reported": summary.total_item,
        "distinct_companies": summary.distinct,
        "duplicates_dropped": summary.duplicates_dropped,
        "listed_rows_of_neighbour_days": summary.edge_rows_left_to_neighbour,
        "list_passes_until_stable": summary.passes,
        "list_pages": summary.pages,
        "window_splits_list_unsettled": summary.bisections,
        "info_requested": summary.info_requested,
        "info_reused": summary.info_reused,
        "info_resumed": summary.info_resumed,
        "deleted_listed": summary.deleted_listed,
        "stored_in_duckdb": summary.stored_in_duckdb,
        "distinct_in_duckdb": summary.distinct_in_duckdb,
        "deleted_while_syncing": len(summary.deleted_while_syncing),
        "info_refused": len(summary.info_refused),
        "info_unusable": len(summary.info_unusable),
        "info_ahead_of_list": len(summary.info_ahead_of_list),
        "duration_seconds": round(summary.seconds, 2),
        **summary.pacing,
        **summary.client_stats,
    }
    if summary.deleted_while_syncing:
        metadata["deleted_while_syncing_ids"] = ", ".join(summary.deleted_while_syncing[:50])
    return metadata


def raw_complete(summary: PullSummary) -> CheckOutcome:
    """Passes when DuckDB holds one raw row per company the window listed (``accounted``)."""
    return CheckOutcome(
        summary.partition_key,
        RAW_COMPLETE,
        summary.accounted,
        description=raw_complete_description(summary),
        metadata={
            "okki_total_item_reported": summary.total_item,
            "distinct_companies": summary.distinct,
            "stored": summary.stored,
            "stored_in_duckdb": summary.stored_in_duckdb,
            "distinct_in_duckdb": summary.distinct_in_duckdb,
            "deleted_while_syncing": len(summary.deleted_while_syncing),
            "info_refused": len(summary.info_refused),
            "info_unusable": len(summary.info_unusable),
            "info_ahead_of_list": len(summary.info_ahead_of_list),
            "list_passes_until_stable": summary.passes,
        },
    )


def raw_complete_description(summary: PullSummary) -> str:
    """Listed against stored, and why OKKI's own total may be higher: the list is asked for the
    window widened by a second on each edge, and rows on the edges belong to the neighbour days
    (synced there)."""
    text = f"{summary.distinct} listed, {summary.stored_in_duckdb} in DuckDB"
    edge = summary.edge_rows_left_to_neighbour
    if edge:
        text += (
            f"; OKKI's total of {summary.total_item} also counts {edge} rows of the neighbour"
            " days (on the window's edges, synced with their own day)"
        )
    return text
