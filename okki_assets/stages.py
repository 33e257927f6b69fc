"""The work of each asset for one partition: pull, clean, load.

Each function takes ready clients and a warehouse, does one partition's work against DuckDB,
and returns a summary whose numbers become per-partition metadata and check results. Assets
only loop over their partitions and report; tests can drive these functions directly too.
"""

from __future__ import annotations

import gc
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import duckdb
import pandas as pd
import pandera.pandas as pa

from okki_assets import storage
from okki_assets.cleaning import clean_companies
from okki_assets.clients.okki import OkkiClient
from okki_assets.clients.target import TargetClient
from okki_assets.errors import (
    TargetAuthError,
    TargetError,
    TargetPermanentError,
    TargetRetriesExhausted,
    TargetUnreachable,
)
from okki_assets.loading import plan_load
from okki_assets.mapping import Mapping, gc_paused
from okki_assets.partitions import window_for_key
from okki_assets.pull import InfoReport, fetch_infos, list_window
from okki_assets.schemas import CleanedCompany

Connect = Callable[[], AbstractContextManager[duckdb.DuckDBPyConnection]]
log = logging.getLogger(__name__)

STAGE_CHUNK = 1_000
FAILURE_SAMPLE = 50


def _now() -> datetime:
    return datetime.now(tz=UTC)


def _delta(after: dict[str, Any], before: dict[str, Any]) -> dict[str, float | int]:
    out: dict[str, float | int] = {}
    for key, value in after.items():
        if isinstance(value, int | float):
            diff = value - before.get(key, 0)
            out[key] = round(diff, 3) if isinstance(diff, float) else diff
    return out


# --- raw ----------------------------------------------------------------------------------


@dataclass
class PullSummary:
    partition_key: str
    total_item: int = 0
    distinct: int = 0
    stored: int = 0
    pages: int = 0
    passes: int = 0
    bisections: int = 0
    duplicates_dropped: int = 0
    edge_rows_left_to_neighbour: int = 0
    info_requested: int = 0
    info_reused: int = 0
    deleted_listed: int = 0
    deleted_while_syncing: list[str] = field(default_factory=list)
    moved_out_while_syncing: list[str] = field(default_factory=list)
    client_stats: dict[str, float | int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def accounted(self) -> bool:
        """Every listed company is stored (those info reported deleted too, for quarantine),
        or reported moved to a later window while syncing."""
        return self.stored + len(self.moved_out_while_syncing) == self.distinct

    def metadata(self) -> dict[str, Any]:
        return {
            "dagster/row_count": self.stored,
            "fetched": self.stored,
            "okki_total_item_reported": self.total_item,
            "distinct_companies": self.distinct,
            "duplicates_dropped": self.duplicates_dropped,
            "listed_rows_of_neighbour_days": self.edge_rows_left_to_neighbour,
            "list_passes_until_stable": self.passes,
            "list_pages": self.pages,
            "window_splits_list_unsettled": self.bisections,
            "info_requested": self.info_requested,
            "info_reused": self.info_reused,
            "deleted_listed": self.deleted_listed,
            "deleted_while_syncing": len(self.deleted_while_syncing),
            "moved_out_while_syncing": len(self.moved_out_while_syncing),
            "duration_seconds": round(self.seconds, 2),
            **self.client_stats,
        }


def pull_partition(
    client: OkkiClient,
    connect: Connect,
    partition_key: str,
    run_id: str,
    *,
    refresh_info: bool = False,
) -> PullSummary:
    """Pull one window into ``raw_companies`` (and its deleted list), replacing the partition."""
    started = time.monotonic()
    before = client.stats.as_metadata()
    start, end = window_for_key(partition_key)
    summary = PullSummary(partition_key)

    listed, report = list_window(client, start, end)
    summary.total_item, summary.distinct = report.total_item, len(listed)
    summary.pages, summary.passes, summary.bisections = (
        report.pages,
        report.passes,
        report.bisections,
    )
    summary.duplicates_dropped = report.duplicates_dropped
    summary.edge_rows_left_to_neighbour = report.edge_rows_left_to_neighbour
    log.info("%s: %d companies listed in %d pages", partition_key, len(listed), report.pages)

    stored_times: dict[str, str] = {}
    if not refresh_info:
        with connect() as conn:
            stored_times = storage.stored_update_times(
                conn, [k for k in listed if not k.startswith("raw:")]
            )

    def reusable(company_id: str, update_time: object) -> bool:
        return update_time is not None and stored_times.get(company_id) == update_time

    info = InfoReport()
    fetched_at = _now()
    buffer: list[storage.RawRow] = []
    try:
        for company in fetch_infos(client, listed, end, reusable=reusable, report=info):
            buffer.append(
                storage.RawRow(
                    partition_key,
                    company.company_id,
                    company.update_time,
                    json.dumps(company.list_record, ensure_ascii=False),
                    json.dumps(company.info, ensure_ascii=False)
                    if company.info is not None
                    else None,
                    company.info_reused,
                )
            )
            if len(buffer) >= STAGE_CHUNK:
                summary.stored += _stage(connect, run_id, buffer, fetched_at)
                log.info("%s: %d/%d companies staged", partition_key, summary.stored, len(listed))
        summary.stored += _stage(connect, run_id, buffer, fetched_at)

        deleted, _ = list_window(client, start, end, removed=1)
        summary.deleted_listed = len(deleted)
        with connect() as conn:
            storage.publish_raw(conn, run_id, [partition_key])
            storage.replace_deleted(
                conn,
                partition_key,
                [
                    (k, r.get("update_time"), json.dumps(r, ensure_ascii=False))
                    for k, r in deleted.items()
                    if not k.startswith("raw:")
                ],
                run_id,
                fetched_at,
            )
    except BaseException:
        with connect() as conn:
            storage.discard_staging(conn, run_id)
        raise
    summary.info_requested, summary.info_reused = info.requested, info.reused
    summary.deleted_while_syncing = info.deleted_while_syncing
    summary.moved_out_while_syncing = info.moved_out_while_syncing
    summary.client_stats = _delta(client.stats.as_metadata(), before)
    summary.seconds = time.monotonic() - started
    return summary


def _stage(connect: Connect, run_id: str, buffer: list[storage.RawRow], at: datetime) -> int:
    n = len(buffer)
    if n:
        with connect() as conn:
            storage.stage_raw(conn, run_id, buffer, at)
        buffer.clear()
    return n


# --- cleaned ------------------------------------------------------------------------------


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
    at = _now()
    with connect() as conn:
        reader = conn.cursor()
        storage.begin_cleaned(conn, partition_key)
        try:
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
                        sum(len(s) for s in samples) < FAILURE_SAMPLE
                        and not result.failure_cases.empty
                    ):
                        samples.append(result.failure_cases.head(FAILURE_SAMPLE))
                    del chunk, result
                gc.collect(1)  # cycles the chunk left (a schema error's traceback): young only
            storage.commit(conn)
        except BaseException:
            storage.rollback(conn)
            raise
        finally:
            reader.close()
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


