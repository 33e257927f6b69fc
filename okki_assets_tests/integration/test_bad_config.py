"""Bad configuration fails fast, with one clear line, and leaves nothing half-written.

Wrong or missing credentials, an unreachable or invalid OKKI_BASE_URL or TARGET_URL, a missing
TARGET_TOKEN, an unreadable or invalid mapping file, a DuckDB file that is locked by another
process, cannot be created or is not a database: each run fails, the failure the user sees (the
step's error in the run, and ``dagster asset materialize`` on the command line) is one line that
names what to fix, with no chain of tracebacks under it; settings that only the load needs fail
before OKKI is asked for anything; and DuckDB holds no row of the partition. A value of the
environment that cannot be read (``OKKI_RATE_LIMIT=fast``, ``OKKI_SYNC_START=2026-13-01``) never
stops the definitions from loading: every step of a run fails first, in one line naming it.
"Fast" is counted, not timed: no call is retried (the clients' retry loop logs every retry).
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pytest

from okki_assets.resources import OkkiResource, TargetResource, WarehouseResource
from okki_assets.simulator.harness import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_TARGET_TOKEN,
    running_simulators,
)
from okki_assets.simulator.okki import INFO_PATH, LIST_PATH
from okki_assets_tests.conftest import Pipeline, day_keys, make_pipeline

ROOT = Path(__file__).resolve().parents[2]
STAGE_TABLES = (
    "raw_companies",
    "raw_staging",
    "cleaned_companies",
    "quarantined_companies",
    "deleted_companies",
)
FAST = {"retry_base_delay": 0.01}
ASSETS = ("raw_companies", "cleaned_companies", "loaded_companies")


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def okki(pipeline: Pipeline, **changes: Any) -> dict[str, Any]:
    return {"okki": OkkiResource(**{**pipeline.okki.model_dump(), **FAST, **changes})}


def target(pipeline: Pipeline, **changes: Any) -> dict[str, Any]:
    return {"target": TargetResource(**{**pipeline.target.model_dump(), **FAST, **changes})}


def warehouse(database: Path | str, **changes: Any) -> dict[str, Any]:
    return {"warehouse": WarehouseResource(database=str(database), **changes)}


def _not_yaml(tmp: Path) -> str:
    path = tmp / "mapping.yaml"
    path.write_text("fields: [unclosed\n  id: {column: company_id\n")
    return str(path)


def _parent_is_a_file(tmp: Path) -> Path:
    (tmp / "not_a_folder").write_text("a regular file")
    return tmp / "not_a_folder" / "okki.duckdb"


def _not_a_database(tmp: Path) -> Path:
    path = tmp / "garbage.duckdb"
    path.write_bytes(b"this is not a DuckDB file\n" * 400)
    return path


# (overrides built from the pipeline and a scratch folder, words the message must hold)
Overrides = Callable[[Pipeline, Path], dict[str, Any]]
CASES: dict[str, tuple[Overrides, tuple[str, ...]]] = {
    # OKKI refuses the client secret (invalid_client).
    "wrong_credentials": (
        lambda p, _: okki(p, client_secret="not-the-secret"),
        ("OKKI_CLIENT_ID", "OKKI_CLIENT_SECRET", "invalid_client"),
    ),
    # An empty client id is caught before any request.
    "empty_client_id": (lambda p, _: okki(p, client_id=" "), ("OKKI_CLIENT_ID is empty",)),
    # Nothing listens at OKKI_BASE_URL (with the default retry settings: no minute of retries).
    "okki_unreachable": (
        lambda p, _: okki(p, base_url=f"http://127.0.0.1:{closed_port()}", retry_base_delay=0.5),
        ("OKKI_BASE_URL", "cannot connect to http://127.0.0.1:"),
    ),
    # OKKI_BASE_URL is not a URL.
    "okki_url_invalid": (lambda p, _: okki(p, base_url="api.xiaoman.cn"), ("OKKI_BASE_URL",)),
    # TARGET_URL is not an http(s) URL.
    "target_url_invalid": (lambda p, _: target(p, url="ftp//target"), ("TARGET_URL",)),
    # TARGET_URL is set, TARGET_TOKEN is not.
    "target_token_missing": (lambda p, _: target(p, token=""), ("TARGET_TOKEN is empty",)),
    # The mapping file does not exist.
    "mapping_missing": (
        lambda p, tmp: target(p, mapping_file=str(tmp / "nope.yaml")),
        ("MappingConfigError", "nope.yaml", "cannot read the file"),
    ),
    # The mapping file is not YAML.
    "mapping_not_yaml": (
        lambda p, tmp: target(p, mapping_file=_not_yaml(tmp)),
        ("MappingConfigError", "mapping.yaml"),
    ),
    # The DuckDB file cannot be created: its folder is a regular file (root can't write it).
    "duckdb_unwritable": (
        lambda _, tmp: warehouse(_parent_is_a_file(tmp)),
        ("StorageError", "not_a_folder", "cannot create the folder"),
    ),
    # OKKI_ASSETS_DUCKDB_MEMORY is not a size DuckDB understands.
    "duckdb_memory_limit_invalid": (
        lambda _, tmp: warehouse(tmp / "okki.duckdb", memory_limit="lots"),
        ("StorageError", "OKKI_ASSETS_DUCKDB_MEMORY", "'lots'"),
    ),
    # The DuckDB path holds something that is not a DuckDB database.
    "duckdb_not_a_database": (
        lambda _, tmp: warehouse(_not_a_database(tmp)),
        ("StorageError", "garbage.duckdb"),
    ),
}
# Settings only the load uses: still checked before OKKI is called.
CHECKED_BEFORE_OKKI = {
    "target_url_invalid",
    "target_token_missing",
    "mapping_missing",
    "mapping_not_yaml",
    "duckdb_unwritable",
    "duckdb_not_a_database",
    "duckdb_memory_limit_invalid",
}


@pytest.fixture
def small_pipeline(tmp_path: Path, instance: dg.DagsterInstance) -> Iterator[Pipeline]:
    yield from make_pipeline(tmp_path, instance, companies=60, days=2)


@pytest.fixture
def retries(caplog: pytest.LogCaptureFixture) -> Callable[[], list[str]]:
    """The retries the clients made (their retry loop logs each one at DEBUG)."""
    caplog.set_level(logging.DEBUG, logger="okki_assets.clients.http")

    def made() -> list[str]:
        return [
            r.getMessage()
            for r in caplog.records
            if r.name == "okki_assets.clients.http" and "retrying in" in r.getMessage()
        ]

    return made


def step_errors(result: dg.ExecuteInProcessResult) -> list[Any]:
    return [
        e.event_specific_data.error  # type: ignore[union-attr]
        for e in result.all_events
        if e.event_type_value == "STEP_FAILURE"
    ]


def assert_one_clear_line(result: dg.ExecuteInProcessResult, words: tuple[str, ...]) -> str:
    assert not result.success
    (error,) = step_errors(result)
    message = error.message.strip()
    assert "\n" not in message, message
    for word in words:
        assert word in message, (word, message)
    # No chain of tracebacks under the message: the project's error is not kept as the
    # Failure's cause, and the Failure's own stack ends in the asset (Dagster's frames, then
    # two of ours), never in the clients, storage or tenacity.
    assert error.cause is None and error.context is None, error.cause
    ours = [frame for frame in error.stack if "okki_assets" in frame]
    assert len(ours) <= 2 and "okki_assets/assets/" in ours[-1], "".join(error.stack)
    assert not [frame for frame in error.stack if "tenacity" in frame]
    return message


def assert_nothing_written(database: Path, key: str) -> None:
    if not database.is_file():
        return
    with duckdb.connect(str(database), read_only=True) as conn:
        tables = {r[0] for r in conn.execute("select table_name from duckdb_tables()").fetchall()}
        for table in STAGE_TABLES:
            if table in tables:
                count = conn.execute(
                    f"select count(*) from {table} where partition_key = ?",  # noqa: S608
                    [key],
                ).fetchone()
                assert count == (0,), table
        if "load_ledger" in tables:
            assert conn.execute("select count(*) from load_ledger").fetchone() == (0,)


@pytest.mark.parametrize("case", list(CASES))
def test_bad_configuration_fails_fast_with_one_clear_line(
    case: str, small_pipeline: Pipeline, tmp_path: Path, retries: Callable[[], list[str]]
) -> None:
    overrides_for, words = CASES[case]
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    overrides = overrides_for(small_pipeline, scratch)
    key = day_keys(2)[0]
    result = small_pipeline.materialize(key, raise_on_error=False, **overrides)
    assert retries() == [], "fails fast"
    assert_one_clear_line(result, words)
    if case == "duckdb_not_a_database":
        database = Path(overrides["warehouse"].database)
        assert database.read_bytes() == b"this is not a DuckDB file\n" * 400, "left untouched"
    elif case != "duckdb_unwritable":
        assert_nothing_written(small_pipeline.database, key)
    assert small_pipeline.sims.target.stats()["batches_received"] == 0
    calls = small_pipeline.sims.okki.stats.calls
    if case in CHECKED_BEFORE_OKKI:
        assert calls.get(LIST_PATH, 0) == calls.get(INFO_PATH, 0) == 0, calls


def _hold_duckdb(database: str, ready: Any, release: Any) -> None:
    """In another process: keep the DuckDB file open (and so locked) until told to stop."""
    with duckdb.connect(database) as conn:
        conn.execute("create table if not exists held (x integer)")
        ready.set()
        release.wait(60)


def test_a_duckdb_file_locked_by_another_process_fails_with_a_clear_line(
    small_pipeline: Pipeline,
) -> None:
    context = mp.get_context("spawn")
    ready, release = context.Event(), context.Event()
    holder = context.Process(
        target=_hold_duckdb, args=(str(small_pipeline.database), ready, release), daemon=True
    )
    holder.start()
    try:
        assert ready.wait(60)
        key = day_keys(2)[0]
        result = small_pipeline.materialize(
            key, raise_on_error=False, **warehouse(small_pipeline.database, lock_timeout=1.0)
        )
        assert_one_clear_line(result, ("StorageError", "is locked by another process"))
        calls = small_pipeline.sims.okki.stats.calls
        assert calls.get(LIST_PATH, 0) == 0, "the lock is found before OKKI is called"
    finally:
        release.set()
        holder.join(30)
    assert_nothing_written(small_pipeline.database, key)


def test_an_unreachable_target_stops_the_load_with_a_clear_line(
    small_pipeline: Pipeline, retries: Callable[[], list[str]]
) -> None:
    key = day_keys(2)[0]
    url = f"http://127.0.0.1:{closed_port()}"
    result = small_pipeline.materialize(
        key,
        raise_on_error=False,
        # the default retry settings: a target never reached is not retried for a minute
        target=TargetResource(
            **{**small_pipeline.target.model_dump(), "url": url, "batch_size": 10}
        ),
    )
    assert retries() == [], "fails fast"
    message = assert_one_clear_line(result, ("TargetUnreachable", url, "TARGET_URL"))
    assert "cannot connect" in message
    # Pulled and cleaned whole; of the load, one batch was tried and is recorded as failed for
    # the next run to send, the rest never claimed.
    cleaned = small_pipeline.query(
        "select count(*) from cleaned_companies where partition_key = ?", [key]
    )[0][0]
    assert cleaned > 10
    ledger = dict(small_pipeline.query("select status, count(*) from load_ledger group by status"))
    assert ledger == {"failed": 10}
    assert small_pipeline.materialize(key).success
    assert len(small_pipeline.sims.target.records) == cleaned


def test_a_wrong_target_token_fails_naming_the_variable(small_pipeline: Pipeline) -> None:
    key = day_keys(2)[0]
    result = small_pipeline.materialize(
        key, raise_on_error=False, **target(small_pipeline, token="not-the-token")
    )
    message = assert_one_clear_line(result, ("TargetAuthError", "TARGET_TOKEN", "401"))
    assert "not-the-token" not in message
    assert small_pipeline.sims.target.records == {}


def test_secrets_with_surrounding_whitespace_work(small_pipeline: Pipeline) -> None:
    key = day_keys(2)[0]
    mounted = {  # as read from files of mounted secrets: a trailing newline, or CRLF
        **okki(
            small_pipeline,
            client_id=DEMO_CLIENT_ID + "\n",
            client_secret=f" {DEMO_CLIENT_SECRET}\r\n",
        ),
        **target(small_pipeline, token=DEMO_TARGET_TOKEN + "\n"),
    }
    assert small_pipeline.materialize(key, **mounted).success
    cleaned = small_pipeline.query(
        "select count(*) from cleaned_companies where partition_key = ?", [key]
    )[0][0]
    assert cleaned > 0 and len(small_pipeline.sims.target.records) == cleaned


@pytest.mark.parametrize(
    ("variable", "overrides"),
    [
        # a bell inside the target token: no valid header value
        ("TARGET_TOKEN", lambda p: target(p, token="demo-target\x07token-Hidden")),
        # a line break inside the client secret
        ("OKKI_CLIENT_SECRET", lambda p: okki(p, client_secret="demo-\nsecret-Hidden")),
    ],
)
def test_a_secret_with_an_inner_control_character_fails_at_once_naming_the_variable(
    variable: str,
    overrides: Callable[[Pipeline], dict[str, Any]],
    small_pipeline: Pipeline,
    retries: Callable[[], list[str]],
) -> None:
    key = day_keys(2)[0]
    result = small_pipeline.materialize(key, raise_on_error=False, **overrides(small_pipeline))
    assert retries() == [], "fails fast"
    message = assert_one_clear_line(result, ("ConfigError", variable))
    assert "Hidden" not in message, "the value is never shown"
    assert_nothing_written(small_pipeline.database, key)
    assert small_pipeline.sims.target.stats()["batches_received"] == 0


def run_command(tmp_path: Path, command: list[str], **variables: str) -> tuple[int, str]:
    """(exit code, stdout + stderr) of a command of this environment run in the repository, with
    a fresh DAGSTER_HOME and no OKKI_/TARGET_ variable but ``variables``."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OKKI_", "TARGET_"))}
    env.update(
        DAGSTER_HOME=str(home), OKKI_ASSETS_DUCKDB=str(tmp_path / "okki.duckdb"), **variables
    )
    executable = shutil.which(command[0], path=str(Path(sys.executable).parent))
    assert executable, command[0]
    done = subprocess.run(
        [executable, *command[1:]],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return done.returncode, done.stdout + done.stderr


def test_the_command_line_shows_the_one_line_and_no_traceback_chain(tmp_path: Path) -> None:
    with running_simulators(companies=30, days=2) as sims:
        code, output = run_command(
            tmp_path,
            ["dagster", "asset", "materialize", "-m", "okki_assets.definitions"]
            + ["--select", "*", "--partition", day_keys(2)[0]],
            OKKI_BASE_URL=sims.okki_url,
            OKKI_CLIENT_ID=DEMO_CLIENT_ID,
            OKKI_CLIENT_SECRET="a-wrong-secret-4711",
            TARGET_URL=sims.target_url,
            TARGET_TOKEN=DEMO_TARGET_TOKEN,
        )
    assert code != 0
    assert "check OKKI_CLIENT_ID and OKKI_CLIENT_SECRET" in output
    assert "The above exception was caused by" not in output
    assert "a-wrong-secret-4711" not in output
    # The run's error is printed where the step fails and where the run fails, each with
    # Dagster's frames and the assets' (the windows' and the account's; `--select *` runs
    # both), never the client's, httpx's or tenacity's.
    frames = [line for line in output.splitlines() if line.strip().startswith('File "')]
    ours = ("site-packages/dagster", "okki_assets/assets/")
    assert frames and all(any(place in f for place in ours) for f in frames)


def test_missing_credentials_on_the_command_line_end_in_one_line_naming_them(
    tmp_path: Path,
) -> None:
    """No OKKI_CLIENT_ID / OKKI_CLIENT_SECRET at all: the run fails in its first step with one
    line naming both, not in Dagster's resolution of the variables with a wall of traceback.
    The command is the README's, which prints no warning either."""
    code, output = run_command(
        tmp_path,
        ["dg", "launch", "-m", "okki_assets.definitions", "--assets", ",".join(ASSETS)]
        + ["--partition", day_keys(2)[0]],
    )
    assert code == 1, output[-3000:]
    assert "Warning" not in output, output[:3000]
    named = [line for line in output.splitlines() if "OKKI_CLIENT_ID" in line]
    assert named, output[-3000:]
    assert all(
        "OKKI_CLIENT_ID and OKKI_CLIENT_SECRET are empty or not set" in line for line in named
    ), named
    assert "PostProcessingError" not in output and "DagsterInvalidConfigError" not in output
    assert output.rstrip().endswith("Error: Materialization failed."), output[-3000:]


# --- a value of the environment that cannot be read ---------------------------------------------

# (variable, value, the line the run fails with)
UNREADABLE = [
    # a rate in words
    ("OKKI_RATE_LIMIT", "fast", "OKKI_RATE_LIMIT must be a number or auto, got 'fast'"),
    # a month that does not exist: the partitions could not even be built from it
    (
        "OKKI_SYNC_START",
        "2026-13-01",
        "OKKI_SYNC_START must be a date YYYY-MM-DD, got '2026-13-01'",
    ),
    # a share written as a percentage
    (
        "OKKI_QUARANTINE_THRESHOLD",
        "5%",
        "OKKI_QUARANTINE_THRESHOLD must be a number, got '5%'",
    ),
    # no info calls in flight at all
    ("OKKI_CONCURRENCY", "0", "OKKI_CONCURRENCY must be at least 1, got 0"),
]


def _point_at(monkeypatch: pytest.MonkeyPatch, sims: Any, database: Path, **variables: str) -> None:
    for name in list(os.environ):
        if name.startswith(("OKKI_", "TARGET_")):
            monkeypatch.delenv(name)
    for name, value in {
        "OKKI_BASE_URL": sims.okki_url,
        "OKKI_CLIENT_ID": DEMO_CLIENT_ID,
        "OKKI_CLIENT_SECRET": DEMO_CLIENT_SECRET,
        "TARGET_URL": sims.target_url,
        "TARGET_TOKEN": DEMO_TARGET_TOKEN,
        "OKKI_ASSETS_DUCKDB": str(database),
        **variables,
    }.items():
        monkeypatch.setenv(name, value)


@pytest.mark.parametrize(("variable", "value", "line"), UNREADABLE)
def test_an_unreadable_setting_loads_the_definitions_and_fails_each_step_in_one_line(
    variable: str,
    value: str,
    line: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    instance: dg.DagsterInstance,
) -> None:
    from okki_assets.definitions import defs_from_env

    key = day_keys(2)[0]
    database = tmp_path / "okki.duckdb"
    with running_simulators(companies=30, days=2) as sims:
        _point_at(monkeypatch, sims, database, **{variable: value})
        defs = defs_from_env()  # loads: the UI shows the assets
        graph = defs.resolve_asset_graph()
        assert {k.to_user_string() for k in graph.get_all_asset_keys()} == {
            *ASSETS,
            "okki_account",
        }
        sync = defs.resolve_job_def("okki_sync")
        runs = {
            "the whole sync": sync.execute_in_process(
                partition_key=key, instance=instance, raise_on_error=False
            ),
            # a step that takes no OKKI setting still refuses to run on the default
            "cleaned_companies alone": sync.execute_in_process(
                partition_key=key,
                instance=instance,
                asset_selection=[dg.AssetKey("cleaned_companies")],
                raise_on_error=False,
            ),
            "the account": defs.resolve_job_def("okki_reconcile").execute_in_process(
                instance=instance, raise_on_error=False
            ),
        }
        for what, result in runs.items():
            message = assert_one_clear_line(result, ())
            assert message.endswith(f"Failure: ConfigError: {line}"), (what, message)
        calls = sims.okki.stats.calls
        assert calls.get(LIST_PATH, 0) == calls.get(INFO_PATH, 0) == 0, calls
        assert sims.target.stats()["batches_received"] == 0
    assert_nothing_written(database, key)


def test_an_unreadable_setting_on_the_command_line_is_one_line_not_a_load_error(
    tmp_path: Path,
) -> None:
    """The README's command with two bad values: the run starts (the code location loads) and
    fails in its first step, the line naming both variables; no traceback of the loading."""
    with running_simulators(companies=30, days=2) as sims:
        code, output = run_command(
            tmp_path,
            ["dg", "launch", "-m", "okki_assets.definitions", "--assets", ",".join(ASSETS)]
            + ["--partition", day_keys(2)[0]],
            OKKI_BASE_URL=sims.okki_url,
            OKKI_CLIENT_ID=DEMO_CLIENT_ID,
            OKKI_CLIENT_SECRET=DEMO_CLIENT_SECRET,
            OKKI_RATE_LIMIT="fast",
            OKKI_SYNC_START="2026-13-01",
        )
        assert sims.okki.stats.calls.get(LIST_PATH, 0) == 0
    assert code == 1, output[-3000:]
    assert "RUN_START" in output, output[-3000:]  # the code location loaded
    named = [line for line in output.splitlines() if "OKKI_RATE_LIMIT" in line]
    assert named, output[-3000:]
    assert all(
        line.endswith(
            "ConfigError: OKKI_RATE_LIMIT must be a number or auto, got 'fast';"
            " OKKI_SYNC_START must be a date YYYY-MM-DD, got '2026-13-01'"
        )
        for line in named
    ), named
    assert "ValueError" not in output and "import_module" not in output, output[-3000:]


RATE_LINE = "ConfigError: OKKI_RATE_LIMIT must be a number or auto, got 'fast'"
DOCS_COMMANDS = {
    # docs/operations.md's backfill command, with the run config the project ships
    "the sync's assets": [
        "-c",
        "okki_assets/launch.yaml",
        "--assets",
        ",".join(ASSETS),
        "--partition",
    ],
    # the reconcile job carries that run config itself
    "okki_reconcile": ["--job", "okki_reconcile"],
}


@pytest.mark.parametrize("command", DOCS_COMMANDS)
def test_dg_launch_prints_the_projects_failure_once_without_a_stack(
    command: str, tmp_path: Path
) -> None:
    """The run's failure is the one line, printed once (with the run's failure; the failed
    step refers to it), with no stack: not twice with Dagster's frames and two of ours."""
    arguments = DOCS_COMMANDS[command]
    if arguments[-1] == "--partition":
        arguments = [*arguments, day_keys(2)[0]]
    with running_simulators(companies=30, days=2) as sims:
        code, output = run_command(
            tmp_path,
            ["dg", "launch", "-m", "okki_assets.definitions", *arguments],
            OKKI_BASE_URL=sims.okki_url,
            OKKI_CLIENT_ID=DEMO_CLIENT_ID,
            OKKI_CLIENT_SECRET=DEMO_CLIENT_SECRET,
            OKKI_RATE_LIMIT="fast",
        )
        assert sims.okki.stats.calls.get(LIST_PATH, 0) == 0
    assert code == 1, output[-3000:]
    # every event still shown (RUN_START is at DEBUG), as by Dagster's default console logger
    assert "RUN_START" in output and "RUN_FAILURE" in output, output[-3000:]
    assert output.count(RATE_LINE) == 1, output[-6000:]
    # with the run's failure, printed by the command's own process (a step's last lines come
    # through Dagster's capture of the step's process, which may drop them)
    assert RATE_LINE in output[output.index("RUN_FAILURE") :], output[-6000:]
    assert "Stack Trace" not in output and 'File "' not in output, output[-6000:]
