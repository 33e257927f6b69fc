"""The shared HTTP base of the OKKI and the target client: pacing, retries, timeouts, counters.

Neither remote documents a quota, so both clients pace themselves and back off on every
transient signal:

- ``RateLimiter``: a thread-safe token bucket (GCRA form) shared by every concurrent call of one
  client. Over any 1 s window the granted requests never exceed ``rate`` by more than ``burst``.
- ``RetrySettings`` + ``call_with_retries``: a tenacity loop with exponential backoff and jitter,
  bounded by an attempt cap and an overall time budget. A ``Retry-After`` value is a floor for
  the wait, never shortened by the backoff formula. Only the caller's transient error class is
  retried; everything else propagates at once.
- ``CallStats``: thread-safe counters (requests per endpoint, retries per cause, seconds spent
  waiting) flattened by ``as_metadata`` into Dagster-friendly metadata.
- ``Timeouts``: the httpx timeouts both clients take.

Clocks and sleep functions are injectable so tests never really wait.
"""

from __future__ import annotations

import email.utils
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Self, TypeVar

import httpx
import tenacity

from okki_assets.errors import ConfigError

log = logging.getLogger(__name__)

T = TypeVar("T")
Clock = Callable[[], float]
Sleep = Callable[[float], None]

#: Retry causes every ``CallStats`` reports, even at zero, so metadata keys stay stable.
KNOWN_CAUSES: tuple[str, ...] = (
    "http429",
    "body429",
    "http5xx",
    "body5xx",
    "timeout",
    "transport",
    "invalid_json",
    "token_renewed",
)


@dataclass(frozen=True)
class Timeouts:
    """Seconds for each httpx phase. OKKI's own server timeouts are 60 s, so ours stay below."""

    connect: float = 10.0
    read: float = 30.0
    write: float = 30.0
    pool: float = 30.0

    def to_httpx(self) -> httpx.Timeout:
        return httpx.Timeout(connect=self.connect, read=self.read, write=self.write, pool=self.pool)


def monotonic_for(clock: Clock) -> Clock:
    """The clock to pace and budget with: the monotonic clock in place of the default wall clock
    (a wall-clock jump must not stall the limiter), an injected test clock as it is."""
    return time.monotonic if clock is time.time else clock


class RateLimiter:
    """Token bucket in its GCRA form: one request every ``1/rate`` seconds, ``burst`` at once.

    ``acquire`` blocks until a request may start and returns the seconds it waited. The grant is
    decided under the lock against the clock at that moment (a thread that wakes late re-checks),
    so grants never run ahead of the rate however the threads are scheduled.
    """

    def __init__(
        self,
        rate: float | None,
        burst: float = 1.0,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
    ) -> None:
        if rate is not None and rate <= 0:
            raise ValueError(f"rate must be positive or None (unlimited), got {rate}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1, got {burst}")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._interval = 1.0 / rate if rate else 0.0
        self._tolerance = (burst - 1.0) * self._interval
        self._tat: float | None = None  # theoretical arrival time of the next request

    def set_rate(self, rate: float) -> None:
        """Change the rate from the next grant on (the adaptive pacer's controller moves it)."""
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        with self._lock:
            self.rate = rate
            self._interval = 1.0 / rate
            self._tolerance = (self.burst - 1.0) * self._interval

    def acquire(self) -> float:
        if self.rate is None:
            return 0.0
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                tat = now if self._tat is None else max(self._tat, now)
                wait = tat - self._tolerance - now
                if wait <= 0:
                    self._tat = tat + self._interval
                    return waited
            self._sleep(wait)
            waited += wait


@dataclass(frozen=True)
class RetrySettings:
    """Bounds of one call's retry loop: attempts, backoff shape and an overall time budget."""

    max_attempts: int = 8
    base_delay: float = 0.5
    max_delay: float = 30.0
    budget_seconds: float = 300.0
    jitter: bool = True

    def backoff(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based).

        Exponential (``base_delay * 2**(attempt-1)``, capped at ``max_delay``); with jitter a
        uniform draw from the upper half of that, so waits spread out but never collapse to 0.
        ``retry_after`` is a floor: the server asked for at least that long.
        """
        delay = min(self.max_delay, self.base_delay * 2.0 ** max(attempt - 1, 0))
        if self.jitter:
            delay = random.uniform(delay / 2, delay)  # noqa: S311 - jitter, not cryptography
        return max(delay, retry_after or 0.0)


def parse_retry_after(value: str | None, *, now: Clock = time.time) -> float | None:
    """A ``Retry-After`` header as seconds: delta-seconds or an HTTP date; None if absent/bad."""
    if value is None or not value.strip():
        return None
    try:
        return max(0.0, float(value.strip()))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now())


class CallStats:
    """Thread-safe counters of one client's traffic, for logs and asset metadata."""

    def __init__(self, endpoints: Iterable[str] = (), causes: Iterable[str] = KNOWN_CAUSES) -> None:
        self._lock = threading.Lock()
        self._requests: Counter[str] = Counter(dict.fromkeys(endpoints, 0))
        self._retries: Counter[str] = Counter(dict.fromkeys(causes, 0))
        self._seconds_throttled = 0.0
        self._seconds_backoff = 0.0
        self._info_not_found = 0

    def count_request(self, endpoint: str) -> None:
        with self._lock:
            self._requests[endpoint] += 1

    def count_retry(self, cause: str) -> None:
        with self._lock:
            self._retries[cause] += 1

    def add_throttled(self, seconds: float) -> None:
        if seconds > 0:
            with self._lock:
                self._seconds_throttled += seconds

    def add_backoff(self, seconds: float) -> None:
        if seconds > 0:
            with self._lock:
                self._seconds_backoff += seconds

    def count_info_not_found(self) -> None:
        with self._lock:
            self._info_not_found += 1

    @property
    def requests(self) -> dict[str, int]:
        with self._lock:
            return dict(self._requests)

    @property
    def retries(self) -> dict[str, int]:
        with self._lock:
            return dict(self._retries)

    @property
    def seconds_throttled(self) -> float:
        with self._lock:
            return self._seconds_throttled

    @property
    def seconds_backoff(self) -> float:
        with self._lock:
            return self._seconds_backoff

    @property
    def info_not_found(self) -> int:
        with self._lock:
            return self._info_not_found

    def as_metadata(self) -> dict[str, int | float]:
        """Flat ``{name: number}``: requests_total, requests_<endpoint>, retries_total,
        retries_<cause>, seconds_throttled, seconds_backoff, info_not_found_for_listed."""
        with self._lock:
            out: dict[str, int | float] = {"requests_total": sum(self._requests.values())}
            out.update({f"requests_{k}": v for k, v in sorted(self._requests.items())})
            out["retries_total"] = sum(self._retries.values())
            out.update({f"retries_{k}": v for k, v in sorted(self._retries.items())})
            out["seconds_throttled"] = round(self._seconds_throttled, 3)
            out["seconds_backoff"] = round(self._seconds_backoff, 3)
            out["info_not_found_for_listed"] = self._info_not_found
            return out


