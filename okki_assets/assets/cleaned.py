"""cleaned_companies: typed, normalised companies; invalid rows go to quarantined_companies
with their reasons.

Everything about this asset is here: its definition, its stage (``clean_partition``: one
partition's raw rows cleaned into DuckDB, then the stored rows validated), and its checks
``schema_valid``, ``company_id_unique`` and ``quarantine_ratio``. The cleaning rules live in
cleaning.py and its field rules, the model in schemas.py.
"""

# No `from __future__ import annotations`: Dagster reads the asset's annotations at runtime.

import gc
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
import pandas as pd
import pandera.pandas as pa

from okki_assets import storage
from okki_assets.assets.common import (
    GROUP,
    WARN,
    CheckOutcome,
    ErrorsAsFailure,
    emit,
    partitioned_checks_allowed,
    specs,
)
from okki_assets.cleaning import clean_companies
from okki_assets.gc_pause import gc_paused
from okki_assets.loading import unusable_deletions
from okki_assets.metadata import counts_markdown, markdown_rows, table_metadata
from okki_assets.partitions import ACCOUNT_KEY, window_for_key
from okki_assets.resources import WarehouseResource
from okki_assets.schemas import CleanedCompany
from okki_assets.stages.common import Connect, now

ASSET = "cleaned_companies"
SCHEMA_VALID = "schema_valid"
COMPANY_ID_UNIQUE = "company_id_unique"
QUARANTINE_RATIO = "quarantine_ratio"
DEFAULT_QUARANTINE_THRESHOLD = 0.05
FAILURE_SAMPLE = 50


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


def clean_metadata(summary: "CleanSummary") -> dict[str, Any]:
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


def clean_outcomes(summary: "CleanSummary", threshold: float) -> Sequence[CheckOutcome]:
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


# --- the stage: one partition's clean -----------------------------------------------------


@dataclass
class CleanSummary:
    partition_key: str
    raw: int = 0
    cleaned: int = 0
    quarantined: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    field_issues: dict[str, int] = field(default_factory=dict)
    failure_cases: pd.DataFrame = field(default_factory=pd.DataFrame)
    failure_case_count: int = 0
    stored_failures: pd.DataFrame = field(default_factory=pd.DataFrame)
    duplicate_ids: list[int] = field(default_factory=list)
    preview: pd.DataFrame = field(default_factory=pd.DataFrame)
    quarantine_sample: pd.DataFrame = field(default_factory=pd.DataFrame)
    seconds: float = 0.0

    @property
    def quarantine_ratio(self) -> float:
        return self.quarantined / self.raw if self.raw else 0.0


def clean_partition(connect: Connect, partition_key: str, run_id: str) -> CleanSummary:
    """Clean one partition's raw rows into ``cleaned_companies`` and ``quarantined_companies``."""
    started = time.monotonic()
    start, end = window_for_key(partition_key)
    summary = CleanSummary(partition_key)
    issues: Counter[str] = Counter()
    samples: list[pd.DataFrame] = []
    at = now()
    with connect() as conn:
        with (
            closing(conn.cursor()) as reader,
            storage.replacing_cleaned(conn, partition_key),
        ):
            for chunk in storage.iter_raw(reader, partition_key):
                # A chunk's objects all die at its end: with the collector paused until then it
                # never walks them (a full collection per chunk cost a fifth of the stage's CPU).
                with gc_paused():
                    result = clean_companies(chunk, start, end)
                    storage.append_cleaned(conn, result.cleaned, result.quarantined, run_id, at)
                    summary.raw += len(chunk)
                    summary.cleaned += len(result.cleaned)
                    summary.quarantined += len(result.quarantined)
                    issues.update(result.field_issue_counts)
                    summary.failure_case_count += len(result.failure_cases)
                    if (
                        sum(len(sample) for sample in samples) < FAILURE_SAMPLE
                        and not result.failure_cases.empty
                    ):
                        samples.append(result.failure_cases.head(FAILURE_SAMPLE))
                    del chunk, result
                gc.collect(1)  # cycles the chunk left (a schema error's traceback): young only
            # Deleted companies that cannot become a tombstone are kept here, like bad rows.
            unusable = unusable_deletions(storage.read_deleted(conn, partition_key))
            storage.append_cleaned(
                conn,
                pd.DataFrame(),
                unusable.assign(partition_key=partition_key, info_json=None),
                run_id,
                at,
            )
            # One cleaned copy per company between the account's copy and the windows'.
            storage.settle_account_copies(conn, partition_key, ACCOUNT_KEY)
        # Validate what DuckDB now holds chunk by chunk, so a large window is never in memory.
        failures: list[pd.DataFrame] = []
        offset = 0
        for stored in storage.iter_cleaned(conn, partition_key):
            stored.index = pd.RangeIndex(offset, offset + len(stored))
            offset += len(stored)
            if summary.preview.empty:
                summary.preview = stored.head(5)[
                    [c for c in ("company_id", "name", "country", "email", "phone") if c in stored]
                ]
            failures.append(_validate_stored(stored))
        summary.reasons = storage.quarantine_reason_counts(conn, partition_key)
        summary.quarantine_sample = storage.quarantine_sample(conn, partition_key)
        summary.duplicate_ids = storage.duplicate_company_ids(conn, partition_key)
    summary.field_issues = dict(issues)
    summary.failure_cases = pd.concat(samples, ignore_index=True) if samples else pd.DataFrame()
    failures = [f for f in failures if not f.empty]
    summary.stored_failures = pd.concat(failures, ignore_index=True) if failures else pd.DataFrame()
    summary.seconds = time.monotonic() - started
    return summary


def _validate_stored(stored: pd.DataFrame) -> pd.DataFrame:
    """Validate what DuckDB now holds (not what we meant to write) against the model."""
    try:
        CleanedCompany.validate(stored, lazy=True)
    except pa.errors.SchemaErrors as e:
        return e.failure_cases
    return pd.DataFrame()
