"""The code location as Dagster's own tools load it, and the environment as the only input.

- ``dagster definitions validate -w workspace.yaml`` and ``dagster-graphql`` load one location,
  ``okki_assets``, with the three assets, their five checks, the job and both schedules;
- importing the definitions raises no warning and starts nothing;
- a missing credential fails the run at its start, naming the variable; a setting that cannot
  be read is named, and the definitions still load;
- OKKI_ASSETS_DUCKDB_MEMORY sets DuckDB's memory limit;
- ``dagster asset materialize -m okki_assets.definitions ... --partition D`` syncs a partition
  with the environment pointed at the simulators.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from okki_assets.partitions import today_key
from okki_assets.simulator.harness import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_TARGET_TOKEN,
    running_simulators,
)

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ASSETS = {"raw_companies", "cleaned_companies", "loaded_companies", "okki_account"}
CHECKS = {
    ("raw_companies", "raw_complete"),
    ("cleaned_companies", "schema_valid"),
    ("cleaned_companies", "company_id_unique"),
    ("cleaned_companies", "quarantine_ratio"),
    ("loaded_companies", "load_reconciled"),
    ("okki_account", "account_in_sync"),
}
OKKI_VARS = ("OKKI_BASE_URL", "OKKI_CLIENT_ID", "OKKI_CLIENT_SECRET", "TARGET_URL", "TARGET_TOKEN")


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OKKI_", "TARGET_"))}
    home = tmp_path / "dagster_home"
    home.mkdir(exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env.update(DAGSTER_HOME=str(home), OKKI_ASSETS_DUCKDB=str(tmp_path / "okki.duckdb"), **extra)
    return env


def test_dagster_validates_the_workspace(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(BIN / "dagster"), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=ROOT,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=600,  # a failure detector: a loaded machine imports Dagster slowly
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Validation successful for code location okki_assets" in done.stderr + done.stdout


def test_graphql_sees_assets_checks_and_schedules(tmp_path: Path) -> None:
    query = (
        "{ assetNodes { assetKey { path } groupName"
        "  assetChecksOrError { ... on AssetChecks { checks { name } } } }"
        "  repositoriesOrError { ... on RepositoryConnection { nodes { location { name }"
        "    schedules { name cronSchedule executionTimezone } jobs { name } } } } }"
    )
    out = tmp_path / "out.json"
    done = subprocess.run(
        [
            str(BIN / "dagster-graphql"),
            "-w",
            "workspace.yaml",
            "--ephemeral-instance",
            "-t",
            query,
            "-o",
            str(out),
        ],
        cwd=ROOT,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=600,  # a failure detector: a loaded machine imports Dagster slowly
    )
    assert done.returncode == 0, done.stderr[-2000:]
    data = json.loads(out.read_text())["data"]
    nodes = {n["assetKey"]["path"][-1]: n for n in data["assetNodes"]}
    assert set(nodes) == ASSETS
    # the whole account apart, so that the windows' "Materialize all" leaves it out
    groups = {asset: n["groupName"] for asset, n in nodes.items()}
    assert groups == {
        **dict.fromkeys(ASSETS - {"okki_account"}, "okki"),
        "okki_account": "okki_reconcile",
    }
    checks = {
        (asset, c["name"]) for asset, n in nodes.items() for c in n["assetChecksOrError"]["checks"]
    }
    assert checks == CHECKS
    (repo,) = data["repositoriesOrError"]["nodes"]
    assert repo["location"]["name"] == "okki_assets"
    schedules = {s["name"]: (s["cronSchedule"], s["executionTimezone"]) for s in repo["schedules"]}
    assert schedules == {
        "okki_intraday_sync": ("*/15 * * * *", "Asia/Shanghai"),
        "okki_daily_sync": ("30 0 * * *", "Asia/Shanghai"),
        "okki_reconcile_daily": ("30 3 * * *", "Asia/Shanghai"),
    }
    assert {"okki_sync", "okki_reconcile"} <= {j["name"] for j in repo["jobs"]}


def test_importing_the_definitions_warns_about_nothing(tmp_path: Path) -> None:
    code = (
        "import threading, okki_assets.definitions as d; d.defs.resolve_job_def('okki_sync');"
        " assert threading.active_count() == 1, threading.enumerate()"
    )
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", code],
        cwd=ROOT,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=600,  # a failure detector: a loaded machine imports Dagster slowly
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr == ""
    assert not (tmp_path / "okki.duckdb").exists(), "loading must not touch the DuckDB file"


@pytest.mark.parametrize("missing", ["OKKI_CLIENT_ID", "OKKI_CLIENT_SECRET"])
def test_a_missing_credential_fails_the_run_naming_the_variable(
    missing: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from okki_assets.definitions import defs_from_env

    for name in OKKI_VARS:
        monkeypatch.delenv(name, raising=False)
    present = {"OKKI_CLIENT_ID": "someone", "OKKI_CLIENT_SECRET": "s3cret-value"}
    present.pop(missing)
    for name, value in present.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("OKKI_ASSETS_DUCKDB", str(tmp_path / "okki.duckdb"))
    job = defs_from_env().resolve_job_def("okki_sync")
    with dg.instance_for_test() as instance, pytest.raises(Exception) as raised:
        job.execute_in_process(partition_key=today_key(), instance=instance)
    assert missing in str(raised.value)
    assert "s3cret-value" not in str(raised.value)
    assert not (tmp_path / "okki.duckdb").exists(), "nothing may be written before the run starts"


@pytest.mark.parametrize(
    ("setting", "expected"),
    [(None, "244.1 MiB"), ("1GB", "953.6 MiB"), ("none", None)],  # None: DuckDB's own default
)
def test_the_duckdb_memory_limit_comes_from_the_environment(
    setting: str | None, expected: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from okki_assets.definitions import defs_from_env

    monkeypatch.setenv("OKKI_ASSETS_DUCKDB", str(tmp_path / "okki.duckdb"))
    if setting is None:
        monkeypatch.delenv("OKKI_ASSETS_DUCKDB_MEMORY", raising=False)
    else:
        monkeypatch.setenv("OKKI_ASSETS_DUCKDB_MEMORY", setting)
    warehouse = defs_from_env().resources["warehouse"]
    with warehouse.get_connection() as conn:
        (limit,) = conn.execute("select current_setting('memory_limit')").fetchone() or ("",)
    if expected is None:
        assert limit not in ("244.1 MiB", "953.6 MiB"), limit
    else:
        assert limit == expected


def test_the_cli_materializes_a_partition_from_the_environment(tmp_path: Path) -> None:
    key = today_key()
    with running_simulators(companies=120, days=2) as sims:
        env = _env(
            tmp_path,
            OKKI_BASE_URL=sims.okki_url,
            OKKI_CLIENT_ID=DEMO_CLIENT_ID,
            OKKI_CLIENT_SECRET=DEMO_CLIENT_SECRET,
            TARGET_URL=sims.target_url,
            TARGET_TOKEN=DEMO_TARGET_TOKEN,
            OKKI_RATE_LIMIT="200",
            OKKI_SYNC_START="2026-01-01",
        )
        done = subprocess.run(
            [
                str(BIN / "dagster"),
                "asset",
                "materialize",
                "-m",
                "okki_assets.definitions",
                "--select",
                "raw_companies,cleaned_companies,loaded_companies",
                "--partition",
                key,
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        records = sims.target.records
    with duckdb.connect(str(tmp_path / "okki.duckdb"), read_only=True) as conn:
        cleaned = {
            str(r[0])
            for r in conn.execute(
                "select company_id from cleaned_companies where partition_key = ?", [key]
            ).fetchall()
        }
    assert cleaned and set(records) == cleaned


@pytest.mark.parametrize(
    ("limit", "cap", "expected"),
    [
        (None, None, (None, None)),  # unset: the rate is learned, with no cap
        ("auto", "60", (None, 60.0)),  # auto, capped
        (" AUTO ", None, (None, None)),  # spelled loosely
        ("12.5", None, (12.5, None)),  # a number: fixed pacing
    ],
)
def test_the_okki_rate_settings_come_from_the_environment(
    limit: str | None,
    cap: str | None,
    expected: tuple[float | None, float | None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from okki_assets.definitions import defs_from_env

    for name, value in (("OKKI_RATE_LIMIT", limit), ("OKKI_RATE_LIMIT_MAX", cap)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    resources = defs_from_env().resources
    assert resources is not None
    okki = resources["okki"]
    assert (okki.rate_limit, okki.rate_limit_max) == expected


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("OKKI_RATE_LIMIT", "fast", "OKKI_RATE_LIMIT must be a number or auto, got 'fast'"),
        ("OKKI_RATE_LIMIT_MAX", "auto", "OKKI_RATE_LIMIT_MAX must be a number, got 'auto'"),
        # counts: whole numbers of at least 1
        ("OKKI_INFO_REFRESH_DAYS", "0", "OKKI_INFO_REFRESH_DAYS must be at least 1, got 0"),
        (
            "OKKI_INFO_REFRESH_DAYS",
            "2.5",
            "OKKI_INFO_REFRESH_DAYS must be a whole number, got '2.5'",
        ),  # noqa: E501
        ("OKKI_CONCURRENCY", "many", "OKKI_CONCURRENCY must be a whole number, got 'many'"),
        ("TARGET_BATCH_SIZE", "-5", "TARGET_BATCH_SIZE must be at least 1, got -5"),
    ],
)
def test_a_bad_number_setting_is_named_and_the_definitions_still_load(
    name: str, value: str, words: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The definitions load on the default (the UI shows the assets); every step then fails
    with the line (test_bad_config runs them)."""
    from okki_assets.definitions import defs_from_env

    monkeypatch.setenv(name, value)
    defs = defs_from_env()
    assert defs.resources is not None
    assert defs.resources["warehouse"].setting_problems == [words]


@pytest.mark.parametrize(("setting", "days"), [(None, 7), ("1", 1), (" 14 ", 14)])
def test_the_info_refresh_period_comes_from_the_environment(
    setting: str | None, days: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    from okki_assets.definitions import defs_from_env

    if setting is None:
        monkeypatch.delenv("OKKI_INFO_REFRESH_DAYS", raising=False)
    else:
        monkeypatch.setenv("OKKI_INFO_REFRESH_DAYS", setting)
    account = defs_from_env().resolve_assets_def("okki_account")
    assert account.metadata_by_key[dg.AssetKey("okki_account")]["info_refresh_days"] == days
