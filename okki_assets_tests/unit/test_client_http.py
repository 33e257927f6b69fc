"""Pacing and retries shared by both clients: the token bucket never lets the granted request
rate exceed the configured rate (plus the burst) over any 1 s window, single- or multi-threaded;
backoff is exponential with jitter and a Retry-After floor; the tenacity loop retries only the
transient class, stops at the attempt cap or the time budget, and counts what it did."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from okki_assets.clients.http import (
    KNOWN_CAUSES,
    CallStats,
    RateLimiter,
    RetrySettings,
    call_with_retries,
    parse_retry_after,
)
from okki_assets_tests.factories import FakeClock


def max_in_window(times: list[float], width: float = 1.0) -> int:
    """The most grants inside any closed window [t, t + width] that starts at a grant."""
    times = sorted(times)
    return max(sum(1 for u in times if t <= u <= t + width + 1e-9) for t in times)


@pytest.mark.parametrize(
    ("rate", "burst"),
    [
        (4.0, 1.0),  # strict pacing, interval 0.25 s
        (8.0, 1.0),  # faster strict pacing
        (4.0, 3.0),  # a burst of three, then the rate
        (0.5, 1.0),  # slower than one a second
    ],
)
def test_fake_clock_grants_never_exceed_rate_plus_burst(rate: float, burst: float) -> None:
    clock = FakeClock(start=100.0)
    limiter = RateLimiter(rate, burst, clock=clock, sleep=clock.sleep)
    grants = []
    for _ in range(60):
        limiter.acquire()
        grants.append(clock())
    assert max_in_window(grants) <= rate + burst
    # Over the whole run the average rate is the configured one (the bucket does not under-serve).
    span = grants[-1] - grants[0]
    assert span == pytest.approx((60 - burst) / rate)
    # Everything waited was really slept, and reported by acquire.
    assert sum(clock.sleeps) == pytest.approx(span)


def test_acquire_returns_the_seconds_waited() -> None:
    clock = FakeClock(start=0.0)
    limiter = RateLimiter(2.0, clock=clock, sleep=clock.sleep)
    waits = [limiter.acquire() for _ in range(4)]
    assert waits == pytest.approx([0.0, 0.5, 0.5, 0.5])


def test_idle_time_does_not_bank_more_than_the_burst() -> None:
    clock = FakeClock(start=0.0)
    limiter = RateLimiter(4.0, 2.0, clock=clock, sleep=clock.sleep)
    limiter.acquire()
    clock.advance(60.0)  # a long pause must not allow 240 requests at once
    grants = []
    for _ in range(10):
        limiter.acquire()
        grants.append(clock())
    assert max_in_window(grants) <= 4 + 2
    assert grants[:2] == [60.0, 60.0]  # the burst of two is available again
    assert grants[2] == pytest.approx(60.25)


def test_unlimited_rate_never_sleeps() -> None:
    clock = FakeClock()
    limiter = RateLimiter(None, clock=clock, sleep=clock.sleep)
    assert [limiter.acquire() for _ in range(1000)] == [0.0] * 1000
    assert clock.sleeps == []


@pytest.mark.parametrize(
    ("rate", "burst"),
    [
        (0.0, 1.0),  # zero rate would block forever
        (-1.0, 1.0),  # negative rate
        (5.0, 0.5),  # a burst below one request
    ],
)
def test_invalid_settings_are_refused(rate: float, burst: float) -> None:
    with pytest.raises(ValueError):
        RateLimiter(rate, burst)


def test_threads_sharing_a_limiter_never_exceed_the_rate() -> None:
    """Eight threads, real clock: the grant instants (the clock reading under the lock that
    granted) never put more than rate * w + burst requests in any window of w seconds (w = 0.1 s
    here, so the test stays short yet spans several windows)."""
    rate, per_thread, threads, width = 100.0, 6, 8, 0.1
    local = threading.local()

    def clock() -> float:
        local.last = time.monotonic()
        return local.last

    limiter = RateLimiter(rate, clock=clock)
    grants: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(per_thread):
            limiter.acquire()
            with lock:
                grants.append(local.last)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert len(grants) == per_thread * threads
    assert max_in_window(grants, width) <= rate * width + 1
    # The 48 grants at 100/s take at least (48 - 1) / 100 s.
    assert max(grants) - min(grants) >= (per_thread * threads - 1) / rate - 1e-6


def test_backoff_grows_exponentially_up_to_the_cap() -> None:
    settings = RetrySettings(base_delay=0.5, max_delay=4.0, jitter=False)
    assert [settings.backoff(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_jitter_stays_in_the_upper_half_of_the_step() -> None:
    settings = RetrySettings(base_delay=1.0, max_delay=30.0, jitter=True)
    draws = [settings.backoff(3) for _ in range(200)]
    assert all(2.0 <= d <= 4.0 for d in draws)
    assert len(set(draws)) > 1  # it really varies


def test_retry_after_is_a_floor_even_past_the_cap() -> None:
    settings = RetrySettings(base_delay=0.5, max_delay=30.0, jitter=True)
    assert settings.backoff(1, retry_after=45.0) == 45.0
    assert settings.backoff(1, retry_after=0.1) >= 0.25  # a short Retry-After does not shorten


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("7", 7.0),  # delta-seconds
        (" 1.5 ", 1.5),  # fractional, padded
        ("-3", 0.0),  # negative clamps to zero
        ("soon", None),  # garbage is ignored
        ("", None),  # empty header
        (None, None),  # no header
    ],
)
def test_parse_retry_after_seconds(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header) == expected


def test_parse_retry_after_http_date() -> None:
    when = datetime(2025, 3, 7, 5, 52, 59, tzinfo=UTC)
    now = datetime(2025, 3, 7, 5, 52, 49, tzinfo=UTC).timestamp()
    assert parse_retry_after(format_datetime(when, usegmt=True), now=lambda: now) == 10.0


class Flaky(Exception):
    def __init__(self, cause: str, retry_after: float | None = None) -> None:
        super().__init__(cause)
        self.cause = cause
        self.retry_after = retry_after


class Exhausted(Exception):
    pass


def run(fn: Callable[[], str], settings: RetrySettings, clock: FakeClock, stats: CallStats) -> str:
    return call_with_retries(
        fn,
        settings,
        transient=Flaky,
        stats=stats,
        exhausted=lambda last, n, secs: Exhausted(f"{n} attempts, {secs:.0f}s, last {last}"),
        sleep=clock.sleep,
        clock=clock,
    )


def test_transient_failures_are_retried_and_counted() -> None:
    clock, stats = FakeClock(), CallStats()
    failures = [Flaky("http5xx"), Flaky("http429", retry_after=9.0), Flaky("timeout")]
    calls = []

    def fn() -> str:
        calls.append(clock())
        if failures:
            raise failures.pop(0)
        return "ok"

    assert run(fn, RetrySettings(), clock, stats) == "ok"
    assert len(calls) == 4
    assert clock.sleeps[1] >= 9.0  # the Retry-After floor
    retries = stats.retries
    assert (retries["http5xx"], retries["http429"], retries["timeout"]) == (1, 1, 1)
    assert stats.seconds_backoff == pytest.approx(sum(clock.sleeps))


def test_other_errors_are_not_retried() -> None:
    clock, stats = FakeClock(), CallStats()
    calls = []

    def fn() -> str:
        calls.append(1)
        raise KeyError("permanent")

    with pytest.raises(KeyError):
        run(fn, RetrySettings(), clock, stats)
    assert len(calls) == 1
    assert clock.sleeps == []


def test_attempt_cap_ends_in_the_exhausted_error() -> None:
    clock, stats = FakeClock(), CallStats()
    calls = []

    def fn() -> str:
        calls.append(1)
        raise Flaky("body503")

    with pytest.raises(Exhausted, match="4 attempts.*last body503") as info:
        run(fn, RetrySettings(max_attempts=4), clock, stats)
    assert isinstance(info.value.__cause__, Flaky)
    assert len(calls) == 4
    assert len(clock.sleeps) == 3


def test_time_budget_stops_before_an_attempt_would_start_past_it() -> None:
    clock, stats = FakeClock(), CallStats()
    calls = []

    def fn() -> str:
        calls.append(clock())
        raise Flaky("http429", retry_after=6.0)

    with pytest.raises(Exhausted):
        run(fn, RetrySettings(max_attempts=100, budget_seconds=20.0), clock, stats)
    # Attempts at 0, 6, 12, 18 s; the next would start at 24 s > 20 s.
    assert len(calls) == 4
    assert calls[-1] - calls[0] <= 20.0


def test_call_stats_metadata_is_flat_and_complete() -> None:
    stats = CallStats(endpoints=("list", "info"))
    stats.count_request("list")
    stats.count_request("list")
    stats.count_request("info")
    stats.count_retry("http429")
    stats.add_throttled(0.25)
    stats.add_backoff(1.5)
    stats.count_info_not_found()
    meta = stats.as_metadata()
    assert meta["requests_total"] == 3
    assert (meta["requests_list"], meta["requests_info"]) == (2, 1)
    assert meta["retries_total"] == 1
    assert meta["retries_http429"] == 1
    assert {f"retries_{c}" for c in KNOWN_CAUSES} <= set(meta)  # zeros are present too
    assert meta["seconds_throttled"] == 0.25
    assert meta["seconds_backoff"] == 1.5
    assert meta["info_not_found_for_listed"] == 1
    assert all(isinstance(v, int | float) for v in meta.values())


def test_call_stats_counts_every_increment_from_many_threads() -> None:
    stats = CallStats()

    def worker() -> None:
        for _ in range(1000):
            stats.count_request("info")
            stats.count_retry("timeout")

    pool = [threading.Thread(target=worker) for _ in range(8)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert stats.requests["info"] == 8000
    assert stats.retries["timeout"] == 8000
