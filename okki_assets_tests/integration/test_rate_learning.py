"""Adaptive pacing end to end: Dagster materializes raw_companies against the OKKI simulator on
loopback, whose quota the client is not told.

- With no ``OKKI_RATE_LIMIT`` the pull finds the quota: every company of the window is stored,
  the simulator's counters show the share it throttled, the partition's metadata carries the
  rate reached, the learned ceiling and the throttled share, and DuckDB keeps the learned rate,
  from which the next run starts instead of from a cold start (its ceiling carries over).
- A daily budget spent mid-pull (HTTP 429 with a Retry-After of hours) ends the run at once
  with one line naming the time OKKI asks to wait until and how far the pull got.

No assertion rides on the machine's speed (bounds hold however slowly it sends); how close the
rate comes to the quota, and how fast, are the benchmark's figures
(``python -m benchmarks.bench_quota``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from okki_assets.okki_time import CHINA_TZ
from okki_assets.partitions import window_for_key
from okki_assets.resources import OkkiResource
from okki_assets.simulator.okki import THROTTLE_SHAPES
from okki_assets_tests.conftest import Pipeline, day_keys, make_pipeline

QUOTA = 60.0


def auto_okki(pipeline: Pipeline, **changes: Any) -> OkkiResource:
    settings = {**pipeline.okki.model_dump(), "retry_base_delay": 0.05, **changes}
    return OkkiResource(**{**settings, "rate_limit": None})


def raw_metadata(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    (mat,) = [
        e.event_specific_data.materialization  # type: ignore[union-attr]
        for e in result.get_asset_materialization_events()
        if e.asset_key == dg.AssetKey("raw_companies")
    ]
    return {name: value.value for name, value in mat.metadata.items()}


def two_days(tmp: Path, instance: dg.DagsterInstance, **okki: Any) -> Iterator[Pipeline]:
    """Two days of 350 companies each, the OKKI simulator configured with ``okki``."""
    yield from make_pipeline(tmp, instance, companies=700, days=2, okki_overrides=okki)


@pytest.fixture
def quota_pipeline(tmp_path: Path, instance: dg.DagsterInstance) -> Iterator[Pipeline]:
    yield from two_days(
        tmp_path,
        instance,
        quota_rps=QUOTA,
        quota_burst=3.0,
        # A quick machine meets the quota; a loaded one may never send that fast, so one
        # request is throttled on schedule as well: every run learns a ceiling.
        throttle_calls=(200,),
        throttle_shapes=THROTTLE_SHAPES,
        latency=0.005,
    )


def test_a_pull_with_no_rate_limit_learns_the_hidden_quota(quota_pipeline: Pipeline) -> None:
    p = quota_pipeline
    key = day_keys(2)[0]
    start, end = window_for_key(key)
    window = len(p.sims.okki.companies_in_window(start, end))
    assert window > 250

    result = p.materialize(key, selection=["raw_companies"], okki=auto_okki(p))
    stats = p.sims.okki.stats
    stored = p.query("select count(*) from raw_companies where partition_key = ?", [key])
    assert stored == [(window,)]

    # The simulator's counters: throttles were met, and were few (bounded loosely: requests
    # bunched on a loaded machine meet the burst more often; the share is the bench's figure).
    throttled = sum(stats.throttled.values())
    assert 0 < throttled <= 0.2 * len(stats.request_times)

    # The partition's metadata: plain numbers for the UI to plot. A throttle cuts the rate, so
    # neither passes the quota by much; how close they come is the bench's figure (a loaded
    # machine may not send as fast as the quota).
    meta = raw_metadata(result)
    assert 0 < meta["rate_ceiling"] <= 1.5 * QUOTA
    assert 0 < meta["rate_reached"] <= 1.5 * QUOTA
    assert meta["throttled_share"] == pytest.approx(throttled / len(stats.request_times), abs=0.01)

    # What it learned is kept for this OKKI account, and the next run starts from it. With the
    # quota lifted the next run meets no throttle, so its ceiling is still the one it started
    # from: a cold start would report no ceiling (its rate) instead.
    ((rate, ceiling),) = p.query("select rate, ceiling from okki_rate")
    assert ceiling == pytest.approx(meta["rate_ceiling"], abs=0.01)
    assert rate == pytest.approx(meta["rate_reached"], abs=0.01)
    p.sims.okki.config.quota_rps = None
    p.sims.okki.reset_stats()
    again = p.materialize(key, selection=["raw_companies"], okki=auto_okki(p, refresh_info=True))
    assert again.success
    assert sum(p.sims.okki.stats.throttled.values()) == 0
    assert raw_metadata(again)["rate_ceiling"] == pytest.approx(ceiling, abs=0.01)
    assert p.query("select ceiling from okki_rate") == [(pytest.approx(ceiling, abs=0.01),)]


@pytest.fixture
def budget_pipeline(tmp_path: Path, instance: dg.DagsterInstance) -> Iterator[Pipeline]:
    yield from two_days(tmp_path, instance, daily_budget=120, daily_retry_after=5400.0)


@pytest.mark.parametrize("pacing", ["auto", "fixed"])
def test_a_spent_daily_budget_ends_the_run_at_once_naming_the_time(
    pacing: str, budget_pipeline: Pipeline, caplog: pytest.LogCaptureFixture
) -> None:
    p = budget_pipeline
    key = day_keys(2)[0]
    start, end = window_for_key(key)
    window = len(p.sims.okki.companies_in_window(start, end))
    okki = auto_okki(p) if pacing == "auto" else p.okki
    caplog.set_level(logging.DEBUG, logger="okki_assets.clients.http")
    began_at = datetime.now(CHINA_TZ)
    result = p.materialize(key, selection=["raw_companies"], raise_on_error=False, okki=okki)
    ended_at = datetime.now(CHINA_TZ)

    assert not result.success
    (failure,) = [
        e.event_specific_data.error  # type: ignore[union-attr]
        for e in result.all_events
        if e.event_type_value == "STEP_FAILURE"
    ]
    assert failure is not None
    message = failure.message.strip()
    assert "\n" not in message and "OkkiQuotaExhausted: OKKI asks to wait until" in message
    until = re.search(r"until (?:\d{4}-\d\d-\d\d )?(\d\d):(\d\d) \(China time\)", message)
    assert until, message
    # The time named is 5,400 s after OKKI said so, during the run, to the minute.
    earliest = (began_at + timedelta(seconds=5400)).replace(second=0, microsecond=0)
    latest = ended_at + timedelta(seconds=5400 + 60)
    named = earliest.replace(hour=int(until[1]), minute=int(until[2]))
    if named < earliest:
        named += timedelta(days=1)
    assert earliest <= named <= latest, message
    progress = re.search(r"(\d+) of (\d+) companies fetched", message)
    assert progress and int(progress[2]) == window and int(progress[1]) < window, message
    # At once (no call waited to retry), and without a storm against the spent budget: each
    # call in flight met it once.
    retries = [r.getMessage() for r in caplog.records if "retrying in" in r.getMessage()]
    assert retries == []
    assert p.sims.okki.stats.throttled["daily_budget"] <= 2 * p.okki.concurrency
    assert p.query("select count(*) from raw_companies where partition_key = ?", [key]) == [(0,)]
