"""The okki-assets command after the demo: one world, a hint that works as printed, honest replay.

- ``okki-assets demo`` ends with a command that runs as printed (an absolute path, no activated
  venv needed) and opens the UI on the demo's world: the same DuckDB file and Dagster instance,
  with live simulators. Every partition the UI shows as materialized is in that DuckDB file, and
  Materialize from the UI (a run launched over GraphQL, as the UI does) succeeds.
- Starting a world anew empties the instance too: no materialization of an earlier world is left
  for the UI to show over a DuckDB file that no longer holds it.
- ``okki-assets replay --partition D`` against a DuckDB file that holds nothing cleaned for D (an
  empty file, or the default file) says so in one line naming ``OKKI_ASSETS_DUCKDB`` and exits 2,
  instead of reporting "sent 0 ... ok".
- Stopping ``okki-assets dev`` stops every process of ``dg dev``'s group with SIGTERM, also one
  started after the first SIGTERM (dg dev restarts a code server that exits while it shuts
  down): none is left to the SIGKILL at the end of the grace period.
- A port in use (the UI's or a simulator's) is refused in one line, exit code 2, before anything
  is emptied or started; ``simulate`` started with SIGINT ignored (a ``&`` job) stops on SIGINT.
- ``okki-assets dev`` prints the environment it gave ``dg dev`` and writes it to
  ``.dagster_home/dev-env.sh``: sourced in another shell, the README's ``dg launch`` syncs into
  the same world; its progress says how many of the records sent were deletions; its hint names
  the UI's Catalog, and the instance shows no community pop-up.
- The demo says that what ``okki_reconcile`` brought in is the history older than the synced days.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import duckdb
import httpx
import pytest

from okki_assets.cli import main
from okki_assets.cli.demo import DEMO_DUCKDB, dagster_home, fresh_world, okki_assets_command
from okki_assets.cli.dev import (
    SIMULATOR_VARIABLES,
    STOP_GRACE_SECONDS,
    dg_executable,
    start_process_group,
    stop_process_group,
    wait_for_webserver,
)
from okki_assets_tests.conftest import day_keys
from okki_assets_tests.integration.test_webserver import LAUNCH_RUN, graphql, sync_run_params
from okki_assets_tests.ports import free_port

ENVIRONMENT = (
    "OKKI_BASE_URL",
    "OKKI_CLIENT_ID",
    "OKKI_CLIENT_SECRET",
    "TARGET_URL",
    "TARGET_TOKEN",
    "OKKI_ASSETS_DUCKDB",
    "OKKI_SYNC_START",
    "DAGSTER_HOME",
)

# --- replay with nothing to replay ------------------------------------------------------------


@pytest.mark.parametrize(
    "database",
    [
        "empty.duckdb",  # OKKI_ASSETS_DUCKDB names a file that holds no partition
        None,  # OKKI_ASSETS_DUCKDB unset: the default file, never synced here
    ],
)
def test_replay_of_a_partition_with_nothing_cleaned_says_so(
    database: str | None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name in ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OKKI_SYNC_START", "2026-01-01")
    shown = "data/okki_assets.duckdb"
    if database is not None:
        duckdb.connect(str(tmp_path / database)).close()
        monkeypatch.setenv("OKKI_ASSETS_DUCKDB", database)
        shown = database
    key = day_keys(2)[0]

    code = main(["replay", "--partition", key])

    captured = capsys.readouterr()
    assert code == 2, captured
    assert captured.err == (
        f"replay: partition {key} has nothing cleaned in {shown} (OKKI_ASSETS_DUCKDB):"
        " sync it first, or point OKKI_ASSETS_DUCKDB at the file that holds it\n"
    )
    assert "sent" not in captured.out


# --- one world for the demo and the UI ---------------------------------------------------------


def test_a_fresh_world_keeps_no_materialization_of_the_last_one(tmp_path: Path) -> None:
    home = dagster_home(tmp_path)
    (tmp_path / DEMO_DUCKDB).parent.mkdir()
    duckdb.connect(str(tmp_path / DEMO_DUCKDB)).close()
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.report_runless_asset_event(
            dg.AssetMaterialization("cleaned_companies", partition="2026-11-20")
        )
        assert instance.get_latest_materialization_event(dg.AssetKey("cleaned_companies"))

    world = fresh_world(tmp_path)

    assert world.home == home and world.database == tmp_path / DEMO_DUCKDB
    assert not world.database.exists()
    assert sorted(p.name for p in home.iterdir()) == ["dagster.yaml"]
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.get_latest_materialization_event(dg.AssetKey("cleaned_companies")) is None


MATERIALIZED = """
query($k: AssetKeyInput!) { assetOrError(assetKey: $k) { ... on Asset {
  assetMaterializations { partition } } } }
