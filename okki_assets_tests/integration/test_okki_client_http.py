"""The OKKI client against the OKKI simulator over real HTTP, with faults and a quota.

A window of several thousand companies, with 5 % of calls failing (5xx, resets, bad JSON) and a
per-token quota answered in every throttle shape, still yields every company exactly once; and
the client's own pacing keeps the observed request rate at or under its configured limit (a
bound that holds however the machine schedules the threads: the speed is the bench's figure).
"""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime, timedelta

from okki_assets.clients.okki import OkkiClient, RetrySettings
from okki_assets.okki_time import CHINA_TZ
from okki_assets.simulator.data import generate_companies
from okki_assets.simulator.http import ServerThread
from okki_assets.simulator.okki import OkkiSimConfig, OkkiSimulator
from okki_assets.stages.pull import list_window

DAY = date(2026, 11, 20)
FAST_RETRY = RetrySettings(max_attempts=12, base_delay=0.02, max_delay=0.5, budget_seconds=60)


def _window() -> tuple[datetime, datetime]:
    start = datetime(DAY.year, DAY.month, DAY.day, tzinfo=CHINA_TZ)
    return start, start + timedelta(days=1)


def test_a_faulty_throttled_window_yields_every_company_once() -> None:
    companies = generate_companies(3000, DAY, DAY, seed=3)
    config = OkkiSimConfig(
        fault_rate=0.05,
        # A quota under what the client asks for (600/s) throttles it on a quick machine; the
        # scheduled throttles serve every shape (in turn) however slowly a loaded one asks.
        quota_rps=150.0,
        quota_burst=10.0,
        throttle_calls=(50, 100, 150, 200),
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
    limit, concurrency = 80.0, 8
    start, end = _window()
    with (
        ServerThread(sim) as server,
        OkkiClient(
            server.url, "demo-client", "demo-secret", rate_limit=limit, concurrency=concurrency
        ) as client,
    ):
        listed, _ = list_window(client, start, end)
        list(client.company_infos(list(listed)))

    times = sorted(sim.stats.request_times)
    assert len(times) > 400
    # Over every one-second window the count stays within the limit plus the one-request burst,
    # plus the requests still on their way at the window's start. The pacer grants on its clock
    # (held to the exact bound on a fake clock in test_client_http); a request arrives at the
    # server after its grant, however late a loaded machine delivers it, and no more than
    # ``concurrency`` are on their way at once: no scheduling can push a window past this.
    worst = max(sum(1 for t in times[i:] if t <= first + 1.0) for i, first in enumerate(times))
    assert worst <= limit + 1 + concurrency, worst
