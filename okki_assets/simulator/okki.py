"""A faithful, configurable fake of the OKKI Open API (see shared/specs/okki-api.md).

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
  latency and latency spikes;
- drift, the 漏单 trap: on the first pass over a window, companies leave it, enter it or jump to
  its front while the client pages, so rows repeat across pages and others are skipped;
- how a list may end or lie [GAP]: page 1 answered empty (``list: []`` or ``null``) while
  ``totalItem`` is positive, ``totalItem`` capped below the real count, sent as a string, missing
  or not a number, and a page answered with the previous page's rows (what a bulk edit shifting
  the list by exactly one page looks like);
- info answering another business code (403, say) for chosen companies, or an ``update_time``
  ahead of the list's (the company was edited between the two calls).

Faults, throttles and drift come from RNGs seeded by ``OkkiSimConfig.seed``: for a given seed and
order of calls the answers are the same. The token endpoint is never throttled or faulted, and a
throttled or faulted request changes no data.

Besides the HTTP surface there is a truth API for tests (``companies_in_window``,
``update_company``, ``delete_company``, ``restore_company``, ...), never to be used by
production code.

A company belongs to the public pool (公海, ``all=2``) when it has no owner (``user_id`` empty),
to the private pool (私海, ``all=0``) otherwise. A deleted company is listed under ``removed=1``
with its ``update_time``: by default the one it had (a deletion keeps the old time, the worst
case of the spec), its delete time when the test gives one. A restore keeps the time likewise.
``edit_contact`` changes a contact's e-mail or phone without moving ``update_time``.
"""

from __future__ import annotations

import copy
import datetime as dt
import logging
import math
import pickle
import random
import secrets
import threading
import time
from bisect import bisect_left, insort
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from okki_assets.gc_pause import gc_paused
from okki_assets.okki_time import CHINA_TZ, format_okki_time
from okki_assets.simulator.data import (
    effective_update_time,
    generate_companies,
    list_view,
    owner_ids,
    parse_time,
)
from okki_assets.simulator.http import SimRequest, SimResponse

log = logging.getLogger(__name__)

TOKEN_PATH = "/v1/oauth2/access_token"
LIST_PATH = "/v1/company/list"
INFO_PATH = "/v1/company/info"

BOUNDARIES: tuple[str, ...] = ("inclusive", "exclusive_end", "exclusive_start", "exclusive")
THROTTLE_SHAPES: tuple[str, ...] = ("http429_retry_after", "http429", "body429", "body503")
FAULT_KINDS: tuple[str, ...] = ("http500", "http502", "http503", "body500", "reset", "invalid_json")
DRIFT_KINDS: tuple[str, ...] = ("leave", "enter", "bump")
EMPTY_PAGE_SHAPES: tuple[str, ...] = ("empty", "null")
TOTAL_ITEM_SHAPES: tuple[str, ...] = ("number", "string", "missing", "not_a_number")
DEFAULT_TOKEN_LIFETIME = 28800

_SECOND = dt.timedelta(seconds=1)
_EPOCH = dt.datetime(1970, 1, 1)
_DENIED = "The resource owner or authorization server denied the request."
_HTML_ERROR = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)
_REASONS = {
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}
_CACHE_SIZE = 16


def _fault_status(kind: str) -> int | None:
    """500-599 for 'httpNNN' and 'bodyNNN' kinds, else None."""
    digits = kind[4:]
    if kind[:4] in ("http", "body") and digits.isdigit() and 500 <= int(digits) <= 599:
        return int(digits)
    return None


