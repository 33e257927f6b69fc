"""The operator's day in the Dagster UI, proved against a running webserver over GraphQL.

A module fixture starts both simulators in this process (150 companies over 4 days, a few of
them malformed, two deleted) and the real ``dagster dev`` on a free loopback port, with a
temporary DAGSTER_HOME and the environment pointing the code location at the simulators. Through
the webserver's GraphQL API, as the UI does, the tests:

- find the three assets, their checks, the freshness policy, the schedules and the alert sensor;
- launch a backfill of three partitions with ``launchPartitionBackfill`` and wait for the backfill
  daemon to finish it: one ranged run (BackfillPolicy.single_run);
- read each partition's own materialization metadata (the numbers the UI plots across
  partitions, the markdown preview, the tombstones) and each partition's own check executions
  (not SKIPPED, their descriptions naming the partition), and compare them with DuckDB;
- launch a daily run of today's window (the ``okki_sync`` job with a partition tag), and read
  each check's partition statuses (the check's Partitions view) after the backfill and after the
  daily run: every synced partition Passed or Failed, as its execution says, never Missing;
- open the UI in headless Chromium (the distribution's ``chromium``, driven over its DevTools
  protocol): the global asset graph with the three assets and okki_account, a check's
  Partitions view with every synced window Passed, a partition's metadata with DuckDB's figures.
  With ``OKKI_ASSETS_SCREENSHOTS=docs`` its screenshots refresh the README's (``docs/ui-*.png``);
- stop the webserver and find no process of it left.

A last test starts ``okki-assets dev`` as a subprocess, finds its code location pointing at its
own simulators, interrupts it with SIGINT (Ctrl-C) and finds nothing left running.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb
import httpx
import psutil
import pytest

from okki_assets.assets.account import ACCOUNT_ASSET, ACCOUNT_GROUP
from okki_assets.assets.common import GROUP
from okki_assets.cli.dev import (
    dagster_dev_command,
    dev_environment,
    group_alive,
    start_process_group,
    stop_process_group,
    wait_for_webserver,
    write_workspace,
)
from okki_assets.partitions import window_for_key
from okki_assets.simulator.harness import RunningSimulators, running_simulators
from okki_assets.simulator.http import ServerThread, SimRequest, SimResponse
from okki_assets_tests.conftest import day_keys
from okki_assets_tests.integration.chromium import Chromium, find_chromium, union
from okki_assets_tests.ports import free_port

ASSETS = ("raw_companies", "cleaned_companies", "loaded_companies")
CHECKS = {
    "raw_companies": {"raw_complete"},
    "cleaned_companies": {"schema_valid", "company_id_unique", "quarantine_ratio"},
    "loaded_companies": {"load_reconciled"},
}
ACCOUNT_CHECKS = {"okki_account": {"account_in_sync"}}  # the whole account: not partitioned
BLOCKING = {"schema_valid", "company_id_unique", "load_reconciled"}
#: Numbers the UI plots across partitions: (asset, metadata label).
PLOTTED = [
    ("raw_companies", "fetched"),
    ("raw_companies", "okki_total_item_reported"),
    ("raw_companies", "listed_rows_of_neighbour_days"),
    ("raw_companies", "list_passes_until_stable"),
    ("raw_companies", "window_splits_list_unsettled"),
    ("raw_companies", "info_not_found_for_listed"),
    ("raw_companies", "requests_total"),
    ("raw_companies", "retries_total"),
    ("cleaned_companies", "cleaned"),
    ("cleaned_companies", "quarantined"),
    ("loaded_companies", "sent"),
    ("loaded_companies", "skipped_unchanged"),
    ("loaded_companies", "failed"),
    ("loaded_companies", "tombstones"),
    ("loaded_companies", "status_created"),
    ("loaded_companies", "status_rejected"),
    ("loaded_companies", "requests_total"),
]
FLOATS = [("raw_companies", "seconds_throttled"), ("loaded_companies", "seconds_throttled")]
QUARANTINE_THRESHOLD = 0.05
TERMINAL = {"COMPLETED_SUCCESS", "COMPLETED_FAILED", "COMPLETED", "FAILED", "CANCELED"}
RUN_TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}
DAGSTER_YAML = """\
telemetry:
  enabled: false
run_coordinator:
  module: dagster.core.run_coordinator
  class: QueuedRunCoordinator
  config:
    dequeue_interval_seconds: 1
