"""Adaptive pacing: find OKKI's undocumented request rate the way congestion control does.

OKKI documents no quota, and it may differ per account. With ``OKKI_RATE_LIMIT`` unset or
``auto`` the client learns it (prior art: the AWS SDKs' "adaptive" retry mode, a CUBIC client
rate limiter, and the client-side adaptive throttling of Google's SRE book):

- **Slow start.** Cold, the rate starts at ``AutoRate.start`` and doubles every
  ``doubling_seconds`` while answers come back clean, until the first throttle.
- **Cut.** A throttle answer (HTTP 429 with or without ``Retry-After``, ``code`` 429 in a 200
  body, HTTP 503 or ``code`` 503) makes the rate actually sent the learned ceiling W (lowering
  a known ceiling by a tenth at most: a stray throttle costs little, a quota that fell is
  followed in a few quick cuts) and cuts the rate to ``beta`` times W. ``beta`` is 0.8 where
  the AWS SDKs use 0.7: the shallower cut keeps the average above 0.9 of the quota and the
  rate never under 0.8 of it. Only an answer to a request sent *after* the last cut can cut
  again: the requests in flight at a cut were sent at the old rate, so a volley of throttled
  answers is one cut, not one per thread.
- **Cubic growth.** After a cut the rate follows ``W * (1 + (1 - beta) * (t / K - 1) ** 3)``: it
  climbs fast, flattens out at W (where the last throttle was), then probes above it ever
  faster, so a quota that rose is found again. K is chosen so that one cycle spans about
  ``cycle_requests`` requests (within ``min_period``..``max_period`` seconds): the throttled
  share stays near one answer in ``cycle_requests`` at a slow quota as at a fast one.
- **Only while the rate is used.** The rate grows only while the client sends at least half of
  it (not during a one-at-a-time list pass or a pause between partitions), never past
  ``max_rate`` (``OKKI_RATE_LIMIT_MAX``), and never drops below ``min_rate``.
- **Memory.** ``learned()`` is what a run found (rate and ceiling); handed back as
  ``AutoRate.learned``, the next run starts there, on the cubic curve under that ceiling,
  instead of from slow start. Until a cut of that run is followed by ``WARM_CONFIRMED`` clean
  answers, the memory is on probation: a cut that follows the previous one with fewer than
  ``VOLLEY_CLEAN`` clean answers in between (a volley: the quota fell far below what was
  learned) drops it and starts cold, which finds the quota in a few quick cuts where taking a
  tenth off the ceiling per cut would take dozens.

``RateController`` is the pure arithmetic: it takes the time of every event from its caller and
never sleeps, so tests drive it with a simulated clock. ``AdaptivePacer`` and ``FixedPacer`` are
what the OKKI client uses: thread-safe, the former paced by a controller, the latter by today's
fixed ``RateLimiter`` (``OKKI_RATE_LIMIT`` set to a number).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Protocol

from okki_assets.clients.http import Clock, RateLimiter, Sleep

log = logging.getLogger(__name__)

#: The measured send rate is taken over this many recent requests.
MEASURED_REQUESTS = 16
#: Below this share of its rate the client is not using the rate, which then does not grow.
APP_LIMITED_SHARE = 0.5
#: Seconds without a send after which the measured rate starts to decay.
IDLE_GRACE = 1.0
#: A throttle below the known ceiling lowers it to no less than this share of it: one stray
#: throttle (requests bunched on the way) costs a little, a quota that fell is followed in a
#: few quick cuts.
CEILING_KEPT = 0.9
#: Right after a warm start, a cut with fewer clean answers than this since the previous cut
#: means the learned ceiling is far above today's quota: start cold instead.
VOLLEY_CLEAN = 2
#: Clean answers after a cut that confirm a warm start's memory (the volley rule then ends).
WARM_CONFIRMED = 16


@dataclass(frozen=True)
class LearnedRate:
    """What a run learned: the rate it reached and the ceiling where OKKI last throttled
    (None: never throttled yet, the ceiling is somewhere above ``rate``)."""

    rate: float
    ceiling: float | None = None


@dataclass(frozen=True)
class AutoRate:
    """Settings of the adaptive rate. ``learned`` is a previous run's ``LearnedRate``."""

    start: float = 4.0
    max_rate: float | None = None
    min_rate: float = 0.5
    beta: float = 0.8
    doubling_seconds: float = 2.0
    cycle_requests: float = 150.0
    min_period: float = 3.0
    max_period: float = 30.0
    learned: LearnedRate | None = None

    def __post_init__(self) -> None:
        if not 0 < self.min_rate <= self.start:
            raise ValueError("need 0 < min_rate <= start")
        if self.max_rate is not None and self.max_rate < self.min_rate:
            raise ValueError(f"max_rate must be at least min_rate ({self.min_rate})")
        if not 0 < self.beta < 1:
            raise ValueError("beta must be between 0 and 1")


