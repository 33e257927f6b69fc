"""The target platform simulator: the batch-upsert write API the target client speaks.

What it reproduces, so the loader's retry and idempotency logic can be proved against it:

- ``POST /v1/companies/batch`` upserts records by ``id`` and answers one result per record, in
  request order: ``created``, ``updated`` (a known id with another body, replaced whole),
  ``unchanged`` (a known id with an identical body), ``deleted`` (``{"id": ..., "deleted": true}``)
  or ``rejected`` (the configurable ``reject_rule``; the rest of the batch is still applied).
- The ``Idempotency-Key`` header is required. The same key with the same body within 24 hours
  (by the injectable ``clock``) returns the first reply again and applies nothing (a *replay*);
  the same key with another body is a 409. Bodies are compared by a hash of their canonical JSON
  (sorted keys, compact separators), so a client that re-serialises the same batch still replays.
- Faults, drawn from a seeded RNG: ``throttle_rate`` answers 429 (``Retry-After`` in seconds,
  possibly fractional, unless ``retry_after`` is None), ``error_rate`` answers 500, 502 (an HTML
  page, as from a proxy) or 503; neither applies nor stores anything. ``drop_reply_rate`` commits
  the batch, stores the reply under the key and then loses the reply (``fault="reset"``): the
  client sees a transport error, resends with the same key and gets the replay.
- ``GET /v1/companies/{id}`` reads a stored record back (200 or 404); ``GET /v1/_stats`` and
  ``POST /v1/_reset`` (no auth) expose and clear the counters.
- ``GET /v1/companies?after=<id>&limit=<n>`` pages through the stored records by id compared as
  text (``limit`` capped at 1000): ``{"records": [...], "next": <last id> | null}``; deleted
  records are absent. ``read_back=False`` answers 404 there (a target without a read-back).

Choices the spec leaves open, fixed here:

- Checks run in this order: 401 (token), 413 (body size), 400 (Idempotency-Key), the 429 and 5xx
  faults, 400 (Content-Type, malformed JSON), the idempotency store (replay or 409), 400 (batch
  over ``max_batch``, a record without a string ``id``, duplicate ids), then the writes. Only a
  200 reply is stored under a key: a 4xx or 5xx may be retried with the same key.
- A 400 for a batch over ``max_batch`` says ``max_batch`` in its message and carries a
  ``"max_batch"`` field, so a client can tell it from other 400s and split the batch.
- Deleting an unknown id answers ``unchanged`` and is not counted as an applied write, so a
  resent delete never shows up as applied twice. ``reject_rule`` sees upserts only, never deletes;
  ``reject_delete_rule`` refuses deletes the same way (a target that protects some records).
- ``GET /v1/companies/{id}`` needs the bearer token and answers the record itself (no envelope).
- ``_stats``: ``batches_received`` counts every POST to the batch endpoint; ``records_applied``
  counts, per id, the creates, updates and deletes actually applied; ``status_counts`` counts the
  per-record results of the batches processed (replays excluded); ``http_status_counts`` counts
  the HTTP statuses of the batch answers (a dropped reply counts under its 200).
- ``POST /v1/_reset`` clears records, stats, history and the idempotency store, and re-seeds
  the RNG so a run after a reset draws the same faults as a fresh simulator.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from okki_assets.simulator.http import SimRequest, SimResponse

log = logging.getLogger(__name__)

BATCH_PATH = "/v1/companies/batch"
RECORD_PREFIX = "/v1/companies/"
LIST_PATH = "/v1/companies"
MAX_LIST_LIMIT = 1000
STATS_PATH = "/v1/_stats"
RESET_PATH = "/v1/_reset"

IDEMPOTENCY_TTL_SECONDS = 24 * 3600
MAX_KEY_LENGTH = 128
RESULT_STATUSES = ("created", "updated", "unchanged", "deleted", "rejected")
APPLIED_STATUSES = frozenset({"created", "updated", "deleted"})
SERVER_ERRORS = (500, 502, 503)


@dataclass
class TargetSimConfig:
    """Knobs of the target simulator; read at every request, so a test may change them live."""

    token: str = "demo-target-token"
    max_batch: int = 500
    max_body_bytes: int = 5_000_000  # a larger body -> 413
    latency: float = 0.0  # seconds added to every answer (SimResponse.delay)
    throttle_rate: float = 0.0  # fraction of batch POSTs answered 429
    retry_after: float | None = 1.0  # Retry-After on a 429; None sends none
    error_rate: float = 0.0  # fraction answered 500/502/503, nothing applied
    drop_reply_rate: float = 0.0  # fraction committed, then the reply lost (fault="reset")
    reject_rule: Callable[[dict[str, Any]], str | None] | None = None  # error text -> rejected
    reject_delete_rule: Callable[[dict[str, Any]], str | None] | None = None  # same, for deletes
    seed: int = 11
    read_back: bool = True  # False: GET /v1/companies answers 404 (no read-back)


@dataclass(frozen=True)
class _StoredReply:
    """A 200 reply kept under an Idempotency-Key, with the fingerprint of its request body."""

    fingerprint: str
    stored_at: float
    status: int
    body: bytes
    headers: dict[str, str]


class _BadRequest(Exception):
    """A 400 raised while reading a batch; ``extra`` goes into the JSON body."""

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra


def _error(status: int, message: str, **extra: Any) -> SimResponse:
    return SimResponse.json({"code": status, "message": message, **extra}, status=status)


def _fingerprint(payload: Any) -> str:
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _format_seconds(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"


class TargetSimulator:
    """The target's write API as a ``Handler``; thread-safe (one lock around each request).

    ``clock`` (seconds, monotonic by default) times the 24 h idempotency window; tests pass a
    fake one to step past it.
    """

    def __init__(
        self,
        config: TargetSimConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config or TargetSimConfig()
        self._clock = clock
        self._lock = threading.Lock()
        self._clear()

    # ------------------------------------------------------------------ Python-side helpers

    @property
    def records(self) -> dict[str, dict[str, Any]]:
        """The stored records by id (a deep copy)."""
        with self._lock:
            return copy.deepcopy(self._records)

    @property
    def history(self) -> list[tuple[str, str]]:
        """Every applied write as ``(id, status)`` in order; status is created/updated/deleted."""
        with self._lock:
            return list(self._history)

    @property
    def writes(self) -> list[tuple[str, str, str]]:
        """Every per-record result the batches produced, replays excluded, in order, as
        ``(id, status, fingerprint of the record sent)``: lets a test tell a version applied
        twice (the same fingerprint applied again) from a new version."""
        with self._lock:
            return list(self._writes)

    def stats(self) -> dict[str, Any]:
        """The counters served by ``GET /v1/_stats`` (a copy)."""
        with self._lock:
            return self._stats_snapshot()

    def edit_by_hand(self, record_id: str, record: dict[str, Any] | None) -> None:
        """Replace (or, with None, remove) a stored record outside the API, as a person editing
        the target would: no history, no stats."""
        with self._lock:
            if record is None:
                self._records.pop(record_id, None)
            else:
                self._records[record_id] = copy.deepcopy(record)

    def reset(self) -> None:
        """What ``POST /v1/_reset`` does: clear records, stats, history and idempotency store."""
        with self._lock:
            self._clear()

    # ------------------------------------------------------------------ Handler

    def handle(self, request: SimRequest) -> SimResponse:
        with self._lock:
            response = self._route(request)
        response.delay = max(response.delay, self.config.latency)
        return response

    def _route(self, request: SimRequest) -> SimResponse:
        method, path = request.method.upper(), request.path
        if path == BATCH_PATH:
            if method != "POST":
                return _error(405, "method not allowed")
            self._batches_received += 1
            response = self._batch(request)
            key = str(response.status)
            self._http_status_counts[key] = self._http_status_counts.get(key, 0) + 1
            return response
        if path == STATS_PATH and method == "GET":
            return SimResponse.json(self._stats_snapshot())
        if path == RESET_PATH and method == "POST":
            self._clear()
            return SimResponse.json({"code": 0, "message": "reset"})
        if path == LIST_PATH and method == "GET":
            return self._list(request)
        if path.startswith(RECORD_PREFIX) and len(path) > len(RECORD_PREFIX):
            if method != "GET":
                return _error(405, "method not allowed")
            if not self._authorized(request):
                return _error(401, "missing or invalid bearer token")
            record = self._records.get(path[len(RECORD_PREFIX) :])
            if record is None:
                return _error(404, "no such company")
            return SimResponse.json(record)
        return _error(404, f"no route for {method} {path}")

    def _list(self, request: SimRequest) -> SimResponse:
        if not self._authorized(request):
            return _error(401, "missing or invalid bearer token")
        if not self.config.read_back:
            return _error(404, "no route for GET /v1/companies")
        try:
            limit = min(max(int(request.query.get("limit", "100")), 1), MAX_LIST_LIMIT)
        except ValueError:
            return _error(400, "limit must be a whole number")
        after = request.query.get("after", "")
        ids = sorted(i for i in self._records if i > after)
        page = ids[:limit]
        more = len(ids) > limit
        return SimResponse.json(
            {
                "records": [copy.deepcopy(self._records[i]) for i in page],
                "next": page[-1] if more else None,
            }
        )

    # ------------------------------------------------------------------ the batch endpoint

    def _batch(self, request: SimRequest) -> SimResponse:
        cfg = self.config
        if not self._authorized(request):
            return _error(401, "missing or invalid bearer token")
        if len(request.body) > cfg.max_body_bytes:
            return _error(
                413, f"body of {len(request.body)} bytes is over the limit of {cfg.max_body_bytes}"
            )
        key = request.headers.get("idempotency-key", "")
        if not key:
            return _error(400, "Idempotency-Key header is required")
        if len(key) > MAX_KEY_LENGTH:
            return _error(400, f"Idempotency-Key is longer than {MAX_KEY_LENGTH} characters")

        if self._rng.random() < cfg.throttle_rate:
            self._throttled += 1
            headers = (
                {} if cfg.retry_after is None else {"retry-after": _format_seconds(cfg.retry_after)}
            )
            return SimResponse.json(
                {"code": 429, "message": "too many requests"}, status=429, headers=headers
            )
        if self._rng.random() < cfg.error_rate:
            self._errors += 1
            status = self._rng.choice(SERVER_ERRORS)
            if status == 502:
                return SimResponse.text("<html><body><h1>502 Bad Gateway</h1></body></html>", 502)
            return _error(status, "internal error" if status == 500 else "service unavailable")

        try:
            payload = self._parse(request)
            now = self._clock()
            fingerprint = _fingerprint(payload)
            stored = self._idempotency.get(key)
            if stored is not None and now - stored.stored_at >= IDEMPOTENCY_TTL_SECONDS:
                del self._idempotency[key]
                stored = None
            if stored is not None:
                if stored.fingerprint != fingerprint:
                    return _error(409, "idempotency key reused with another body")
                self._replays += 1
                log.debug("batch replayed from the idempotency store")
                return SimResponse(stored.status, stored.body, dict(stored.headers))
            records = self._validate(payload)
        except _BadRequest as exc:
            return _error(400, exc.message, **exc.extra)

        results = [self._apply(record) for record in records]
        response = SimResponse.json({"code": 0, "results": results})
        self._idempotency[key] = _StoredReply(
            fingerprint, now, response.status, response.body, dict(response.headers)
        )
        log.debug("batch of %d records applied", len(records))
        if self._rng.random() < cfg.drop_reply_rate:
            self._dropped_replies += 1
            response.fault = "reset"
        return response

    def _authorized(self, request: SimRequest) -> bool:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            token.strip().encode("utf-8"), self.config.token.encode("utf-8")
        )

    @staticmethod
    def _parse(request: SimRequest) -> Any:
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type != "application/json":
            raise _BadRequest("Content-Type must be application/json")
        try:
            return request.json()
        except (UnicodeDecodeError, ValueError) as exc:
            raise _BadRequest(f"malformed JSON body: {exc}") from None

    def _validate(self, payload: Any) -> list[dict[str, Any]]:
        if not isinstance(payload, dict) or not isinstance(payload.get("records"), list):
            raise _BadRequest('body must be an object {"records": [...]}')
        records: list[Any] = payload["records"]
        max_batch = self.config.max_batch
        if len(records) > max_batch:
            raise _BadRequest(
                f"batch of {len(records)} records is over max_batch {max_batch}",
                max_batch=max_batch,
            )
        seen: set[str] = set()
        for index, record in enumerate(records):
            record_id = record.get("id") if isinstance(record, dict) else None
            if not isinstance(record_id, str) or not record_id:
                raise _BadRequest(f"record {index} has no string id")
            if record_id in seen:
                raise _BadRequest(f"id {record_id!r} appears more than once in the batch")
            seen.add(record_id)
        return records

    def _apply(self, record: dict[str, Any]) -> dict[str, str]:
        record_id = record["id"]
        known = self._records.get(record_id)
        error: str | None = None
        if record.get("deleted") is True:
            rule = self.config.reject_delete_rule
            error = rule(copy.deepcopy(record)) if rule is not None else None
            if error is not None:
                status = "rejected"
            else:
                status = "unchanged" if known is None else "deleted"
                self._records.pop(record_id, None)
        else:
            rule = self.config.reject_rule
            error = rule(copy.deepcopy(record)) if rule is not None else None
            if error is not None:
                status = "rejected"
            elif known is None:
                status = "created"
            elif known == record:
                status = "unchanged"
            else:
                status = "updated"
            if status in APPLIED_STATUSES:
                self._records[record_id] = copy.deepcopy(record)
        if status in APPLIED_STATUSES:
            self._applied[record_id] = self._applied.get(record_id, 0) + 1
            self._history.append((record_id, status))
        self._status_counts[status] += 1
        self._writes.append((record_id, status, _fingerprint(record)))
        result = {"id": record_id, "status": status}
        if error is not None:
            result["error"] = error
        return result

    # ------------------------------------------------------------------ state

    def _clear(self) -> None:
        self._rng = random.Random(self.config.seed)
        self._records: dict[str, dict[str, Any]] = {}
        self._idempotency: dict[str, _StoredReply] = {}
        self._history: list[tuple[str, str]] = []
        self._writes: list[tuple[str, str, str]] = []
        self._applied: dict[str, int] = {}
        self._status_counts: dict[str, int] = dict.fromkeys(RESULT_STATUSES, 0)
        self._http_status_counts: dict[str, int] = {}
        self._batches_received = 0
        self._replays = 0
        self._throttled = 0
        self._errors = 0
        self._dropped_replies = 0

    def _stats_snapshot(self) -> dict[str, Any]:
        return {
            "batches_received": self._batches_received,
            "records_applied": dict(self._applied),
            "replays": self._replays,
            "throttled": self._throttled,
            "errors": self._errors,
            "dropped_replies": self._dropped_replies,
            "status_counts": dict(self._status_counts),
            "http_status_counts": dict(self._http_status_counts),
        }