"""
RUN_STATUS = """
query($id: ID!) { runOrError(runId: $id) { __typename ... on Run { status } } }
"""


def _materialized(url: str, asset: str) -> set[str]:
    data = graphql(url, MATERIALIZED, {"k": {"path": [asset]}})["assetOrError"]
    return {m["partition"] for m in data["assetMaterializations"]}


def _materialize(url: str, partition: str, timeout: float = 600) -> str:
    """What the UI's Materialize does for one partition of the three assets; the run's status."""
    launched = graphql(url, LAUNCH_RUN, {"p": sync_run_params(partition)})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]
    deadline = time.monotonic() + timeout
    while True:
        status = graphql(url, RUN_STATUS, {"id": run_id})["runOrError"]["status"]
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            return str(status)
        assert time.monotonic() < deadline, f"run {run_id} still {status}"
        time.sleep(1)


def _cleaned_partitions(database: Path) -> set[str]:
    with duckdb.connect(str(database), read_only=True) as conn:
        rows = conn.execute("select distinct partition_key from cleaned_companies").fetchall()
    return {str(r[0]) for r in rows}


# A leader that, on SIGTERM, starts one more process in its group and exits once that process is
# up; the late process writes a file when a SIGTERM reaches it, and otherwise sleeps for a
# minute. Each says it is ready (its handler installed) by creating a file: no sleep races the
# interpreter's start-up on a loaded machine.
LATE_CHILD = """
import pathlib, signal, sys, time
def bye(*_):
    open(sys.argv[1], "w").write("SIGTERM")
    sys.exit(0)
signal.signal(signal.SIGTERM, bye)
pathlib.Path(sys.argv[2]).touch()
time.sleep(60)
"""
LEADER = """
import pathlib, signal, subprocess, sys, time
def on_term(*_):
    up = pathlib.Path(sys.argv[4])
    subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2], str(up)])
    deadline = time.monotonic() + 120
    while not up.exists() and time.monotonic() < deadline:
        time.sleep(0.01)  # the late process is up, and has not seen the first SIGTERM
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
pathlib.Path(sys.argv[3]).touch()
time.sleep(60)
"""


def _wait_for_file(path: Path, proc: subprocess.Popen[bytes], seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert proc.poll() is None, f"exited with {proc.returncode} before {path.name}"
        assert time.monotonic() < deadline, f"no {path.name} after {seconds} s"
        time.sleep(0.01)


def test_a_process_started_after_the_first_sigterm_is_stopped_with_sigterm_too(
    tmp_path: Path,
) -> None:
    told, leader_up = tmp_path / "late.out", tmp_path / "leader.up"
    argv = [LATE_CHILD, str(told), str(leader_up), str(tmp_path / "late.up")]
    proc = start_process_group(
        [sys.executable, "-c", LEADER, *argv], env=dict(os.environ), cwd=tmp_path
    )
    _wait_for_file(leader_up, proc)  # the leader has installed its handler
    code = stop_process_group(proc, grace=120)  # a bound, not a wait: it ends when they do
    assert code == 0
    assert told.read_text() == "SIGTERM"  # not left to the SIGKILL at the end of the grace


def test_the_demo_hint_opens_the_ui_on_the_same_world_where_materialize_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    demo = ["demo", "--companies", "60", "--days", "2", "--partitions", "1", "--faults", "none"]
    assert main([*demo, "--project-dir", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    synced = day_keys(1)
    # the synced window, and the account's copy: the demo reconciles the history before it
    assert _cleaned_partitions(tmp_path / DEMO_DUCKDB) == {*synced, "account"}
    assert "reconciling the whole account (okki_reconcile) ... in sync" in printed

    # The hint is the last command line printed; it runs as printed, without an activated venv.
    hint = next(line for line in reversed(printed.splitlines()) if line.startswith("  /"))
    command = shlex.split(hint)
    assert Path(command[0]).is_absolute() and os.access(command[0], os.X_OK), hint
    assert command[1] == "dev" and command[command.index("--project-dir") + 1] == str(tmp_path)

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if k not in ENVIRONMENT}
    env["PATH"] = "/usr/bin:/bin"  # no venv on the PATH: the printed path must suffice
    log = tmp_path / "dev.out"
    with log.open("wb") as sink:
        proc = start_process_group(
            [*command, "--port", str(port)], env=env, cwd=tmp_path, stdout=sink, stderr=sink
        )
    try:
        wait_for_webserver(url, proc, timeout=240)
        database = tmp_path / DEMO_DUCKDB
        # What the UI shows as materialized is what the world's DuckDB file holds.
        for asset in ("raw_companies", "cleaned_companies", "loaded_companies"):
            assert _materialized(url, asset) == set(synced), log.read_text()[-3000:]
        assert _cleaned_partitions(database) == set(synced)

        # Materialize from the UI: the simulators are alive and the credentials are set.
        older = day_keys(2)[0]
        assert _materialize(url, older) == "SUCCESS", log.read_text()[-3000:]
        assert _materialized(url, "loaded_companies") == {older, *synced}
        assert _cleaned_partitions(database) == {older, *synced}
    finally:
        code = stop_process_group(proc, grace=STOP_GRACE_SECONDS + 30)  # after dev's own
    assert code == 0, log.read_text()[-3000:]
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{url}/server_info", timeout=2)


# --- the first hour: ports, the environment, signals, words -----------------------------------


def _clean_env() -> dict[str, str]:
    """This process's environment without any OKKI_/TARGET_ variable or DAGSTER_HOME."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OKKI_", "TARGET_")) and k != "DAGSTER_HOME"
    }