class RateController:
    """The adaptive rate's state machine (see the module docstring). Not thread-safe.

    The caller reports ``sent(now)`` for every request it sends, then ``clean(now)`` or
    ``throttled(now, sent_at)`` for its answer; answers that are neither (a 500, a timeout)
    are not reported.
    """

    def __init__(self, settings: AutoRate, now: float) -> None:
        self.settings = settings
        self.cuts = 0
        self._recent: deque[float] = deque(maxlen=MEASURED_REQUESTS)
        self._quiet_until = -math.inf  # throttles of requests sent before this do not cut
        self._last_growth = now
        self._t = 0.0  # seconds of growth since the last cut (or the warm start's equivalent)
        learned = settings.learned
        self._on_probation = learned is not None and bool(learned.ceiling)
        self._clean_since_cut = 0
        self.ceiling: float | None = None
        self.rate = self._bounded(settings.start)
        if learned is not None and learned.ceiling:
            self.ceiling = self._bounded(learned.ceiling)
            self.rate = self._bounded(min(learned.rate, self.ceiling))
            self._t = self._time_on_curve(self.rate)
        elif learned is not None:
            self.rate = self._bounded(max(learned.rate, settings.start))

    # -- events ------------------------------------------------------------------------------

    def sent(self, now: float) -> None:
        self._recent.append(now)

    def clean(self, now: float) -> None:
        """A clean answer: grow the rate by the time since the last growth, unless the client
        is not using its rate."""
        self._clean_since_cut += 1
        if self.cuts and self._clean_since_cut >= WARM_CONFIRMED:
            self._on_probation = False
        dt = min(now - self._last_growth, max(1.0, 4.0 / self.rate))
        self._last_growth = now
        if dt <= 0 or self.measured(now) < APP_LIMITED_SHARE * self.rate:
            return
        settings = self.settings
        if self.ceiling is None:
            self.rate = self._bounded(self.rate * 2 ** (dt / settings.doubling_seconds))
        else:
            self._t += dt
            self.rate = self._bounded(self._cubic(self._t))

    def throttled(self, now: float, sent_at: float) -> bool:
        """A throttle answer to a request sent at ``sent_at``: cut, unless the request left
        before the last cut. Returns whether it cut."""
        if sent_at < self._quiet_until:
            return False
        if self._on_probation and self.cuts and self._clean_since_cut < VOLLEY_CLEAN:
            self._start_cold(now)
            return True
        measured = self.measured(now)
        peak = min(self.rate, measured) if measured > 0 else self.rate
        held = CEILING_KEPT * self.ceiling if self.ceiling is not None else 0.0
        self.ceiling = max(peak, held, self.settings.min_rate)
        self.rate = self._bounded(self.settings.beta * self.ceiling)
        self._t = 0.0
        self._quiet_until = now + 1.0 / self.rate
        self._last_growth = now
        self._clean_since_cut = 0
        self.cuts += 1
        return True

    def _start_cold(self, now: float) -> None:
        """Forget a warm start's memory: slow start again from ``AutoRate.start``."""
        self._on_probation = False
        self.ceiling = None
        self.rate = self._bounded(self.settings.start)
        self._t = 0.0
        self._recent.clear()
        self._quiet_until = now + 1.0 / self.rate
        self._last_growth = now
        self._clean_since_cut = 0
        self.cuts += 1
        log.debug("OKKI throttled a volley right after a warm start: starting cold")

    # -- readings ----------------------------------------------------------------------------

    def measured(self, now: float) -> float:
        """Requests per second over the last ``MEASURED_REQUESTS`` sends; after ``IDLE_GRACE``
        seconds without a send it decays (the time waiting for an answer is no idleness)."""
        if len(self._recent) < 2:
            return 0.0
        first, last = self._recent[0], self._recent[-1]
        span = max(last - first, now - first - IDLE_GRACE)
        return (len(self._recent) - 1) / span if span > 0 else math.inf

    def learned(self) -> LearnedRate:
        return LearnedRate(self.rate, self.ceiling)

    # -- the curve ---------------------------------------------------------------------------

    def _period(self) -> float:
        settings = self.settings
        ceiling = self.ceiling or self.rate
        return min(settings.max_period, max(settings.min_period, settings.cycle_requests / ceiling))

    def _cubic(self, t: float) -> float:
        assert self.ceiling is not None
        return self.ceiling * (1 + (1 - self.settings.beta) * (t / self._period() - 1) ** 3)

    def _time_on_curve(self, rate: float) -> float:
        """The growth time at which the cubic curve under the current ceiling gives ``rate``."""
        assert self.ceiling is not None
        below = max(0.0, 1 - rate / self.ceiling) / (1 - self.settings.beta)
        return self._period() * (1 - float(min(below, 1.0) ** (1 / 3)))

    def _bounded(self, rate: float) -> float:
        settings = self.settings
        if settings.max_rate is not None:
            rate = min(rate, settings.max_rate)
        return max(rate, settings.min_rate)