"""


class Robot:
    """An alert webhook on loopback (the code location is loaded with one configured)."""

    def __init__(self) -> None:
        self.requests: list[SimRequest] = []

    def handle(self, request: SimRequest) -> SimResponse:
        self.requests.append(request)
        return SimResponse.json({"errcode": 0, "errmsg": "ok"})


def graphql(url: str, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    response = httpx.post(
        f"{url}/graphql", json={"query": query, "variables": variables or {}}, timeout=120
    )
    response.raise_for_status()
    body = response.json()
    assert not body.get("errors"), body["errors"]
    return body["data"]


def _processes_of(pid: int) -> set[tuple[int, float]]:
    """(pid, create_time) of ``pid`` and all its descendants that exist now."""
    try:
        root = psutil.Process(pid)
        found = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return set()
    out = set()
    for proc in found:
        try:
            out.add((proc.pid, proc.create_time()))
        except psutil.NoSuchProcess:
            continue
    return out


def _survivors(seen: set[tuple[int, float]]) -> list[str]:
    alive = []
    for pid, created in seen:
        try:
            proc = psutil.Process(pid)
            if proc.create_time() == created and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(f"{pid} {' '.join(proc.cmdline())[:120]}")
        except psutil.NoSuchProcess:
            continue
    return alive


@dataclass
class DevRun:
    """What ``okki-assets dev`` did when started as a subprocess and interrupted with SIGINT."""

    output: str = ""
    okki_url: str = ""
    token_status: int = 0
    instance_config_written: bool = False
    returncode: int | None = None
    processes: set[tuple[int, float]] = field(default_factory=set)
    survivors: list[str] = field(default_factory=list)
    simulator_down: bool = False
    error: str = ""
    seconds: float = 0.0


def _run_dev_command(folder: Path) -> DevRun:
    """Start ``okki-assets dev`` (small data), look at its code location, then press Ctrl-C.

    Runs while the backfill daemon of the module's webserver waits for its next iteration.
    """
    result = DevRun()
    started = time.monotonic()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    env["OKKI_BASE_URL"] = "https://must-not-be-used.invalid"  # the simulators' settings win
    out = folder / "dev.out"
    command = [sys.executable, "-m", "okki_assets.cli", "dev", "--companies", "40", "--days", "2"]
    command += ["--faults", "none", "--deleted", "1", "--port", str(port)]
    command += ["--project-dir", str(folder)]
    with out.open("wb") as sink:
        proc = subprocess.Popen(
            command,
            cwd=Path(__file__).resolve().parents[2],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # so that the test can clean up whatever happens
        )
    try:
        wait_for_webserver(url, proc, timeout=300)
        deadline = time.monotonic() + 180
        while "Dagster UI ready" not in out.read_text(errors="replace"):  # what the user sees
            assert time.monotonic() < deadline, "okki-assets dev never said it was ready"
            time.sleep(0.1)
        result.processes |= _processes_of(proc.pid)
        resource = graphql(url, OKKI_RESOURCE)["topLevelResourceDetailsOrError"]
        values = {v["key"]: v["value"] for v in resource["configuredValues"]}
        result.okki_url = values["base_url"].strip('"')
        token = httpx.post(
            f"{result.okki_url}/v1/oauth2/access_token",
            data={
                "grant_type": "client_credentials",
                "client_id": "demo-client",
                "client_secret": "demo-secret",
                "scope": "company",
            },
            timeout=30,
        )
        result.token_status = token.status_code
        result.instance_config_written = (folder / ".dagster_home" / "dagster.yaml").exists()
        result.processes |= _processes_of(proc.pid)

        proc.send_signal(signal.SIGINT)  # what Ctrl-C in the terminal sends
        result.returncode = proc.wait(timeout=180)
        result.survivors = _survivors(result.processes)
        try:
            httpx.get(f"{result.okki_url}/v1/company/list", timeout=2)
        except httpx.TransportError:
            result.simulator_down = True
    except Exception:
        result.error = traceback.format_exc()
    finally:
        if proc.poll() is None or group_alive(proc.pid):
            stop_process_group(proc, grace=5)
        result.output = out.read_text(errors="replace")
        result.seconds = time.monotonic() - started
    return result


OKKI_RESOURCE = """
{ topLevelResourceDetailsOrError(resourceSelector: {repositoryLocationName: "okki_assets",
    repositoryName: "__repository__", resourceName: "okki"}) {
  __typename ... on ResourceDetails { configuredValues { key value } } } }