class _StopAfterBudget(tenacity.stop.stop_base):
    """Stop when the next attempt would start past the call's time budget (upcoming wait included),
    measured on the injected clock so tests with a fake sleep see the budget run out."""

    def __init__(self, budget: float, clock: Clock, start: float) -> None:
        self.budget = budget
        self.clock = clock
        self.start = start

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        return self.clock() - self.start + retry_state.upcoming_sleep > self.budget


class _BackoffWait(tenacity.wait.wait_base):
    """``RetrySettings.backoff`` with the failed attempt's ``retry_after`` as the floor."""

    def __init__(self, settings: RetrySettings) -> None:
        self.settings = settings

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        return self.settings.backoff(retry_state.attempt_number, retry_after)


def call_with_retries(
    fn: Callable[[], T],
    settings: RetrySettings,
    *,
    transient: type[BaseException],
    stats: CallStats,
    exhausted: Callable[[BaseException, int, float], BaseException],
    sleep: Sleep = time.sleep,
    clock: Clock = time.monotonic,
) -> T:
    """Run ``fn`` until it returns, retrying only ``transient`` errors.

    Each retry is counted in ``stats`` under the error's ``cause`` attribute and its wait under
    seconds_backoff. When the attempts or the budget run out, raises
    ``exhausted(last_error, attempts, elapsed_seconds)`` chained to the last error.
    """
    start = clock()

    def before_sleep(rs: tenacity.RetryCallState) -> None:
        exc = rs.outcome.exception() if rs.outcome else None
        cause = str(getattr(exc, "cause", "unknown"))
        stats.count_retry(cause)
        stats.add_backoff(rs.upcoming_sleep)
        log.debug(
            "attempt %d failed (%s); retrying in %.2fs", rs.attempt_number, exc, rs.upcoming_sleep
        )

    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(settings.max_attempts)
        | _StopAfterBudget(settings.budget_seconds, clock, start),
        wait=_BackoffWait(settings),
        retry=tenacity.retry_if_exception_type(transient),
        before_sleep=before_sleep,
        sleep=sleep,
        reraise=False,
    )
    try:
        return retrying(fn)
    except tenacity.RetryError as err:
        last = err.last_attempt.exception() or err
        raise exhausted(last, err.last_attempt.attempt_number, clock() - start) from last


class HttpClientBase:
    """Lifecycle shared by the clients: one ``httpx.Client`` in ``_http``, closed on exit."""

    _http: httpx.Client

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def shown_url(value: str) -> str:
    """``value`` fit to show: a password in it (``scheme://user:password@host``) becomes ***."""
    scheme, sep, rest = value.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in userinfo:
        return value
    return f"{scheme}://{userinfo.split(':', 1)[0]}:***@{host}"


def checked_url(name: str, value: str) -> str:
    """``value`` as an http(s) URL with a host, without a trailing slash."""
    try:
        url = httpx.URL(value)
    except Exception as e:  # httpx raises several types for malformed URLs
        raise ConfigError(f"{name} is not a valid URL: {shown_url(value)!r}") from e
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigError(f"{name} must be an http(s) URL with a host, got {shown_url(value)!r}")
    return str(url).rstrip("/")


def credential(name: str, value: str) -> str:
    """A credential as it is sent: surrounding whitespace stripped (a mounted secret's file often
    ends in a newline). One that still holds a character no HTTP header or form can carry as
    typed (a control or non-ASCII character) fails at once, naming the variable, never the
    value."""
    value = value.strip()
    if not all(" " <= ch <= "~" for ch in value):
        raise ConfigError(
            f"{name} contains a control or non-ASCII character: check how the secret is stored"
        )
    return value
