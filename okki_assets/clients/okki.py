"""The OKKI Open API client: token cache, company list paging, company detail fan-out.

API quirks covered here (see shared/specs/okki-api.md):

- Auth is OAuth2 client_credentials. The token is cached and renewed a few minutes before it
  expires; a reply without ``expires_in`` is taken to live 8 h. One thread renews while the others
  wait. A first token request that cannot even connect stops at once (a wrong OKKI_BASE_URL or
  no network); later connection failures are retried. HTTP 401, or ``access_denied`` in a 200
  body, renews the token and repeats the call; a renewed token refused before it ever served a
  call means the credentials are at fault (a token that did serve calls may be revoked again
  mid-window: renewed again, a few times per call). Refused credentials, an unsupported grant or
  a missing scope stop at once with a message naming what to check (never the secret).
- Success is ``code`` 200 or 0 inside an HTTP 200. Business errors also come with HTTP 200: body
  ``code`` 429 and 5xx are transient, ``code`` 404 on ``/v1/company/info`` means the company was
  deleted (``InfoResult(data=None)``), every other code is permanent.
- Throttling is undocumented, so HTTP 429 (Retry-After as a floor), HTTP 5xx, timeouts, resets and
  a non-JSON page are all retried with backoff; every business request passes the pacer, fixed
  or adaptive (ratecontrol.py), and tells it whether its answer was clean or a throttle (HTTP
  429, ``code`` 429, HTTP or ``code`` 503). A transient answer whose ``Retry-After`` lies past
  the retry budget (a daily quota) stops every call at once with ``OkkiQuotaExhausted``.
- ``start_index`` is a page number; ``totalItem`` and ids may arrive as strings; records are kept
  exactly as received. ``totalItem`` may be capped or briefly wrong, so the list itself ends a
  pass: a page shorter than ``count`` (once the distinct ids reach ``totalItem``) or an empty page.
  An empty page 1 while ``totalItem`` > 0 is a glitch, retried like a transient answer; a missing
  or non-numeric ``totalItem`` is a permanent error naming it. Paging refuses a page that repeats
  the previous one (``RepeatedPageError``) or a run past ``max_pages``.
- Info answering a business code other than 404 for one company (403, say) gives
  ``InfoResult(data=None, code=...)``; auth and scope refusals still stop the call.
- Times go out as ``YYYY-MM-DD HH:MM:SS`` in China Standard Time.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

from okki_assets.clients.http import (
    CallStats,
    HttpClientBase,
    RetrySettings,
    Timeouts,
    call_with_retries,
    monotonic_for,
    parse_retry_after,
)
from okki_assets.clients.ratecontrol import AdaptivePacer, AutoRate, FixedPacer, Grant, Pacer
from okki_assets.errors import (
    OkkiAuthError,
    OkkiBusinessError,
    OkkiPermanentError,
    OkkiQuotaExhausted,
    OkkiRetriesExhausted,
    OkkiTransientError,
    PaginationError,
    RepeatedPageError,
)
from okki_assets.okki_time import CHINA_TZ, format_okki_time

__all__ = [
    "InfoResult",
    "ListPage",
    "OkkiClient",
    "RetrySettings",
    "Timeouts",
    "record_key",
]

log = logging.getLogger(__name__)

TOKEN_PATH = "/v1/oauth2/access_token"
LIST_PATH = "/v1/company/list"
INFO_PATH = "/v1/company/info"

#: Assumed token lifetime when the reply has no ``expires_in`` (the docs' 8 hours).
DEFAULT_TOKEN_LIFETIME = 28800.0
#: Renew this many seconds before expiry (at most a tenth of the lifetime for short tokens).
RENEW_EARLY_SECONDS = 300.0
SUCCESS_CODES = frozenset({0, 200})
#: ``error`` values that mean "this access token is no good": renew once and repeat.
TOKEN_REFUSALS = frozenset({"access_denied", "invalid_token"})
#: Renewals one call may make, even of tokens that served other calls, before it gives up.
MAX_TOKEN_RENEWALS = 5
#: Transient causes that are throttles (they cut the adaptive rate); so is any status or code 503.
THROTTLE_CAUSES = frozenset({"http429", "body429"})
_MAX_SERVER_TEXT = 200


@dataclass
class ListPage:
    """One page of ``/v1/company/list``. ``total_item`` is the reply's ``totalItem`` (0 for an
    empty result without ``data``); ``raw_count`` is the undocumented ``count`` as received."""

    page: int
    records: list[dict[str, Any]]
    total_item: int
    raw_count: object


@dataclass
class InfoResult:
    """One ``/v1/company/info`` answer. ``data`` None: code 404 (deleted while syncing), or the
    other business ``code`` OKKI answered for this company."""

    company_id: str
    data: dict[str, Any] | None
    code: int | None = None


class _AccessDenied(Exception):
    """Internal: the access token was refused; the caller renews once and repeats."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class _TokenCache:
    """The cached access token; renewal is serialised so many expired callers cause one fetch."""

    def __init__(self, fetch: Callable[[], tuple[str, float]], clock: Callable[[], float]) -> None:
        self._fetch = fetch
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._renew_at = 0.0
        self._served: set[str] = set()  # tokens that answered at least one call

    def served(self, token: str) -> None:
        """Note that ``token`` answered a call (it was good when issued)."""
        if token not in self._served:
            with self._lock:
                self._served.add(token)

    def has_served(self, token: str) -> bool:
        return token in self._served

    def get(self) -> str:
        with self._lock:
            if self._token is None or self._clock() >= self._renew_at:
                obtained = self._clock()
                token, lifetime = self._fetch()
                self._token = token
                self._renew_at = obtained + lifetime - min(RENEW_EARLY_SECONDS, lifetime / 10)
            return self._token

    def invalidate(self, stale: str) -> None:
        """Forget ``stale`` unless another thread already replaced it."""
        with self._lock:
            if self._token == stale:
                self._token = None


