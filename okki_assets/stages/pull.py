"""Pulling one sync window from OKKI completely: the 漏单 guard and the info fan-out.

OKKI pages by page number over a live result set: while a window is paged, a company updated
elsewhere jumps to the front (rows repeat) or leaves the window (rows shift up and one is
skipped at a page boundary). A single pass can therefore miss a company while its row count
still looks right. The guard:

1. asks for a slightly widened window ([start - 1 s, end], so that inclusive, exclusive and
   half-open server semantics all return the edges) and keeps the newest version per company;
2. repeats the pass until two consecutive passes are internally consistent (``totalItem``
   constant over the pass, no row seen twice, and at least ``totalItem`` distinct rows) and
   identical (same companies, same update times). ``totalItem`` may be capped below the real
   count, so it never ends a pass: the list does (see ``OkkiClient.iter_list_pages``). Only
   list requests are repeated; info calls happen once, afterwards. A pass in which a page
   repeated the one before (a bulk edit shifting the list by exactly one page looks like that)
   is discarded and a new pass starts; only a repeat in two passes in a row fails
   (``PaginationError``);
3. when passes keep disagreeing (a busy window), bisects the window and guards each half;
   a window that still does not converge at the smallest size raises ``IncompleteWindowError``.

The whole account's list (``list_everything``, read by ``okki_reconcile``) passes the same guard
with no time filter; having no window to halve, it raises ``IncompleteWindowError`` when it
does not settle. A list ends only at an empty page (``clients/okki_paging.py``): an empty page
that comes too early is caught here, since that pass shows fewer companies than ``totalItem``
or differs from the next.

Rows exactly on a neighbour's edge are left to the neighbour (every company lands in exactly
one partition). Rows outside the requested range, or with an unparseable update time, are kept
so that cleaning quarantines them with a reason: nothing is dropped silently.

The list's ``update_time`` chooses the window. Info is read afterwards and may be newer (the
company was edited in between, or OKKI's list lags its detail): the company is still stored in
the window that listed it, filed under the list's time, with the info payload and its newer
time as its version. No later window is trusted to list it (a lagging list may never), so
nothing can be lost; when a later window does list it, the load ledger lets the newest version
win at the target and skips the same version twice.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from okki_assets.cleaning import INFO_ERROR_KEY
from okki_assets.clients.okki import OkkiClient, is_raw_key, record_key
from okki_assets.errors import IncompleteWindowError, PaginationError, RepeatedPageError
from okki_assets.identity import ledger_id
from okki_assets.okki_time import parse_okki_time

log = logging.getLogger(__name__)

MAX_PASSES = 4
MIN_BISECT_WINDOW = timedelta(minutes=5)


@dataclass
class ListReport:
    """What the list side of a window pull saw (becomes asset metadata and check input)."""

    passes: int = 0
    pages: int = 0
    rows_seen: int = 0
    duplicates_dropped: int = 0
    total_item: int = 0
    bisections: int = 0
    edge_rows_left_to_neighbour: int = 0
    converged: bool = False
    notes: list[str] = field(default_factory=list)


def _replaces(held_time: object, new_time: object) -> bool:
    """Whether a row seen later replaces the one held: it is newer, or either time is unusable."""
    held, new = parse_okki_time(held_time), parse_okki_time(new_time)
    return held is None or new is None or new >= held


class ListedRecords(Mapping[str, dict[str, Any]]):
    """Company key -> list record, newest version per key, each kept as compact UTF-8 JSON and
    decoded on access. As dicts a 200,000-company window's list records take about 2 KB each;
    as text about a quarter of that, which keeps the pull of a large window flat."""

    def __init__(self) -> None:
        self._rows: dict[str, tuple[object, bytes]] = {}  # key -> (update_time, JSON)

    def add(self, key: str, record: dict[str, Any]) -> None:
        held = self._rows.get(key)
        if held is None or _replaces(held[0], record.get("update_time")):
            text = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
            self._rows[key] = (record.get("update_time"), text.encode("utf-8"))

    def merge(self, other: ListedRecords) -> None:
        for key, row in other._rows.items():
            held = self._rows.get(key)
            if held is None or _replaces(held[0], row[0]):
                self._rows[key] = row

    def discard(self, key: str) -> None:
        self._rows.pop(key, None)

    def update_time(self, key: str) -> object:
        return self._rows[key][0]

    def snapshot(self) -> dict[str, object]:
        return {key: row[0] for key, row in self._rows.items()}

    def __getitem__(self, key: str) -> dict[str, Any]:
        record: dict[str, Any] = json.loads(self._rows[key][1])
        return record

    def __contains__(self, key: object) -> bool:
        return key in self._rows

    def __iter__(self) -> Iterator[str]:
        return iter(self._rows)

    def __len__(self) -> int:
        return len(self._rows)


@dataclass
class _Pass:
    records: ListedRecords
    total_items: set[int]
    rows: int
    pages: int

    @property
    def consistent(self) -> bool:
        """``totalItem`` held still, no row came twice (nothing jumped while paging) and the
        list showed at least as many companies as it counted (a capped count shows fewer)."""
        distinct = len(self.records)
        return (
            len(self.total_items) <= 1
            and distinct == self.rows
            and distinct >= max(self.total_items, default=0)
        )

    def snapshot(self) -> dict[str, object]:
        return self.records.snapshot()


def _one_pass(
    client: OkkiClient, start: datetime | None, end: datetime | None, removed: int
) -> _Pass:
    """One pass over the list of [start - 1 s, end], or over the whole account when both are
    None."""
    records = ListedRecords()
    totals: set[int] = set()
    rows = pages = 0
    for page in client.iter_list_pages(
        start_time=None if start is None else start - timedelta(seconds=1),
        end_time=end,
        removed=removed,
        time_type=1,
        prefetch=True,  # a pass is compared whole, so its pages may arrive concurrently
    ):
        pages += 1
        totals.add(page.total_item)
        for record in page.records:
            rows += 1
            records.add(record_key(record), record)
    return _Pass(records, totals, rows, pages)


def _settled(take_pass: Callable[[], _Pass], report: ListReport, what: str) -> ListedRecords | None:
    """The guard: passes until two consecutive ones are consistent and identical (the records
    of the last), or None when ``MAX_PASSES`` passes did not settle. A pass in which a page
    repeated the one before is discarded; a repeat in two passes in a row raises
    ``PaginationError``."""
    # Only the previous pass's snapshot is kept (when it was consistent), not its records:
    # on a large window the records of two passes at once would double the memory.
    previous: dict[str, object] | None = None
    repeated: RepeatedPageError | None = None
    for _ in range(MAX_PASSES):
        report.passes += 1
        try:
            current = take_pass()
        except RepeatedPageError as e:
            if repeated is not None:
                raise PaginationError(
                    "a page repeated the one before it in two passes in a row"
                    f" ({str(e).split(' | ')[0]})",
                    endpoint=e.endpoint,
                    params=e.params,
                ) from e
            log.info("%s: a page repeated the one before; new pass", what)
            repeated, previous = e, None
            continue
        repeated = None
        report.pages += current.pages
        report.rows_seen += current.rows
        report.duplicates_dropped += current.rows - len(current.records)  # seen twice in a pass
        snapshot = current.snapshot() if current.consistent else None
        if snapshot is not None and snapshot == previous:
            report.total_item += max(current.total_items, default=0)
            return current.records
        previous = snapshot
        del current, snapshot  # free this pass's records before the next pass
    return None


def _guarded(
    client: OkkiClient, start: datetime, end: datetime, removed: int, report: ListReport
) -> ListedRecords:
    records = _settled(
        lambda: _one_pass(client, start, end, removed), report, f"window {start}..{end}"
    )
    if records is not None:
        return records
    if end - start <= MIN_BISECT_WINDOW:
        raise IncompleteWindowError(
            f"the list did not settle after {MAX_PASSES} passes even for a {end - start} window",
            endpoint="/v1/company/list",
            params={
                "start_time": start.isoformat(),
                "end_time": end.isoformat(),
                "removed": removed,
            },
        )
    report.bisections += 1
    middle = start + (end - start) / 2
    log.info("window %s..%s keeps moving; bisecting at %s", start, end, middle)
    left = _guarded(client, start, middle, removed, report)
    right = _guarded(client, middle, end, removed, report)
    left.merge(right)
    return left


def list_everything(client: OkkiClient, *, removed: int = 0) -> tuple[ListedRecords, ListReport]:
    """Every company of the account's list (``removed=1``: its deleted list), no time filter,
    under the same guard as a window. There is no window to halve: a list that does not settle
    raises ``IncompleteWindowError``."""
    report = ListReport()
    what = f"account list (removed={removed})"
    records = _settled(lambda: _one_pass(client, None, None, removed), report, what)
    if records is None:
        raise IncompleteWindowError(
            f"the {what} did not settle after {MAX_PASSES} passes",
            endpoint="/v1/company/list",
            params={"removed": removed},
        )
    report.converged = True
    return records, report


def list_window(
    client: OkkiClient, start: datetime, end: datetime, *, removed: int = 0
) -> tuple[ListedRecords, ListReport]:
    """Every company of [start, end) exactly once, newest version, plus what it took.

    Returns company key -> list record. Records whose update time is exactly on the widened
    edges (start - 1 s, end) belong to the neighbour and are left out; other out-of-range or
    unparseable ones stay, for cleaning to quarantine.
    """
    report = ListReport()
    records = _guarded(client, start, end, removed, report)
    for key in list(records):
        when = parse_okki_time(records.update_time(key))
        if when is not None and (when == start - timedelta(seconds=1) or when == end):
            report.edge_rows_left_to_neighbour += 1
            records.discard(key)
    report.converged = True
    return records, report


@dataclass
class InfoReport:
    requested: int = 0
    reused: int = 0
    deleted_while_syncing: list[str] = field(default_factory=list)
    info_refused: list[str] = field(default_factory=list)  # info answered another code
    info_unusable: list[str] = field(default_factory=list)  # a payload too deep, not UTF-8
    info_ahead_of_list: list[str] = field(default_factory=list)  # info newer than the list


@dataclass(frozen=True)
class PulledCompany:
    key: str
    company_id: str | None
    update_time: str | None
    list_record: dict[str, Any]
    info: dict[str, Any] | None
    info_reused: bool


def fetch_infos(
    client: OkkiClient,
    listed: Mapping[str, dict[str, Any]],
    *,
    reusable: Callable[[str, object], bool],
    report: InfoReport,
) -> Iterator[PulledCompany]:
    """Attach the info payload to each listed company, streaming.

    ``reusable(company_id, update_time)`` says whether a stored copy with that update time can
    stand in for an info call. Each company is filed under the list's update time; an info
    update time ahead of it (past the window, even) is reported and the company kept here (see
    the module docstring). A 404 from info (deleted while syncing, or OKKI listing what it
    cannot detail) is reported and kept, its list record marked with ``INFO_ERROR_KEY`` so that
    cleaning quarantines it with the reason ``info_not_found`` (a deletion still reaches the
    target from the deleted list). Another business code (403, say) is kept the same way with
    the reason ``info_code_<code>``, a payload that cannot be used with ``info_<why>`` (such as
    ``info_payload_nested_too_deep``); the next sync asks info again.
    """
    to_fetch: list[str] = []  # keys only: records are looked up again as infos arrive
    for key, record in listed.items():
        cid = record.get("company_id")
        if is_raw_key(key):
            yield PulledCompany(key, None, record.get("update_time"), record, None, False)
        elif reusable(key, record.get("update_time")):
            report.reused += 1
            yield PulledCompany(key, key, record.get("update_time"), record, None, True)
        elif parse_okki_time(record.get("update_time")) is None or ledger_id(cid) is None:
            # Malformed list rows are kept for quarantine; info cannot be asked for them.
            yield PulledCompany(key, key, record.get("update_time"), record, None, False)
        else:
            to_fetch.append(key)
    report.requested += len(to_fetch)
    for result in client.company_infos(to_fetch):
        key = str(result.company_id)
        record = listed[key]
        if result.data is None:
            if result.unusable is not None:
                report.info_unusable.append(key)
                reason = f"info_{result.unusable}"
            elif result.code is None:
                report.deleted_while_syncing.append(key)
                reason = "info_not_found"
            else:
                report.info_refused.append(key)
                reason = f"info_code_{result.code}"
            marked = {**record, INFO_ERROR_KEY: reason}
            yield PulledCompany(key, key, record.get("update_time"), marked, None, False)
            continue
        info_time = parse_okki_time(result.data.get("update_time"))
        list_time = parse_okki_time(record.get("update_time"))
        if info_time is not None and list_time is not None and info_time > list_time:
            report.info_ahead_of_list.append(key)
        yield PulledCompany(key, key, record.get("update_time"), record, result.data, False)
