"""One partition's clean (``clean_partition``): its raw rows cleaned into
``cleaned_companies`` and ``quarantined_companies``, then the stored rows validated.

The cleaning rules live in cleaning.py and its field rules, the model in schemas.py.
"""

from __future__ import annotations

import gc
import time
from collections import Counter
from contextlib import closing
from dataclasses import dataclass, field

import duckdb
import pandas as pd
import pandera.pandas as pa

from okki_assets import storage
from okki_assets.cleaning import clean_companies
from okki_assets.gc_pause import gc_paused
from okki_assets.loading import unusable_deletions
from okki_assets.partitions import ACCOUNT_KEY, window_for_key
from okki_assets.schemas import CleanedCompany
from okki_assets.stages.common import Connect, now

FAILURE_SAMPLE = 50


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
        _check_stored(conn, summary)
    summary.field_issues = dict(issues)
    summary.failure_cases = pd.concat(samples, ignore_index=True) if samples else pd.DataFrame()
    summary.seconds = time.monotonic() - started
    return summary


def _check_stored(conn: duckdb.DuckDBPyConnection, summary: CleanSummary) -> None:
    """Validate what DuckDB now holds chunk by chunk, so a large window is never in memory; the
    preview, the quarantine's reasons and sample and the duplicate ids go to the summary too."""
    partition_key = summary.partition_key
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
    failures = [f for f in failures if not f.empty]
    summary.stored_failures = pd.concat(failures, ignore_index=True) if failures else pd.DataFrame()


def _validate_stored(stored: pd.DataFrame) -> pd.DataFrame:
    """Validate what DuckDB now holds (not what we meant to write) against the model."""
    try:
        CleanedCompany.validate(stored, lazy=True)
    except pa.errors.SchemaErrors as e:
        return e.failure_cases
    return pd.DataFrame()
