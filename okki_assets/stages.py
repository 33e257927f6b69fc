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
from contextlib import AbstractContextManager, closing, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
import pandas as pd
import pandera.pandas as pa

from okki_assets import storage
from okki_assets.cleaning import clean_companies
from okki_assets.clients.okki import OkkiClient
from okki_assets.clients.ratecontrol import pacing_metadata
from okki_assets.clients.target import TargetClient, new_attempt
from okki_assets.errors import (
    OkkiQuotaExhausted,
    TargetAuthError,
    TargetError,
    TargetPermanentError,
    TargetRetriesExhausted,
    TargetUnreachable,
)
from okki_assets.gc_pause import gc_paused
from okki_assets.loading import plan_load, unusable_deletions
from okki_assets.mapping import Mapping
from okki_assets.partitions import ACCOUNT_KEY, window_for_key
from okki_assets.pull import InfoReport, PulledCompany, fetch_infos, list_window
from okki_assets.schemas import CleanedCompany
from okki_assets.storage import LedgerStatus

Connect = Callable[[], AbstractContextManager[duckdb.DuckDBPyConnection]]
log = logging.getLogger(__name__)

STAGE_CHUNK = 1_000
# Info payloads are kept (committed) as they arrive: once KEEP_CHUNK are waiting, but not more
# often than every KEEP_MIN_GAP seconds (each write opens and closes the DuckDB file, some 30 to
# 50 ms of CPU), and at least every KEEP_SECONDS. A pull killed at any moment so loses at most
# KEEP_CHUNK payloads or half a second's (40 at 80 calls per second), plus the calls in flight,
# and each short write holds the file's single writer lock only for milliseconds.
KEEP_CHUNK = 20
KEEP_MIN_GAP = 0.5
KEEP_SECONDS = 2.0
# Kept payloads older than this are dropped unused (a window not pulled again, a run given up).
KEPT_MAX_AGE = timedelta(days=3)
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
    stored_in_duckdb: int = 0
    distinct_in_duckdb: int = 0
    pages: int = 0
    passes: int = 0
    bisections: int = 0
    duplicates_dropped: int = 0
    edge_rows_left_to_neighbour: int = 0
    info_requested: int = 0
    info_reused: int = 0
    info_resumed: int = 0
    deleted_listed: int = 0
    deleted_while_syncing: list[str] = field(default_factory=list)
    info_refused: list[str] = field(default_factory=list)
    info_ahead_of_list: list[str] = field(default_factory=list)
    client_stats: dict[str, float | int] = field(default_factory=dict)
    pacing: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def accounted(self) -> bool:
        """What the list said against what DuckDB holds: the distinct companies of the final
        pass (edge rows left to the neighbour) each have exactly one raw row of the partition,
        counted in the table after publishing. Companies info reported deleted or refused are
        stored too, for quarantine, so nothing is subtracted."""
        return self.stored_in_duckdb == self.distinct_in_duckdb == self.distinct

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
            "info_resumed": self.info_resumed,
            "deleted_listed": self.deleted_listed,
            "stored_in_duckdb": self.stored_in_duckdb,
            "distinct_in_duckdb": self.distinct_in_duckdb,
            "deleted_while_syncing": len(self.deleted_while_syncing),
            "info_refused": len(self.info_refused),
            "info_ahead_of_list": len(self.info_ahead_of_list),
            "duration_seconds": round(self.seconds, 2),
            **self.pacing,
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
    answers_before = client.pacer.answers()
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

    ids = [k for k in listed if not k.startswith("raw:")]
    list_times = {k: t for k in ids if isinstance(t := listed.update_time(k), str)}
    stored_times: dict[str, str] = {}
    with connect() as conn:
        if not refresh_info:
            stored_times = storage.stored_update_times(conn, ids)
        storage.prune_kept_infos(conn, partition_key, list_times, _now() - KEPT_MAX_AGE)
        kept = storage.kept_info_times(conn, list_times)

    def reusable(company_id: str, update_time: object) -> bool:
        if update_time is None:
            return False
        return stored_times.get(company_id) == update_time or company_id in kept

    info = InfoReport()
    fetched_at = _now()
    buffer: list[storage.RawRow] = []
    keeper = _Keeper(connect, partition_key, run_id)
    try:
        for company in fetch_infos(client, listed, reusable=reusable, report=info):
            info_json = (
                json.dumps(company.info, ensure_ascii=False) if company.info is not None else None
            )
            update_time, resumed_from = company.update_time, None
            if company.info_reused and stored_times.get(company.key) != update_time:
                # Fetched by an earlier pull of this window that ended before publishing.
                resumed_from, update_time = update_time, kept[company.key]
                summary.info_resumed += 1
            elif info_json is not None:
                keeper.add(company, info_json)
            buffer.append(
                storage.RawRow(
                    partition_key,
                    company.company_id,
                    update_time,
                    json.dumps(company.list_record, ensure_ascii=False),
                    info_json,
                    company.info_reused and resumed_from is None,
                    resumed_from,
                )
            )
            if len(buffer) >= STAGE_CHUNK:
                summary.stored += _stage(connect, run_id, buffer, fetched_at)
                log.info("%s: %d/%d companies staged", partition_key, summary.stored, len(listed))
        keeper.flush()
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
    except BaseException as e:
        with connect() as conn:
            keeper.flush(conn)  # what was fetched stays for the next pull of the window
            storage.discard_staging(conn, run_id)
        if isinstance(e, OkkiQuotaExhausted):
            fetched = summary.stored + len(buffer)
            raise e.with_progress(
                f"{fetched} of {len(listed)} companies fetched, kept for the next run"
            ) from None
        raise
    summary.info_requested = info.requested
    summary.info_reused = info.reused - summary.info_resumed  # from the published copy
    summary.deleted_while_syncing = info.deleted_while_syncing
    summary.info_refused, summary.info_ahead_of_list = info.info_refused, info.info_ahead_of_list
    count_stored(connect, summary)
    summary.client_stats = _delta(client.stats.as_metadata(), before)
    summary.pacing = pacing_metadata(client.pacer, answers_before)
    summary.seconds = time.monotonic() - started
    return summary


