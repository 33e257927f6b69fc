"""The OKKI Open API client: ``OkkiClient``, the facade over the token (okki_auth.py), one
business call (okki_calls.py), list paging (okki_paging.py) and the company detail fan-out here.

API quirks the client covers (see docs/okki-api.md):

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
  exactly as received. Only an empty page ends a list: a page shorter than ``count`` does not
  (the server may serve fewer rows than asked), nor ``totalItem`` (it may be capped or briefly
  wrong); see okki_paging.py. An empty page 1 while ``totalItem`` > 0 is a glitch, retried like
  a transient answer; a missing or non-numeric ``totalItem`` is a permanent error naming it.
  Paging refuses a page that repeats the previous one (``RepeatedPageError``) or a run past
  ``max_pages``.
- Info answering a business code other than 404 for one company (403, say) gives
  ``InfoResult(data=None, code=...)``, and a payload that cannot be used (nested too deep, not
  valid UTF-8: the same on every try) ``InfoResult(data=None, unusable=reason)``; auth and
  scope refusals still stop the call.
- Times go out as ``YYYY-MM-DD HH:MM:SS`` in China Standard Time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import closing
from datetime import datetime
from typing import Any

import httpx

from okki_assets.clients.http import (
    CallStats,
    HttpClientBase,
    RetrySettings,
    Timeouts,
    monotonic_for,
)
from okki_assets.clients.okki_api import (
    INFO_PATH,
    LIST_PATH,
    TOKEN_PATH,
    InfoResult,
    ListPage,
    coerce_int,
    is_raw_key,
    record_key,
)
from okki_assets.clients.okki_auth import OkkiAuth
from okki_assets.clients.okki_calls import OkkiCaller
from okki_assets.clients.okki_paging import checked_pages, list_reply, pages_in_order
from okki_assets.clients.ratecontrol import AdaptivePacer, AutoRate, FixedPacer, Pacer
from okki_assets.errors import OkkiBusinessError, OkkiPermanentError, OkkiUnusableReply
from okki_assets.okki_time import format_okki_time

#: Info calls in flight at once, unless configured (OKKI_CONCURRENCY).
DEFAULT_CONCURRENCY = 8

__all__ = [
    "DEFAULT_CONCURRENCY",
    "INFO_PATH",
    "LIST_PATH",
    "TOKEN_PATH",
    "InfoResult",
    "ListPage",
    "OkkiClient",
    "RetrySettings",
    "Timeouts",
    "is_raw_key",
    "record_key",
]

log = logging.getLogger(__name__)


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
        concurrency: int = DEFAULT_CONCURRENCY,
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
        pace_clock = monotonic_for(clock)
        self.pacer: Pacer = (
            AdaptivePacer(rate_limit, clock=pace_clock, sleep=sleep)
            if isinstance(rate_limit, AutoRate)
            else FixedPacer(rate_limit, clock=pace_clock, sleep=sleep)
        )
        self._http = httpx.Client(
            base_url=base_url,
            timeout=timeouts.to_httpx(),
            transport=transport,
            limits=httpx.Limits(
                max_connections=max(2 * concurrency, 10), max_keepalive_connections=concurrency
            ),
            headers={"Accept": "application/json", "User-Agent": "okki-assets"},
        )
        auth = OkkiAuth(
            self._http,
            base_url=base_url,
            client_id=client_id,
            client_secret=client_secret,
            scope=scope,
            stats=self.stats,
            clock=clock,
        )
        self._caller = OkkiCaller(
            self._http,
            auth,
            self.pacer,
            self.stats,
            retry=retry,
            sleep=sleep,
            pace_clock=pace_clock,
            wall_clock=clock,
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
            parsed.append(list_reply(page, params, body))

        self._caller.call("list", LIST_PATH, params, check=check)
        return parsed[-1]

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

        Only an empty page ends the list: neither a page shorter than ``count`` (the server may
        serve fewer rows than asked) nor ``totalItem`` (it may be capped) does. Raises
        RepeatedPageError when a page repeats the previous one (same ids, same order) and
        PaginationError when ``max_pages`` pages did not finish the list.

        ``prefetch``: once page 1 has told ``totalItem``, the pages it implies and the empty
        one after them are requested ``concurrency`` at a time (still yielded in order, under
        the same stop rules), then the list goes on page by page until it ends. The cost: when
        ``totalItem`` overstates the list, or the list shrinks while paging, up to
        ``2 * concurrency`` pages past the end may be requested.
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

        with closing(
            pages_in_order(fetch, prefetch, max_pages=self.max_pages, concurrency=self.concurrency)
        ) as pages:
            yield from checked_pages(pages, window, max_pages=self.max_pages)

    # -- company details -------------------------------------------------------------------------

    def company_info(self, company_id: str | int) -> InfoResult:
        """``/v1/company/info`` for one company; code 404 gives ``InfoResult(data=None)``, any
        other business code ``InfoResult(data=None, code=...)``: one company OKKI will not
        detail is no reason to fail a window (auth and scope refusals still raise)."""
        cid = str(company_id).strip()
        params = {"company_id": cid}
        try:
            code, body = self._caller.call("info", INFO_PATH, params, accept_codes=frozenset({404}))
        except OkkiUnusableReply as unusable:
            log.debug("info for company %s cannot be used (%s)", cid, unusable.reason)
            return InfoResult(cid, None, unusable=unusable.reason)
        except OkkiBusinessError as refused:
            refused_code = coerce_int(refused.code)
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
        The first failure propagates once the calls already answered or in flight are yielded
        (each spent a request of the quota, and a failed pull keeps what it fetched); calls
        queued and not started are cancelled."""
        window = 2 * self.concurrency
        pending: set[Future[InfoResult]] = set()
        failures: list[BaseException] = []
        done_count = 0
        pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="okki-info")
        try:
            for company_id in company_ids:
                if len(pending) >= window:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for result in _answered(done, failures):
                        done_count += 1
                        yield result
                    if failures:
                        break
                pending.add(pool.submit(self.company_info, company_id))
            while pending:
                if failures:
                    for fut in pending:
                        fut.cancel()  # only those not started yet
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for result in _answered(done, failures):
                    done_count += 1
                    yield result
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        if failures:
            raise failures[0]
        log.info(
            "fetched %d company details (%d not found so far)",
            done_count,
            self.stats.info_not_found,
        )


def _answered(
    done: Iterable[Future[InfoResult]], failures: list[BaseException]
) -> Iterator[InfoResult]:
    """The results of ``done``; a failure is added to ``failures`` instead (a cancelled call
    is neither)."""
    for fut in done:
        if fut.cancelled():
            continue
        error = fut.exception()
        if error is None:
            yield fut.result()
        else:
            failures.append(error)