"""


@dataclass
class Session:
    url: str
    sims: RunningSimulators
    database: Path
    log: Path
    proc: subprocess.Popen[bytes]
    keys: list[str]
    deleted: dict[str, str]  # company_id -> partition key of its delete time
    seen: set[tuple[int, float]] = field(default_factory=set)
    backfill: dict[str, Any] = field(default_factory=dict)
    backfill_seconds: float = 0.0
    today: str = ""  # the in-progress window, synced by a daily run after the backfill
    daily: dict[str, Any] = field(default_factory=dict)
    # Each check's status per partition, as its Partitions view shows it, after each run.
    statuses_after_backfill: dict[str, dict[str, str]] = field(default_factory=dict)
    statuses_after_daily: dict[str, dict[str, str]] = field(default_factory=dict)
    dev: DevRun = field(default_factory=lambda: DevRun())

    def q(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        return graphql(self.url, query, variables)

    def watch(self) -> None:
        self.seen |= _processes_of(self.proc.pid)

    def sql(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        with duckdb.connect(str(self.database), read_only=True) as conn:
            return conn.execute(sql, params or []).fetchall()

    def log_tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-40:])


LOCATION_QUERY = """
{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus
    locationOrLoadError { __typename ... on PythonError { message } } } } } }
"""

LAUNCH = """
mutation($p: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $p) {
  __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }
"""

BACKFILL = """
query($id: String!) { partitionBackfillOrError(backfillId: $id) { __typename
  ... on PartitionBackfill { id status numPartitions partitionNames
    runs { runId status tags { key value } } } } }
