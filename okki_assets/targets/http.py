"""The HTTP batch target: the target port spoken over the batch API (docs/target-api.md), with
batch upserts made safe to resend.

Behaviour covered (the target's batch write API; docs/architecture.md, "Why re-runs are safe"):

- A key names one attempt to apply one batch, not the batch's content: ``write_batch`` takes an
  attempt id (a fresh one by default) and the ``Idempotency-Key`` is derived from it and the
  canonical body bytes. Every transient failure (429 with Retry-After as a floor, 5xx, timeout,
  reset, a non-JSON reply) resends the *same bytes with the same key*, so a batch whose reply was
  lost is never applied twice; a new attempt with the same bytes (a company deleted, restored and
  deleted again; a rejected record replayed) carries a new key and is applied, not answered from
  the target's idempotency store. The caller keeps the attempt id (with the ledger's claim) to
  resend an interrupted attempt.
- 413, a 400 saying the batch is too large, or more than ``max_batch`` records split the batch in
  halves, recursively; results are concatenated in record order.
- 401 stops with a clear error (never the token), 409 means the client reused a key with another
  body (a bug), any other 400 is permanent.
- A first request that cannot even connect stops at once (``TargetUnreachable``: a wrong
  TARGET_URL or no network); once the target has answered, connection failures are retried.
- The reply must carry one result per record, in request order.
- ``read_back`` pages ``GET /v1/companies?after=<id>&limit=<n>`` until ``next`` is null; a 404
  there means the target has no read-back (``TargetNotAuditable``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any
from urllib.parse import quote, urlencode

import httpx

from okki_assets.clients.http import (
    CallStats,
    HttpClientBase,
    RateLimiter,
    RetrySettings,
    Timeouts,
    call_with_retries,
    parse_retry_after,
)
from okki_assets.clients.masking import mask_secrets
from okki_assets.errors import (
    TargetAuthError,
    TargetBatchTooLarge,
    TargetNotAuditable,
    TargetPermanentError,
    TargetRetriesExhausted,
    TargetTransientError,
    TargetUnreachable,
)
from okki_assets.mapping import content_hash
from okki_assets.targets.port import RecordResult, RecordVersion, TargetRow, TargetSettings

__all__ = ["RecordResult", "TargetClient", "canonical_body", "new_attempt"]

log = logging.getLogger(__name__)

BATCH_PATH = "/v1/companies/batch"
RECORD_PATH = "/v1/companies/{id}"
LIST_PATH = "/v1/companies"
#: Records per read-back page (the contract's largest).
READ_BACK_PAGE = 1000
#: Words in a 400 message that mean "split me" rather than "I am malformed".
TOO_LARGE_HINTS = ("too large", "too many", "max_batch", "exceeds")
TARGET_CAUSES = ("http429", "http5xx", "body429", "body5xx", "timeout", "transport", "invalid_json")
_MAX_SERVER_TEXT = 200


def canonical_body(records: list[dict[str, Any]]) -> bytes:
    """The batch body as canonical UTF-8 JSON: the same records always give the same bytes."""
    return json.dumps(
        {"records": records}, sort_keys=True, ensure_ascii=False, separators=(",", ":")
    ).encode("utf-8")


def new_attempt() -> str:
    """A fresh attempt id: every new attempt to apply a batch gets its own Idempotency-Key."""
    return uuid.uuid4().hex


class TargetClient(HttpClientBase):
    """Writes batches to, and reads records back from, the target platform. Thread-safe."""

    kind = "http"

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        max_batch: int = TargetSettings.batch_size,
        rate_limit: float | None = None,
        timeouts: Timeouts = Timeouts(),  # noqa: B008 - frozen dataclass, safe as a default
        retry: RetrySettings = RetrySettings(),  # noqa: B008 - frozen dataclass
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.base_url = base_url
        self.max_batch = max_batch
        self.stats = CallStats(endpoints=("batch", "get"), causes=TARGET_CAUSES)
        self._token = token
        self._retry = retry
        self._sleep = sleep
        self._clock = clock
        self._limiter = RateLimiter(rate_limit, clock=clock, sleep=sleep)
        self._contacted = False  # any answer yet (a first connection refused is not retried)
        self._http = httpx.Client(
            base_url=base_url,
            timeout=timeouts.to_httpx(),
            transport=transport,
            headers={"Accept": "application/json", "User-Agent": "okki-assets"},
        )

    @staticmethod
    def idempotency_key(attempt: str, body: bytes) -> str:
        """``okki-`` + SHA-256 of the attempt id and the exact body bytes (69 characters): the
        same attempt resending the same bytes has the same key, anything else a new one (so the
        halves of a split batch, or a resend whose batch changed, never meet a 409)."""
        return "okki-" + hashlib.sha256(attempt.encode("utf-8") + b"\n" + body).hexdigest()

    def check(self) -> None:
        """Nothing to call: the URL and token were checked when the client was built, and the
        first batch tells an unreachable target (``TargetUnreachable``) before anything else."""
        return None

    # -- writes ----------------------------------------------------------------------------------

    def write_batch(
        self,
        records: list[dict[str, Any]],
        attempt: str | None = None,
        versions: Sequence[RecordVersion] | None = None,
    ) -> list[RecordResult]:
        """Upsert ``records``; one result per record, in order. Splits oversized batches.

        ``attempt`` names this attempt to apply them (default: a new one); pass the id of an
        interrupted attempt only to resend that attempt. ``versions`` are not used: the batch
        API has no version guard (the ledger and the load lock keep older versions out)."""
        records = list(records)
        if not records:
            return []
        attempt = attempt or new_attempt()
        if len(records) > self.max_batch:
            why = f"{len(records)} records > max_batch={self.max_batch}"
            return self._split(records, why, attempt)
        body = canonical_body(records)
        key = self.idempotency_key(attempt, body)
        try:
            reply = self._request(
                "batch",
                "POST",
                BATCH_PATH,
                content=body,
                headers={"Content-Type": "application/json", "Idempotency-Key": key},
            )
        except TargetBatchTooLarge as exc:
            if len(records) == 1:
                raise TargetPermanentError(
                    "the target refuses even a single record as too large "
                    f"(id={records[0].get('id')!r})",
                    status=exc.status,
                    endpoint=BATCH_PATH,
                ) from exc
            return self._split(records, f"the target said too large (HTTP {exc.status})", attempt)
        results = self._results(records, reply)
        log.debug("batch of %d records written (key %s)", len(records), key)
        return results

    def _split(self, records: list[dict[str, Any]], why: str, attempt: str) -> list[RecordResult]:
        half = len(records) // 2
        log.info("splitting a batch of %d records in halves: %s", len(records), why)
        return self.write_batch(records[:half], attempt) + self.write_batch(records[half:], attempt)

    @staticmethod
    def _results(records: list[dict[str, Any]], reply: Any) -> list[RecordResult]:
        results = reply.get("results") if isinstance(reply, dict) else None
        if not isinstance(results, list) or len(results) != len(records):
            got = len(results) if isinstance(results, list) else "no"
            raise TargetPermanentError(
                f"the target answered {got} results for {len(records)} records",
                endpoint=BATCH_PATH,
            )
        out: list[RecordResult] = []
        for i, (record, result) in enumerate(zip(records, results, strict=True)):
            if not isinstance(result, dict) or str(result.get("id")) != str(record.get("id")):
                raise TargetPermanentError(
                    f"result {i} does not answer record id={record.get('id')!r} "
                    "(results must follow the request order)",
                    endpoint=BATCH_PATH,
                )
            error = result.get("error")
            out.append(
                RecordResult(
                    id=str(result["id"]),
                    status=str(result.get("status")),
                    error=None if error in (None, "") else str(error),
                )
            )
        return out

    # -- reads -----------------------------------------------------------------------------------

    def get(self, record_id: str) -> dict[str, Any] | None:
        """The stored record, or None when the target answers 404."""
        reply = self._request("get", "GET", RECORD_PATH.format(id=quote(record_id, safe="")))
        if reply is not None and not isinstance(reply, dict):
            raise TargetPermanentError(
                "the record reply is not a JSON object", endpoint=RECORD_PATH, status=200
            )
        return reply

    def read_back(self) -> Iterator[TargetRow]:
        """Every stored record, paged by id (deleted records are absent at this target)."""
        after: str | None = None
        while True:
            params = {"limit": str(READ_BACK_PAGE)} | ({"after": after} if after else {})
            reply = self._request("list", "GET", f"{LIST_PATH}?{urlencode(params)}")
            if reply is None:
                raise TargetNotAuditable(
                    "the target has no read-back (GET /v1/companies answered 404)",
                    endpoint=LIST_PATH,
                    status=404,
                )
            records = reply.get("records") if isinstance(reply, dict) else None
            if not isinstance(records, list):
                raise TargetPermanentError(
                    "the read-back reply has no records list", endpoint=LIST_PATH, status=200
                )
            for record in records:
                if isinstance(record, dict) and "id" in record:
                    yield TargetRow(str(record["id"]), record, content_hash(record), deleted=False)
            nxt = reply.get("next")
            if nxt in (None, "") or not records:
                return
            after = str(nxt)

    # -- one request with retries ----------------------------------------------------------------

    def _request(
        self,
        endpoint: str,
        method: str,
        path: str,
        *,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """Send (and resend, unchanged) one request; the parsed JSON reply, None for a 404 on
        a GET."""
        all_headers = {"Authorization": f"Bearer {self._token}", **(headers or {})}

        def attempt() -> Any:
            self.stats.add_throttled(self._limiter.acquire())
            self.stats.count_request(endpoint)
            try:
                resp = self._http.request(method, path, content=content, headers=all_headers)
            except httpx.TimeoutException as exc:
                raise TargetTransientError(
                    f"request timed out ({type(exc).__name__})", cause="timeout", endpoint=path
                ) from exc
            except (httpx.TransportError, httpx.DecodingError) as exc:
                unreachable = (
                    f": cannot connect to {self.base_url}, check TARGET_URL and the network"
                    if isinstance(exc, httpx.ConnectError)
                    else ""
                )
                if unreachable and not self._contacted:
                    raise TargetUnreachable(
                        f"never reached the target ({type(exc).__name__}){unreachable}",
                        endpoint=path,
                    ) from exc
                raise TargetTransientError(
                    f"transport error ({type(exc).__name__}){unreachable}",
                    cause="transport",
                    endpoint=path,
                ) from exc
            self._contacted = True
            return self._interpret(method, path, resp)

        def exhausted(last: BaseException, attempts: int, elapsed: float) -> BaseException:
            cause = getattr(last, "cause", type(last).__name__)
            said = str(last).split(" | ")[0]
            return TargetRetriesExhausted(
                f"gave up after {attempts} attempts in {elapsed:.1f}s; last cause: {cause}"
                f" ({said})",
                status=getattr(last, "status", None),
                endpoint=path,
            )

        return call_with_retries(
            attempt,
            self._retry,
            transient=TargetTransientError,
            stats=self.stats,
            exhausted=exhausted,
            sleep=self._sleep,
            clock=self._clock,
        )

    def _server_text(self, body: Any) -> str:
        text = str(body.get("message") or "") if isinstance(body, dict) else ""
        return mask_secrets(text, (self._token,), limit=_MAX_SERVER_TEXT)

    def _interpret(self, method: str, path: str, resp: httpx.Response) -> Any:
        status = resp.status_code
        try:
            body: Any = resp.json()
        except (ValueError, UnicodeDecodeError):
            body = None
            parsed = False
        else:
            parsed = True
        said = self._server_text(body)
        where: dict[str, Any] = {"status": status, "endpoint": path}
        if status == 401:
            raise TargetAuthError(
                "the target refused the token (HTTP 401): check TARGET_TOKEN",
                **where,
            )
        if status == 409:
            raise TargetPermanentError(
                "the target refused a reused Idempotency-Key with another body: "
                f"a bug in the client ({said})",
                **where,
            )
        if status == 413 or (status == 400 and any(h in said.lower() for h in TOO_LARGE_HINTS)):
            raise TargetBatchTooLarge(f"batch too large ({said})", **where)
        if status == 404 and method == "GET":
            return None
        if status == 429 or status >= 500:
            raise TargetTransientError(
                f"HTTP {status}",
                cause="http429" if status == 429 else "http5xx",
                retry_after=parse_retry_after(resp.headers.get("Retry-After")),
                **where,
            )
        if not 200 <= status < 300:
            raise TargetPermanentError(f"HTTP {status}" + (f": {said}" if said else ""), **where)
        if not parsed:
            raise TargetTransientError("the reply is not JSON", cause="invalid_json", **where)
        if method == "GET":  # a stored record is returned as is (it may have its own "code")
            return body
        code = body.get("code") if isinstance(body, dict) else None
        if code in (None, 0, 200, "0", "200"):
            return body
        if code in (429, "429"):
            raise TargetTransientError(
                f"body code {code}",
                cause="body429",
                retry_after=parse_retry_after(resp.headers.get("Retry-After")),
                **where,
            )
        if str(code).isdigit() and 500 <= int(str(code)) < 600:
            raise TargetTransientError(f"body code {code}", cause="body5xx", **where)
        raise TargetPermanentError(f"body code {code!r}" + (f": {said}" if said else ""), **where)
