"""No secret leaks: the client secret, the target token and OKKI's access tokens appear nowhere.

The pipeline runs from the environment (``defs_from_env``, secrets through ``dg.EnvVar``) with a
distinctive client secret and target token against the simulators, through token revocations,
faults, a target that suddenly refuses the token and OKKI refusing the credentials. Then every
place a secret could end up is searched: the Python log records at DEBUG, what was printed, the
runs' records and every event of their event logs (messages, metadata, errors with their stacks
and causes), every row of every DuckDB table, and the text and traceback of the exceptions raised.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from dagster._serdes import serialize_value

from okki_assets.definitions import defs_from_env
from okki_assets.partitions import window_for_key
from okki_assets.simulator.harness import DEMO_CLIENT_ID, RunningSimulators, running_simulators
from okki_assets_tests.conftest import day_keys

CLIENT_SECRET = "okki-secret-Zq8Xv3LmWn"
TARGET_TOKEN = "target-token-Pw7Kd2RnYs"


@pytest.fixture
def sims() -> Iterator[RunningSimulators]:
    with running_simulators(
        companies=90,
        days=2,
        okki_overrides={
            "client_secret": CLIENT_SECRET,
            "revoke_token_after": 20,  # several tokens issued, each refused once
            "fault_rate": 0.1,
        },
        target_overrides={"token": TARGET_TOKEN, "drop_reply_rate": 0.2},
    ) as running:
        yield running


def _environment(monkeypatch: pytest.MonkeyPatch, sims: RunningSimulators, tmp: Path) -> Path:
    database = tmp / "okki.duckdb"
    for name, value in {
        "OKKI_BASE_URL": sims.okki_url,
        "OKKI_CLIENT_ID": DEMO_CLIENT_ID,
        "OKKI_CLIENT_SECRET": CLIENT_SECRET,
        "OKKI_RATE_LIMIT": "300",
        "TARGET_URL": sims.target_url,
        "TARGET_TOKEN": TARGET_TOKEN,
        "TARGET_BATCH_SIZE": "20",
        "OKKI_ASSETS_DUCKDB": str(database),
    }.items():
        monkeypatch.setenv(name, value)
    return database


def _duckdb_text(database: Path) -> str:
    parts: list[str] = []
    with duckdb.connect(str(database), read_only=True) as conn:
        tables = [r[0] for r in conn.execute("select table_name from duckdb_tables()").fetchall()]
        for table in tables:
            rows = conn.execute(f"select * from {table}").fetchall()  # noqa: S608 - our tables
            parts.append(f"{table}: {rows!r}")
    return "\n".join(parts)


def _runs_text(instance: dg.DagsterInstance) -> str:
    parts: list[str] = []
    for run in instance.get_runs():
        parts.append(serialize_value(run))
        for entry in instance.all_logs(run.run_id):
            parts.append(serialize_value(entry))
    return "\n".join(parts)


def test_no_secret_appears_in_logs_events_duckdb_or_errors(
    sims: RunningSimulators,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    database = _environment(monkeypatch, sims, tmp_path)
    keys = day_keys(2)
    job = defs_from_env().resolve_job_def("okki_sync")
    errors: list[str] = []
    with dg.instance_for_test() as instance:
        for key in keys:  # faults, dropped replies, tokens revoked mid-window
            assert job.execute_in_process(partition_key=key, instance=instance).success

        # The target stops accepting the token in the middle of things.
        sims.target.config.token = "rotated-token"
        sims.okki.update_company(
            sims.okki.companies_in_window(*window_for_key(keys[0]))[0]["company_id"],
            {"name": "New"},
            update_time=window_for_key(keys[-1])[0] + timedelta(minutes=1),
        )
        with pytest.raises(Exception) as refused:
            job.execute_in_process(partition_key=keys[-1], instance=instance)
        errors.append("".join(traceback.format_exception(refused.value)))

        # OKKI stops accepting the client secret.
        sims.okki.config.client_secret = "rotated-secret"
        sims.okki.revoke_tokens()
        with pytest.raises(Exception) as denied:
            job.execute_in_process(partition_key=keys[0], instance=instance)
        errors.append("".join(traceback.format_exception(denied.value)))
        runs = _runs_text(instance)

    printed = capfd.readouterr()
    logs = "\n".join(f"{r.getMessage()} {r.args!r} {r.exc_text or ''}" for r in caplog.records)
    stored = _duckdb_text(database)
    places = {
        "python logs": logs,
        "printed output": printed.out + printed.err,
        "run records and event logs": runs,
        "DuckDB tables": stored,
        "exceptions": "\n".join(errors),
    }
    tokens = sims.okki.issued_tokens
    assert len(tokens) >= 3, "tokens were renewed after revocations"
    secrets = {"client secret": CLIENT_SECRET, "target token": TARGET_TOKEN}
    secrets.update({f"access token {i}": token for i, token in enumerate(tokens)})
    for place, text in places.items():
        for name, secret in secrets.items():
            assert secret not in text, f"the {name} appears in the {place}"

    # The search covered real material: the failures and the data are in there.
    assert "TARGET_TOKEN" in places["exceptions"] and "OKKI_CLIENT_SECRET" in places["exceptions"]
    assert "TargetAuthError" in runs and "OkkiAuthError" in runs
    company = str(sims.okki.companies_in_window(*window_for_key(keys[0]))[1]["company_id"])
    assert company in stored and "load_reconciled" in runs and "requests_info" in runs
    assert "renewing it" in logs and sims.target.stats()["dropped_replies"] > 0
