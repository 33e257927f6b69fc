"""One window's pull (``pull_partition``): OKKI's companies for one sync window, staged and
published in DuckDB as ``raw_companies`` with the window's deleted list.

The pull's completeness rules (the 漏单 guard, the info fan-out) live in pull.py.
"""

from __future__ import annotations

import json
import logging
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import duckdb

from okki_assets import storage
from okki_assets.clients.okki import OkkiClient, is_raw_key
from okki_assets.clients.ratecontrol import pacing_metadata
from okki_assets.errors import OkkiQuotaExhausted
from okki_assets.partitions import window_for_key
from okki_assets.stages.common import Connect, now, stats_delta
from okki_assets.stages.pull import (
    InfoReport,
    ListedRecords,
    PulledCompany,
    fetch_infos,
    list_window,
)
from okki_assets.stages.staging import RawStager

log = logging.getLogger(__name__)

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
    info_unusable: list[str] = field(default_factory=list)
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


def pull_partition(
    client: OkkiClient,
    connect: Connect,
    partition_key: str,
    run_id: str,
    *,
    refresh_info: bool = False,
) -> PullSummary:
    """Pull one window into ``raw_companies`` (and its deleted list), replacing the partition:
    list the window, take stock of the copies DuckDB holds, fetch the infos it lacks and stage
    the rows, list the deletions, publish; a failed pull keeps the payloads it fetched and
    discards what it staged."""
    started = time.monotonic()
    before, answers_before = client.stats.as_metadata(), client.pacer.answers()
    start, end = window_for_key(partition_key)
    summary = PullSummary(partition_key)
    listed = _list(client, start, end, summary)
    stock = _take_stock(connect, partition_key, listed, refresh_info)

    info = InfoReport()
    stager = RawStager(connect, run_id)
    keeper = _KeptInfoWriter(connect, partition_key, run_id)
    try:
        with stager.discarding_on_failure(keeper.flush):  # fetched payloads stay for next time
            for company in fetch_infos(client, listed, reusable=stock.reusable, report=info):
                if stager.add(_raw_row(partition_key, company, stock, keeper, summary)):
                    log.info(
                        "%s: %d/%d companies staged", partition_key, stager.staged, len(listed)
                    )
            keeper.flush()
            stager.stage()
            deleted, _ = list_window(client, start, end, removed=1)
            summary.deleted_listed = len(deleted)
            with connect() as conn:
                stager.publish(conn, [partition_key])
                _replace_deleted(conn, partition_key, deleted, run_id)
    except OkkiQuotaExhausted as e:
        raise e.with_progress(
            f"{stager.added} of {len(listed)} companies fetched, kept for the next run"
        ) from None
    summary.stored = stager.staged
    _count_infos(summary, info)
    count_stored(connect, summary)
    summary.client_stats = stats_delta(client.stats.as_metadata(), before)
    summary.pacing = pacing_metadata(client.pacer, answers_before)
    summary.seconds = time.monotonic() - started
    return summary


def _list(
    client: OkkiClient, start: datetime, end: datetime, summary: PullSummary
) -> ListedRecords:
    """The window's companies, listed under the 漏单 guard; the list's figures go to the
    summary."""
    listed, report = list_window(client, start, end)
    summary.total_item, summary.distinct = report.total_item, len(listed)
    summary.pages, summary.passes, summary.bisections = (
        report.pages,
        report.passes,
        report.bisections,
    )
    summary.duplicates_dropped = report.duplicates_dropped
    summary.edge_rows_left_to_neighbour = report.edge_rows_left_to_neighbour
    log.info(
        "%s: %d companies listed in %d pages", summary.partition_key, len(listed), report.pages
    )
    return listed


@dataclass
class _Stock:
    """The copies DuckDB holds of the window's companies: published (company_id -> its
    update_time) and kept by an earlier pull that ended before publishing (company_id -> the
    info's update_time)."""

    stored_times: dict[str, str] = field(default_factory=dict)
    kept: dict[str, str | None] = field(default_factory=dict)

    def reusable(self, company_id: str, update_time: object) -> bool:
        if update_time is None:
            return False
        return self.stored_times.get(company_id) == update_time or company_id in self.kept


def _take_stock(
    connect: Connect, partition_key: str, listed: ListedRecords, refresh_info: bool
) -> _Stock:
    """What the pull can reuse; kept payloads of other versions, or too old, are dropped."""
    ids = [k for k in listed if not is_raw_key(k)]
    list_times = {k: t for k in ids if isinstance(t := listed.update_time(k), str)}
    stock = _Stock()
    with connect() as conn:
        storage.prune_kept_infos(conn, partition_key, list_times, now() - KEPT_MAX_AGE)
        # With refresh_info every payload is read by this pull: one kept by an earlier pull,
        # however recent, may predate an edit that did not move update_time.
        if not refresh_info:
            stock.stored_times = storage.stored_update_times(conn, ids)
            stock.kept = storage.kept_info_times(conn, list_times)
    return stock


def _raw_row(
    partition_key: str,
    company: PulledCompany,
    stock: _Stock,
    keeper: _KeptInfoWriter,
    summary: PullSummary,
) -> storage.RawRow:
    """The company's raw row: a payload just fetched is kept at once, one kept by an
    interrupted pull is taken over (resumed)."""
    info_json = json.dumps(company.info, ensure_ascii=False) if company.info is not None else None
    update_time, resumed_from = company.update_time, None
    if company.info_reused and stock.stored_times.get(company.key) != update_time:
        # Fetched by an earlier pull of this window that ended before publishing.
        resumed_from, update_time = update_time, stock.kept[company.key]
        summary.info_resumed += 1
    elif info_json is not None:
        keeper.add(company, info_json)
    return storage.RawRow(
        partition_key,
        company.company_id,
        update_time,
        json.dumps(company.list_record, ensure_ascii=False),
        info_json,
        company.info_reused and resumed_from is None,
        resumed_from,
    )


def _replace_deleted(
    conn: duckdb.DuckDBPyConnection, partition_key: str, deleted: ListedRecords, run_id: str
) -> None:
    storage.replace_deleted(
        conn,
        partition_key,
        [
            (k, r.get("update_time"), json.dumps(r, ensure_ascii=False))
            for k, r in deleted.items()
            if not is_raw_key(k)
        ],
        run_id,
        now(),  # read after the infos: a later observation (versions.py)
    )


def _count_infos(summary: PullSummary, info: InfoReport) -> None:
    summary.info_requested = info.requested
    summary.info_reused = info.reused - summary.info_resumed  # from the published copy
    summary.deleted_while_syncing = info.deleted_while_syncing
    summary.info_refused, summary.info_ahead_of_list = info.info_refused, info.info_ahead_of_list
    summary.info_unusable = info.info_unusable


class _KeptInfoWriter:
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
                storage.keep_infos(writer, self._partition_key, self._run_id, self._infos, now())
            self._infos.clear()
        self._since = time.monotonic()


def count_stored(connect: Connect, summary: PullSummary) -> int:
    """Count the raw rows (and distinct companies) DuckDB holds for the summary's partition:
    raw_complete's evidence. Returns the rows."""
    with connect() as conn:
        counts = storage.raw_counts(conn, summary.partition_key)
    summary.stored_in_duckdb, summary.distinct_in_duckdb = counts
    return summary.stored_in_duckdb
