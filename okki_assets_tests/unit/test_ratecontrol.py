"""The adaptive rate controller against quotas it is not told, on a simulated clock (no sleeps).

A hidden token bucket (a small burst, refilled at the quota) answers each request the client
sends as fast as its controller allows; answers arrive one latency later and are reported back
as clean or throttled, exactly as the OKKI client does. The controller must converge to quotas
of 8, 37 and 90 requests per second (at least 0.9 of the quota sustained over 2,000 requests,
at most 2 % throttled, at least 0.8 of it after the first 30 s of a cold start), follow a quota
that halves or rises mid-run, make one cut of a volley of throttles, not grow while the client
is not using its rate, respect its cap, and start a warm run from what the last one learned.
The ``AdaptivePacer`` built on it paces by its rate; what a run learned is kept in DuckDB per
OKKI account (URL and client id, never the secret) and resumed by the next run.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest

from okki_assets.clients.ratecontrol import (
    AdaptivePacer,
    AutoRate,
    FixedPacer,
    LearnedRate,
    RateController,
    pacing_metadata,
)
from okki_assets.errors import ConfigError
from okki_assets.resources import OkkiResource, WarehouseResource
from okki_assets_tests.factories import FakeClock

SECRET = "s3cr3t-never-stored"

Quota = Callable[[int], float]  # granted requests so far -> requests per second
STALL = 0.3  # seconds a stalled sender sends nothing


class HiddenQuota:
    """A token bucket the client is not told about: ``burst`` tokens, refilled at the quota,
    which may change with the number of requests granted so far."""

    def __init__(self, quota: Quota, burst: float = 3.0) -> None:
        self.quota = quota
        self.burst = burst
        self.tokens = burst
        self.stamp = 0.0
        self.granted = 0

    def take(self, now: float) -> bool:
        rate = self.quota(self.granted)
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            self.granted += 1
            return True
        return False


@dataclass
class Sent:
    at: float
    granted: bool
    quota: float  # the hidden quota when it was sent


def drive(
    controller: RateController,
    quota: Quota,
    seconds: float,
    *,
    latency: float = 0.02,
    burst: float = 3.0,
    stalls: tuple[float, ...] = (),
) -> list[Sent]:
    """Send as fast as the controller allows for ``seconds`` of simulated time; report every
    answer one ``latency`` after its request. Returns every request sent.

    At each of ``stalls`` the sender stalls for ``STALL`` seconds, then what it sends reaches
    the bucket bunched and empties it (a busy machine or network): a throttle although the rate
    is right, just after a dip in the measured rate."""
    bucket = HiddenQuota(quota, burst)
    pending_stalls = sorted(stalls)
    answers: list[tuple[float, float, bool]] = []  # (arrives, sent, granted)
    log: list[Sent] = []
    next_send = 0.0
    while next_send <= seconds:
        if answers and answers[0][0] <= next_send:
            arrives, sent, granted = heapq.heappop(answers)
            if granted:
                controller.clean(arrives)
            else:
                controller.throttled(arrives, sent)
            continue
        now = next_send
        if pending_stalls and pending_stalls[0] <= now:
            pending_stalls.pop(0)
            now += STALL
            bucket.take(now)  # brings the bucket up to date
            bucket.tokens = 0.0
        controller.sent(now)
        current = quota(bucket.granted)
        granted = bucket.take(now)
        log.append(Sent(now, granted, current))
        heapq.heappush(answers, (now + latency, now, granted))
        next_send = now + 1.0 / controller.rate
    return log


def granted_rate(log: list[Sent]) -> float:
    """Granted requests per second over the stretch of ``log``."""
    return sum(s.granted for s in log) / (log[-1].at - log[0].at)


def throttled_share(log: list[Sent]) -> float:
    return sum(not s.granted for s in log) / len(log)


def seconds_to_reach(log: list[Sent], share: float, width: float = 2.0) -> float:
    """When the granted rate over the last ``width`` seconds first reached ``share`` of the
    quota."""
    times = [s.at for s in log if s.granted]
    first = 0
    for i, t in enumerate(times):
        while times[first] < t - width:
            first += 1
        if t >= width and (i - first + 1) / width >= share * log[0].quota:
            return t
    return float("inf")


def lowest_rate(log: list[Sent], start: float, width: float = 5.0) -> float:
    """The lowest granted rate over the ``width``-second windows from ``start`` on."""
    end = log[-1].at
    rates = []
    t = start
    while t + width <= end:
        rates.append(sum(1 for s in log if s.granted and t <= s.at < t + width) / width)
        t += width
    return min(rates)


def fixed(rps: float) -> Quota:
    return lambda _granted: rps


def cold() -> RateController:
    return RateController(AutoRate(), now=0.0)


@pytest.mark.parametrize("quota", [8.0, 37.0, 90.0])
def test_a_cold_start_converges_to_a_hidden_quota(quota: float) -> None:
    controller = cold()
    log = drive(controller, fixed(quota), 30 + 2000 / quota + 5)
    window = [s for s in log if s.at >= 30][:2000]
    assert len(window) == 2000
    # Sustained: at least 0.9 of the quota over 2,000 requests, at most 2 % of them throttled.
    assert 0.9 * quota <= granted_rate(window) <= 1.01 * quota
    assert throttled_share(window) <= 0.02
    # Cold start: 0.8 of the quota well within the first 30 s, and never below it afterwards.
    assert seconds_to_reach(log, 0.8) < 15
    assert lowest_rate(log, 30.0) >= 0.8 * quota
    # The ceiling it learned is the quota.
    assert controller.ceiling == pytest.approx(quota, rel=0.1)
    # Over the whole run, cold start included, few answers were throttles.
    assert throttled_share(log) <= 0.02


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (90.0, 45.0),  # a fast quota halves
        (37.0, 18.5),  # a middling one
        (8.0, 4.0),  # a slow one
    ],
)
def test_it_follows_a_quota_that_halves(before: float, after: float) -> None:
    halves_at = int(before * 40)  # after about 40 s
    controller = cold()
    log = drive(
        controller,
        lambda granted: before if granted < halves_at else after,
        40 + 30 + 2000 / after,
    )
    halved = next(s.at for s in log if s.quota == after)
    settled = [s for s in log if s.at >= halved + 30][:2000]
    assert 0.9 * after <= granted_rate(settled) <= 1.01 * after
    assert throttled_share(settled) <= 0.02
    assert lowest_rate(log, halved + 10) >= 0.8 * after
    assert controller.ceiling == pytest.approx(after, rel=0.1)


def test_it_finds_a_quota_that_rises() -> None:
    rises_at = 37 * 40
    controller = cold()
    log = drive(controller, lambda granted: 37.0 if granted < rises_at else 90.0, 40 + 60)
    rose = next(s.at for s in log if s.quota == 90.0)
    later = [s for s in log if s.at >= rose + 30]
    assert granted_rate(later) >= 0.9 * 90
    assert throttled_share(later) <= 0.02


def test_a_stray_throttle_costs_little() -> None:
    # Requests bunched on the way (a stalled sender, a busy network) empty the bucket now and
    # then although the rate is right: each such throttle must not make it forget the quota.
    controller = cold()
    log = drive(controller, fixed(37.0), 100, stalls=(40.0, 55.0, 70.0, 85.0))
    after = [s for s in log if s.at >= 30]
    assert granted_rate(after) >= 0.9 * 37
    assert lowest_rate(log, 30.0) >= 0.8 * 37
    assert controller.ceiling == pytest.approx(37, rel=0.1)


def test_a_volley_of_throttles_is_one_cut() -> None:
    controller = cold()
    for i in range(16):  # sending at its rate of 4 per second
        controller.sent(i * 0.25)
    before = controller.rate
    # Eight requests sent at t <= 3.75 all come back throttled at about t = 4.
    cuts = [controller.throttled(4.0 + i * 0.001, 3.0 + i * 0.1) for i in range(8)]
    assert cuts == [True] + [False] * 7
    assert controller.ceiling == pytest.approx(before)
    assert controller.rate == pytest.approx(0.8 * before)
    # A request sent after the cut (past one interval at the new rate) cuts again; the ceiling
    # comes down by a tenth at most per cut (a stray throttle must not make it forget).
    assert controller.throttled(5.0, 4.5)
    assert controller.ceiling == pytest.approx(0.9 * before)
    assert controller.rate == pytest.approx(0.8 * 0.9 * before)


@pytest.mark.parametrize(
    ("sent_per_second", "reached"),
    [
        (20.0, 40.0),  # sending 20/s: it grows to twice what is used, no further
        (2.0, 20.0),  # sending a tenth of its rate: no growth at all
    ],
)
def test_the_rate_grows_only_while_it_is_used(sent_per_second: float, reached: float) -> None:
    controller = RateController(AutoRate(start=20.0), now=0.0)
    t = 0.0
    while t < 30:
        controller.sent(t)
        controller.clean(t + 0.01)
        t += 1 / sent_per_second
    assert controller.rate == pytest.approx(reached, rel=0.05)


def test_the_rate_never_passes_its_cap_or_falls_under_its_floor() -> None:
    controller = RateController(AutoRate(max_rate=30.0), now=0.0)
    log = drive(controller, fixed(1000.0), 30)
    assert controller.rate == 30.0
    assert granted_rate([s for s in log if s.at > 20]) == pytest.approx(30.0, rel=0.02)
    for i in range(100):  # a throttle for every request, sent at the rate
        controller.sent(31 + i / controller.rate)
        controller.throttled(31 + (i + 0.5) / controller.rate, 31 + i / controller.rate)
    assert controller.rate == AutoRate.min_rate


def test_a_warm_start_begins_at_what_the_last_run_learned() -> None:
    learned = LearnedRate(rate=36.0, ceiling=37.5)
    controller = RateController(AutoRate(learned=learned), now=0.0)
    assert (controller.rate, controller.ceiling) == (36.0, 37.5)
    log = drive(controller, fixed(37.0), 2000 / 37)
    # No slow start to sit through: the first 5 s already run near the quota.
    assert granted_rate([s for s in log if s.at < 5]) >= 0.9 * 37
    assert throttled_share(log) <= 0.02
    # A run that never met a throttle resumes its rate, still searching for the ceiling.
    unknown = RateController(AutoRate(learned=LearnedRate(rate=12.0)), now=0.0)
    assert (unknown.rate, unknown.ceiling) == (12.0, None)


def test_a_warm_start_above_a_quota_that_fell_resets_to_a_cold_start() -> None:
    # The last run learned 95/s; the quota is now 8. Cutting a tenth of the ceiling at a time
    # took 27 cuts and 41 throttled answers in the first 78 requests: a volley of throttles
    # right after a warm start must instead drop to a cold start, which finds 8/s in a few cuts.
    learned = LearnedRate(rate=95.0, ceiling=95.0)
    warm = RateController(AutoRate(learned=learned), now=0.0)
    log = drive(warm, fixed(8.0), 60)
    from_cold = cold()
    cold_log = drive(from_cold, fixed(8.0), 60)
    assert warm.cuts <= from_cold.cuts + 3
    assert sum(not s.granted for s in log) <= sum(not s.granted for s in cold_log) + 8
    assert sum(not s.granted for s in log[:78]) <= 10
    assert warm.ceiling == pytest.approx(8.0, rel=0.1)
    assert granted_rate([s for s in log if s.at >= 30]) >= 0.9 * 8


def test_a_stray_throttle_after_a_warm_start_keeps_what_was_learned() -> None:
    # The quota is where the last run found it; requests bunched on the way empty the bucket
    # once early on: one cut, then clean answers, and the learned ceiling stays.
    learned = LearnedRate(rate=36.0, ceiling=37.5)
    controller = RateController(AutoRate(learned=learned), now=0.0)
    log = drive(controller, fixed(37.0), 40, stalls=(1.0, 4.0))
    assert granted_rate([s for s in log if s.at < 10]) >= 0.7 * 37  # starting cold: under 0.1
    assert controller.ceiling == pytest.approx(37, rel=0.1)
    assert throttled_share(log) <= 0.02


def test_the_adaptive_pacer_paces_by_the_controller_and_reports_it() -> None:
    clock = FakeClock(start=0.0)
    pacer = AdaptivePacer(AutoRate(start=10.0), clock=clock, sleep=clock.sleep)
    grants = [pacer.acquire() for _ in range(11)]
    assert grants[-1].at - grants[0].at == pytest.approx(1.0)  # ten intervals at 10/s
    for grant in grants[:-1]:
        pacer.report(grant, throttled=False)
    pacer.report(grants[-1], throttled=True)
    assert pacer.ceiling is not None and pacer.rate == pytest.approx(0.8 * pacer.ceiling)
    cut = [pacer.acquire() for _ in range(5)]
    assert cut[-1].at - cut[0].at == pytest.approx(4 / pacer.rate)  # paced at the cut rate
    assert pacing_metadata(pacer, (0, 0)) == {
        "rate_reached": round(pacer.rate, 2),
        "rate_ceiling": round(pacer.ceiling, 2),
        "throttled_share": round(1 / 11, 4),
    }
    learned = pacer.learned()
    assert (learned.rate, learned.ceiling) == (pacer.rate, pacer.ceiling)


def test_fixed_pacing_reports_its_rate_and_learns_nothing() -> None:
    clock = FakeClock(start=0.0)
    pacer = FixedPacer(5.0, clock=clock, sleep=clock.sleep)
    grants = [pacer.acquire() for _ in range(6)]
    assert grants[-1].at - grants[0].at == pytest.approx(1.0)
    pacer.report(grants[0], throttled=True)
    pacer.report(grants[1], throttled=False)
    assert pacer.rate == 5.0 and pacer.learned() is None
    assert pacing_metadata(pacer, (0, 0)) == {
        "rate_reached": 5.0,
        "rate_ceiling": 5.0,
        "throttled_share": 0.5,
    }


# -- what a run learned survives it ---------------------------------------------------------------


def _resource(**kw: Any) -> OkkiResource:
    settings = {"base_url": "https://okki.test/", "client_id": "client-42", **kw}
    return OkkiResource(client_secret=SECRET, **settings)


def test_the_learned_rate_is_kept_per_account_and_resumed(tmp_path: Path) -> None:
    warehouse = WarehouseResource(database=str(tmp_path / "okki.duckdb"))
    with _resource().session(warehouse.get_connection) as client:
        pacer = client.pacer
        assert (pacer.rate, pacer.ceiling) == (AutoRate.start, None), "a cold start"
        grants = [pacer.acquire() for _ in range(3)]
        pacer.report(grants[0], throttled=False)
        pacer.report(grants[2], throttled=True)
        learned = pacer.learned()
    assert learned is not None and learned.ceiling is not None
    with duckdb.connect(str(tmp_path / "okki.duckdb"), read_only=True) as conn:
        rows = conn.execute("select * from okki_rate").fetchall()
    assert [row[:4] for row in rows] == [
        ("https://okki.test", "client-42", learned.rate, learned.ceiling)
    ]
    assert SECRET not in repr(rows)
    # The next run of the same account starts where this one ended.
    with _resource().session(warehouse.get_connection) as client:
        assert (client.pacer.rate, client.pacer.ceiling) == (learned.rate, learned.ceiling)
    # Another account starts from nothing; fixed pacing learns nothing; a run that ended before
    # OKKI answered anything (refused credentials, say) leaves the memory as it was, although
    # its cap held it under the remembered rate.
    with _resource(client_id="client-7").session(warehouse.get_connection) as client:
        assert (client.pacer.rate, client.pacer.ceiling) == (AutoRate.start, None)
        grant = client.pacer.acquire()
        client.pacer.report(grant, throttled=False)
    with _resource(rate_limit=25.0).session(warehouse.get_connection) as client:
        assert (client.pacer.rate, client.pacer.learned()) == (25.0, None)
        client.pacer.report(client.pacer.acquire(), throttled=False)
    with (
        pytest.raises(ConfigError),
        _resource(rate_limit_max=2.0).session(warehouse.get_connection) as client,
    ):
        assert client.pacer.rate == 2.0
        client.pacer.acquire()
        raise ConfigError("the run failed before any answer")
    with duckdb.connect(str(tmp_path / "okki.duckdb"), read_only=True) as conn:
        kept = conn.execute("select client_id, rate from okki_rate order by 1").fetchall()
    assert kept == [("client-42", learned.rate), ("client-7", AutoRate.start)]


@pytest.mark.parametrize(
    ("settings", "words"),
    [
        ({"rate_limit": 0.0}, "OKKI_RATE_LIMIT must be positive or auto, got 0.0"),
        ({"rate_limit_max": -5.0}, "OKKI_RATE_LIMIT_MAX must be positive, got -5.0"),
    ],
)
def test_a_bad_rate_setting_fails_naming_the_variable(
    settings: dict[str, float], words: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(words)):
        _resource(**settings).open()


def test_the_cap_bounds_the_learned_rate() -> None:
    learned = LearnedRate(rate=80.0, ceiling=95.0)
    with _resource(rate_limit_max=30.0).open(learned) as client:
        assert (client.pacer.rate, client.pacer.ceiling) == (30.0, 30.0)
