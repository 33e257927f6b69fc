"""The production deployment of deploy/: its history outlives a restart of webserver and daemon.

The session's throwaway PostgreSQL server (``okki_assets_tests.dbservers``) gets a login role
and a database of its own, as docs/deploy.md sets them up; ``DAGSTER_HOME`` is a temporary
folder holding an unchanged copy of ``deploy/dagster.yaml``, and the environment carries the
``DAGSTER_PG_*`` settings plus the simulators' OKKI and target settings. ``dagster-webserver`` and
``dagster-daemon`` start with the command lines of the ``ExecStart`` of
``deploy/systemd/*.service`` (this virtualenv's executables instead of /opt/okki-assets/.venv's,
a free port instead of 3000). The test then:

- turns ``okki_intraday_sync`` on through the webserver's GraphQL API (``startSchedule``), as
  the UI's toggle does;
- sets the two pools' limits with ``dagster instance concurrency set`` as the docs do, then
  sees a tick of the daemon's scheduler launch a run through the run queue and the pools, and
  the run succeed: today's companies of the OKKI simulator reach the target simulator;
- stops both processes (SIGTERM, as systemd does), starts them again, and finds the run, its
  tick and the schedule's RUNNING state through the restarted webserver and in PostgreSQL's own
  tables, and no SQLite storage under DAGSTER_HOME.

The schedule ticks every 15 minutes. So that the test neither waits for the next quarter-hour
nor needs a test-only cron, the schedule is turned on while the daemon is still down and its
start time is then moved 16 minutes back in the instance (the schedule's stored state): the
daemon's first scheduler pass finds the tick it missed since then, the one of the last
quarter-hour, and launches it as it would after any downtime. Waits poll with generous limits;
nothing is timed.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg2
import pytest
import sqlalchemy as sa
from dagster._core.definitions.run_request import InstigatorType
from dagster._core.scheduler.instigation import ScheduleInstigatorData

from okki_assets.cli.dev import (
    dev_environment,
    group_alive,
    start_process_group,
    stop_process_group,
    wait_for_webserver,
    write_workspace,
)
from okki_assets.partitions import window_for_key
from okki_assets.simulator.harness import RunningSimulators, running_simulators
from okki_assets_tests.conftest import day_keys
from okki_assets_tests.dbservers import DbServer
from okki_assets_tests.integration.test_webserver import graphql
from okki_assets_tests.ports import free_port

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
UNIT_VENV_BIN = "/opt/okki-assets/.venv/bin/"
SCHEDULE = "okki_intraday_sync"
SCHEDULE_SELECTOR = {
    "repositoryLocationName": "okki_assets",
    "repositoryName": "__repository__",
    "scheduleName": SCHEDULE,
}
POOLS = ("okki_api", "okki_target")
BOOT_TIMEOUT = 180.0
RUN_TIMEOUT = 240.0

START_SCHEDULE = """
mutation($s: ScheduleSelector!) { startSchedule(scheduleSelector: $s) { __typename
  ... on ScheduleStateResult { scheduleState { status } } ... on PythonError { message } } }
"""
SCHEDULE_STATE = """
query($s: ScheduleSelector!) { scheduleOrError(scheduleSelector: $s) { __typename
  ... on Schedule { scheduleState { status ticks(limit: 20) { status runIds runKeys } } } } }
"""
SCHEDULE_RUNS = """
query($t: String!) { runsOrError(filter: {tags: [{key: "dagster/schedule_name", value: $t}]}) {
  __typename ... on Runs { results { runId status tags { key value } } } } }