"""


LAUNCH_RUN = """
mutation($p: ExecutionParams!) { launchRun(executionParams: $p) {
  __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }
"""

RUN = """
query($id: ID!) { runOrError(runId: $id) { __typename
  ... on Run { runId status tags { key value } } } }
"""

CHECK_PARTITION_STATUSES = """
{ assetNodes { assetKey { path } assetChecksOrError { ... on AssetChecks { checks { name
    partitionStatuses { __typename
      ... on AssetCheckTimePartitionStatuses { ranges { startKey endKey status } } } } } } } }
"""


def _check_statuses(session: Session) -> dict[str, dict[str, str]]:
    """check name -> {partition: status} from the ranges the check's Partitions view draws.

    A partition in no range is "Missing" in the UI: it has no current result.
    """
    out: dict[str, dict[str, str]] = {}
    for node in session.q(CHECK_PARTITION_STATUSES)["assetNodes"]:
        for check in node["assetChecksOrError"]["checks"]:
            statuses = check["partitionStatuses"]
            if node["assetKey"]["path"] == ["okki_account"]:
                assert statuses is None  # account_in_sync: one result per run, no partitions
                continue
            assert statuses["__typename"] == "AssetCheckTimePartitionStatuses", statuses
            by_key = out.setdefault(check["name"], {})
            for r in statuses["ranges"]:
                day, last = date.fromisoformat(r["startKey"]), date.fromisoformat(r["endKey"])
                while day <= last:
                    by_key[day.isoformat()] = r["status"]
                    day += timedelta(days=1)
    return out


def sync_run_params(partition: str) -> dict[str, Any]:
    """launchRun's parameters for one okki_sync run of ``partition``, as the UI's Materialize
    and the daily schedule launch it."""
    return {
        "selector": {
            "repositoryLocationName": "okki_assets",
            "repositoryName": "__repository__",
            "jobName": "okki_sync",
        },
        "runConfigData": {},
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": partition}]},
    }


def _run_daily(session: Session, key: str, timeout: float = 600) -> None:
    """One run of the okki_sync job for one partition, as the daily schedule launches it."""
    launched = session.q(LAUNCH_RUN, {"p": sync_run_params(key)})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]
    session.daily = _wait_for(
        session,
        lambda: session.q(RUN, {"id": run_id})["runOrError"],
        RUN_TERMINAL,
        time.monotonic() + timeout,
    )


def _wait_for(
    session: Session,
    fetch: Callable[[], dict[str, Any]],
    finished: set[str],
    deadline: float,
) -> dict[str, Any]:
    """Poll ``fetch`` (a run or a backfill) until its status is one of ``finished``."""
    while True:
        session.watch()  # the run worker and its step processes, while they exist
        found = fetch()
        if found["status"] in finished:
            return found
        assert time.monotonic() < deadline, f"still {found}\n{session.log_tail()}"
        time.sleep(0.5)


def _wait_loaded(session: Session, timeout: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        entries = session.q(LOCATION_QUERY)["workspaceOrError"]["locationEntries"]
        if entries and entries[0]["loadStatus"] == "LOADED":
            return entries[0]
        assert time.monotonic() < deadline, f"location not loaded: {entries}\n{session.log_tail()}"
        time.sleep(0.5)


def _run_backfill(session: Session, dev_folder: Path, timeout: float = 900) -> None:
    params = {
        "assetSelection": [{"path": [a]} for a in ASSETS],
        "partitionNames": session.keys,
        "fromFailure": False,
        "title": "three days from the test",
    }
    started = time.monotonic()
    launched = session.q(LAUNCH, {"p": params})["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    backfill_id = launched["backfillId"]
    # The backfill daemon looks every 30 s: meanwhile, try the okki-assets dev command.
    session.dev = _run_dev_command(dev_folder)
    session.backfill = _wait_for(
        session,
        lambda: session.q(BACKFILL, {"id": backfill_id})["partitionBackfillOrError"],
        TERMINAL,
        started + timeout,
    )
    session.backfill_seconds = time.monotonic() - started


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    tmp = tmp_path_factory.mktemp("ui")
    home = tmp / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(DAGSTER_YAML)
    days = day_keys(4)  # the simulator's four days; today's window is still in progress
    keys = days[:3]
    with (
        running_simulators(companies=150, days=4, okki_overrides={"malformed_rate": 0.03}) as sims,
        ServerThread(Robot()) as robot,
    ):
        # Two companies of the first day deleted on the third: tombstones for that window.
        first_start, first_end = window_for_key(keys[0])
        third_start, _ = window_for_key(keys[2])
        deleted = {}
        for i, company in enumerate(sims.okki.companies_in_window(first_start, first_end)[:2]):
            when = third_start + timedelta(hours=10, minutes=i)
            sims.okki.delete_company(company["company_id"], delete_time=when)
            deleted[str(company["company_id"])] = keys[2]
        env = dev_environment(
            os.environ,
            sims,
            database=tmp / "okki.duckdb",
            home=home,
            sync_start=days[0],
            rate_limit=1000.0,
        )
        env["OKKI_ALERT_WEBHOOK"] = f"{robot.url}/robot/send?access_token=t"
        port = free_port()
        log = home / "dagster-dev.log"
        with log.open("wb") as sink:
            proc = start_process_group(
                dagster_dev_command(write_workspace(home), "127.0.0.1", port),
                env=env,
                cwd=home,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        session = Session(
            f"http://127.0.0.1:{port}", sims, tmp / "okki.duckdb", log, proc, keys, deleted
        )
        session.today = days[3]
        try:
            wait_for_webserver(session.url, proc, timeout=300)
            session.watch()
            _wait_loaded(session)
            session.watch()
            _run_backfill(session, tmp_path_factory.mktemp("dev"))
            session.statuses_after_backfill = _check_statuses(session)
            _run_daily(session, session.today)
            session.statuses_after_daily = _check_statuses(session)
            session.watch()
            yield session
        finally:
            stop_process_group(proc, grace=30)


# --- the code location ---------------------------------------------------------------------


def test_the_code_location_loads_its_assets_with_their_checks(ui: Session) -> None:
    entry = _wait_loaded(ui)
    assert entry["name"] == "okki_assets"
    assert entry["locationOrLoadError"]["__typename"] == "RepositoryLocation"
    nodes = ui.q(
        """{ assetNodes { assetKey { path } isPartitioned groupName
             backfillPolicy { policyType maxPartitionsPerRun }
             assetChecksOrError { ... on AssetChecks { checks { name blocking } } } } }"""
    )["assetNodes"]
    # One policy for all three (the backfill dialog's "varying backfill policies" notwithstanding:
    # Dagster 1.13's dialog compares the policies by object identity, see the README).
    policies = [n["backfillPolicy"] for n in nodes if n["isPartitioned"]]
    assert policies == [{"policyType": "SINGLE_RUN", "maxPartitionsPerRun": None}] * 3
    found = {
        n["assetKey"]["path"][0]: {c["name"] for c in n["assetChecksOrError"]["checks"]}
        for n in nodes
    }
    assert found == {**CHECKS, **ACCOUNT_CHECKS}
    groups = {n["assetKey"]["path"][0]: n["groupName"] for n in nodes}
    assert groups == {**dict.fromkeys(CHECKS, "okki"), "okki_account": "okki_reconcile"}
    # the daily windows are partitioned; the whole account (okki_reconcile) is not
    assert {n["assetKey"]["path"][0] for n in nodes if not n["isPartitioned"]} == {"okki_account"}
    blocking = {
        c["name"] for n in nodes for c in n["assetChecksOrError"]["checks"] if c["blocking"]
    }
    assert blocking == BLOCKING
    # Our code raises no warning while the location loads (Dagster's own notices aside).
    ours = [line for line in ui.log.read_text().splitlines() if "okki_assets/" in line]
    assert not [line for line in ours if "Warning" in line], ours


def test_freshness_schedules_and_alert_sensor_are_visible(ui: Session) -> None:
    node = ui.q(
        """{ assetNodeOrError(assetKey: {path: ["loaded_companies"]}) { ... on AssetNode {
             internalFreshnessPolicy { __typename
               ... on TimeWindowFreshnessPolicy { failWindowSeconds warnWindowSeconds } } } } }"""
    )["assetNodeOrError"]
    assert node["internalFreshnessPolicy"] == {
        "__typename": "TimeWindowFreshnessPolicy",
        "failWindowSeconds": 50 * 3600,
        "warnWindowSeconds": 26 * 3600,
    }
    repos = ui.q(
        """{ repositoriesOrError { ... on RepositoryConnection { nodes { name
             schedules { name cronSchedule executionTimezone scheduleState { status } }
             sensors { name sensorType sensorState { status } } } } } }"""
    )["repositoriesOrError"]["nodes"]
    schedules = {
        s["name"]: (s["cronSchedule"], s["executionTimezone"], s["scheduleState"]["status"])
        for r in repos
        for s in r["schedules"]
    }
    assert schedules == {
        "okki_intraday_sync": ("*/15 * * * *", "Asia/Shanghai", "STOPPED"),
        "okki_daily_sync": ("30 0 * * *", "Asia/Shanghai", "STOPPED"),
        "okki_reconcile_daily": ("30 3 * * *", "Asia/Shanghai", "STOPPED"),
    }
    sensors = {
        s["name"]: (s["sensorType"], s["sensorState"]["status"])
        for r in repos
        for s in r["sensors"]
    }
    assert sensors == {"okki_failure_alert": ("RUN_STATUS", "RUNNING")}


# --- the backfill ----------------------------------------------------------------------------


def test_a_three_partition_backfill_is_one_ranged_run(ui: Session) -> None:
    backfill = ui.backfill
    assert backfill["status"] == "COMPLETED_SUCCESS", f"{backfill}\n{ui.log_tail()}"
    assert backfill["numPartitions"] == 3 and sorted(backfill["partitionNames"]) == ui.keys
    assert len(backfill["runs"]) == 1
    run = backfill["runs"][0]
    tags = {t["key"]: t["value"] for t in run["tags"]}
    assert run["status"] == "SUCCESS"
    assert tags["dagster/asset_partition_range_start"] == ui.keys[0]
    assert tags["dagster/asset_partition_range_end"] == ui.keys[-1]
    assert tags["dagster/backfill"] == backfill["id"]
    stats = ui.q(
        """query($k: AssetKeyInput!) { assetNodeOrError(assetKey: $k) { ... on AssetNode {
             partitionStats { numMaterialized numFailed numPartitions } } } }""",
        {"k": {"path": ["loaded_companies"]}},
    )["assetNodeOrError"]["partitionStats"]
    # The three days of the backfill, and today's window from the daily run.
    assert stats == {"numMaterialized": 4, "numFailed": 0, "numPartitions": 4}


MATERIALIZATIONS = """
query($k: AssetKeyInput!, $p: [String!]) { assetOrError(assetKey: $k) { ... on Asset {
  assetMaterializations(partitions: $p) { partition runId metadataEntries { label __typename
    ... on IntMetadataEntry { intValue } ... on FloatMetadataEntry { floatValue }
    ... on TextMetadataEntry { text } ... on MarkdownMetadataEntry { mdStr }
    ... on TableMetadataEntry { table { records } } } } } } }
"""


def _entries(raw: list[dict[str, Any]]) -> dict[str, tuple[str, Any]]:
    out = {}
    for e in raw:
        value = next(
            (e[k] for k in ("intValue", "floatValue", "text", "mdStr", "table") if k in e), None
        )
        out[e["label"]] = (e["__typename"], value)
    return out


def _materializations(ui: Session, asset: str) -> dict[str, dict[str, tuple[str, Any]]]:
    mats = ui.q(MATERIALIZATIONS, {"k": {"path": [asset]}, "p": ui.keys})["assetOrError"][
        "assetMaterializations"
    ]
    run_id = ui.backfill["runs"][0]["runId"]
    assert sorted(m["partition"] for m in mats) == ui.keys, mats
    assert {m["runId"] for m in mats} == {run_id}
    return {m["partition"]: _entries(m["metadataEntries"]) for m in mats}


def test_each_partition_has_its_own_materialization_metadata(ui: Session) -> None:
    metadata = {asset: _materializations(ui, asset) for asset in ASSETS}
    for asset, label in PLOTTED:
        for key in ui.keys:
            kind, value = metadata[asset][key][label]
            assert kind == "IntMetadataEntry" and isinstance(value, int), (asset, label, key)
    for asset, label in FLOATS:
        for key in ui.keys:
            kind, value = metadata[asset][key][label]
            assert kind == "FloatMetadataEntry" and value >= 0, (asset, label, key)

    for key in ui.keys:
        raw, cleaned, loaded = (metadata[a][key] for a in ASSETS)
        (raw_rows,), (clean_rows,), (quarantined,) = (
            ui.sql(f"select count(*) from {table} where partition_key = ?", [key])[0]  # noqa: S608
            for table in ("raw_companies", "cleaned_companies", "quarantined_companies")
        )
        assert raw["fetched"][1] == raw_rows > 0
        assert raw["requests_total"][1] >= raw_rows  # one info call per company at least
        assert cleaned["cleaned"][1] == clean_rows and cleaned["quarantined"][1] == quarantined
        # A short markdown preview of the partition's first cleaned rows.
        first_id = ui.sql(
            "select min(company_id) from cleaned_companies where partition_key = ?", [key]
        )[0][0]
        kind, preview = cleaned["preview"]
        assert kind == "MarkdownMetadataEntry" and str(first_id) in preview
        assert preview.startswith("| company_id |") and preview.count("\n") <= 6
        # The quarantine reasons counted, as a markdown table.
        reasons = dict(
            ui.sql(
                "select reason, count(*) from (select unnest(reasons) as reason from"
                " quarantined_companies where partition_key = ?) group by reason",
                [key],
            )
        )
        kind, reasons_md = cleaned["quarantine_reasons"]
        assert kind == "MarkdownMetadataEntry"
        for reason, count in reasons.items():
            assert f"| {reason} | {count} |" in reasons_md
        # Loads: everything cleaned was created in the target; tombstones where deletions were.
        ledger = dict(
            ui.sql(
                "select status, count(*) from load_ledger where partition_key = ? group by status",
                [key],
            )
        )
        tombstones = sum(1 for k in ui.deleted.values() if k == key)
        assert loaded["tombstones"][1] == tombstones
        assert loaded["status_created"][1] == ledger.get("created", 0) == clean_rows
        assert loaded["sent"][1] == clean_rows + tombstones
        assert loaded["failed"][1] == 0 and loaded["status_rejected"][1] == 0
    # The run's quarantine is not empty (the simulator was asked for malformed records).
    assert sum(metadata["cleaned_companies"][k]["quarantined"][1] for k in ui.keys) > 0


def test_deleted_companies_went_to_the_target_and_the_ledger(ui: Session) -> None:
    for company_id, key in ui.deleted.items():
        rows = ui.sql(
            "select partition_key from deleted_companies where company_id = ?", [company_id]
        )
        assert rows == [(key,)]
        ledger = ui.sql(
            "select partition_key, status from load_ledger where company_id = ?", [int(company_id)]
        )
        # Never loaded before (deleted before the first sync): the target had nothing to delete.
        assert ledger == [(key, "unchanged")]
        assert company_id not in ui.sims.target.records
    assert ui.sims.target.stats()["status_counts"]["unchanged"] == len(ui.deleted)


CHECK_EXECUTIONS = """
query($k: AssetKeyInput!, $c: String!) { assetCheckExecutions(assetKey: $k, checkName: $c,
  limit: 20) { runId status partition evaluation { success severity description metadataEntries {
    label __typename ... on IntMetadataEntry { intValue } ... on FloatMetadataEntry { floatValue }
    ... on MarkdownMetadataEntry { mdStr } ... on TableMetadataEntry { table { records } }
    ... on TextMetadataEntry { text } } } } }
"""


def test_each_partition_has_its_own_check_results(ui: Session) -> None:
    run_id = ui.backfill["runs"][0]["runId"]
    seen_tables = 0
    for asset, names in CHECKS.items():
        for name in sorted(names):
            executions = ui.q(CHECK_EXECUTIONS, {"k": {"path": [asset]}, "c": name})[
                "assetCheckExecutions"
            ]
            by_partition = {e["partition"]: e for e in executions if e["runId"] == run_id}
            assert sorted(by_partition) == ui.keys, (asset, name, executions)
            # One per partition of the backfill and one of the daily run: none unpartitioned.
            assert len(executions) == len(ui.keys) + 1, executions
            for key, execution in by_partition.items():
                assert execution["status"] != "SKIPPED", (asset, name, key)
                # The run log lists many partitions' results: each names its own.
                description = execution["evaluation"]["description"]
                assert description.startswith(f"{key}: "), (asset, name, description)
                entries = _entries(execution["evaluation"]["metadataEntries"])
                assert entries, (asset, name, key)
                if name in BLOCKING:
                    assert execution["status"] == "SUCCEEDED", (asset, name, key, entries)
                if name == "quarantine_ratio":
                    (raw,), (quarantined,) = (
                        ui.sql(f"select count(*) from {t} where partition_key = ?", [key])[0]  # noqa: S608
                        for t in ("raw_companies", "quarantined_companies")
                    )
                    within = quarantined / raw <= QUARANTINE_THRESHOLD
                    assert execution["evaluation"]["success"] is within
                    assert execution["status"] == ("SUCCEEDED" if within else "FAILED")
                    assert entries["quarantined"][1] == quarantined
                    if quarantined:
                        # The failure cases as a table: which rows, and why.
                        kind, table = entries["quarantined_rows"]
                        rows = [json.loads(r) for r in table["records"]]
                        stored = ui.sql(
                            "select coalesce(company_id, ''), array_to_string(reasons, ', ')"
                            " from quarantined_companies where partition_key = ?",
                            [key],
                        )
                        assert kind == "TableMetadataEntry" and len(rows) == min(quarantined, 20)
                        assert {(r["company_id"], r["reasons"]) for r in rows} <= set(stored)
                        seen_tables += 1
                if name == "schema_valid" and "failure_cases" in entries:
                    kind, table = entries["failure_cases"]
                    assert kind == "TableMetadataEntry" and table["records"]
                if name == "raw_complete":
                    assert entries["stored"][1] == entries["distinct_companies"][1]
    # The simulator was asked for malformed records: some window shows its failure cases.
    assert seen_tables > 0


def _expected_statuses(ui: Session, run_id: str, keys: list[str]) -> dict[str, dict[str, str]]:
    """Each check's result per partition in the run, as its execution history records it."""
    out: dict[str, dict[str, str]] = {}
    for asset, names in CHECKS.items():
        for name in names:
            executions = ui.q(CHECK_EXECUTIONS, {"k": {"path": [asset]}, "c": name})[
                "assetCheckExecutions"
            ]
            out[name] = {
                e["partition"]: e["status"]
                for e in executions
                if e["runId"] == run_id and e["partition"] in keys
            }
    return out


def test_each_check_shows_passed_or_failed_per_partition_after_the_backfill(ui: Session) -> None:
    """The check's Partitions view: every synced partition Passed or Failed, never Missing."""
    run_id = ui.backfill["runs"][0]["runId"]
    expected = _expected_statuses(ui, run_id, ui.keys)
    assert set(ui.statuses_after_backfill) == set(expected)
    for name, statuses in ui.statuses_after_backfill.items():
        assert sorted(expected[name]) == ui.keys, (name, expected[name])
        assert statuses == expected[name], (name, statuses)  # today not synced yet: Missing
        assert set(statuses.values()) <= {"SUCCEEDED", "FAILED"}, (name, statuses)
        if name in BLOCKING:
            assert set(statuses.values()) == {"SUCCEEDED"}, (name, statuses)


def test_each_check_shows_passed_or_failed_for_a_daily_run(ui: Session) -> None:
    assert ui.daily["status"] == "SUCCESS", f"{ui.daily}\n{ui.log_tail()}"
    tags = {t["key"]: t["value"] for t in ui.daily["tags"]}
    assert tags["dagster/partition"] == ui.today
    expected = _expected_statuses(ui, ui.daily["runId"], [ui.today])
    for name, statuses in ui.statuses_after_daily.items():
        assert list(expected[name]) == [ui.today], (name, expected[name])
        assert statuses == {**ui.statuses_after_backfill[name], **expected[name]}, name
        assert statuses[ui.today] in {"SUCCEEDED", "FAILED"}, (name, statuses)
        if name in BLOCKING:
            assert statuses[ui.today] == "SUCCEEDED", (name, statuses)


# --- the UI in a browser -----------------------------------------------------------------------

#: Set to a folder (``docs``) to keep the browser test's screenshots there for the README.
SCREENSHOTS_VARIABLE = "OKKI_ASSETS_SCREENSHOTS"


def _chromium_or_skip() -> str:
    found = find_chromium()
    if found is None:
        message = "chromium is not installed (apt-get install chromium; .ci/run installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def _figure(text: str, label: str) -> int:
    """The number shown right after ``label`` in a metadata table's text."""
    found = re.search(rf"(?m)^{re.escape(label)}\s+(-?\d+)\s*$", text)
    assert found, f"{label} not shown:\n{text[:3000]}"
    return int(found.group(1))


def _graph_bounds(page: Chromium) -> dict[str, float]:
    """The four asset nodes and their two group boxes (not the sidebar's group list)."""
    names = (*ASSETS, ACCOUNT_ASSET)

    def measure() -> list[dict[str, float]]:
        nodes = [page.bounds_of(name, containing="Latest event", pad=0) for name in names]
        left = min(node["x"] for node in nodes)
        groups = [box for box in page.labelled(GROUP, ACCOUNT_GROUP) if box["x"] >= left - 80]
        return [*nodes, *groups]

    return union(page.settled(measure))


def test_the_ui_in_a_browser_shows_the_graph_the_check_partitions_and_the_figures(
    ui: Session, tmp_path: Path
) -> None:
    """Headless Chromium on the real UI: what a user sees after the sync, and the README's shots."""
    executable = _chromium_or_skip()
    shots = Path(os.environ.get(SCREENSHOTS_VARIABLE) or tmp_path)
    synced = [*ui.keys, ui.today]
    ui.q("mutation { setNuxSeen }")  # the first-visit community dialog would cover the page
    with Chromium(executable) as page:
        # The global asset graph: the three window assets (group okki), each with its checks
        # and partitions, and the whole-account asset in its own group.
        page.goto(f"{ui.url}/asset-groups")
        page.wait_for_text("Global asset lineage", ACCOUNT_GROUP)
        page.press("e", alt=True)  # the graph's shortcut: expand all groups
        page.wait_for_text(*ASSETS, ACCOUNT_ASSET, "Asset checks", f"{len(synced)} partitions")
        page.screenshot(shots / "ui-asset-graph.png", clip=_graph_bounds(page), scale=2)

        # A check's Partitions view: every synced window Passed, none Missing.
        page.goto(f"{ui.url}/assets/cleaned_companies?view=checks&checkDetail=schema_valid")
        page.wait_for_text("Execution history", "schema_valid")
        page.click_text("Partitions", last=True)  # the check's tab, not the asset's
        page.wait_for_text(f"Passed ({len(synced)})", "Missing (0)", "Failed (0)")
        key = ui.keys[-1]
        page.click_text(key, selector="div, span, a", last=True)
        page.wait_for_text(f"{key}: 0 failure cases in the stored rows")
        page.screenshot(shots / "ui-check-partitions.png")

        # One partition's materialization: the figures, as DuckDB holds them.
        page.goto(f"{ui.url}/assets/raw_companies?view=partitions&partition={key}")
        text = page.wait_for_text("Metadata", "okki_total_item_reported")
        (stored,) = ui.sql("select count(*) from raw_companies where partition_key = ?", [key])[0]
        assert _figure(text, "fetched") == stored > 0
        assert _figure(text, "okki_total_item_reported") >= _figure(text, "distinct_companies")
        page.screenshot(shots / "ui-partition-metadata.png")


# --- stopping ----------------------------------------------------------------------------------


def test_stopping_the_webserver_leaves_no_process_behind(ui: Session) -> None:
    ui.watch()
    assert len(ui.seen) >= 5, ui.seen  # dagster dev, webserver, daemon, code server, ...
    # The grace is a bound, not a wait (the group is gone as soon as it exits); a loaded
    # machine may need long to shut dagster dev down, and a SIGKILL would show as -9.
    code = stop_process_group(ui.proc, grace=180)
    assert code == 0, ui.log_tail()  # a clean exit after SIGTERM, not a SIGKILL (-9)
    assert not group_alive(ui.proc.pid)
    assert _survivors(ui.seen) == []
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{ui.url}/server_info", timeout=2)


# --- okki-assets dev ---------------------------------------------------------------------------


def test_okki_assets_dev_serves_the_simulators_and_stops_on_ctrl_c(ui: Session) -> None:
    dev = ui.dev
    assert dev.error == "", dev.error + "\n" + dev.output[-3000:]
    # The code location's OKKI resource points at the dev command's own simulator, not at the
    # OKKI_BASE_URL of the shell, and that simulator hands out tokens to the demo client.
    assert dev.okki_url.startswith("http://127.0.0.1:")
    assert dev.token_status == 200
    assert dev.instance_config_written
    # Ctrl-C: a clean exit, everything it started is gone, its simulators no longer answer.
    assert dev.returncode == 0, dev.output[-3000:]
    assert "Dagster UI ready" in dev.output and "okki-assets dev stopped." in dev.output
    assert len(dev.processes) >= 5, dev.processes  # itself, dagster dev, webserver, daemon, ...
    assert dev.survivors == []
    assert dev.simulator_down
