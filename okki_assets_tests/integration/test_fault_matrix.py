"""The fault and bad-input matrix: nothing lost, nothing doubled, nothing stale.

Each case alone, and all of them together, syncs two daily partitions through Dagster against
both simulators on loopback (then all of them again in one ranged backfill run), and is judged
from the simulators' truth and the target's read-back only (``benchmarks.soak.reconcile``),
never from the pipeline's counters:

- lost 0: every valid company OKKI holds for the windows is at the target, or was rejected by
  the target with a reason kept in the ledger;
- applied twice with the same content 0 (the target's write log);
- stale 0: the target holds each company in OKKI's newest version, content equal to what
  cleaning and mapping make of that version, and nothing OKKI deleted in the windows;
- every malformed record in ``quarantined_companies`` with a reason.

Every case also asserts, from the simulators' own counters, that its faults really happened, so
a case whose faults stop firing fails instead of passing quietly. Separate tests cover a run
killed with SIGKILL in the middle of ``loaded_companies`` (case 5), runs at the same time on one
DuckDB file (case 7) and an old partition re-materialized after a newer version was loaded
(case 8).
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import threading
import time
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from benchmarks.soak import Reconciliation, reconcile
from okki_assets.assets import build_assets
from okki_assets.okki_time import CHINA_TZ
from okki_assets.partitions import build_sync_partitions, window_for_key
from okki_assets.resources import OkkiResource, TargetResource, WarehouseResource
from okki_assets.simulator.data import list_view, parse_time
from okki_assets.simulator.harness import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_TARGET_TOKEN,
    reject_overlong_names,
)
from okki_assets.simulator.http import SimRequest, SimResponse
from okki_assets.simulator.okki import (
    DRIFT_KINDS,
    FAULT_KINDS,
    INFO_PATH,
    LIST_PATH,
    THROTTLE_SHAPES,
    OkkiSimulator,
)
from okki_assets.simulator.target import BATCH_PATH, TargetSimulator
from okki_assets_tests.conftest import SYNC_START, Pipeline, day_keys, make_pipeline

DAYS = 2
COMPANIES = 120
#: Client settings of the matrix: a read timeout below the latency spikes, retries that start
#: fast, small batches so that target faults hit many of them.
READ_TIMEOUT = 2.0  # far above a loaded machine's slowest ordinary answer
SPIKE = 3.0
FAST_RETRY = 0.02
BATCH = 10
PAGE_SIZE = 20


def reject_ids_ending_in_7(record: dict[str, Any]) -> str | None:
    """A per-record target validation that refuses about a tenth of the records."""
    if record.get("deleted") is not True and str(record.get("id", "")).endswith("7"):
        return "the target refuses ids ending in 7 (test rule)"
    return None


class QuirkyOkki(OkkiSimulator):
    """The OKKI simulator plus two one-off misbehaviours of the live API: the first request for
    page 2 of a window's list answers an HTML page instead of JSON, and info answers code 404
    for one company that the list keeps listing (``ghost``)."""

    ghost: str = ""
    html_served: int = 0

    def handle(self, request: SimRequest) -> SimResponse:
        first_page_two = request.query.get("start_index") == "2" and not self.html_served
        if request.path == LIST_PATH and first_page_two:
            self.html_served += 1
            return SimResponse.text("<html><body>502 Bad Gateway</body></html>", 200)
        if request.path == INFO_PATH and request.query.get("company_id") == self.ghost:
            return SimResponse.json({"code": 404, "message": "Not Found Resource"})
        return super().handle(request)


@dataclass(frozen=True)
class Case:
    okki: dict[str, Any] = field(default_factory=dict)
    target: dict[str, Any] = field(default_factory=dict)
    malformed_rate: float = 0.0
    quirky: bool = False
    rejects: bool = False


OKKI_FAULTS = {
    "fault_rate": 0.2,  # every kind: 5xx status, 5xx body, reset, HTML page
    # Every throttle shape twice, on business requests 20 apart (so never twice on one call):
    # served whatever the machine's pace, unlike a quota the client may not reach when loaded.
    "throttle_calls": (5, 25, 45, 65, 85, 105, 125, 145),
    "latency_spike_rate": 0.03,
    "latency_spike": SPIKE,  # past the client's read timeout
}
TARGET_FAULTS = {
    "drop_reply_rate": 0.1,  # committed, then the reply is lost
    "throttle_rate": 0.1,
    "retry_after": 0.05,
    "error_rate": 0.05,
}

CASES: dict[str, Case] = {
    # 1. 20 % of OKKI calls failing in every way, throttled in every shape, latency spikes.
    "okki_faults": Case(okki=OKKI_FAULTS),
    # 2. The access token revoked mid-window, refused with HTTP 401.
    "token_revoked_401": Case(okki={"revoke_token_after": 25}),
    # 2. The same, refused with access_denied inside an HTTP 200 body.
    "token_revoked_in_body": Case(okki={"revoke_token_after": 25, "denied_in_body": True}),
    # 3. 10 % of each window's companies leave, enter or are bumped while it is paged.
    "drift": Case(okki={"drift_rate": 0.1}),
    # 4. Dropped replies after commit, 429 with Retry-After, 5xx, per-record rejections.
    "target_faults": Case(
        target={**TARGET_FAULTS, "reject_rule": reject_ids_ending_in_7}, rejects=True
    ),
    # 6. Malformed and nasty OKKI data, one HTML list page, info 404 for a listed company.
    "malformed": Case(malformed_rate=0.12, quirky=True),
    # All of them together (rejecting the over-long names the malformed data brings).
    "combined": Case(
        okki={**OKKI_FAULTS, "drift_rate": 0.1, "revoke_token_after": 40},
        target={**TARGET_FAULTS, "reject_rule": reject_overlong_names},
        malformed_rate=0.12,
        quirky=True,
        rejects=True,
    ),
}


def fast_resources(pipeline: Pipeline, **okki: Any) -> dict[str, Any]:
    return {
        "okki": OkkiResource(
            **{
                **pipeline.okki.model_dump(),
                "rate_limit": 150.0,
                "page_size": PAGE_SIZE,  # several pages per window: drift needs a page 2
                "read_timeout": READ_TIMEOUT,
                "retry_base_delay": FAST_RETRY,
                **okki,
            }
        ),
        "target": TargetResource(
            **{**pipeline.target.model_dump(), "batch_size": BATCH, "retry_base_delay": FAST_RETRY}
        ),
    }


def in_window(pipeline: Pipeline, key: str) -> list[dict[str, Any]]:
    return pipeline.sims.okki.companies_in_window(*window_for_key(key))


def assert_exactly_once(rec: Reconciliation, *, ghosts: tuple[str, ...] = ()) -> None:
    """The figures of the issue, read from the truth and the target."""
    assert rec.expected > 0
    assert rec.lost == []
    assert rec.quarantined_valid == list(ghosts)
    assert rec.malformed_unquarantined == []
    assert rec.rejected_unrecorded == []
    assert rec.doubled == []
    assert rec.stale == []
    assert rec.deleted_at_target == []
    assert rec.different == []
    assert rec.current + len(rec.rejected) + len(ghosts) == rec.expected


def sync_then_backfill(
    pipeline: Pipeline, keys: list[str], **resources: Any
) -> list[dg.ExecuteInProcessResult]:
    """Each partition in its own run, oldest first, then all of them again in one ranged run
    (the UI's single-run backfill): the second pass must change nothing at the target."""
    daily = [pipeline.materialize(key, raise_on_error=False, **resources) for key in keys]
    ranged = pipeline.materialize(
        partition_range=(keys[0], keys[-1]), raise_on_error=False, **resources
    )
    return [*daily, ranged]


def failed_checks(result: dg.ExecuteInProcessResult) -> set[str]:
    """The run's failed checks of ERROR severity (a WARN, like a high quarantine ratio on
    deliberately malformed data, fails no run)."""
    return {
        e.check_name
        for e in result.get_asset_check_evaluations()
        if not e.passed and e.severity == dg.AssetCheckSeverity.ERROR
    }


def failures(results: list[dg.ExecuteInProcessResult]) -> list[str]:
    """Each failed run's step errors and failed checks, for assertion messages."""
    out = []
    for result in results:
        if not result.success:
            errors = [
                e.event_specific_data.error.message.strip()  # type: ignore[union-attr]
                for e in result.all_events
                if e.event_type_value == "STEP_FAILURE"
            ]
            out.append(f"{errors} checks={sorted(failed_checks(result))}")
    return out


def metadata_sum(results: list[dg.ExecuteInProcessResult], asset: str, name: str) -> int:
    total = 0
    for result in results:
        for event in result.get_asset_materialization_events():
            mat = event.event_specific_data.materialization  # type: ignore[union-attr]
            if mat.asset_key == dg.AssetKey(asset) and name in mat.metadata:
                total += int(mat.metadata[name].value)  # type: ignore[arg-type]
    return total


@pytest.mark.parametrize("name", list(CASES))
def test_the_matrix_case_arrives_exactly_once(
    name: str, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    case = CASES[name]
    okki_sim = (QuirkyOkki if case.quirky else OkkiSimulator).demo(
        n=COMPANIES, days=DAYS, seed=7, malformed_rate=case.malformed_rate, **case.okki
    )
    keys = day_keys(DAYS)
    ghost = ""
    if isinstance(okki_sim, QuirkyOkki):  # from the first window: drift keeps it in a synced one
        start, end = window_for_key(keys[0])
        ghost = okki_sim.ghost = str(okki_sim.companies_in_window(start, end)[3]["company_id"])
    for pipeline in make_pipeline(tmp_path, instance, okki=okki_sim, target_overrides=case.target):
        results = sync_then_backfill(pipeline, keys, **fast_resources(pipeline))
        rec = reconcile(pipeline.sims.okki, pipeline.sims.target, pipeline.database, keys)
        # Drift may carry the ghost out of the synced windows (to tomorrow's): then it is
        # nobody's to keep.
        truth = {str(c.get("company_id")) for k in keys for c in in_window(pipeline, k)}
        ghosts = (ghost,) if ghost in truth else ()
        assert_exactly_once(rec, ghosts=ghosts)

        # Runs fail only where the target refused records: the blocking load check says so.
        for result in results:
            assert result.success or (
                case.rejects and failed_checks(result) == {"load_reconciled"}
            ), failures(results)
        if case.rejects:
            assert rec.rejected and all(rec.rejected.values())
        else:
            assert all(r.success for r in results), failures(results)

        # The faults of the case really happened (the simulators' and clients' own counts).
        okki_stats, target_stats = pipeline.sims.okki.stats, pipeline.sims.target.stats()
        if "fault_rate" in case.okki:
            assert set(okki_stats.faults) == set(FAULT_KINDS)
            assert set(okki_stats.throttled) == set(THROTTLE_SHAPES)
            assert metadata_sum(results, "raw_companies", "retries_timeout") > 0
        if "revoke_token_after" in case.okki:
            assert okki_stats.denied >= 2
            assert metadata_sum(results, "raw_companies", "retries_token_renewed") >= 2
        if "drift_rate" in case.okki:
            assert {kind for kind, *_ in pipeline.sims.okki.drift_log} == set(DRIFT_KINDS)
        if case.target:
            assert target_stats["dropped_replies"] > 0 and target_stats["replays"] > 0
            assert target_stats["throttled"] > 0 and target_stats["errors"] > 0
        if case.malformed_rate:
            reasons = set(rec.quarantined_by_reason)
            assert {
                "company_id_missing",
                "company_id_not_numeric",
                "name_blank",
                "update_time_unparseable",
                *(["info_not_found"] if ghosts else []),
            } <= reasons
            names = [r["fullName"] for r in pipeline.sims.target.records.values()]
            assert any("🚀" in n for n in names), "emoji names arrive intact"
            assert any("\u202eشركة" in n and "חברת סחר" in n for n in names), "RTL text intact"
            if "reject_rule" not in case.target:
                assert any(len(n) > 500 for n in names), "very long names arrive whole"
            elif case.target["reject_rule"] is reject_overlong_names:
                assert "fullName is longer than 200 characters" in rec.rejected.values()
            assert any(n.startswith("ACME Trading") for n in names), "control chars are removed"
            assert not [n for n in names if any(unicodedata.category(c) == "Cc" for c in n)]
        if case.quirky:
            # The HTML page was retried; the company info could not detail is kept, marked.
            assert isinstance(okki_sim, QuirkyOkki) and okki_sim.html_served == 1
        if ghosts:
            rows = pipeline.query(
                "select reasons, list_json from quarantined_companies where company_id = ?",
                [ghost],
            )
            assert len(rows) == 1 and rows[0][0] == ["info_not_found"]
            assert json.loads(rows[0][1])["okki_assets_error"] == "info_not_found"


class OutOfWindowOkki(OkkiSimulator):
    """OKKI listing, on page 1 of a window, one company whose update time (in the list and in
    its detail) lies outside the window asked for."""

    stray: dict[str, Any] = {}

    def handle(self, request: SimRequest) -> SimResponse:
        response = super().handle(request)
        query = request.query
        if request.path == LIST_PATH and query.get("removed") == "0" and self.stray:
            body = json.loads(response.body)
            if isinstance(body.get("data"), dict):  # not a fault or throttle answer
                if query.get("start_index") == "1":
                    body["data"]["list"].append(self.stray)
                body["data"]["totalItem"] = int(body["data"]["totalItem"]) + 1
                response.body = json.dumps(body, ensure_ascii=False).encode()
        return response


def test_a_listed_record_outside_the_window_is_quarantined(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    okki_sim = OutOfWindowOkki.demo(n=80, days=DAYS, seed=5)
    keys = day_keys(DAYS)
    earlier = next(  # well inside the first window, off its edges
        c
        for c in okki_sim.companies_in_window(*window_for_key(keys[0]))
        if "08:00:00" < c["update_time"][11:] < "20:00:00"
    )
    okki_sim.stray = list_view(earlier)
    stray_id = str(earlier["company_id"])
    for pipeline in make_pipeline(tmp_path, instance, okki=okki_sim):
        assert pipeline.materialize(keys[1], **fast_resources(pipeline)).success
        rows = pipeline.query(
            "select partition_key, reasons from quarantined_companies where company_id = ?",
            [stray_id],
        )
        assert rows == [(keys[1], ["update_time_outside_window"])]
        assert stray_id not in pipeline.sims.target.records


# --- case 8: staleness ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "replay",
    [
        "loaded_only",  # the old partition's cleaned copy still holds the older version
        "full",  # the old partition is pulled again (the company has left it)
    ],
)
def test_an_old_partition_rematerialized_never_overwrites_a_newer_version(
    replay: str, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    for pipeline in make_pipeline(tmp_path, instance, companies=100, days=DAYS):
        older, newer = day_keys(DAYS)
        for key in (older, newer):
            assert pipeline.materialize(key).success
        moved = pipeline.sims.okki.companies_in_window(*window_for_key(older))[:5]
        new_start, _ = window_for_key(newer)
        for i, company in enumerate(moved):
            pipeline.sims.okki.update_company(
                company["company_id"],
                {"name": f"Newer Name {i}"},
                update_time=new_start + timedelta(hours=2, seconds=i),
            )
        assert pipeline.materialize(newer).success
        before = len(pipeline.sims.target.history)

        if replay == "loaded_only":
            assert pipeline.materialize(older, selection=["loaded_companies"]).success
        else:
            assert pipeline.materialize(older).success
        assert pipeline.sims.target.history[before:] == []
        for i, company in enumerate(moved):
            held = pipeline.sims.target.records[str(company["company_id"])]
            assert held["fullName"] == f"Newer Name {i}"
        rec = reconcile(pipeline.sims.okki, pipeline.sims.target, pipeline.database, [older, newer])
        assert_exactly_once(rec)
        if replay == "loaded_only":
            skipped = pipeline.query(
                "select count(*) from cleaned_companies c join load_ledger l using (company_id)"
                " where c.partition_key = ? and l.update_time > c.update_time",
                [older],
            )
            assert skipped == [(len(moved),)]


# --- cases 5 and 7: runs in other processes -------------------------------------------------


@dataclass(frozen=True)
class ChildRun:
    """One materialization for a spawned process (picklable settings only)."""

    database: str
    okki_url: str
    target_url: str
    key: str
    selection: tuple[str, ...] | None = None
    batch_size: int = BATCH
    barrier: str = ""  # wait for this file to exist before materializing


def _materialize_in_child(run: ChildRun, results: Any) -> None:
    """Run in a spawned process: materialize one partition into the shared DuckDB file."""
    okki = OkkiResource(
        base_url=run.okki_url,
        client_id=DEMO_CLIENT_ID,
        client_secret=DEMO_CLIENT_SECRET,
        rate_limit=300.0,
        read_timeout=60.0,
        retry_base_delay=FAST_RETRY,
    )
    target = TargetResource(
        url=run.target_url,
        token=DEMO_TARGET_TOKEN,
        batch_size=run.batch_size,
        read_timeout=60.0,
        retry_base_delay=FAST_RETRY,
    )
    warehouse = WarehouseResource(database=run.database, lock_timeout=60)
    assets = build_assets(build_sync_partitions(SYNC_START))
    while run.barrier and not Path(run.barrier).exists():
        time.sleep(0.01)
    result = dg.materialize(
        assets,
        selection=list(run.selection) if run.selection else None,
        partition_key=run.key,
        resources={"okki": okki, "target": target, "warehouse": warehouse},
        raise_on_error=False,
    )
    results.put((run.key, result.success))


def _spawn(pipeline: Pipeline, key: str, results: Any, **kwargs: Any) -> Any:
    run = ChildRun(
        str(pipeline.database), pipeline.sims.okki_url, pipeline.sims.target_url, key, **kwargs
    )
    process = mp.get_context("spawn").Process(
        target=_materialize_in_child, args=(run, results), daemon=True
    )
    process.start()
    return process


def _wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def slow_target_pipeline(tmp_path: Path, instance: dg.DagsterInstance) -> Iterator[Pipeline]:
    yield from make_pipeline(
        tmp_path, instance, companies=180, days=DAYS, target_overrides={"latency": 0.15}
    )


class HeldTarget(TargetSimulator):
    """A target that, once ``hold_after`` records are applied, holds the next batch (and so the
    whole server) until ``release`` is set, then answers it 503 without applying it: a run can
    be killed in the middle of its load however fast or slow the machine is."""

    hold_after = 15

    def __init__(self) -> None:
        super().__init__()
        self.held = threading.Event()
        self.release = threading.Event()

    def handle(self, request: SimRequest) -> SimResponse:
        holding = request.path == BATCH_PATH and not self.release.is_set()
        if holding and len(self.history) >= self.hold_after:
            self.held.set()
            self.release.wait(600)
            return SimResponse.json({"code": 503, "message": "held"}, status=503)
        return super().handle(request)


@pytest.mark.slow
def test_a_run_killed_in_the_middle_of_the_load_is_completed_by_the_next(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    target = HeldTarget()
    for pipeline in make_pipeline(tmp_path, instance, companies=180, days=DAYS, target=target):
        key = day_keys(DAYS)[1]
        truth = pipeline.sims.okki.companies_in_window(*window_for_key(key))
        results = mp.get_context("spawn").Queue()
        child = _spawn(pipeline, key, results, batch_size=5)
        # loaded_companies is running: the target applied some batches and holds the next.
        _wait_until(target.held.is_set, 900, "the load to start")
        os.kill(child.pid, signal.SIGKILL)
        child.join(30)
        applied_before = len(pipeline.sims.target.history)
        target.release.set()  # the held batch is answered 503; resends queued meanwhile apply
        assert child.exitcode == -signal.SIGKILL
        assert 15 <= applied_before < len(truth), "the kill must land in the middle of the load"

        # The killed process held DuckDB's lock: the file opens, and the ledger shows the
        # interrupted claims (sending) or nothing half-recorded.
        statuses = dict(pipeline.query("select status, count(*) from load_ledger group by status"))
        assert set(statuses) <= {"sending", "created"}
        assert pipeline.materialize(key).success
        rec = reconcile(pipeline.sims.okki, pipeline.sims.target, pipeline.database, [key])
        assert_exactly_once(rec)
        statuses = dict(pipeline.query("select status, count(*) from load_ledger group by status"))
        assert set(statuses) <= {"created", "unchanged"}
        assert pipeline.query("select count(*) from raw_staging") == [(0,)]


@pytest.mark.slow
def test_two_partitions_at_once_on_one_duckdb_file_both_succeed(
    slow_target_pipeline: Pipeline,
) -> None:
    pipeline = slow_target_pipeline
    keys = day_keys(DAYS)
    results = mp.get_context("spawn").Queue()
    children = [_spawn(pipeline, key, results) for key in keys]
    outcomes = dict(results.get(timeout=900) for _ in children)
    for child in children:
        child.join(30)
    assert outcomes == dict.fromkeys(keys, True), "a run failed (a DuckDB lock failure?)"
    rec = reconcile(pipeline.sims.okki, pipeline.sims.target, pipeline.database, keys)
    assert_exactly_once(rec)


@pytest.mark.slow
def test_the_same_partition_twice_at_once_keeps_the_ledger_consistent(
    slow_target_pipeline: Pipeline,
) -> None:
    pipeline = slow_target_pipeline
    key = day_keys(DAYS)[1]
    results = mp.get_context("spawn").Queue()
    children = [_spawn(pipeline, key, results) for _ in range(2)]
    for _ in children:
        results.get(timeout=900)
    for child in children:
        child.join(30)
    # Whatever the two runs interleaved, one more run settles everything, and nothing was
    # applied twice in between.
    assert pipeline.materialize(key).success
    rec = reconcile(pipeline.sims.okki, pipeline.sims.target, pipeline.database, [key])
    assert_exactly_once(rec)
    # The ledger: one row per company of the window, in its final state, at OKKI's version.
    rows = pipeline.query("select company_id, status, update_time from load_ledger")
    truth = {
        str(c["company_id"]): parse_time(c["update_time"])
        for c in pipeline.sims.okki.companies_in_window(*window_for_key(key))
    }
    assert sorted(str(r[0]) for r in rows) == sorted(truth)
    for company_id, status, update_time in rows:
        assert status in ("created", "unchanged"), (company_id, status)
        local = update_time.astimezone(CHINA_TZ).replace(tzinfo=None)
        assert local == truth[str(company_id)], company_id


class GatedTarget(TargetSimulator):
    """A target that answers 429 (Retry-After 0.5 s) to batches carrying one company's older
    version, a few times or until its newer version has been applied: the older batch's
    resends land after the newer one unless loads are serialised."""

    company: str = ""
    old_name: str = ""
    new_name: str = ""
    gated: int = 0

    def handle(self, request: SimRequest) -> SimResponse:
        if request.path == BATCH_PATH and self.company and self.gated < 6:
            records = {r.get("id"): r for r in json.loads(request.body).get("records", [])}
            older = records.get(self.company, {}).get("fullName") == self.old_name
            newer_applied = self.records.get(self.company, {}).get("fullName") == self.new_name
            if older and not newer_applied:
                self.gated += 1
                return SimResponse.json(
                    {"code": 429, "message": "slow down"},
                    status=429,
                    headers={"Retry-After": "0.5"},
                )
        return super().handle(request)


@pytest.mark.slow
def test_two_loads_at_once_never_write_an_older_version_over_a_newer_one(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    target = GatedTarget()
    for pipeline in make_pipeline(tmp_path, instance, companies=100, days=DAYS, target=target):
        older, newer = day_keys(DAYS)
        upstream = ["raw_companies", "cleaned_companies"]
        assert pipeline.materialize(older, selection=upstream).success
        company = pipeline.sims.okki.companies_in_window(*window_for_key(older))[5]
        target.company, target.old_name = str(company["company_id"]), company["name"].strip()
        target.new_name = "Renamed In The Newer Window"
        pipeline.sims.okki.update_company(
            company["company_id"],
            {"name": target.new_name},
            update_time=window_for_key(newer)[0] + timedelta(hours=3),
        )
        assert pipeline.materialize(newer, selection=upstream).success
        # The older partition's load starts first and is held back at the target; the newer
        # one's starts while it waits.
        barrier = tmp_path / "go"
        results = mp.get_context("spawn").Queue()
        loaded = ("loaded_companies",)
        first = _spawn(pipeline, older, results, selection=loaded)
        second = _spawn(pipeline, newer, results, selection=loaded, barrier=str(barrier))
        _wait_until(lambda: target.gated >= 1, 900, "the older version to be held back")
        barrier.touch()
        outcomes = dict(results.get(timeout=900) for _ in range(2))
        for child in (first, second):
            child.join(30)
        assert outcomes == {older: True, newer: True}
        assert target.records[target.company]["fullName"] == target.new_name
        rec = reconcile(pipeline.sims.okki, pipeline.sims.target, pipeline.database, [older, newer])
        assert_exactly_once(rec)