@dataclass
class OkkiSimConfig:
    """Every switch of the simulator. The defaults behave like a healthy live API."""

    client_id: str = "demo-client"
    client_secret: str = "demo-secret"
    scopes: tuple[str, ...] = ("company",)  # the modules this client may ask for
    token_expires_in: int | None = DEFAULT_TOKEN_LIFETIME  # None: omit expires_in (8 h still)
    success_code: int = 200  # 200 or 0 in the envelope
    max_page_size: int = 100  # count above this is clamped
    default_page_size: int = 10  # when count is absent
    latency: float = 0.0  # seconds added to every answer (SimResponse.delay)
    latency_spike_rate: float = 0.0  # business answers delayed by latency_spike on top
    latency_spike: float = 0.0
    quota_rps: float | None = None  # token bucket per access token; None = no quota
    quota_burst: float | None = None  # bucket size (default: quota_rps, at least 1)
    throttle_shapes: tuple[str, ...] = THROTTLE_SHAPES  # cycled through when throttling
    quota_after: tuple[tuple[int, float], ...] = ()  # (granted requests, new quota_rps), ...
    daily_budget: int | None = None  # business requests granted per day; None = no budget
    daily_retry_after: float | None = None  # Retry-After once spent; None = until midnight
    fault_rate: float = 0.0  # fraction of business calls answered with a fault
    fault_kinds: tuple[str, ...] = FAULT_KINDS
    revoke_token_after: int | None = None  # each token dies after N served business calls
    denied_in_body: bool = False  # HTTP 200 + {"error":"access_denied"} instead of 401
    drift_rate: float = 0.0  # fraction of a window's companies mutated on its first pass
    drift_kinds: tuple[str, ...] = DRIFT_KINDS
    boundary: str = "inclusive"  # inclusive | exclusive_end | exclusive_start | exclusive
    # How a list may end or lie. The counters count over the simulator's life; tests may raise
    # them at any time (they are read on every request).
    empty_first_pages: int = 0  # page-1 answers with no rows while totalItem > 0, N times
    empty_first_page_every: int = 1  # ... on every k-th page-1 request (1: the first N in a row)
    empty_page_shape: str = "empty"  # such a page's list: "empty" ([]) or "null"
    total_item_cap: int | None = None  # totalItem reported as at most this
    total_item_shape: str = "number"  # number | string | missing | not_a_number
    page_shift_times: int = 0  # requests for page 2+ answered with the page before's rows
    # Info per company: another business code instead of the record, or an update_time this many
    # seconds ahead of the list's (the list keeps the older time).
    info_error_codes: dict[str, int] = field(default_factory=dict)
    info_time_ahead: dict[str, int] = field(default_factory=dict)
    # False (the default, the worst case): a deletion or restore keeps the company's old
    # update_time unless the test names a time; True: it moves to the next second held.
    deletion_moves_time: bool = False
    seed: int = 7

    def __post_init__(self) -> None:
        if self.boundary not in BOUNDARIES:
            raise ValueError(f"boundary must be one of {BOUNDARIES}, not {self.boundary!r}")
        for shape in self.throttle_shapes:
            if shape not in THROTTLE_SHAPES:
                raise ValueError(f"unknown throttle shape {shape!r}")
        if not self.throttle_shapes:
            raise ValueError("throttle_shapes must not be empty")
        for kind in self.fault_kinds:
            if kind not in ("reset", "invalid_json") and _fault_status(kind) is None:
                raise ValueError(f"unknown fault kind {kind!r}")
        for kind in self.drift_kinds:
            if kind not in DRIFT_KINDS:
                raise ValueError(f"unknown drift kind {kind!r}")
        if self.max_page_size < 1 or self.default_page_size < 1:
            raise ValueError("page sizes must be positive")
        if self.quota_rps is not None and self.quota_rps <= 0:
            raise ValueError("quota_rps must be positive (None disables the quota)")
        if self.empty_page_shape not in EMPTY_PAGE_SHAPES:
            raise ValueError(f"empty_page_shape must be one of {EMPTY_PAGE_SHAPES}")
        if self.total_item_shape not in TOTAL_ITEM_SHAPES:
            raise ValueError(f"total_item_shape must be one of {TOTAL_ITEM_SHAPES}")
        if self.empty_first_page_every < 1:
            raise ValueError("empty_first_page_every must be at least 1")
        if self.total_item_cap is not None and self.total_item_cap < 0:
            raise ValueError("total_item_cap must not be negative")
        if any(rps <= 0 for _, rps in self.quota_after) or (
            self.quota_after and self.quota_rps is None
        ):
            raise ValueError("quota_after needs a quota_rps and positive rates")


@dataclass
class OkkiSimStats:
    """What the simulator saw. ``calls`` counts every request per path; ``request_times`` holds
    the clock value of every business request (throttled, faulted and denied ones included),
    ``granted_times`` the same value for every one the quota let through; ``throttled`` counts
    refusals per throttle shape (``daily_budget`` for the long wait once the budget is spent);
    ``info_by_company`` counts the info answers served per company_id asked for (the 404s too;
    throttled, faulted and denied requests are not answers)."""

    calls: dict[str, int] = field(default_factory=dict)
    throttled: dict[str, int] = field(default_factory=dict)
    faults: dict[str, int] = field(default_factory=dict)
    denied: int = 0
    request_times: list[float] = field(default_factory=list)
    info_by_company: dict[str, int] = field(default_factory=dict)
    granted_times: list[float] = field(default_factory=list)

    def copy(self) -> OkkiSimStats:
        return OkkiSimStats(
            dict(self.calls),
            dict(self.throttled),
            dict(self.faults),
            self.denied,
            list(self.request_times),
            dict(self.info_by_company),
            list(self.granted_times),
        )


DriftEntry = tuple[str, Any, str, str]  # (kind, company_id, old_update_time, new_update_time)
_IndexKey = tuple[dt.datetime, int, int]  # (time, numeric company_id, sequence number)


@dataclass(eq=False)
class _Entry:
    seq: int
    record: dict[str, Any]
    removed: bool = False
    keys: tuple[_IndexKey, ...] = ()  # this entry's keys in the indexes of time types 1, 2, 3