def _coerce_int(value: object) -> int | None:
    """An int from an int, a numeric string or an integral float; None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None


_NOT_JSON = object()


def _json_body(resp: httpx.Response) -> Any:
    try:
        return resp.json()
    except (ValueError, UnicodeDecodeError):
        return _NOT_JSON


def _server_text(body: object) -> str:
    """The server's own words (error / error_description / message), shortened."""
    if not isinstance(body, dict):
        return ""
    parts = [str(body[k]) for k in ("error", "error_description", "message") if body.get(k)]
    return " ".join(parts)[:_MAX_SERVER_TEXT]


def _is_scope_refusal(text: str) -> bool:
    lowered = text.lower()
    return "no permission" in lowered and "scope" in lowered


def _all_dicts(items: list[Any]) -> bool:
    return all(isinstance(item, dict) for item in items)


def record_key(record: Mapping[str, Any]) -> str:
    """A listed company's identity: its company_id as text (123 and "123" are one company; 0
    is an id like any other, cleaning judges it), or, when the id is absent or blank, the
    record itself (``raw:`` + its JSON), so that such a row still counts and is kept."""
    cid = record.get("company_id")
    if cid is None or str(cid).strip() == "":
        return "raw:" + json.dumps(record, sort_keys=True, ensure_ascii=False, default=str)
    return str(cid).strip()


