"""A pull that ends early keeps the info payloads it fetched; the next pull asks only for the rest.

Judged from the OKKI simulator's own per-company info counters and the rows in DuckDB:

- a materialization of ``raw_companies`` in a child process, killed with SIGKILL about half-way
  through its info calls, then run again: every company that had its payload kept is asked for
  once over both runs, the info calls of both runs stay within 1.02 x the window's companies,
  nothing was published by the killed run, and the published rows are the window's companies;
- a pull that fails half-way (OKKI stops answering info): every payload it got is kept, and a
  company updated before the next run is asked for again and stored in its new version.
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from okki_assets.assets import build_assets
from okki_assets.partitions import build_sync_partitions, window_for_key
from okki_assets.resources import OkkiResource, TargetResource, WarehouseResource
from okki_assets.simulator.harness import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET
from okki_assets.simulator.http import SimRequest, SimResponse
from okki_assets.simulator.okki import INFO_PATH, OkkiSimulator
from okki_assets_tests.conftest import SYNC_START, Pipeline, day_keys, make_pipeline

log = logging.getLogger(__name__)

RAW = ["raw_companies"]
# A kill loses the payloads not yet kept (half a second's at most, 40 at 80 calls per second)
# and the calls in flight (4): 2 % of this window is more than both.
KILL_WINDOW = 3000
KILL_RATE = 80.0
KILL_CONCURRENCY = 4
RESUME_BOUND = 1.02


def _materialize_raw_in_child(database: str, okki_url: str, key: str) -> None:
    """Run in a spawned process: pull one partition into the DuckDB file (land-only)."""
    okki = OkkiResource(
        base_url=okki_url,
        client_id=DEMO_CLIENT_ID,
        client_secret=DEMO_CLIENT_SECRET,
        rate_limit=KILL_RATE,
        concurrency=KILL_CONCURRENCY,
        read_timeout=60.0,
    )
    dg.materialize(
        build_assets(build_sync_partitions(SYNC_START)),
        selection=RAW,
        partition_key=key,
        resources={
            "okki": okki,
            "target": TargetResource(url=""),
            "warehouse": WarehouseResource(database=database, lock_timeout=60),
        },
    )


def _metadata(result: dg.ExecuteInProcessResult, name: str) -> int:
    values = [
        int(mat.metadata[name].value)  # type: ignore[arg-type]
        for event in result.get_asset_materialization_events()
        if (mat := event.event_specific_data.materialization).metadata  # type: ignore[union-attr]
        and name in mat.metadata
    ]
    assert len(values) == 1, values
    return values[0]


def _published(pipeline: Pipeline, key: str) -> dict[str, tuple[str, str | None]]:
    rows = pipeline.query(
        "select company_id, update_time, json_extract_string(info_json, '$.name')"
        " from raw_companies where partition_key = ? and info_json is not null",
        [key],
    )
    return {cid: (ut, name) for cid, ut, name in rows}


def _kept_ids(pipeline: Pipeline) -> set[str]:
    return {cid for (cid,) in pipeline.query("select company_id from kept_infos")}


@pytest.fixture
def big_window(tmp_path: Path, instance: dg.DagsterInstance) -> Iterator[Pipeline]:
    yield from make_pipeline(tmp_path, instance, companies=KILL_WINDOW, days=1, land_only=True)


def test_a_pull_killed_half_way_is_resumed_without_asking_again(big_window: Pipeline) -> None:
    pipeline = big_window
    key = day_keys(1)[0]
    truth = {
        str(c["company_id"]) for c in pipeline.sims.okki.companies_in_window(*window_for_key(key))
    }
    assert len(truth) > KILL_WINDOW * 0.9
    child = mp.get_context("spawn").Process(
        target=_materialize_raw_in_child,
        args=(str(pipeline.database), pipeline.sims.okki_url, key),
        daemon=True,
    )
    child.start()
    deadline = time.monotonic() + 900  # a failure detector only: a loaded machine is slow
    while len(pipeline.sims.okki.stats.info_by_company) < len(truth) // 2:
        assert time.monotonic() < deadline, "timed out waiting for half of the info calls"
        time.sleep(0.02)
    os.kill(child.pid, signal.SIGKILL)  # type: ignore[arg-type]
    child.join(10)
    assert child.exitcode == -signal.SIGKILL
    before = pipeline.sims.okki.stats.info_by_company
    assert len(before) < len(truth), "the kill must land before the last info call"

    # Nothing half-pulled is published; what the killed run got is kept.
    assert pipeline.query("select count(*) from raw_companies") == [(0,)]
    kept = _kept_ids(pipeline)
    assert kept <= set(before)

    result = pipeline.materialize(key, selection=RAW)
    counts = pipeline.sims.okki.stats.info_by_company
    total = sum(counts.values())
    log.info(
        "kill + resume: %d info calls for %d companies (%.4f per company), %d kept, %d asked twice",
        total,
        len(truth),
        total / len(truth),
        len(kept),
        sum(1 for n in counts.values() if n > 1),
    )
    assert set(counts) == truth
    assert all(counts[cid] == 1 for cid in kept)
    assert total <= RESUME_BOUND * len(truth)
    assert _metadata(result, "info_resumed") == len(kept)
    assert set(_published(pipeline, key)) == truth
    assert pipeline.query("select count(*) from raw_companies") == [(len(truth),)]
    assert _kept_ids(pipeline) == set()


class InfoOutage(OkkiSimulator):
    """OKKI answering the first ``budget`` info calls, then refusing every info call with an
    error the client does not retry, until ``budget`` is set back to None."""

    budget: int | None = None

    def handle(self, request: SimRequest) -> SimResponse:
        spent = sum(self.stats.info_by_company.values())
        if request.path == INFO_PATH and self.budget is not None and spent >= self.budget:
            # An HTTP 400 fails the run (a business code in a 200 body would only quarantine
            # the one company).
            return SimResponse.json({"code": 400, "message": "Bad Request"}, status=400)
        return super().handle(request)


def test_a_failed_pull_keeps_its_payloads_and_a_changed_company_is_asked_again(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    sim = InfoOutage.demo(n=80, days=1, seed=7)
    assert isinstance(sim, InfoOutage)
    key = day_keys(1)[0]
    start, end = window_for_key(key)
    truth = {str(c["company_id"]) for c in sim.companies_in_window(start, end)}
    sim.budget = len(truth) // 2
    for pipeline in make_pipeline(tmp_path, instance, okki=sim, land_only=True):
        # One info call at a time: the outage leaves no answered call unrecorded.
        okki = OkkiResource(**{**pipeline.okki.model_dump(), "concurrency": 1})
        first = pipeline.materialize(key, selection=RAW, raise_on_error=False, okki=okki)
        assert not first.success
        kept = _kept_ids(pipeline)
        assert kept == set(sim.stats.info_by_company) and len(kept) == sim.budget
        assert pipeline.query("select count(*) from raw_companies") == [(0,)]

        changed = sorted(kept)[0]
        new_time = (end - (end - start) / 100).strftime("%Y-%m-%d %H:%M:%S")
        assert sim.get_company(changed)["update_time"] < new_time  # type: ignore[index]
        sim.update_company(changed, {"name": "Renamed between the runs"}, update_time=new_time)
        sim.budget = None
        second = pipeline.materialize(key, selection=RAW, okki=okki)

        counts = sim.stats.info_by_company
        assert counts[changed] == 2
        assert {cid: n for cid, n in counts.items() if cid != changed} == dict.fromkeys(
            truth - {changed}, 1
        )
        assert _metadata(second, "info_resumed") == len(kept) - 1
        published = _published(pipeline, key)
        assert set(published) == truth
        assert published[changed] == (new_time, "Renamed between the runs")
        assert _kept_ids(pipeline) == set()


def _emails(pipeline: Pipeline, key: str) -> dict[str, str]:
    rows = pipeline.query(
        "select company_id, info_json from raw_companies where partition_key = ?"
        " and info_json is not null",
        [key],
    )
    return {cid: json.dumps(json.loads(info).get("customers")) for cid, info in rows}


def test_refresh_info_reads_every_payload_again_even_those_an_interrupted_pull_kept(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    # OKKI_REFRESH_INFO=1 promises to catch edits that do not move update_time: a payload kept
    # by an earlier, interrupted pull may predate such an edit, so none is taken over.
    sim = InfoOutage.demo(n=80, days=1, seed=7)
    assert isinstance(sim, InfoOutage)
    key = day_keys(1)[0]
    truth = {str(c["company_id"]) for c in sim.companies_in_window(*window_for_key(key))}
    sim.budget = len(truth) // 2
    for pipeline in make_pipeline(tmp_path, instance, okki=sim, land_only=True):
        fields = {**pipeline.okki.model_dump(), "concurrency": 1, "refresh_info": True}
        okki = OkkiResource(**fields)
        assert not pipeline.materialize(key, selection=RAW, raise_on_error=False, okki=okki).success
        kept = _kept_ids(pipeline)
        assert len(kept) == sim.budget

        edited = sorted(kept)[0]
        sim.edit_contact(edited, email="silently.edited@example.com")
        sim.budget = None
        second = pipeline.materialize(key, selection=RAW, okki=okki)

        assert _metadata(second, "info_resumed") == 0
        assert _metadata(second, "info_requested") == len(truth)
        counts = sim.stats.info_by_company
        assert {cid: counts[cid] for cid in kept} == dict.fromkeys(kept, 2)
        emails = _emails(pipeline, key)
        assert set(emails) == truth
        assert "silently.edited@example.com" in emails[edited]
