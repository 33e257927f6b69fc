"""One business call to OKKI: the request with its token, its pacing and its retries, and what
the answer means.

- Success is ``code`` 200 or 0 inside an HTTP 200. Business errors also come with HTTP 200: body
  ``code`` 429 and 5xx are transient, a code the caller accepts (404 on ``/v1/company/info``) is
  handed back, every other code is permanent (``OkkiBusinessError``).
- Throttling is undocumented, so HTTP 429 (Retry-After as a floor), HTTP 5xx, timeouts, resets and
  a non-JSON page are all retried with backoff; every request passes the pacer, fixed or adaptive
  (ratecontrol.py), and tells it whether its answer was clean or a throttle (HTTP 429, ``code``
  429, HTTP or ``code`` 503). A transient answer whose ``Retry-After`` lies past the retry budget
  (a daily quota) stops every call at once with ``OkkiQuotaExhausted``. A body that is JSON but
  cannot be used (nested too deep, not UTF-8: okki_api.read_json) is the same on every try:
  ``OkkiUnusableReply``, not retried.
- A refused token is renewed and the request repeated (okki_auth.py); a missing scope stops the
  call with a message naming it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx

from okki_assets.clients.http import CallStats, RetrySettings, call_with_retries, parse_retry_after
from okki_assets.clients.okki_api import (
    NOT_JSON,
    SUCCESS_CODES,
    UnusableBody,
    coerce_int,
    is_scope_refusal,
    read_json,
    server_text,
    unreachable_hint,
)
from okki_assets.clients.okki_auth import AccessDenied, OkkiAuth, refuses_token
from okki_assets.clients.ratecontrol import Grant, Pacer
from okki_assets.errors import (
    OkkiAuthError,
    OkkiBusinessError,
    OkkiPermanentError,
    OkkiQuotaExhausted,
    OkkiRetriesExhausted,
    OkkiTransientError,
    OkkiUnusableReply,
)
from okki_assets.okki_time import CHINA_TZ, format_okki_time

log = logging.getLogger(__name__)

#: Transient causes that are throttles (they cut the adaptive rate); so is any status or code 503.
THROTTLE_CAUSES = frozenset({"http429", "body429"})


class OkkiCaller:
    """Makes the client's business calls. Thread-safe: calls share the token, the pacer, the
    connection pool and ``stats``; once OKKI asks for a wait past the retry budget, every call
    stops with the same ``OkkiQuotaExhausted``."""

    def __init__(
        self,
        http: httpx.Client,
        auth: OkkiAuth,
        pacer: Pacer,
        stats: CallStats,
        *,
        retry: RetrySettings,
        sleep: Callable[[float], None],
        pace_clock: Callable[[], float],
        wall_clock: Callable[[], float],
    ) -> None:
        self._http = http
        self._auth = auth
        self._pacer = pacer
        self._stats = stats
        self._retry = retry
        self._sleep = sleep
        self._pace_clock = pace_clock
        self._wall_clock = wall_clock
        self._stopped: OkkiQuotaExhausted | None = None  # set once OKKI asked for a long wait

    def call(
        self,
        endpoint: str,
        path: str,
        params: dict[str, Any],
        accept_codes: frozenset[int] = frozenset(),
        check: Callable[[dict[str, Any]], object] | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """GET ``path`` with retries; (body code, body) of a success or of an accepted code.
        ``check(body)`` may raise OkkiTransientError for an answer to retry."""
        renewals = 0  # over the whole call, retries included

        def attempt() -> tuple[int, dict[str, Any]]:
            nonlocal renewals
            while True:
                token = self._auth.tokens.get()
                try:
                    answer = self._request_once(endpoint, path, params, token, accept_codes)
                except AccessDenied as denied:
                    self._auth.renew_refused(token, denied, renewals, path, params)
                    renewals += 1
                else:
                    self._auth.tokens.served(token)
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
            stats=self._stats,
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
        grant = self._pacer.acquire()
        self._stats.add_throttled(grant.waited)
        self._stats.count_request(endpoint)
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
                f"transport error ({type(exc).__name__})"
                + unreachable_hint(exc, self._auth.base_url),
                cause="transport",
                endpoint=path,
                params=params,
            ) from exc
        try:
            answer = self._interpret(path, params, resp, accept_codes)
        except OkkiTransientError as exc:
            self._judge(exc, grant)
            raise
        self._pacer.report(grant, throttled=False)
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
            self._pacer.report(grant, throttled=True)

    def _interpret(
        self,
        path: str,
        params: dict[str, Any],
        resp: httpx.Response,
        accept_codes: frozenset[int],
    ) -> tuple[int, dict[str, Any]]:
        status = resp.status_code
        body = read_json(resp)
        said = server_text(body, self._auth.secrets())
        retry_after = parse_retry_after(resp.headers.get("Retry-After"))
        where: dict[str, Any] = {"endpoint": path, "params": params}
        if refuses_token(status, body):
            raise AccessDenied(status)
        if status == 429 or status >= 500:
            raise OkkiTransientError(
                f"HTTP {status}",
                cause="http429" if status == 429 else "http5xx",
                retry_after=retry_after,
                code=status,
                **where,
            )
        if is_scope_refusal(said):
            raise OkkiAuthError(
                f"the OKKI app has no permission for scope {self._auth.scope!r}: grant the scope "
                f"to the app or check the configured scope (server said: {said})",
                code=coerce_int(body.get("code")) if isinstance(body, dict) else status,
                **where,
            )
        if not 200 <= status < 300:
            raise OkkiPermanentError(
                f"HTTP {status}" + (f": {said}" if said else ""), code=status, **where
            )
        if body is NOT_JSON:
            raise OkkiTransientError(
                "the reply is not JSON", cause="invalid_json", retry_after=retry_after, **where
            )
        if isinstance(body, UnusableBody):
            raise OkkiUnusableReply(
                f"the reply cannot be used ({body.reason})", reason=body.reason, **where
            )
        if not isinstance(body, dict):
            raise OkkiPermanentError("the reply is JSON but not an object", **where)
        code = coerce_int(body.get("code"))
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
        shown = code if code is not None else self._auth.scrub(repr(body.get("code")))[:40]
        raise OkkiBusinessError(
            f"OKKI answered code {shown}" + (f": {said}" if said else ""), code=shown, **where
        )
