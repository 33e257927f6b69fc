"""The OKKI client against the OKKI simulator over real HTTP, with faults and a quota.

A window of several thousand companies, with 5 % of calls failing (5xx, resets, bad JSON) and a
per-token quota answered in every throttle shape, still yields every company exactly once; and
the client's own pacing keeps the observed request rate at or under its configured limit.
"""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime, timedelta

from okki_assets.clients.okki import OkkiClient, RetrySettings
from okki_assets.okki_time import CHINA_TZ
from okki_assets.pull import list_window
from okki_assets.simulator.data import generate_companies
from okki_assets.simulator.http import ServerThread
from okki_assets.simulator.okki import OkkiSimConfig, OkkiSimulator

DAY = date(2026, 11, 20)
FAST_RETRY = RetrySettings(max_attempts=12, base_delay=0.02, max_delay=0.5, budget_seconds=60)


def _window() -> tuple[datetime, datetime]:
    start = datetime(DAY.year, DAY.month, DAY.day, tzinfo=CHINA_TZ)
    return start, start + timedelta(days=1)


def test_a_faulty_throttled_window_yields_every_company_once() -> None:
    companies = generate_companies(3000, DAY, DAY, seed=3)
    config = OkkiSimConfig(
        fault_rate=0.05,
        # Well under what the client asks for (600/s) even on a slow machine, so that every
        # throttle shape is served.
        quota_rps=150.0,
        quota_burst=10.0,
        throttle_shapes=("http429_retry_after", "http429", "body429", "body503"),
        drift_rate=0.0,
    )
    sim = OkkiSimulator(companies, config)
    start, end = _window()
    with (
        ServerThread(sim) as server,
        OkkiClient(
            server.url,
            "demo-client",
            "demo-secret",
            rate_limit=600.0,
            concurrency=8,
            retry=FAST_RETRY,
        ) as client,
    ):
        listed, report = list_window(client, start, end)
        infos = list(client.company_infos(list(listed)))

    truth = {str(c["company_id"]) for c in sim.companies_in_window(start, end)}
    assert len(truth) == 3000
    assert set(listed) == truth
    got = Counter(r.company_id for r in infos if r.data is not None)
    assert set(got) == truth and set(got.values()) == {1}
    stats = client.stats.as_metadata()
    assert stats["retries_total"] > 0, "faults were switched on; the client must have retried"
    shapes = {shape for shape, n in sim.stats.throttled.items() if n}
    assert shapes == set(config.throttle_shapes), "every throttle shape should have been served"
    assert report.passes >= 2


def test_the_observed_request_rate_stays_under_the_limit() -> None:
    companies = generate_companies(400, DAY, DAY, seed=5)
    sim = OkkiSimulator(companies, OkkiSimConfig(latency=0.005))
    limit = 80.0
    start, end = _window()
    with (
        ServerThread(sim) as server,
        OkkiClient(
            server.url, "demo-client", "demo-secret", rate_limit=limit, concurrency=8
        ) as client,
    ):
        listed, _ = list_window(client, start, end)
        list(client.company_infos(list(listed)))

    times = sorted(sim.stats.request_times)
    assert len(times) > 400
    # Over every one-second window the count stays within the limit (plus the one-request burst).
    # These are arrival times at the server: on a loaded machine a request paced on time may
    # arrive some tens of milliseconds late, next to the one after it, so a window may hold a
    # few more. The pacer itself is held to the exact bound on a fake clock (test_client_http).
    worst = max(sum(1 for t in times[i:] if t < first + 1.0) for i, first in enumerate(times))
    assert worst <= limit * 1.05 + 1, worst
    elapsed = times[-1] - times[0]
    # Not idle either (how close it comes to the quota is the bench's figure, not a test's).
    assert len(times) / elapsed > 0.5 * limit, "pacing should not leave the quota unused"