class _Keeper:
    """Keeps the info payloads a pull fetches, a few at a time, as they arrive."""

    def __init__(self, connect: Connect, partition_key: str, run_id: str) -> None:
        self._connect, self._partition_key, self._run_id = connect, partition_key, run_id
        self._infos: list[storage.KeptInfo] = []
        self._since = time.monotonic()

    def add(self, company: PulledCompany, info_json: str) -> None:
        list_time = company.list_record.get("update_time")
        if company.company_id is None or not isinstance(list_time, str):
            return
        self._infos.append(
            storage.KeptInfo(company.company_id, list_time, company.update_time, info_json)
        )
        waited = time.monotonic() - self._since
        if waited >= KEEP_SECONDS or (len(self._infos) >= KEEP_CHUNK and waited >= KEEP_MIN_GAP):
            self.flush()

    def flush(self, conn: duckdb.DuckDBPyConnection | None = None) -> None:
        if self._infos:
            with self._connect() if conn is None else nullcontext(conn) as writer:
                storage.keep_infos(writer, self._partition_key, self._run_id, self._infos, _now())
            self._infos.clear()
        self._since = time.monotonic()


def count_stored(connect: Connect, summary: PullSummary) -> int:
    """Count the raw rows (and distinct companies) DuckDB holds for the summary's partition:
    raw_complete's evidence. Returns the rows."""
    with connect() as conn:
        counts = storage.raw_counts(conn, summary.partition_key)
    summary.stored_in_duckdb, summary.distinct_in_duckdb = counts
    return summary.stored_in_duckdb


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
                        sum(len(s) for s in samples) < FAILURE_SAMPLE
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
    summary.tombstones_quarantined = plan.tombstones_quarantined
    summary.superseded = plan.superseded
    claims = plan.to_send[["company_id", "partition_key", "content_hash", "update_time"]]

    if client is None:
        with connect() as conn:
            summary.landed = storage.record_landed(conn, claims, run_id, _now())
        summary.statuses[LedgerStatus.LANDED] = summary.landed
    else:
        for batch in _batches(plan.to_send, batch_size):
            _send_batch(client, connect, batch, run_id, summary)
    summary.unreconciled = reconcile(connect, partition_key, plan.deletions)
    summary.client_stats = _delta(client.stats.as_metadata(), before) if client else {}
    summary.seconds = time.monotonic() - started
    return summary


def _send_batch(
    client: TargetClient, connect: Connect, batch: pd.DataFrame, run_id: str, summary: LoadSummary
) -> None:
    with connect() as conn:
        claim = storage.claim_for_sending(
            conn,
            batch[["company_id", "partition_key", "content_hash", "update_time"]],
            run_id,
            _now(),
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
        results = client.write_batch(records, claim.attempt)
        outcomes = [(cid, r.status, r.error) for cid, r in zip(ids, results, strict=True)]
    except TargetAuthError:
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
        storage.record_outcomes(conn, outcomes, run_id, _now())
    if gave_up is not None:
        raise gave_up


def reconcile(
    connect: Connect, partition_key: str, deletions: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Cleaned rows and tombstones (``deletions``) of the partition that are neither loaded,
    unchanged, landed nor superseded."""
    with connect() as conn:
        return storage.unreconciled_rows(conn, partition_key, deletions)