def _an_earlier_world(project: Path) -> tuple[Path, bytes]:
    """A world left by an earlier demo: a run record in the instance, a DuckDB file."""
    home = dagster_home(project)
    (home / "history").mkdir()
    (home / "history" / "runs.db").write_bytes(b"an earlier run")
    database = project / DEMO_DUCKDB
    database.parent.mkdir(parents=True, exist_ok=True)
    database.write_bytes(b"an earlier world" * 64)
    return database, database.read_bytes()


@pytest.mark.parametrize(
    ("command", "option"),
    [
        ("dev", "--port"),  # the UI's port: dg dev would log "address already in use", then wait
        ("dev", "--okki-port"),  # a simulator's port: a traceback after the world was emptied
        ("simulate", "--okki-port"),  # the banner, then a traceback
    ],
)
def test_a_port_in_use_is_refused_in_one_line_and_nothing_is_emptied(
    command: str, option: str, tmp_path: Path
) -> None:
    database, before = _an_earlier_world(tmp_path)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        args = [command, "--companies", "30", "--days", "2", option, str(taken)]
        if command == "dev":
            args += ["--project-dir", str(tmp_path)]
            if option != "--port":
                args += ["--port", str(free_port())]
        proc = start_process_group(
            [*okki_assets_command(), *args],
            env=_clean_env(),
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            out, err = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            stop_process_group(proc, grace=20)
            proc.communicate()  # closes the pipes
            pytest.fail(f"okki-assets {command} {option} {taken} was still running after 120 s")
    assert proc.returncode == 2, (out, err)
    assert out == b""
    assert err.decode().splitlines() == [
        f"okki-assets {command}: error: {option} {taken}: cannot serve on 127.0.0.1:{taken}"
        " (Address already in use); stop what holds it or choose another port"
    ]
    assert database.read_bytes() == before  # nothing emptied
    assert (tmp_path / ".dagster_home" / "history" / "runs.db").read_bytes() == b"an earlier run"


def test_simulate_started_in_the_background_stops_on_sigint() -> None:
    okki_port, target_port = free_port(), free_port()
    proc = subprocess.Popen(
        [*okki_assets_command(), "simulate", "--companies", "20", "--days", "1"]
        + ["--okki-port", str(okki_port), "--target-port", str(target_port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        # as a `&` job of a non-interactive shell starts it: SIGINT ignored
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),  # noqa: PLW1509
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{okki_port}/", timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "the simulators never answered"
                time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail("okki-assets simulate ignored SIGINT")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()  # closes the pipes
    assert proc.returncode == 0, err.decode()[-2000:]
    assert b"Traceback" not in err
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{okki_port}/", timeout=2)


def test_the_demo_says_the_reconciled_companies_are_history_brought_in_now(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    demo = ["demo", "--companies", "60", "--days", "2", "--partitions", "1", "--faults", "none"]
    assert main([*demo, "--project-dir", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    first_day = day_keys(1)[0]
    found = re.search(
        r"Brought in now: (\d+) companies no synced day listed \(history older than the synced"
        rf" days: OKKI holds (\d+) last updated before {first_day}, which no daily window"
        r" lists\), (\d+) updated since their day was synced",
        printed,
    )
    assert found, printed
    missing, history = int(found[1]), int(found[2])
    assert 0 < missing <= history  # the history (bar the malformed ones, quarantined)
    assert "had left" not in printed


def test_dev_prints_its_environment_and_a_file_that_dg_launch_can_use(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    shell = tmp_path / "shell"  # a folder without .env
    shell.mkdir()
    log = tmp_path / "dev.out"
    command = [*okki_assets_command(), "dev", "--companies", "40", "--days", "2"]
    command += ["--partitions", "1", "--deleted", "2", "--faults", "none", "--port", str(port)]
    with log.open("wb") as sink:
        proc = start_process_group(
            [*command, "--project-dir", str(tmp_path)],
            env=_clean_env(),
            cwd=tmp_path,
            stdout=sink,
            stderr=sink,
        )
    try:
        wait_for_webserver(url, proc, timeout=240)
        printed = _wait_for(log, "Dagster UI ready")
        env_file = tmp_path / ".dagster_home" / "dev-env.sh"  # where the README says
        assert f"source {env_file}" in printed
        for name in (n for n in SIMULATOR_VARIABLES if not n.startswith("K3CLOUD_")):
            assert re.search(rf"^    {name}=\S+$", printed, re.M), (name, printed)
        assert "    OKKI_CLIENT_SECRET=demo-secret\n" in printed
        assert "    TARGET_TOKEN=demo-target-token\n" in printed
        # The file, sourced in another shell, lets the README's dg launch reach the same world.
        older = day_keys(2)[0]
        launch = (
            f"source {shlex.quote(str(env_file))} && exec {shlex.quote(dg_executable())} launch"
            " -m okki_assets.definitions"
            f" --assets raw_companies,cleaned_companies,loaded_companies --partition {older}"
        )
        done = subprocess.run(
            ["bash", "-c", launch],
            cwd=shell,
            env=_clean_env(),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
        assert older in _cleaned_partitions(tmp_path / DEMO_DUCKDB)
        assert older in _materialized(url, "loaded_companies")  # the UI's instance
        # The deletions synced first are said to be deletions.
        synced = re.search(
            r"\[1/1\] syncing \S+ \.\.\. (\d+) fetched, (\d+) sent \((\d+) of them deletions\)",
            printed,
        )
        assert synced, printed
        fetched, sent, deletions = map(int, synced.groups())
        assert deletions == 2 and sent == fetched + deletions
        # The UI's menu is Catalog; no community pop-up over the first view.
        assert "Catalog -> select raw_companies, cleaned_companies, loaded_companies" in printed
        assert "Assets -> okki" not in printed
        assert graphql(url, "{ shouldShowNux }")["shouldShowNux"] is False
    finally:
        code = stop_process_group(proc, grace=STOP_GRACE_SECONDS + 30)
    assert code == 0, log.read_text()[-3000:]


def _wait_for(log: Path, text: str, timeout: float = 60) -> str:
    """The log's text once it holds ``text`` (okki-assets dev prints it when it sees the UI)."""
    deadline = time.monotonic() + timeout
    while text not in (printed := log.read_text()):
        assert time.monotonic() < deadline, printed[-3000:]
        time.sleep(0.2)
    return printed