@dataclass(frozen=True)
class Grant:
    """A request's permission to go: when it was granted and how long it waited for it."""

    at: float
    waited: float


class Pacer(Protocol):
    """What the OKKI client paces every business request with."""

    def acquire(self) -> Grant: ...

    def report(self, grant: Grant, *, throttled: bool) -> None: ...

    @property
    def rate(self) -> float | None: ...

    @property
    def ceiling(self) -> float | None: ...

    def learned(self) -> LearnedRate | None: ...

    def answers(self) -> tuple[int, int]: ...


class _CountingPacer:
    """Counts the answers reported (under ``_lock``), for the throttled share."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._answers = 0
        self._throttled = 0

    def _count(self, throttled: bool) -> None:
        self._answers += 1
        self._throttled += throttled

    def answers(self) -> tuple[int, int]:
        """(answers reported, of which throttled)."""
        with self._lock:
            return self._answers, self._throttled


class FixedPacer(_CountingPacer):
    """Today's fixed pacing (``OKKI_RATE_LIMIT`` set to a number; None = unpaced)."""

    def __init__(
        self, rate: float | None, *, clock: Clock = time.monotonic, sleep: Sleep = time.sleep
    ) -> None:
        super().__init__(clock)
        self._limiter = RateLimiter(rate, clock=clock, sleep=sleep)

    def acquire(self) -> Grant:
        waited = self._limiter.acquire()
        return Grant(self._clock(), waited)

    def report(self, grant: Grant, *, throttled: bool) -> None:
        with self._lock:
            self._count(throttled)

    @property
    def rate(self) -> float | None:
        return self._limiter.rate

    @property
    def ceiling(self) -> float | None:
        return self._limiter.rate

    def learned(self) -> LearnedRate | None:
        return None


class AdaptivePacer(_CountingPacer):
    """Paces with a ``RateController``'s rate; every thread shares one controller."""

    def __init__(
        self, settings: AutoRate, *, clock: Clock = time.monotonic, sleep: Sleep = time.sleep
    ) -> None:
        super().__init__(clock)
        self._controller = RateController(settings, clock())
        self._limiter = RateLimiter(self._controller.rate, clock=clock, sleep=sleep)

    def acquire(self) -> Grant:
        waited = self._limiter.acquire()
        with self._lock:
            now = self._clock()
            self._controller.sent(now)
        return Grant(now, waited)

    def report(self, grant: Grant, *, throttled: bool) -> None:
        with self._lock:
            self._count(throttled)
            now = self._clock()
            before = self._controller.rate
            if throttled:
                if self._controller.throttled(now, grant.at):
                    log.debug(
                        "OKKI throttled (ceiling %s requests/s): pacing at %.1f",
                        self._controller.ceiling,
                        self._controller.rate,
                    )
            else:
                self._controller.clean(now)
            if self._controller.rate != before:
                self._limiter.set_rate(self._controller.rate)

    @property
    def rate(self) -> float:
        with self._lock:
            return self._controller.rate

    @property
    def ceiling(self) -> float | None:
        with self._lock:
            return self._controller.ceiling

    def learned(self) -> LearnedRate:
        with self._lock:
            return self._controller.learned()

    @property
    def cuts(self) -> int:
        """Times the rate was cut (a fall back to a cold start included)."""
        with self._lock:
            return self._controller.cuts


def pacing_metadata(pacer: Pacer, before: tuple[int, int]) -> dict[str, float]:
    """Per-partition numbers the UI plots: the rate reached (requests per second the pacer
    allows now), the learned ceiling (the rate of the last throttle; the rate reached while
    none was seen, and the fixed rate under fixed pacing) and the share of answers since
    ``before`` (an earlier ``pacer.answers()``) that were throttles."""
    answers, throttled = pacer.answers()
    answers, throttled = answers - before[0], throttled - before[1]
    rate = pacer.rate or 0.0
    ceiling = pacer.ceiling
    return {
        "rate_reached": round(rate, 2),
        "rate_ceiling": round(ceiling if ceiling is not None else rate, 2),
        "throttled_share": round(throttled / answers, 4) if answers else 0.0,
    }