@dataclass(eq=False)
class _Token:
    scopes: frozenset[str]
    expires_at: float
    calls: int = 0
    revoked: bool = False
    bucket: float = 0.0
    stamp: float | None = None


@dataclass(eq=False)
class _DriftPlan:
    schedule: dict[int, list[str]]  # page number -> mutations to apply before serving it
    served: set[int] = field(default_factory=set)
    over: bool = False


@dataclass(frozen=True)
class _ListQuery:
    page: int
    count: int
    removed: bool
    pool: int
    group: str | None
    time_type: int
    lo: dt.datetime | None  # inclusive bounds after the boundary mode is applied
    hi: dt.datetime | None


class _ParamError(ValueError):
    pass


def _id_number(value: object) -> int:
    try:
        return int(str(value))
    except ValueError:
        return -1


def _naive_china(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is not None:
        return value.astimezone(CHINA_TZ).replace(tzinfo=None)
    return value


def _driftable(entry: _Entry) -> bool:
    """Drift moves only well-formed companies (a numeric id, a parseable update_time)."""
    return entry.keys[0][1] >= 0 and parse_time(entry.record.get("update_time")) is not None


def _copied(records: list[Any]) -> list[Any]:
    """A deep copy of many JSON-like records: one pickle round trip with the GC paused is
    several times faster than copy.deepcopy record by record (200,000 records in seconds)."""
    with gc_paused():
        copied: list[Any] = pickle.loads(pickle.dumps(records, pickle.HIGHEST_PROTOCOL))
        return copied


def _index_keys(seq: int, record: Mapping[str, Any]) -> tuple[_IndexKey, ...]:
    number = _id_number(record.get("company_id"))
    return (
        (effective_update_time(record), number, seq),
        (parse_time(record.get("create_time")) or _EPOCH, number, seq),
        (parse_time(record.get("archive_time")) or _EPOCH, number, seq),
    )


class OkkiSimulator:
    """The OKKI Open API in memory: ``handle(SimRequest) -> SimResponse`` plus a truth API.

    Serve it with ``mock_transport(sim)`` (unit tests) or ``ServerThread(sim)`` (real HTTP).
    Every method takes one lock, so the server thread and test code may call it concurrently.
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
        self._entries: dict[int, _Entry] = {}
        self._by_id: dict[str, int] = {}
        self._by_serial: dict[str, int] = {}
        self._index: dict[tuple[bool, int], list[_IndexKey]] = {
            (removed, time_type): [] for removed in (False, True) for time_type in (1, 2, 3)
        }
        self._version = 0
        self._cache: dict[tuple[Any, ...], list[_Entry]] = {}
        self._cache_version = 0
        self._tokens: dict[str, _Token] = {}
        self._issued: list[str] = []
        self._token_expiry: float | None = None
        self._stats = OkkiSimStats()
        self._throttle_turn = 0
        self._granted = 0  # business requests the quota let through, ever
        seed = self.config.seed
        self._fault_rng = random.Random(seed)
        self._latency_rng = random.Random(seed + 1)
        self._drift_rng = random.Random(seed + 2)
        self._drift_plans: dict[tuple[Any, ...], _DriftPlan] = {}
        self._drift_log: list[DriftEntry] = []
        self._empty_first_served = 0
        self._first_pages_asked = 0
        self._shifts_served = 0
        self._live_times: dict[int, object] = {}  # seq -> update_time before its deletion
        records = list(companies or ())
        with gc_paused():
            if copy_records:
                records = _copied(records)
            for record in records:
                entry = self._register(
                    record if type(record) is dict else dict(record), index=False
                )
                entry.keys = _index_keys(entry.seq, entry.record)
                for time_type, key in zip((1, 2, 3), entry.keys, strict=True):
                    self._index[(False, time_type)].append(key)
        for keys in self._index.values():
            keys.sort()
        log.info("OKKI simulator holds %d companies", len(self._entries))

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
        today = dt.datetime.now(CHINA_TZ).date()
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
                response = self._token_endpoint(request)
            elif business:
                response = self._business(path, request)
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

    def _now(self) -> str:
        return format_okki_time(dt.datetime.now(CHINA_TZ))

    def _envelope(self, data: Any) -> SimResponse:
        code = self.config.success_code
        return SimResponse.json(
            {"code": code, "message": "success", "now": self._now(), "data": data}
        )

    def _business_error(self, code: int, message: str) -> SimResponse:
        return SimResponse.json({"code": code, "message": message, "now": self._now()})

    # token endpoint

    def _token_endpoint(self, request: SimRequest) -> SimResponse:
        if request.method != "POST":
            return SimResponse.json({"code": 405, "message": "Method Not Allowed"}, status=405)
        params = dict(request.query)
        is_json = "json" in request.headers.get("content-type", "")
        try:
            if is_json or request.body.lstrip()[:1] == b"{":
                payload = request.json()
                if not isinstance(payload, dict):
                    raise ValueError("not an object")
                params.update({k: "" if v is None else str(v) for k, v in payload.items()})
            else:
                params.update(request.form())
        except (ValueError, UnicodeDecodeError):
            return self._oauth_error(
                "invalid_request",
                "The request is missing a required parameter, includes an invalid parameter "
                "value, includes a parameter more than once, or is otherwise malformed.",
            )
        cfg = self.config
        if params.get("grant_type") != "client_credentials":
            return self._oauth_error(
                "unsupported_grant_type",
                "The authorization grant type is not supported by the authorization server.",
            )
        client_ok = secrets.compare_digest(params.get("client_id", ""), cfg.client_id)
        secret_ok = secrets.compare_digest(params.get("client_secret", ""), cfg.client_secret)
        if not (client_ok and secret_ok):
            return self._oauth_error("invalid_client", "Client authentication failed")
        requested = params.get("scope", "").split()
        missing = [scope for scope in requested if scope not in cfg.scopes]
        if missing:
            return self._oauth_error(
                "invalid_scope",
                "The requested scope is invalid, unknown, or malformed",
                message=f"no permission {missing[0]} scopes",
            )
        now = self._clock()
        if self._token_expiry is None or self._token_expiry <= now:
            # Asking again within a token's life gives a token that does not live longer.
            self._token_expiry = now + (cfg.token_expires_in or DEFAULT_TOKEN_LIFETIME)
        token = secrets.token_urlsafe(32)
        self._tokens[token] = _Token(scopes=frozenset(requested), expires_at=self._token_expiry)
        self._issued.append(token)
        reply: dict[str, Any] = {"token_type": "Bearer", "access_token": token}
        if cfg.token_expires_in is not None:
            reply["expires_in"] = int(self._token_expiry - now)
        reply["refresh_token"] = "def50200" + secrets.token_hex(48)
        return SimResponse.json(reply)

    @staticmethod
    def _oauth_error(error: str, description: str, *, message: str | None = None) -> SimResponse:
        return SimResponse.json(
            {"error": error, "error_description": description, "message": message or description},
            status=400,
        )

    # business endpoints

    def _business(self, path: str, request: SimRequest) -> SimResponse:
        cfg = self.config
        now = self._clock()
        self._stats.request_times.append(now)
        if request.method != "GET":
            return SimResponse.json({"code": 405, "message": "Method Not Allowed"}, status=405)
        token = self._authenticate(request.headers.get("authorization", ""))
        if token is None:
            self._stats.denied += 1
            body = {
                "error": "access_denied",
                "error_description": _DENIED,
                "hint": "Access token could not be verified",
                "message": _DENIED,
            }
            return SimResponse.json(body, status=200 if cfg.denied_in_body else 401)
        if "company" not in token.scopes:
            return self._business_error(403, "no permission company scopes")
        refusal = self._take_quota(token, now) or self._pick_fault()
        if refusal is not None:
            return refusal
        token.calls += 1
        if path == LIST_PATH:
            return self._list(request.query)
        return self._info(request.query)

    def _authenticate(self, header: str) -> _Token | None:
        value = header.strip()
        if value[:7].lower() == "bearer ":
            value = value[7:].strip()
        token = self._tokens.get(value)
        if token is None or token.revoked:
            return None
        limit = self.config.revoke_token_after
        if self._clock() >= token.expires_at or (limit is not None and token.calls >= limit):
            token.revoked = True
            return None
        return token

    def _quota_now(self) -> float | None:
        rps = self.config.quota_rps
        for after, changed in self.config.quota_after:
            if self._granted >= after:
                rps = changed
        return rps

    def _take_quota(self, token: _Token, now: float) -> SimResponse | None:
        cfg = self.config
        if cfg.daily_budget is not None and self._granted >= cfg.daily_budget:
            return self._budget_spent()
        rps = self._quota_now()
        if rps is None:
            self._grant(now)
            return None
        burst = cfg.quota_burst if cfg.quota_burst is not None else max(1.0, rps)
        if token.stamp is None:
            token.bucket = burst
        else:
            token.bucket = min(burst, token.bucket + (now - token.stamp) * rps)
        token.stamp = now
        if token.bucket >= 1.0:
            token.bucket -= 1.0
            self._grant(now)
            return None
        shape = cfg.throttle_shapes[self._throttle_turn % len(cfg.throttle_shapes)]
        self._throttle_turn += 1
        self._stats.throttled[shape] = self._stats.throttled.get(shape, 0) + 1
        if shape == "http429_retry_after":
            return SimResponse.json(
                {"code": 429, "message": "Too Many Requests"},
                status=429,
                headers={"Retry-After": "1"},
            )
        if shape == "http429":
            return SimResponse.json({"code": 429, "message": "Too Many Requests"}, status=429)
        if shape == "body429":
            return self._business_error(429, "请求过于频繁 Too Many Requests")
        return self._business_error(503, "服务繁忙，请稍后重试 Service Busy")

    def _grant(self, now: float) -> None:
        self._granted += 1
        self._stats.granted_times.append(now)

    def _budget_spent(self) -> SimResponse:
        wait = self.config.daily_retry_after
        if wait is None:
            now = dt.datetime.now(CHINA_TZ)
            midnight = dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time(), CHINA_TZ)
            wait = (midnight - now).total_seconds()
        self._stats.throttled["daily_budget"] = self._stats.throttled.get("daily_budget", 0) + 1
        return SimResponse.json(
            {"code": 429, "message": "daily request quota exceeded"},
            status=429,
            headers={"Retry-After": str(math.ceil(wait))},
        )

    def _pick_fault(self) -> SimResponse | None:
        cfg = self.config
        if cfg.fault_rate <= 0 or not cfg.fault_kinds:
            return None
        if self._fault_rng.random() >= cfg.fault_rate:
            return None
        kind = self._fault_rng.choice(cfg.fault_kinds)
        self._stats.faults[kind] = self._stats.faults.get(kind, 0) + 1
        if kind == "reset":
            partial = b'{"code":200,"message":"success","data":{"list":[{"company_id":'
            return SimResponse(
                status=200,
                body=partial,
                fault="reset",
                headers={"content-type": "application/json; charset=utf-8"},
            )
        if kind == "invalid_json":
            return SimResponse.text(_HTML_ERROR, status=200)
        status = _fault_status(kind) or 500
        message = _REASONS.get(status, "Server Error")
        if kind.startswith("http"):
            return SimResponse.json({"code": status, "message": message}, status=status)
        return self._business_error(status, message)

    def _count_fault(self, kind: str) -> None:
        self._stats.faults[kind] = self._stats.faults.get(kind, 0) + 1

    def _list(self, query: Mapping[str, str]) -> SimResponse:
        try:
            q = self._parse_list_query(query)
        except _ParamError as exc:
            return self._business_error(400, str(exc))
        cfg = self.config
        if cfg.drift_rate > 0 and not q.removed and q.time_type == 1:
            self._drift(q)
        entries = self._window(q.removed, q.time_type, q.lo, q.hi, q.pool, q.group)
        served = q.page
        if q.page > 1 and self._shifts_served < cfg.page_shift_times:
            self._shifts_served += 1
            self._count_fault("page_shift")
            served = q.page - 1  # a bulk edit moved the list down by exactly one page
        page = entries[(served - 1) * q.count : served * q.count]
        rows: list[dict[str, Any]] | None = [list_view(entry.record) for entry in page]
        if q.page == 1 and entries:
            self._first_pages_asked += 1
        if (
            q.page == 1
            and entries
            and self._empty_first_served < cfg.empty_first_pages
            and self._first_pages_asked % cfg.empty_first_page_every == 0
        ):
            self._empty_first_served += 1
            self._count_fault("empty_first_page")
            rows = [] if cfg.empty_page_shape == "empty" else None
        log.debug("list page %d (count %d): %d of %d", q.page, q.count, len(page), len(entries))
        data: dict[str, Any] = {"list": rows, "count": len(rows or ())}
        total = len(entries)
        if cfg.total_item_cap is not None and total > cfg.total_item_cap:
            total = cfg.total_item_cap
            self._count_fault("total_item_capped")
        shape = cfg.total_item_shape
        if shape != "missing":
            data["totalItem"] = {"number": total, "string": str(total)}.get(shape, "about many")
        return self._envelope(data)

    def _parse_list_query(self, query: Mapping[str, str]) -> _ListQuery:
        cfg = self.config

        def integer(name: str, default: int, allowed: tuple[int, ...] | None = None) -> int:
            raw = str(query.get(name, "")).strip()
            if raw == "":
                return default
            try:
                value = int(raw)
            except ValueError:
                raise _ParamError(f"Invalid parameter {name}: {raw!r}") from None
            if allowed is not None and value not in allowed:
                raise _ParamError(f"Invalid parameter {name}: {raw!r}")
            return value

        def moment(name: str) -> dt.datetime | None:
            raw = str(query.get(name, "")).strip()
            if raw == "":
                return None
            parsed = parse_time(raw)
            if parsed is None:
                raise _ParamError(f"Invalid parameter {name}: {raw!r} (YYYY-MM-DD HH:MM:SS)")
            return parsed

        count = integer("count", cfg.default_page_size)
        count = cfg.default_page_size if count <= 0 else min(count, cfg.max_page_size)
        group_raw = str(query.get("group_id", "")).strip()
        if group_raw:
            integer("group_id", 0)
        start, end = moment("start_time"), moment("end_time")
        if start is not None and cfg.boundary in ("exclusive_start", "exclusive"):
            start += _SECOND
        if end is not None and cfg.boundary in ("exclusive_end", "exclusive"):
            end -= _SECOND
        return _ListQuery(
            page=max(1, integer("start_index", 1)),
            count=count,
            removed=integer("removed", 0, (0, 1)) == 1,
            pool=integer("all", 1, (0, 1, 2)),
            group=group_raw or None,
            time_type=integer("time_type", 1, (1, 2, 3)),
            lo=start,
            hi=end,
        )

    def _window(
        self,
        removed: bool,
        time_type: int,
        lo: dt.datetime | None,
        hi: dt.datetime | None,
        pool: int = 1,
        group: str | None = None,
    ) -> list[_Entry]:
        """The matching entries, newest first (ties: larger company_id first)."""
        if self._cache_version != self._version:
            self._cache.clear()
            self._cache_version = self._version
        cache_key = (removed, time_type, lo, hi, pool, group)
        cached = self._cache.get(cache_key)
        if cached is not None:
            return cached
        keys = self._index[(removed, time_type)]
        first = 0 if lo is None else bisect_left(keys, (lo,))
        last = len(keys) if hi is None else bisect_left(keys, (hi + _SECOND,))
        entries = [self._entries[key[2]] for key in reversed(keys[first:last])]
        if pool != 1:
            want_owner = pool == 0
            entries = [e for e in entries if bool(owner_ids(e.record)) is want_owner]
        if group is not None:
            entries = [e for e in entries if str(e.record.get("group_id")) == group]
        if len(self._cache) >= _CACHE_SIZE:
            self._cache.clear()
        self._cache[cache_key] = entries
        return entries

    def _info(self, query: Mapping[str, str]) -> SimResponse:
        company_id = str(query.get("company_id", "")).strip()
        serial_id = str(query.get("serial_id", "")).strip()
        if not company_id and not serial_id:
            return self._business_error(400, "Invalid parameter: company_id or serial_id")
        asked = company_id or f"serial:{serial_id}"
        self._stats.info_by_company[asked] = self._stats.info_by_company.get(asked, 0) + 1
        seq = self._by_id.get(company_id) if company_id else self._by_serial.get(serial_id)
        entry = self._entries.get(seq) if seq is not None else None
        if entry is None or entry.removed:
            return self._business_error(404, "Not Found Resource")
        key = str(entry.record.get("company_id"))
        code = self.config.info_error_codes.get(key)
        if code is not None:
            return self._business_error(code, "No permission for this resource")
        ahead = self.config.info_time_ahead.get(key)
        listed = parse_time(entry.record.get("update_time"))
        if ahead is not None and listed is not None:
            later = format_okki_time(listed + dt.timedelta(seconds=ahead))
            return self._envelope({**entry.record, "update_time": later})
        return self._envelope(entry.record)  # serialised here, under the lock

    # --- drift ------------------------------------------------------------------------------

    def _drift(self, q: _ListQuery) -> None:
        key = (q.removed, q.time_type, q.lo, q.hi)
        plan = self._drift_plans.get(key)
        if plan is None:
            total = len(self._window(False, 1, q.lo, q.hi, q.pool, q.group))
            pages = math.ceil(total / q.count)
            planned = max(1, round(self.config.drift_rate * total)) if pages > 1 else 0
            kinds = self.config.drift_kinds
            turn = self._drift_rng.randrange(len(kinds)) if kinds else 0
            schedule: dict[int, list[str]] = {}
            for i in range(planned if kinds else 0):
                page = self._drift_rng.randint(2, pages)
                schedule.setdefault(page, []).append(kinds[(turn + i) % len(kinds)])
            plan = self._drift_plans[key] = _DriftPlan(schedule)
        if plan.over:
            return
        if q.page in plan.served:  # a re-read: the first pass is over, the window holds still
            plan.over = True
            return
        plan.served.add(q.page)
        due = plan.schedule.pop(q.page, [])
        if due:
            # One snapshot per page: the window as the client's next page would have seen it.
            entries = self._window(False, 1, q.lo, q.hi, q.pool, q.group)
            moved: set[int] = set()
            for kind in due:
                self._drift_one(kind, q, entries, (q.page - 1) * q.count, moved)

    def _drift_one(
        self, kind: str, q: _ListQuery, entries: list[_Entry], served: int, moved: set[int]
    ) -> None:
        """Apply one mutation to the window ``entries`` (newest first; the first ``served``
        rows were already sent). ``moved`` holds the entries this page already drifted."""
        rng = self._drift_rng
        if not entries:
            return
        newest = max([entries[0].keys[0][0], *(self._entries[seq].keys[0][0] for seq in moved)])
        front = newest + _SECOND if q.hi is None else min(q.hi, newest + _SECOND)

        def sample(
            pool: list[_Entry], first: int, last: int, before: dt.datetime | None = None
        ) -> _Entry | None:
            """A random well-formed entry of pool[first:last] (updated before ``before``):
            a few random probes instead of a scan, so huge windows drift cheaply."""
            for _ in range(64 if last > first else 0):
                entry = pool[rng.randrange(first, last)]
                if (
                    entry.seq not in moved
                    and _driftable(entry)
                    and (before is None or entry.keys[0][0] < before)
                ):
                    return entry
            return None

        chosen: _Entry | None = None
        new_time = front
        if kind == "leave" and q.hi is not None:
            # from a page already served: the rows behind it shift up, one is skipped
            chosen = sample(entries, 0, served) or sample(entries, 0, len(entries))
            new_time = q.hi + dt.timedelta(seconds=rng.randint(1, 3600))
        elif kind == "enter" and q.lo is not None:
            # from before the window to its front: every row shifts down, one repeats
            keys = self._index[(False, 1)]
            below = bisect_left(keys, (q.lo,))
            earlier = [self._entries[k[2]] for k in keys[max(0, below - 200) : below]]
            chosen = sample(earlier, 0, len(earlier))
        if chosen is None:
            # bump: a company not yet served jumps to the front: it is skipped, a row repeats
            kind, new_time = "bump", front
            chosen = sample(entries, served, len(entries), front) or sample(
                entries, 0, len(entries), front
            )
            if chosen is None:
                return
        old = chosen.record.get("update_time", "")
        self._move(chosen, update_time=new_time)
        moved.add(chosen.seq)
        self._drift_log.append(
            (kind, chosen.record.get("company_id"), old, chosen.record["update_time"])
        )
        log.debug(
            "drift %s %s: %s -> %s",
            kind,
            chosen.record.get("company_id"),
            old,
            chosen.record["update_time"],
        )

    # --- the store ----------------------------------------------------------------------------

    def _register(self, record: dict[str, Any], *, index: bool = True) -> _Entry:
        company_id = record.get("company_id")
        if company_id is not None and str(company_id) in self._by_id:
            raise ValueError(f"duplicate company_id {company_id}")
        entry = _Entry(seq=len(self._entries), record=record)
        self._entries[entry.seq] = entry
        if company_id is not None:
            self._by_id[str(company_id)] = entry.seq
        serial = record.get("serial_id")
        if serial not in (None, ""):
            self._by_serial.setdefault(str(serial), entry.seq)
        if index:
            self._reindex(entry, entry.removed)
        return entry

    def _reindex(self, entry: _Entry, removed: bool) -> None:
        """Take the entry out of its indexes (if in), set its removed flag, put it back."""
        for time_type, key in zip((1, 2, 3), entry.keys, strict=False):  # none when new
            keys = self._index[(entry.removed, time_type)]
            del keys[bisect_left(keys, key)]
        entry.removed = removed
        entry.keys = _index_keys(entry.seq, entry.record)
        for time_type, key in zip((1, 2, 3), entry.keys, strict=True):
            insort(self._index[(removed, time_type)], key)
        self._version += 1

    def _move(
        self, entry: _Entry, *, update_time: dt.datetime, removed: bool | None = None
    ) -> None:
        entry.record["update_time"] = format_okki_time(update_time)
        self._reindex(entry, entry.removed if removed is None else removed)

    def _lookup(self, company_id: object) -> _Entry:
        seq = self._by_id.get(str(company_id))
        if seq is None:
            raise KeyError(f"unknown company_id {company_id}")
        return self._entries[seq]

    def _next_time(self) -> dt.datetime:
        """One second after the newest update_time held (deleted companies included)."""
        newest = [keys[-1][0] for (_, tt), keys in self._index.items() if tt == 1 and keys]
        if not newest:
            return dt.datetime.now(CHINA_TZ).replace(tzinfo=None, microsecond=0)
        return max(newest) + _SECOND

    def _when(self, value: str | dt.datetime | None) -> dt.datetime:
        if value is None:
            return self._next_time()
        if isinstance(value, dt.datetime):
            return _naive_china(value)
        parsed = parse_time(value)
        if parsed is None:
            raise ValueError(f"not a time: {value!r}")
        return parsed

    # --- the truth and test API ---------------------------------------------------------------

    def companies_in_window(self, start: dt.datetime, end: dt.datetime) -> list[dict[str, Any]]:
        """Copies of the live (not deleted) companies filed under [start, end), newest first.

        Naive datetimes are China time. A record with an unparseable update_time is filed under
        its edit_time (see data.effective_update_time)."""
        with self._lock:
            keys = self._index[(False, 1)]
            first = bisect_left(keys, (_naive_china(start),))
            last = bisect_left(keys, (_naive_china(end),))
            return _copied([self._entries[k[2]].record for k in reversed(keys[first:last])])

    def get_company(self, company_id: object) -> dict[str, Any] | None:
        """A copy of the record (deleted ones too), or None for an unknown id."""
        with self._lock:
            seq = self._by_id.get(str(company_id))
            return None if seq is None else copy.deepcopy(self._entries[seq].record)

    def is_removed(self, company_id: object) -> bool:
        with self._lock:
            return self._lookup(company_id).removed

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
            entry = self._lookup(company_id)
            if entry.removed:
                raise KeyError(f"company_id {company_id} is deleted")
            changes = dict(changes or {})
            for frozen_field in ("company_id", "serial_id"):
                if frozen_field in changes and changes[frozen_field] != entry.record.get(
                    frozen_field
                ):
                    raise ValueError(f"{frozen_field} cannot be changed")
            when = self._when(update_time or changes.pop("update_time", None))
            entry.record.update(copy.deepcopy(changes))
            self._move(entry, update_time=when)
            return copy.deepcopy(entry.record)

    def delete_company(
        self, company_id: object, *, delete_time: str | dt.datetime | None = None
    ) -> dict[str, Any]:
        """Move a company to the deleted set. By default it keeps its old update_time (OKKI's
        worst case: the deletion then shows only under an old window); ``delete_time`` moves it
        there instead, and ``config.deletion_moves_time`` makes that the default (one second
        after the newest update_time held). Returns a copy of the record."""
        with self._lock:
            entry = self._lookup(company_id)
            if entry.removed:
                raise KeyError(f"company_id {company_id} is already deleted")
            self._flip(entry, delete_time, removed=True)
            return copy.deepcopy(entry.record)

    def restore_company(
        self, company_id: object, *, restore_time: str | dt.datetime | None = None
    ) -> dict[str, Any]:
        """Bring a deleted company back (OKKI's recycle bin). By default it comes back with the
        update_time it had before it was deleted (an old time, older than a deletion that moved
        it); ``restore_time`` sets a new one, and
        ``config.deletion_moves_time`` makes that the default."""
        with self._lock:
            entry = self._lookup(company_id)
            if not entry.removed:
                raise KeyError(f"company_id {company_id} is not deleted")
            self._flip(entry, restore_time, removed=False)
            return copy.deepcopy(entry.record)

    def _flip(self, entry: _Entry, when: str | dt.datetime | None, *, removed: bool) -> None:
        """Delete or restore. A restore with no time goes back to the update_time the company
        had before its deletion (when the deletion moved it), else keeps the one it has."""
        before = self._live_times.pop(entry.seq, None)
        if removed:
            self._live_times[entry.seq] = entry.record.get("update_time")
        if when is None and not self.config.deletion_moves_time:
            if not removed and isinstance(before, str) and parse_time(before) is not None:
                self._move(entry, update_time=self._when(before), removed=False)
            else:
                self._reindex(entry, removed)  # the old update_time stays
        else:
            self._move(entry, update_time=self._when(when), removed=removed)

    def edit_contact(
        self, company_id: object, *, email: str | None = None, phone: str | None = None
    ) -> dict[str, Any]:
        """Change the primary contact's e-mail and/or phone (main_customer_flag 1, else the
        first contact; one is added when there is none) WITHOUT moving the company's
        update_time: an edit only re-reading info finds. Returns a copy of the record."""
        with self._lock:
            entry = self._lookup(company_id)
            customers = entry.record.get("customers")
            if not isinstance(customers, list) or not customers:
                customers = entry.record["customers"] = [
                    {
                        "customer_id": 0,
                        "name": "",
                        "email": "",
                        "tel_list": [],
                        "main_customer_flag": 1,
                    }
                ]
            primary = next(
                (
                    c
                    for c in customers
                    if isinstance(c, dict) and str(c.get("main_customer_flag")) == "1"
                ),
                customers[0],
            )
            if email is not None:
                primary["email"] = email
            if phone is not None:
                primary["tel_list"] = [["", phone]]
            self._version += 1
            return copy.deepcopy(entry.record)

    def add_company(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """Add a full record (copied). Raises ValueError for a company_id already held."""
        with self._lock:
            entry = self._register(copy.deepcopy(dict(record)))
            return copy.deepcopy(entry.record)

    def revoke_tokens(self) -> int:
        """Revoke every issued token; returns how many were still valid."""
        with self._lock:
            live = [t for t in self._tokens.values() if not t.revoked]
            for token in live:
                token.revoked = True
            self._token_expiry = None
            return len(live)

    @property
    def issued_tokens(self) -> list[str]:
        with self._lock:
            return list(self._issued)

    @property
    def drift_log(self) -> list[DriftEntry]:
        with self._lock:
            return list(self._drift_log)

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
            return len(self._entries)