class OkkiClient(HttpClientBase):
    """Speaks the OKKI Open API. Thread-safe: concurrent calls share the token, the pacer, the
    connection pool and ``stats``.

    ``rate_limit``: requests per second (fixed pacing), None (unpaced) or an ``AutoRate``
    (adaptive pacing that finds the account's rate)."""

    def __init__(
        self,
        base_url: str,
        client_id: str,
        client_secret: str,
        *,
        scope: str = "company",
        rate_limit: float | AutoRate | None = 10.0,
        concurrency: int = 8,
        page_size: int = 100,
        max_pages: int = 10_000,
        timeouts: Timeouts = Timeouts(),  # noqa: B008 - frozen dataclass, safe as a default
        retry: RetrySettings = RetrySettings(),  # noqa: B008 - frozen dataclass
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if concurrency < 1 or page_size < 1 or max_pages < 1:
            raise ValueError("concurrency, page_size and max_pages must be at least 1")
        self.base_url = base_url
        self.scope = scope
        self.concurrency = concurrency
        self.page_size = page_size
        self.max_pages = max_pages
        self.stats = CallStats(endpoints=("token", "list", "info"))
        self._client_id = client_id
        self._client_secret = client_secret
        self._retry = retry
        self._sleep = sleep
        self._pace_clock = monotonic_for(clock)
        self._wall_clock = clock
        self.pacer: Pacer = (
            AdaptivePacer(rate_limit, clock=self._pace_clock, sleep=sleep)
            if isinstance(rate_limit, AutoRate)
            else FixedPacer(rate_limit, clock=self._pace_clock, sleep=sleep)
        )
        self._stopped: OkkiQuotaExhausted | None = None  # set once OKKI asked for a long wait
        self._tokens = _TokenCache(self._fetch_token, clock)
        self._contacted = False  # any answer from OKKI yet (a first connection refused is fatal)
        self._http = httpx.Client(
            base_url=base_url,
            timeout=timeouts.to_httpx(),
            transport=transport,
            limits=httpx.Limits(
                max_connections=max(2 * concurrency, 10), max_keepalive_connections=concurrency
            ),
            headers={"Accept": "application/json", "User-Agent": "okki-assets"},
        )

    # -- lifecycle -----------------------------------------------------------------------------

    # -- auth ----------------------------------------------------------------------------------

    def _unreachable(self, exc: Exception) -> str:
        """For a connection that could not even be opened: where to look."""
        if isinstance(exc, httpx.ConnectError):
            return f": cannot connect to {self.base_url}, check OKKI_BASE_URL and the network"
        return ""

    def _scrub(self, text: str) -> str:
        return text.replace(self._client_secret, "***") if self._client_secret else text

    def _fetch_token(self) -> tuple[str, float]:
        """POST the client credentials; returns (access token, lifetime in seconds)."""
        self.stats.count_request("token")
        form = {
            "grant_type": "client_credentials",
            "client_id": self._client_id,
            "client_secret": self._client_secret,
            "scope": self.scope,
        }
        params = {"scope": self.scope}
        try:
            resp = self._http.post(TOKEN_PATH, data=form)
            self._contacted = True
        except httpx.TimeoutException as exc:
            raise OkkiTransientError(
                f"token request timed out ({type(exc).__name__})",
                cause="timeout",
                endpoint=TOKEN_PATH,
                params=params,
            ) from exc
        except (httpx.TransportError, httpx.DecodingError) as exc:
            if isinstance(exc, httpx.ConnectError) and not self._contacted:
                # OKKI was never reached: a wrong OKKI_BASE_URL or no network, not a blip.
                raise OkkiPermanentError(
                    f"token request failed ({type(exc).__name__})" + self._unreachable(exc),
                    endpoint=TOKEN_PATH,
                    params=params,
                ) from exc
            raise OkkiTransientError(
                f"token request failed in transport ({type(exc).__name__})"
                + self._unreachable(exc),
                cause="transport",
                endpoint=TOKEN_PATH,
                params=params,
            ) from exc
        status = resp.status_code
        body = _json_body(resp)
        if status == 429 or status >= 500:
            raise OkkiTransientError(
                f"token endpoint answered HTTP {status}",
                cause="http429" if status == 429 else "http5xx",
                retry_after=parse_retry_after(resp.headers.get("Retry-After")),
                endpoint=TOKEN_PATH,
                params=params,
                code=status,
            )
        if body is _NOT_JSON and 200 <= status < 300:
            raise OkkiTransientError(
                "token endpoint answered with a body that is not JSON",
                cause="invalid_json",
                endpoint=TOKEN_PATH,
                params=params,
                code=status,
            )
        reply = body.get("data") if isinstance(body, dict) and "access_token" not in body else body
        if isinstance(reply, dict) and reply.get("access_token"):
            token = str(reply["access_token"]).strip()
            if token[:7].lower() == "bearer ":
                token = token[7:].strip()
            expires_in = _coerce_int(reply.get("expires_in"))
            lifetime = DEFAULT_TOKEN_LIFETIME
            if expires_in is not None and expires_in > 0:
                lifetime = float(expires_in)
            log.debug("obtained an OKKI access token valid for %.0fs", lifetime)
            return token, lifetime
        raise self._token_refusal(status, body, params)

    def _token_refusal(self, status: int, body: object, params: Mapping[str, object]) -> Exception:
        error = str(body.get("error") or "") if isinstance(body, dict) else ""
        said = self._scrub(_server_text(body))
        if error == "invalid_client":
            what = (
                "OKKI refused the client credentials (invalid_client): "
                "check OKKI_CLIENT_ID and OKKI_CLIENT_SECRET"
            )
        elif error == "unsupported_grant_type":
            what = (
                "OKKI refused the client_credentials grant (unsupported_grant_type): check that "
                "OKKI_CLIENT_ID belongs to an app allowed to use client credentials"
            )
        elif _is_scope_refusal(said):
            what = (
                f"the OKKI app has no permission for scope {self.scope!r}: grant the scope to the "
                "app or check the configured scope"
            )
        else:
            what = (
                "OKKI refused the access-token request: check OKKI_CLIENT_ID, "
                "OKKI_CLIENT_SECRET and the scope"
            )
        if said:
            what += f" (server said: {said})"
        return OkkiAuthError(what, endpoint=TOKEN_PATH, params=params, code=error or status)

    # -- one business call -----------------------------------------------------------------------

    def _call(
        self,
        endpoint: str,
        path: str,
        params: dict[str, Any],
        accept_codes: frozenset[int] = frozenset(),
        check: Callable[[dict[str, Any]], object] | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """GET ``path`` with retries; (body code, body) of a success or of an accepted code.
        ``check(body)`` may raise OkkiTransientError for an answer to retry."""
        renewals = 0

        def attempt() -> tuple[int, dict[str, Any]]:
            nonlocal renewals
            while True:
                token = self._tokens.get()
                try:
                    answer = self._request_once(endpoint, path, params, token, accept_codes)
                except _AccessDenied as denied:
                    fresh_refused = renewals > 0 and not self._tokens.has_served(token)
                    if fresh_refused or renewals >= MAX_TOKEN_RENEWALS:
                        raise OkkiAuthError(
                            "OKKI refused a freshly renewed access token: check that the app "
                            "behind OKKI_CLIENT_ID is still authorised and has the needed scope",
                            endpoint=path,
                            params=params,
                            code=denied.status,
                        ) from None
                    renewals += 1
                    self.stats.count_retry("token_renewed")
                    self._tokens.invalidate(token)
                    log.info("OKKI refused the access token on %s; renewing it", path)
                else:
                    self._tokens.served(token)
                    if check is not None:
                        check(answer[1])
                    return answer

        def exhausted(last: BaseException, attempts: int, elapsed: float) -> BaseException:
            cause = getattr(last, "cause", type(last).__name__)
            said = str(last).split(" | ")[0]
            return OkkiRetriesExhausted(
                f"gave up after {attempts} attempts in {elapsed:.1f}s; "
                f"last cause: {cause} ({said})",
                endpoint=path,
                params=params,
                code=getattr(last, "code", None),
            )

        return call_with_retries(
            attempt,
            self._retry,
            transient=OkkiTransientError,
            stats=self.stats,
            exhausted=exhausted,
            sleep=self._sleep,
            clock=self._pace_clock,
        )

    def _request_once(
        self,
        endpoint: str,
        path: str,
        params: dict[str, Any],
        token: str,
        accept_codes: frozenset[int],
    ) -> tuple[int, dict[str, Any]]:
        if self._stopped is not None:  # another call met a long wait: spend nothing more
            raise self._stopped.with_progress(self._stopped.progress)
        grant = self.pacer.acquire()
        self.stats.add_throttled(grant.waited)
        self.stats.count_request(endpoint)
        try:
            resp = self._http.get(path, params=params, headers={"Authorization": f"Bearer {token}"})
        except httpx.TimeoutException as exc:
            raise OkkiTransientError(
                f"request timed out ({type(exc).__name__})",
                cause="timeout",
                endpoint=path,
                params=params,
            ) from exc
        except (httpx.TransportError, httpx.DecodingError) as exc:
            raise OkkiTransientError(
                f"transport error ({type(exc).__name__})" + self._unreachable(exc),
                cause="transport",
                endpoint=path,
                params=params,
            ) from exc
        try:
            answer = self._interpret(path, params, resp, accept_codes)
        except OkkiTransientError as exc:
            self._judge(exc, grant)
            raise
        self.pacer.report(grant, throttled=False)
        return answer

    def _judge(self, exc: OkkiTransientError, grant: Grant) -> None:
        """Tell the pacer about a throttle; stop every call when OKKI asks to wait past the
        retry budget (a daily quota): sleeping or retrying against it would only waste the run."""
        budget = self._retry.budget_seconds
        if exc.retry_after is not None and exc.retry_after > budget:
            until = datetime.fromtimestamp(self._wall_clock() + exc.retry_after, CHINA_TZ)
            if self._stopped is None:
                log.warning(
                    "OKKI asks to wait %.0f s (until %s China time): stopping the pull",
                    exc.retry_after,
                    format_okki_time(until),
                )
            self._stopped = OkkiQuotaExhausted(
                until,
                retry_after=exc.retry_after,
                budget_seconds=budget,
                endpoint=exc.endpoint,
                params=exc.params,
                code=exc.code,
            )
            raise self._stopped from None
        if exc.cause in THROTTLE_CAUSES or exc.code == 503:
            self.pacer.report(grant, throttled=True)

    def _interpret(
        self,
        path: str,
        params: dict[str, Any],
        resp: httpx.Response,
        accept_codes: frozenset[int],
    ) -> tuple[int, dict[str, Any]]:
        status = resp.status_code
        body = _json_body(resp)
        said = self._scrub(_server_text(body))
        retry_after = parse_retry_after(resp.headers.get("Retry-After"))
        where: dict[str, Any] = {"endpoint": path, "params": params}
        error = body.get("error") if isinstance(body, dict) else None
        if status == 401 or (isinstance(error, str) and error in TOKEN_REFUSALS):
            raise _AccessDenied(status)
        if status == 429 or status >= 500:
            raise OkkiTransientError(
                f"HTTP {status}",
                cause="http429" if status == 429 else "http5xx",
                retry_after=retry_after,
                code=status,
                **where,
            )
        if _is_scope_refusal(said):
            raise OkkiAuthError(
                f"the OKKI app has no permission for scope {self.scope!r}: grant the scope to the "
                f"app or check the configured scope (server said: {said})",
                code=_coerce_int(body.get("code")) if isinstance(body, dict) else status,
                **where,
            )
        if not 200 <= status < 300:
            raise OkkiPermanentError(
                f"HTTP {status}" + (f": {said}" if said else ""), code=status, **where
            )
        if body is _NOT_JSON:
            raise OkkiTransientError(
                "the reply is not JSON", cause="invalid_json", retry_after=retry_after, **where
            )
        if not isinstance(body, dict):
            raise OkkiPermanentError("the reply is JSON but not an object", **where)
        code = _coerce_int(body.get("code"))
        if code is not None and (code in SUCCESS_CODES or code in accept_codes):
            return code, body
        if code == 429 or (code is not None and 500 <= code < 600):
            raise OkkiTransientError(
                f"OKKI answered code {code}" + (f": {said}" if said else ""),
                cause="body429" if code == 429 else "body5xx",
                retry_after=retry_after,
                code=code,
                **where,
            )
        raise OkkiBusinessError(
            f"OKKI answered code {body.get('code')!r}" + (f": {said}" if said else ""),
            code=body.get("code"),
            **where,
        )

    # -- company list ----------------------------------------------------------------------------

    def list_page(
        self,
        page: int,
        *,
        start_time: datetime | None = None,
        end_time: datetime | None = None,
        time_type: int = 1,
        removed: int = 0,
        all: int = 1,
        group_id: int | None = None,
        count: int | None = None,
    ) -> ListPage:
        """One page (1-based page number) of ``/v1/company/list``; records as received."""
        params: dict[str, Any] = {
            "start_index": page,
            "count": count if count is not None else self.page_size,
            "removed": removed,
            "all": all,
            "time_type": time_type,
        }
        if group_id is not None:
            params["group_id"] = group_id
        if start_time is not None:
            params["start_time"] = format_okki_time(start_time)
        if end_time is not None:
            params["end_time"] = format_okki_time(end_time)
        parsed: list[ListPage] = []

        def check(body: dict[str, Any]) -> None:
            parsed.append(self._list_reply(page, params, body))

        self._call("list", LIST_PATH, params, check=check)
        return parsed[-1]

    @staticmethod
    def _list_reply(page: int, params: dict[str, Any], body: dict[str, Any]) -> ListPage:
        """A list reply as a ListPage; an empty page 1 while ``totalItem`` > 0 is transient."""
        data = body.get("data")
        if data is None or data == []:  # an empty result set, however it is spelled
            data = {"list": [], "totalItem": 0}
        if not isinstance(data, dict):
            raise OkkiPermanentError(
                f"data is a {type(data).__name__}, expected an object",
                endpoint=LIST_PATH,
                params=params,
            )
        records = data.get("list") or []
        if not isinstance(records, list) or not _all_dicts(records):
            raise OkkiPermanentError(
                "data.list is not a list of objects", endpoint=LIST_PATH, params=params
            )
        total = _coerce_int(data.get("totalItem"))
        if total is None or total < 0:
            raw = data.get("totalItem", "<missing>")
            raise OkkiPermanentError(
                f"data.totalItem is missing or not a count: {str(raw)[:40]!r}",
                endpoint=LIST_PATH,
                params=params,
            )
        if page == 1 and not records and total > 0:
            raise OkkiTransientError(
                f"page 1 is empty while totalItem is {total}",
                cause="empty_first_page",
                endpoint=LIST_PATH,
                params=params,
            )
        return ListPage(page=page, records=records, total_item=total, raw_count=data.get("count"))

    def iter_list_pages(
        self,
        *,
        start_time: datetime | None = None,
        end_time: datetime | None = None,
        time_type: int = 1,
        removed: int = 0,
        all: int = 1,
        group_id: int | None = None,
        prefetch: bool = False,
    ) -> Iterator[ListPage]:
        """Every non-empty page of one window, in order, until the list itself ends.

        ``totalItem`` may be capped or briefly wrong, so it never ends a list alone: the list
        ends at an empty page, or at a page shorter than ``count`` when the distinct ids seen
        equal ``totalItem`` (otherwise a short page asks for one more page). Raises
        RepeatedPageError when a page repeats the previous one (same ids, same order) and
        PaginationError when ``max_pages`` pages did not finish the list.

        ``prefetch``: once page 1 has told ``totalItem``, the pages it implies are requested
        ``concurrency`` at a time (still yielded in order, under the same stop rules), then the
        list goes on page by page until it ends. The cost: when ``totalItem`` overstates the
        list, or the list shrinks while paging, up to ``2 * concurrency`` pages past the end may
        be requested.
        """
        window = {
            "start_time": format_okki_time(start_time) if start_time else None,
            "end_time": format_okki_time(end_time) if end_time else None,
            "time_type": time_type,
            "removed": removed,
            "all": all,
            "group_id": group_id,
        }
        window = {k: v for k, v in window.items() if v is not None}

        def fetch(page_no: int) -> ListPage:
            return self.list_page(
                page_no,
                start_time=start_time,
                end_time=end_time,
                time_type=time_type,
                removed=removed,
                all=all,
                group_id=group_id,
            )

        with closing(self._pages_in_order(fetch, prefetch)) as pages:
            yield from self._checked_pages(pages, window)

    def _checked_pages(
        self, pages: Iterator[ListPage], window: dict[str, Any]
    ) -> Iterator[ListPage]:
        """The stop rules and checks of ``iter_list_pages`` over pages 1, 2, ... in order."""
        seen: set[str] = set()
        previous: list[str] | None = None
        rows = 0
        for page_no, page in zip(range(1, self.max_pages + 1), pages, strict=False):
            if not page.records:
                log.debug("list page %d is empty: done", page_no)
                break
            ids = [record_key(r) for r in page.records]
            if ids == previous:
                raise RepeatedPageError(
                    f"page {page_no} repeats page {page_no - 1} (same {len(ids)} rows in the "
                    "same order): the server ignores start_index, or the list shifted by a"
                    " page while paging",
                    endpoint=LIST_PATH,
                    params={**window, "start_index": page_no},
                )
            new = len(set(ids) - seen)
            seen.update(ids)
            rows += len(ids)
            log.debug(
                "list page %d: %d rows, %d new, %d distinct of totalItem %d",
                page_no,
                len(ids),
                new,
                len(seen),
                page.total_item,
            )
            yield page
            # A short page ends the list only when the count agrees with what was seen: a server
            # that serves fewer rows than asked makes every page short, and a capped count is
            # passed long before the end; then only an empty page ends the list.
            if len(ids) < self.page_size and page.total_item == len(seen):
                log.debug("list page %d is short: done", page_no)
                break
            previous = ids
        else:
            raise PaginationError(
                f"the list did not finish within max_pages={self.max_pages} pages "
                f"({len(seen)} distinct rows seen)",
                endpoint=LIST_PATH,
                params=window,
            )
        log.info("listed %d rows (%d distinct companies)", rows, len(seen))

    def _pages_in_order(
        self, fetch: Callable[[int], ListPage], prefetch: bool
    ) -> Generator[ListPage, None, None]:
        """Pages 1, 2, 3, ... in order, fetched one at a time, or (``prefetch``) the pages that
        page 1's ``totalItem`` implies ``concurrency`` at a time, at most ``2 * concurrency``
        ahead of the consumer; queued requests are cancelled when the consumer stops."""
        first = fetch(1)
        yield first
        planned = 1
        size = len(first.records)
        if prefetch and size and first.total_item > size:
            planned = min(self.max_pages, -(-first.total_item // size))
        next_no = 2
        if planned >= next_no:
            ahead: deque[Future[ListPage]] = deque()
            pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="okki-list")
            try:
                while next_no <= planned or ahead:
                    while next_no <= planned and len(ahead) < 2 * self.concurrency:
                        ahead.append(pool.submit(fetch, next_no))
                        next_no += 1
                    yield ahead.popleft().result()
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
        for page_no in itertools.count(next_no):
            yield fetch(page_no)

    # -- company details -------------------------------------------------------------------------

    def company_info(self, company_id: str | int) -> InfoResult:
        """``/v1/company/info`` for one company; code 404 gives ``InfoResult(data=None)``, any
        other business code ``InfoResult(data=None, code=...)``: one company OKKI will not
        detail is no reason to fail a window (auth and scope refusals still raise)."""
        cid = str(company_id).strip()
        params = {"company_id": cid}
        try:
            code, body = self._call("info", INFO_PATH, params, accept_codes=frozenset({404}))
        except OkkiBusinessError as refused:
            refused_code = _coerce_int(refused.code)
            if refused_code is None:
                raise
            log.debug("info for company %s answered code %d", cid, refused_code)
            return InfoResult(cid, None, refused_code)
        data = body.get("data")
        if code == 404 or data is None or data in ([], {}):
            self.stats.count_info_not_found()
            log.debug("company %s not found (deleted while syncing)", cid)
            return InfoResult(cid, None)
        if not isinstance(data, dict):
            raise OkkiPermanentError(
                f"data is a {type(data).__name__}, expected an object",
                endpoint=INFO_PATH,
                params=params,
            )
        return InfoResult(cid, data)

    def company_infos(self, company_ids: Iterable[str | int]) -> Iterator[InfoResult]:
        """Details for many companies, ``concurrency`` calls at a time, yielded as they complete
        (order not guaranteed). Streams: at most ``2 * concurrency`` calls are queued at once.
        The first failure propagates; queued calls are cancelled."""
        window = 2 * self.concurrency
        pending: set[Future[InfoResult]] = set()
        done_count = 0
        pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="okki-info")
        try:
            for company_id in company_ids:
                if len(pending) >= window:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in done:
                        done_count += 1
                        yield fut.result()
                pending.add(pool.submit(self.company_info, company_id))
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    done_count += 1
                    yield fut.result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        log.info(
            "fetched %d company details (%d not found so far)",
            done_count,
            self.stats.info_not_found,
        )
