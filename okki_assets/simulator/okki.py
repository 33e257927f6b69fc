"""A faithful, configurable fake of the OKKI Open API (see docs/okki-api.md).

It answers ``POST /v1/oauth2/access_token``, ``GET /v1/company/list`` and
``GET /v1/company/info`` the way the live API does, and can reproduce every undocumented
variant the client must survive, each switched on by ``OkkiSimConfig``:

- the envelope's success ``code`` (200 or 0), an omitted ``expires_in``, bare or Bearer tokens,
  a revoked token answered with HTTP 401 or with ``access_denied`` in a 200 body;
- paging by page number, newest ``update_time`` first, page sizes clamped to a maximum, the
  window boundary semantics (inclusive, exclusive at either or both ends);
- a token bucket per access token, answered when empty in one of four throttle shapes (HTTP 429
  with or without ``Retry-After``, ``code`` 429 or 503 in a 200 body); the client is not told
  the quota, which may change after so many granted requests (``quota_after``: a quota that
  halves mid-run); a daily budget of requests, past which every business call is answered
  HTTP 429 with a long ``Retry-After`` (until midnight, China time, by default);
- faults: HTTP 5xx, ``code`` 5xx in a 200 body, a connection reset, an HTML page instead of JSON;
  latency and latency spikes; every list refused with one business code; error messages that
  repeat the request's access token (a gateway echoing the request);
- drift, the 漏单 trap: on the first pass over a window, companies leave it, enter it or jump to
  its front while the client pages, so rows repeat across pages and others are skipped;
- how a list may end or lie [GAP]: page 1 answered empty (``list: []`` or ``null``) while
  ``totalItem`` is positive, or empty with ``totalItem`` 0; a page in the middle answered empty
  once; pages smaller than the ``count`` asked for (``max_page_size``); ``totalItem`` capped
  below the real count, sent as a string, missing or not a number, and a page answered with the
  previous page's rows (what a bulk edit shifting the list by exactly one page looks like);
- info answering another business code (403, say) for chosen companies, an ``update_time``
  ahead of the list's (the company was edited between the two calls), or a payload that is
  JSON but unusable (a field nested 5,000 levels deep, a name that is not UTF-8).

Faults, throttles and drift come from RNGs seeded by ``OkkiSimConfig.seed``: for a given seed and
order of calls the answers are the same. The token endpoint is never throttled or faulted, and a
throttled or faulted request changes no data.

Besides the HTTP surface there is a truth API for tests (``companies_in_window``,
``update_company``, ``delete_company``, ``restore_company``, ``purge_company``, ...), never to
be used by production code.

A company belongs to the public pool (公海, ``all=2``) when it has no owner (``user_id`` empty),
to the private pool (私海, ``all=0``) otherwise. A deleted company is listed under ``removed=1``
with its ``update_time``: by default the one it had (a deletion keeps the old time, the worst
case of the spec), its delete time when the test gives one. A restore keeps the time likewise.
``edit_contact`` changes a contact's e-mail or phone without moving ``update_time``.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from okki_assets.simulator.clock import CHINA, okki_text
from okki_assets.simulator.data import generate_companies, list_view, parse_time
from okki_assets.simulator.http import SimRequest, SimResponse
from okki_assets.simulator.okki_config import (
    BOUNDARIES,
    DEFAULT_TOKEN_LIFETIME,
    DRIFT_KINDS,
    EMPTY_PAGE_SHAPES,
    FAULT_KINDS,
    THROTTLE_SHAPES,
    TOTAL_ITEM_SHAPES,
    OkkiSimConfig,
    OkkiSimStats,
)
from okki_assets.simulator.okki_drift import DriftEntry, Drifter
from okki_assets.simulator.okki_gate import AccessGate, business_error, echo_token, now_text
from okki_assets.simulator.okki_store import (
    CompanyStore,
    ParamError,
    copied,
    parse_list_query,
)

__all__ = [
    "BOUNDARIES",
    "DEFAULT_TOKEN_LIFETIME",
    "DRIFT_KINDS",
    "EMPTY_PAGE_SHAPES",
    "FAULT_KINDS",
    "INFO_PATH",
    "LIST_PATH",
    "THROTTLE_SHAPES",
    "TOKEN_PATH",
    "TOTAL_ITEM_SHAPES",
    "DriftEntry",
    "OkkiSimConfig",
    "OkkiSimStats",
    "OkkiSimulator",
]

log = logging.getLogger(__name__)

TOKEN_PATH = "/v1/oauth2/access_token"
DEEP_LEVELS = 5000  # a "nested_too_deep" info payload's custom field
UNUSABLE_MARK = "okki-simulator-spoils-this"  # where an unusable info payload is spoilt
LIST_PATH = "/v1/company/list"
INFO_PATH = "/v1/company/info"


class OkkiSimulator:
    """The OKKI Open API in memory: ``handle(SimRequest) -> SimResponse`` plus a truth API.

    Serve it with ``mock_transport(sim)`` (unit tests) or ``ServerThread(sim)`` (real HTTP).
    Every method takes one lock, so the server thread and test code may call it concurrently.
    The records live in an ``okki_store.CompanyStore``, tokens, quota and faults in an
    ``okki_gate.AccessGate``, drift in an ``okki_drift.Drifter``.
    """

    def __init__(
        self,
        companies: Iterable[Mapping[str, Any]] | None = None,
        config: OkkiSimConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        copy_records: bool = True,
    ) -> None:
        """``companies`` are copied unless ``copy_records=False`` hands them over (the caller
        then must not use them again: the simulator mutates its records)."""
        self.config = config or OkkiSimConfig()
        self._clock = clock
        self._lock = threading.RLock()
        self._stats = OkkiSimStats()
        seed = self.config.seed
        self._gate = AccessGate(clock, random.Random(seed))
        self._latency_rng = random.Random(seed + 1)
        self._drifter = Drifter(random.Random(seed + 2))
        self._empty_first_served = 0
        self._empty_middle_served = 0
        self._first_pages_asked = 0
        self._shifts_served = 0
        self._store = CompanyStore(companies or (), copy_records=copy_records)
        log.info("OKKI simulator holds %d companies", len(self._store.entries))

    @classmethod
    def demo(
        cls,
        n: int = 3000,
        days: int = 14,
        seed: int = 7,
        *,
        malformed_rate: float = 0.0,
        history_share: float = 0.0,
        history_before: dt.date | None = None,
        **config_overrides: Any,
    ) -> OkkiSimulator:
        """A seeded data set whose update times span the last ``days`` days, today included
        (China time); ``history_share`` of it last updated a year or more before
        ``history_before`` (default: the first of those days)."""
        today = dt.datetime.now(CHINA).date()
        start = today - dt.timedelta(days=days - 1)
        companies = generate_companies(
            n,
            start,
            today,
            seed=seed,
            malformed_rate=malformed_rate,
            history_share=history_share,
            history_before=history_before,
        )
        config = OkkiSimConfig(seed=seed, **config_overrides)
        return cls(companies, config, copy_records=False)

    # --- the HTTP surface ---------------------------------------------------------------------

    def handle(self, request: SimRequest) -> SimResponse:
        with self._lock:
            path = request.path.rstrip("/") or "/"
            self._stats.calls[path] = self._stats.calls.get(path, 0) + 1
            business = path in (LIST_PATH, INFO_PATH)
            if path == TOKEN_PATH:
                response = self._gate.token_endpoint(request, self.config)
            elif business:
                response = self._business(path, request)
                if self.config.echo_token_in_errors:
                    header = request.headers.get("authorization", "").strip()
                    token = header[7:].strip() if header[:7].lower() == "bearer " else header
                    response = echo_token(response, token, self.config.success_code)
            else:
                response = SimResponse.json({"code": 404, "message": "Not Found"}, status=404)
            response.delay += self._latency(business)
            return response

    def _latency(self, business: bool) -> float:
        cfg = self.config
        delay = cfg.latency
        spiking = business and cfg.latency_spike_rate > 0
        if spiking and self._latency_rng.random() < cfg.latency_spike_rate:
            delay += cfg.latency_spike
        return delay

    def _envelope(self, data: Any) -> SimResponse:
        code = self.config.success_code
        return SimResponse.json(
            {"code": code, "message": "success", "now": now_text(), "data": data}
        )

    # business endpoints

    def _business(self, path: str, request: SimRequest) -> SimResponse:
        cfg = self.config
        now = self._clock()
        self._stats.request_times.append(now)
        if request.method != "GET":
            return SimResponse.json({"code": 405, "message": "Method Not Allowed"}, status=405)
        gate = self._gate
        token = gate.authenticate(request.headers.get("authorization", ""), cfg)
        if token is None:
            return gate.denied(cfg, self._stats)
        if "company" not in token.scopes:
            return business_error(403, "no permission company scopes")
        refusal = gate.take_quota(token, now, cfg, self._stats) or gate.pick_fault(cfg, self._stats)
        if refusal is not None:
            return refusal
        token.calls += 1
        if path == LIST_PATH and cfg.list_error_code is not None:
            return business_error(cfg.list_error_code, "Invalid request")
        if path == LIST_PATH:
            return self._list(request.query)
        return self._info(request.query)

    def _count_fault(self, kind: str) -> None:
        self._stats.faults[kind] = self._stats.faults.get(kind, 0) + 1

    def _list(self, query: Mapping[str, str]) -> SimResponse:
        try:
            q = parse_list_query(query, self.config)
        except ParamError as exc:
            return business_error(400, str(exc))
        cfg = self.config
        if cfg.drift_rate > 0 and not q.removed and q.time_type == 1:
            self._drifter.drift(q, self._store, cfg)
        entries = self._store.window(q.removed, q.time_type, q.lo, q.hi, q.pool, q.group)
        served = q.page
        if q.page > 1 and self._shifts_served < cfg.page_shift_times:
            self._shifts_served += 1
            self._count_fault("page_shift")
            served = q.page - 1  # a bulk edit moved the list down by exactly one page
        page = entries[(served - 1) * q.count : served * q.count]
        rows: list[dict[str, Any]] | None = [list_view(entry.record) for entry in page]
        total = len(entries)
        if self._serves_empty(q.page, bool(page)):
            rows = [] if cfg.empty_page_shape != "null" else None
            total = 0 if cfg.empty_page_shape == "zero_total" else total
        log.debug("list page %d (count %d): %d of %d", q.page, q.count, len(page), len(entries))
        data: dict[str, Any] = {"list": rows, "count": len(rows or ())}
        if cfg.total_item_cap is not None and total > cfg.total_item_cap:
            total = cfg.total_item_cap
            self._count_fault("total_item_capped")
        shape = cfg.total_item_shape
        if shape != "missing":
            data["totalItem"] = {"number": total, "string": str(total)}.get(shape, "about many")
        return self._envelope(data)

    def _serves_empty(self, page_no: int, has_rows: bool) -> bool:
        """Whether this page, which holds rows when ``has_rows``, is answered empty: a page 1
        (``empty_first_pages``, every ``empty_first_page_every``-th) or a later page
        (``empty_middle_pages``)."""
        cfg = self.config
        if not has_rows:
            return False
        if page_no > 1:
            if self._empty_middle_served >= cfg.empty_middle_pages:
                return False
            self._empty_middle_served += 1
            self._count_fault("empty_middle_page")
            return True
        self._first_pages_asked += 1
        if (
            self._empty_first_served >= cfg.empty_first_pages
            or self._first_pages_asked % cfg.empty_first_page_every != 0
        ):
            return False
        self._empty_first_served += 1
        self._count_fault("empty_first_page")
        return True

    def _info(self, query: Mapping[str, str]) -> SimResponse:
        company_id = str(query.get("company_id", "")).strip()
        serial_id = str(query.get("serial_id", "")).strip()
        if not company_id and not serial_id:
            return business_error(400, "Invalid parameter: company_id or serial_id")
        asked = company_id or f"serial:{serial_id}"
        self._stats.info_by_company[asked] = self._stats.info_by_company.get(asked, 0) + 1
        store = self._store
        seq = store.by_id.get(company_id) if company_id else store.by_serial.get(serial_id)
        entry = store.entries.get(seq) if seq is not None else None
        if entry is None or entry.removed:
            return business_error(404, "Not Found Resource")
        key = str(entry.record.get("company_id"))
        code = self.config.info_error_codes.get(key)
        if code is not None:
            return business_error(code, "No permission for this resource")
        fault = self.config.info_payload_faults.get(key)
        if fault is not None:
            return self._unusable_info(entry.record, fault)
        ahead = self.config.info_time_ahead.get(key)
        listed = parse_time(entry.record.get("update_time"))
        if ahead is not None and listed is not None:
            later = okki_text(listed + dt.timedelta(seconds=ahead))
            return self._envelope({**entry.record, "update_time": later})
        return self._envelope(entry.record)  # serialised here, under the lock

    def _unusable_info(self, record: dict[str, Any], fault: str) -> SimResponse:
        """The company's info, spoilt the way ``fault`` names (see OkkiSimConfig)."""
        response = self._envelope({**record, "name": UNUSABLE_MARK})
        mark = json.dumps(UNUSABLE_MARK).encode()
        if fault == "nested_too_deep":
            spoilt = b'"custom", "deep": ' + b"[" * DEEP_LEVELS + b"]" * DEEP_LEVELS
        else:  # invalid_utf8: Latin-1 bytes and two that UTF-8 never uses
            spoilt = b'"caf\xe9 \xff\xfe"'
        response.body = response.body.replace(mark, spoilt, 1)
        return response

    # --- the truth and test API ---------------------------------------------------------------

    def companies_in_window(self, start: dt.datetime, end: dt.datetime) -> list[dict[str, Any]]:
        """Copies of the live (not deleted) companies filed under [start, end), newest first.

        Naive datetimes are China time. A record with an unparseable update_time is filed under
        its edit_time (see data.effective_update_time)."""
        with self._lock:
            return copied(self._store.live_between(start, end))

    def get_company(self, company_id: object) -> dict[str, Any] | None:
        """A copy of the record (deleted ones too), or None for an unknown id."""
        with self._lock:
            seq = self._store.by_id.get(str(company_id))
            return None if seq is None else copy.deepcopy(self._store.entries[seq].record)

    def is_removed(self, company_id: object) -> bool:
        with self._lock:
            return self._store.lookup(company_id).removed

    def update_company(
        self,
        company_id: object,
        changes: Mapping[str, Any] | None = None,
        *,
        update_time: str | dt.datetime | None = None,
    ) -> dict[str, Any]:
        """Apply ``changes`` (top-level fields) and set update_time (default: one second after
        the newest update_time held). Returns a copy of the new record."""
        with self._lock:
            entry = self._store.lookup(company_id)
            if entry.removed:
                raise KeyError(f"company_id {company_id} is deleted")
            changes = dict(changes or {})
            for frozen_field in ("company_id", "serial_id"):
                if frozen_field in changes and changes[frozen_field] != entry.record.get(
                    frozen_field
                ):
                    raise ValueError(f"{frozen_field} cannot be changed")
            when = self._store.when(update_time or changes.pop("update_time", None))
            entry.record.update(copy.deepcopy(changes))
            self._store.move(entry, update_time=when)
            return copy.deepcopy(entry.record)

    def delete_company(
        self, company_id: object, *, delete_time: str | dt.datetime | None = None
    ) -> dict[str, Any]:
        """Move a company to the deleted set. By default it keeps its old update_time (OKKI's
        worst case: the deletion then shows only under an old window); ``delete_time`` moves it
        there instead, and ``config.deletion_moves_time`` makes that the default (one second
        after the newest update_time held). Returns a copy of the record."""
        with self._lock:
            entry = self._store.lookup(company_id)
            if entry.removed:
                raise KeyError(f"company_id {company_id} is already deleted")
            self._store.flip(
                entry, delete_time, removed=True, moves_time=self.config.deletion_moves_time
            )
            return copy.deepcopy(entry.record)

    def restore_company(
        self, company_id: object, *, restore_time: str | dt.datetime | None = None
    ) -> dict[str, Any]:
        """Bring a deleted company back (OKKI's recycle bin). By default it comes back with the
        update_time it had before it was deleted (an old time, older than a deletion that moved
        it); ``restore_time`` sets a new one, and
        ``config.deletion_moves_time`` makes that the default."""
        with self._lock:
            entry = self._store.lookup(company_id)
            if not entry.removed:
                raise KeyError(f"company_id {company_id} is not deleted")
            self._store.flip(
                entry, restore_time, removed=False, moves_time=self.config.deletion_moves_time
            )
            return copy.deepcopy(entry.record)

    def purge_company(self, company_id: object) -> dict[str, Any]:
        """Remove a company (live or deleted) for good, as OKKI's recycle bin does once it is
        emptied: it is then in neither list and info answers 404. Returns a copy of the record
        it had."""
        with self._lock:
            entry = self._store.lookup(company_id)
            self._store.purge(entry)
            return copy.deepcopy(entry.record)

    def edit_contact(
        self, company_id: object, *, email: str | None = None, phone: str | None = None
    ) -> dict[str, Any]:
        """Change the primary contact's e-mail and/or phone (main_customer_flag 1, else the
        first contact; one is added when there is none) WITHOUT moving the company's
        update_time: an edit only re-reading info finds. Returns a copy of the record."""
        with self._lock:
            entry = self._store.lookup(company_id)
            self._store.edit_contact(entry, email=email, phone=phone)
            return copy.deepcopy(entry.record)

    def add_company(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """Add a full record (copied). Raises ValueError for a company_id already held."""
        with self._lock:
            entry = self._store.register(copy.deepcopy(dict(record)))
            return copy.deepcopy(entry.record)

    def revoke_tokens(self) -> int:
        """Revoke every issued token; returns how many were still valid."""
        with self._lock:
            return self._gate.revoke_all()

    @property
    def issued_tokens(self) -> list[str]:
        with self._lock:
            return list(self._gate.issued)

    @property
    def drift_log(self) -> list[DriftEntry]:
        with self._lock:
            return list(self._drifter.log)

    @property
    def stats(self) -> OkkiSimStats:
        """A snapshot of the counters."""
        with self._lock:
            return self._stats.copy()

    def reset_stats(self) -> None:
        with self._lock:
            self._stats = OkkiSimStats()

    def __len__(self) -> int:
        """How many companies are held, deleted ones included."""
        with self._lock:
            return len(self._store.entries)