"""
LOCATION = """
{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }
"""


def unit_command(unit: str, port: int | None = None) -> list[str]:
    """The ExecStart of ``deploy/systemd/<unit>.service``, on this virtualenv (and ``port``)."""
    lines = (DEPLOY / "systemd" / f"{unit}.service").read_text(encoding="utf-8").splitlines()
    (exec_start,) = [line for line in lines if line.startswith("ExecStart=")]
    argv = shlex.split(exec_start.removeprefix("ExecStart="))
    assert argv[0].startswith(UNIT_VENV_BIN), argv
    argv[0] = str(Path(sys.executable).parent / argv[0].removeprefix(UNIT_VENV_BIN))
    if port is not None:
        argv[argv.index("-p") + 1] = str(port)
    return argv


@dataclass
class Deployment:
    """Webserver and daemon of one instance, started and stopped as the units would be."""

    folder: Path
    env: dict[str, str]
    port: int
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, unit: str) -> None:
        port = self.port if unit == "dagster-webserver" else None
        with (self.folder / f"{unit}.log").open("ab") as log:
            self.procs[unit] = start_process_group(
                unit_command(unit, port), env=self.env, cwd=self.folder, stdout=log, stderr=log
            )

    def dagster(self, *args: str) -> str:
        """A ``dagster`` command of docs/deploy.md, in the units' environment."""
        done = subprocess.run(
            [str(Path(sys.executable).parent / "dagster"), *args],
            env=self.env,
            cwd=self.folder,
            capture_output=True,
            text=True,
            timeout=BOOT_TIMEOUT,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def wait_loaded(self) -> None:
        for attempt in range(3):
            try:
                wait_for_webserver(self.url, self.procs["dagster-webserver"], timeout=BOOT_TIMEOUT)
                break
            except RuntimeError:
                log = (self.folder / "dagster-webserver.log").read_text(errors="replace")
                taken = "address already in use" in log.split("Serving dagster-webserver")[-1]
                if attempt == 2 or not taken:
                    raise
                # Another test took the free port while the webserver started its code server:
                # the unit's ExecStart again, on another free port.
                self.port = free_port()
                self.start("dagster-webserver")
        deadline = time.monotonic() + BOOT_TIMEOUT
        while True:
            entries = self.q(LOCATION)["workspaceOrError"]["locationEntries"]
            if entries and entries[0]["loadStatus"] == "LOADED":
                return
            assert time.monotonic() < deadline, f"location not loaded: {entries}\n{self.logs()}"
            time.sleep(0.5)

    def stop(self) -> dict[str, int | None]:
        """SIGTERM each process group (systemd's stop), SIGKILL after a grace; exit codes."""
        codes = {unit: stop_process_group(proc) for unit, proc in self.procs.items()}
        for proc in self.procs.values():
            assert not group_alive(proc.pid), "a process of a stopped unit is still running"
        return codes

    def q(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        return graphql(self.url, query, variables)

    def logs(self, lines: int = 30) -> str:
        out = []
        for log in sorted(self.folder.glob("*.log")):
            tail = log.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- {log.name}\n" + "\n".join(tail))
        return "\n".join(out)


@contextlib.contextmanager
def opened_instance(home: Path) -> Iterator[dg.DagsterInstance]:
    """The deployment's instance, read from this process (dagster.yaml's env vars are set)."""
    with dg.DagsterInstance.from_config(str(home)) as instance:
        yield instance


def schedule_state(instance: dg.DagsterInstance) -> Any:
    (state,) = [
        s
        for s in instance.all_instigator_state(instigator_type=InstigatorType.SCHEDULE)
        if s.name == SCHEDULE
    ]
    return state


def backdate_schedule_start(instance: dg.DagsterInstance, seconds: float) -> None:
    """Move the schedule's start time back, as if it had been turned on ``seconds`` ago."""
    state = schedule_state(instance)
    data = state.instigator_data
    assert isinstance(data, ScheduleInstigatorData)
    moved = ScheduleInstigatorData(data.cron_schedule, start_timestamp=time.time() - seconds)
    instance.update_instigator_state(state.with_data(moved))


def wait_for_schedule_run(deployment: Deployment, instance: dg.DagsterInstance) -> dg.DagsterRun:
    """The schedule's first run, once it has finished."""
    deadline = time.monotonic() + RUN_TIMEOUT
    while True:
        runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/schedule_name": SCHEDULE}))
        if runs and runs[-1].is_finished:
            return runs[-1]
        for unit, proc in deployment.procs.items():
            assert proc.poll() is None, f"{unit} exited\n{deployment.logs()}"
        assert time.monotonic() < deadline, f"no finished run: {runs}\n{deployment.logs()}"
        time.sleep(1.0)


def create_owned_database(server: DbServer, user: str, password: str, db: str) -> None:
    """A login role that is not a superuser and a database it owns, as docs/deploy.md makes."""
    assert "'" not in password and "%" not in password
    engine = sa.create_engine(server.admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql(f"CREATE ROLE {user} LOGIN PASSWORD '{password}'")
        conn.exec_driver_sql(f"CREATE DATABASE {db} OWNER {user}")
    engine.dispose()


def pg_rows(pg: dict[str, Any], query: str, *params: object) -> list[Any]:
    """Rows of Dagster's own tables, read with the deployment's role."""
    conn = psycopg2.connect(**pg)
    try:
        with conn.cursor() as cur:
            cur.execute(query, params)
            return list(cur.fetchall())
    finally:
        conn.close()


def deployment_env(
    base: dict[str, str],
    sims: RunningSimulators,
    server: DbServer,
    *,
    home: Path,
    database: Path,
    sync_start: str,
    pg: tuple[str, str, str],
) -> dict[str, str]:
    user, password, db = pg
    clean = {k: v for k, v in base.items() if not k.startswith("DAGSTER_")}
    env = dev_environment(clean, sims, database=database, home=home, sync_start=sync_start)
    env.update(
        DAGSTER_PG_HOST="127.0.0.1",
        DAGSTER_PG_PORT=str(server.port),
        DAGSTER_PG_USER=user,
        DAGSTER_PG_PASSWORD=password,
        DAGSTER_PG_DB=db,
    )
    return env


@pytest.mark.slow
def test_schedule_run_and_its_history_survive_a_restart(
    postgresql_server: DbServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The role and database of docs/deploy.md; a password that must be quoted in a URL.
    user, password, db = "okki", f"p@ss:w/rd {secrets.token_hex(4)}", f"okki_{secrets.token_hex(4)}"
    create_owned_database(postgresql_server, user, password, db)
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(DEPLOY / "dagster.yaml", home / "dagster.yaml")
    write_workspace(tmp_path)  # the repo's workspace.yaml, with an absolute working_directory
    keys = day_keys(2)

    with running_simulators(companies=60, days=2) as sims:
        env = deployment_env(
            dict(os.environ),
            sims,
            postgresql_server,
            home=home,
            database=tmp_path / "okki.duckdb",
            sync_start=keys[0],
            pg=(user, password, db),
        )
        for name in ("HOST", "PORT", "USER", "PASSWORD", "DB"):  # for this process's instance
            monkeypatch.setenv(f"DAGSTER_PG_{name}", env[f"DAGSTER_PG_{name}"])
        deployment = Deployment(tmp_path, env, free_port())
        try:
            # The pools' limits, as docs/deploy.md writes them before anything starts.
            for pool in POOLS:
                said = deployment.dagster("instance", "concurrency", "set", pool, "1")
                assert f"Set concurrency limit for {pool} to 1." in said
            # Webserver first; the schedule is turned on through its API before the daemon runs.
            deployment.start("dagster-webserver")
            deployment.wait_loaded()
            started = deployment.q(START_SCHEDULE, {"s": SCHEDULE_SELECTOR})["startSchedule"]
            assert started["__typename"] == "ScheduleStateResult", started
            assert started["scheduleState"]["status"] == "RUNNING"
            with opened_instance(home) as instance:
                backdate_schedule_start(instance, seconds=16 * 60)
                deployment.start("dagster-daemon")
                run = wait_for_schedule_run(deployment, instance)
                assert run.status == dg.DagsterRunStatus.SUCCESS, deployment.logs()
                partition = run.tags["dagster/partition"]
                assert partition in keys
                slots = {p: instance.event_log_storage.get_concurrency_info(p) for p in POOLS}

            # What the run did: every company of the window reached the target.
            start, end = window_for_key(partition)
            in_window = {str(c["company_id"]) for c in sims.okki.companies_in_window(start, end)}
            assert in_window
            assert set(sims.target.records) == in_window
            # The run went through both pools, each one slot across all runs.
            assert {p: info.slot_count for p, info in slots.items()} == dict.fromkeys(POOLS, 1)

            codes = deployment.stop()
            assert set(codes) == {"dagster-webserver", "dagster-daemon"}

            deployment.start("dagster-webserver")
            deployment.start("dagster-daemon")
            deployment.wait_loaded()

            # Read back through the restarted webserver ...
            state = deployment.q(SCHEDULE_STATE, {"s": SCHEDULE_SELECTOR})["scheduleOrError"]
            assert state["__typename"] == "Schedule", state
            assert state["scheduleState"]["status"] == "RUNNING"
            ticks = state["scheduleState"]["ticks"]
            assert any(t["status"] == "SUCCESS" and t["runIds"] == [run.run_id] for t in ticks), (
                ticks
            )
            runs = deployment.q(SCHEDULE_RUNS, {"t": SCHEDULE})["runsOrError"]["results"]
            found = {r["runId"]: r["status"] for r in runs}
            assert found.get(run.run_id) == "SUCCESS", found

            # ... and in PostgreSQL's own tables, with the deployment's role.
            pg = {"host": "127.0.0.1", "port": postgresql_server.port, "dbname": db}
            pg |= {"user": user, "password": password}
            assert pg_rows(pg, "SELECT status FROM runs WHERE run_id = %s", run.run_id) == [
                ("SUCCESS",)
            ]
            materialized = pg_rows(
                pg,
                "SELECT DISTINCT asset_key FROM event_logs"
                " WHERE dagster_event_type = 'ASSET_MATERIALIZATION' AND run_id = %s",
                run.run_id,
            )
            assert sorted(k for (k,) in materialized) == [
                '["cleaned_companies"]',
                '["loaded_companies"]',
                '["raw_companies"]',
            ]
            with opened_instance(home) as instance:
                assert schedule_state(instance).status.value == "RUNNING"
                assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.SUCCESS
            # Nothing was kept in SQLite under DAGSTER_HOME.
            assert not list(home.rglob("*.db")), list(home.rglob("*.db"))
        finally:
            deployment.stop()
