"""cleaned_companies: typed, normalised companies; invalid rows go to quarantined_companies
with their reasons.

This module holds the asset's definition, its metadata and its checks ``schema_valid``,
``company_id_unique`` and ``quarantine_ratio``; the work is the stage ``clean_partition``
(stages/clean.py).
"""

# No `from __future__ import annotations`: Dagster reads the asset's annotations at runtime.

from collections.abc import Iterator, Sequence
from typing import Any

import dagster as dg

from okki_assets.assets.common import (
    GROUP,
    WARN,
    CheckOutcome,
    ErrorsAsFailure,
    emit,
    partitioned_checks_allowed,
    specs,
)
from okki_assets.metadata import counts_markdown, markdown_rows, table_metadata
from okki_assets.resources import WarehouseResource
from okki_assets.stages.clean import CleanSummary, clean_partition

ASSET = "cleaned_companies"
SCHEMA_VALID = "schema_valid"
COMPANY_ID_UNIQUE = "company_id_unique"
QUARANTINE_RATIO = "quarantine_ratio"
DEFAULT_QUARANTINE_THRESHOLD = 0.05


def build_cleaned_companies(
    partitions_def: dg.PartitionsDefinition,
    policy: dg.BackfillPolicy,
    upstream: dg.AssetsDefinition,
    quarantine_threshold: float = DEFAULT_QUARANTINE_THRESHOLD,
) -> dg.AssetsDefinition:
    with partitioned_checks_allowed():

        @dg.asset(
            group_name=GROUP,
            partitions_def=partitions_def,
            backfill_policy=policy,
            deps=[upstream],
            kinds={"pandas", "duckdb"},
            check_specs=specs(
                ASSET,
                partitions_def,
                (
                    SCHEMA_VALID,
                    True,
                    "The stored cleaned rows validate against the CleanedCompany model.",
                ),
                (COMPANY_ID_UNIQUE, True, "company_id is unique within the partition."),
                (
                    QUARANTINE_RATIO,
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
            with ErrorsAsFailure():
                for key in context.partition_keys:
                    summary = clean_partition(warehouse.get_connection, key, context.run.run_id)
                    context.log.info(
                        "%s: %d cleaned, %d quarantined of %d",
                        key,
                        summary.cleaned,
                        summary.quarantined,
                        summary.raw,
                    )
                    context.add_asset_metadata(clean_metadata(summary), partition_key=key)
                    outcomes += clean_outcomes(summary, quarantine_threshold)
            yield dg.MaterializeResult()
            yield from emit(context, ASSET, outcomes)

    return cleaned_companies


def clean_metadata(summary: CleanSummary) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "dagster/row_count": summary.cleaned,
        "raw_rows": summary.raw,
        "cleaned": summary.cleaned,
        "quarantined": summary.quarantined,
        "quarantine_ratio": round(summary.quarantine_ratio, 4),
        "quarantine_reasons": counts_markdown(summary.reasons),
        "field_issues": counts_markdown(summary.field_issues),
        "duration_seconds": round(summary.seconds, 2),
    }
    metadata.update({f"flag_{k}": int(v) for k, v in summary.field_issues.items()})
    if not summary.preview.empty:
        metadata["preview"] = markdown_rows(summary.preview, limit=5)
    return metadata


def clean_outcomes(summary: CleanSummary, threshold: float) -> Sequence[CheckOutcome]:
    failures = summary.stored_failures
    schema_meta: dict[str, Any] = {
        "num_failures": len(failures),
        "quarantined_by_schema": summary.failure_case_count,
    }
    shown = failures if not failures.empty else summary.failure_cases
    if not shown.empty:
        schema_meta["failure_cases"] = table_metadata(shown)
    return [
        CheckOutcome(
            summary.partition_key,
            SCHEMA_VALID,
            failures.empty,
            description=f"{len(failures)} failure cases in the stored rows",
            metadata=schema_meta,
        ),
        CheckOutcome(
            summary.partition_key,
            COMPANY_ID_UNIQUE,
            not summary.duplicate_ids,
            description=f"{len(summary.duplicate_ids)} company_id values stored more than once",
            metadata={
                "duplicates": len(summary.duplicate_ids),
                "duplicate_ids": ", ".join(map(str, summary.duplicate_ids[:50])),
            },
        ),
        CheckOutcome(
            summary.partition_key,
            QUARANTINE_RATIO,
            summary.quarantine_ratio <= threshold,
            severity=WARN,
            description=f"{summary.quarantined} of {summary.raw} rows quarantined",
            metadata={
                "quarantined": summary.quarantined,
                "ratio": round(summary.quarantine_ratio, 4),
                "threshold": threshold,
                "reasons": counts_markdown(summary.reasons),
                **(
                    {"quarantined_rows": table_metadata(summary.quarantine_sample)}
                    if not summary.quarantine_sample.empty
                    else {}
                ),
            },
        ),
    ]