# --- loaded -------------------------------------------------------------------------------


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
    statuses: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    unreconciled: pd.DataFrame = field(default_factory=pd.DataFrame)
    client_stats: dict[str, float | int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def failed(self) -> int:
        return self.statuses.get("failed", 0)


def _batches(frame: pd.DataFrame, size: int) -> Iterator[pd.DataFrame]:
    for offset in range(0, len(frame), size):
        yield frame.iloc[offset : offset + size]


def load_partition(
    client: TargetClient | None,
    connect: Connect,
    partition_key: str,
    run_id: str,
    mapping: Mapping,
    *,
    batch_size: int = 500,
) -> LoadSummary:
    """Send one partition's new and changed records (and tombstones) and keep the ledger."""
    started = time.monotonic()
    before = client.stats.as_metadata() if client else {}
    summary = LoadSummary(partition_key, land_only=client is None)
    with connect() as conn:
        cleaned = storage.read_cleaned(conn, partition_key)
        deleted = storage.read_deleted(conn, partition_key)
        ids = list(cleaned["company_id"].astype("int64")) + [
            int(c) for c in deleted["company_id"] if str(c).isdigit()
        ]
        ledger = storage.ledger_rows(conn, ids)
    plan = plan_load(cleaned, deleted, ledger, mapping, partition_key)
    summary.candidates = len(plan.to_send)
    summary.skipped_unchanged, summary.skipped_stale = plan.skipped_unchanged, plan.skipped_stale
    summary.tombstones = plan.tombstones
    claims = plan.to_send[["company_id", "partition_key", "content_hash", "update_time"]]

    if client is None:
        with connect() as conn:
            summary.landed = storage.record_landed(conn, claims, run_id, _now())
        summary.statuses["landed"] = summary.landed
    else:
        for batch in _batches(plan.to_send, batch_size):
            _send_batch(client, connect, batch, run_id, summary)
    summary.unreconciled = reconcile(connect, partition_key)
    summary.client_stats = _delta(client.stats.as_metadata(), before) if client else {}
    summary.seconds = time.monotonic() - started
    return summary


def _send_batch(
    client: TargetClient, connect: Connect, batch: pd.DataFrame, run_id: str, summary: LoadSummary
) -> None:
    with connect() as conn:
        claimed = storage.claim_for_sending(
            conn,
            batch[["company_id", "partition_key", "content_hash", "update_time"]],
            run_id,
            _now(),
        )
    summary.lost_claim += len(batch) - len(claimed)
    batch = batch[batch["company_id"].isin(claimed)]
    if batch.empty:
        return
    records = list(batch["record"])
    ids = [int(c) for c in batch["company_id"]]
    gave_up: TargetRetriesExhausted | TargetUnreachable | None = None
    try:
        results = client.write_batch(records)
        outcomes = [(cid, r.status, r.error) for cid, r in zip(ids, results, strict=True)]
    except TargetAuthError:
        raise
    except (TargetPermanentError, TargetError) as e:
        summary.errors.append(str(e))
        outcomes = [(cid, "failed", str(e)[:500]) for cid in ids]
        if isinstance(e, TargetRetriesExhausted | TargetUnreachable):
            gave_up = e  # the target is not answering: the next batches would fare no better
    summary.batches += 1
    summary.sent += len(records)
    summary.statuses.update(status for _, status, _ in outcomes)
    with connect() as conn:
        storage.record_outcomes(conn, outcomes, run_id, _now())
    if gave_up is not None:
        raise gave_up


def reconcile(connect: Connect, partition_key: str) -> pd.DataFrame:
    """Cleaned rows of the partition that are neither loaded, unchanged, landed nor superseded."""
    with connect() as conn:
        return storage.unreconciled_rows(conn, partition_key)
