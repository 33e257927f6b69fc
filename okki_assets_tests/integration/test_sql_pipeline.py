"""loaded_companies and okki_reconcile into real SQL databases, through Dagster: PostgreSQL and
MariaDB servers of the session (dbservers.py) and an SQLite file.

A week of windows plus okki_reconcile over an account with history, deletions, a
delete-restore-delete flap and a silent contact edit leave the table equal to OKKI (soft-deleted
rows for the deleted); a settled re-run writes no row (``_synced_at`` unchanged); rows deleted,
edited or soft-deleted by hand at the target are found by the audit and repaired; a mapping that
gains a key adds a column and one that drops it fails naming it; a wrong password in TARGET_URL
fails the run in one line without it; a change OKKI made with an update_time moved back
(the ledger yields, versions.py) reaches the table, and the account check is green.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa

from okki_assets.assets.account import ACCOUNT_CHECK
from okki_assets.mapping import DEFAULT_MAPPING_SPEC
from okki_assets.okki_time import parse_okki_time
from okki_assets.partitions import CHINA_TZ, window_for_key
from okki_assets.resources import TargetResource
from okki_assets_tests.conftest import Pipeline, day_keys, make_pipeline, run_reconcile
from okki_assets_tests.dbservers import PASSWORD
from okki_assets_tests.integration.test_reconcile import (
    HISTORY,
    figures,
    okki_truth,
    primary_email,
    reconcile,
)

DAYS = 7
TABLE = "okki_companies"


@pytest.fixture
def sql_pipeline(sql_url: str, tmp_path: Path, instance: dg.DagsterInstance) -> Iterator[Pipeline]:
    for pipeline in make_pipeline(
        tmp_path, instance, companies=150, days=DAYS, okki_overrides=HISTORY
    ):
        yield dataclasses.replace(pipeline, target=TargetResource(url=sql_url))


def engine_of(pipeline: Pipeline) -> sa.Engine:
    url = pipeline.target.url.replace("postgresql://", "postgresql+psycopg://")
    return sa.create_engine(url.replace("mariadb://", "mariadb+pymysql://"))


def table(pipeline: Pipeline) -> dict[str, dict[str, Any]]:
    engine = engine_of(pipeline)
    with engine.connect() as conn:
        t = sa.Table(TABLE, sa.MetaData(), autoload_with=conn)
        rows = conn.execute(sa.select(t)).mappings().all()
    engine.dispose()
    return {str(r["id"]): dict(r) for r in rows}


def by_hand(pipeline: Pipeline, lost: str, hacked: str, hidden: str) -> None:
    """A person at the target: deletes one row, edits one, soft-deletes one."""
    engine = engine_of(pipeline)
    with engine.begin() as conn:
        t = sa.Table(TABLE, sa.MetaData(), autoload_with=conn)
        conn.execute(sa.delete(t).where(t.c.id == lost))
        conn.execute(sa.update(t).where(t.c.id == hacked).values(fullName="hacked"))
        conn.execute(sa.update(t).where(t.c.id == hidden).values(_deleted_at=t.c._synced_at))
    engine.dispose()


def email_of(row: dict[str, Any]) -> str:
    info = row["contactInfo"]
    return str((json.loads(info) if isinstance(info, str) else info)["emailAddress"])


def test_a_week_and_reconciles_leave_the_table_equal_to_okki(sql_pipeline: Pipeline) -> None:
    p, okki = sql_pipeline, sql_pipeline.sims.okki
    keys = day_keys(DAYS)
    truth = okki_truth(p)
    history = sorted(c for c, r in truth.items() if r["update_time"][:10] < keys[0])
    recent = sorted(c for c, r in truth.items() if r["update_time"][:10] >= keys[0])
    for key in keys:
        assert p.materialize(key).success
    assert reconcile(p, refresh_days=1).success

    # A delete-restore-delete flap (the first deletion inside today's window), a deletion that
    # keeps its old time, a silent contact edit.
    flap, gone, edited = history[0], recent[0], history[1]
    start, end = window_for_key(keys[-1])
    when = min(max(datetime.now(CHINA_TZ) - timedelta(minutes=1), start), end)
    okki.delete_company(flap, delete_time=when + timedelta(seconds=0))
    assert p.materialize(keys[-1]).success
    okki.restore_company(flap)
    assert reconcile(p, refresh_days=1).success
    assert table(p)[flap]["_deleted_at"] is None
    okki.delete_company(flap)
    okki.delete_company(gone)
    okki.edit_contact(edited, email="silent.edit@example.com")
    result = reconcile(p, refresh_days=1)
    assert result.success, figures(result)

    rows, truth = table(p), okki_truth(p)
    live = {c for c, r in rows.items() if r["_deleted_at"] is None}
    assert live == set(truth)
    assert rows[flap]["_deleted_at"] is not None and rows[gone]["_deleted_at"] is not None
    assert email_of(rows[edited]) == primary_email(truth[edited]) == "silent.edit@example.com"
    assert figures(result)["target_audit"] == "audited"

    # Settled: the windows and a reconcile again write no row.
    for key in keys[-2:]:
        assert p.materialize(key).success
    assert reconcile(p, refresh_days=1).success
    assert {c: r["_synced_at"] for c, r in table(p).items()} == {
        c: r["_synced_at"] for c, r in rows.items()
    }

    # Changed by hand at the target: one row deleted, one edited, one soft-deleted.
    lost, hacked, hidden = sorted(truth)[:3]
    by_hand(p, lost, hacked, hidden)
    result = reconcile(p, refresh_days=7)
    run = figures(result)
    assert result.success, run
    assert (run["target_missing"], run["target_different"], run["target_extra"]) == (2, 1, 0)
    assert run["target_repaired"] == 3 and run["target_unrepaired"] == 0
    offenders = {r.data["company_id"] for r in run["target_offending_ids"].records}
    assert offenders == {lost, hacked, hidden}
    after = table(p)
    assert {c for c, r in after.items() if r["_deleted_at"] is None} == set(truth)
    assert after[hacked]["fullName"] == truth[hacked]["name"]


def test_a_mapping_that_gains_a_key_adds_a_column_and_one_that_drops_it_fails(
    sql_pipeline: Pipeline, tmp_path: Path
) -> None:
    key = day_keys(1)[0]
    assert sql_pipeline.materialize(key).success
    spec = json.loads(json.dumps(DEFAULT_MAPPING_SPEC))
    spec["fields"]["segment"] = {"const": "smb"}
    mapping = tmp_path / "mapping.json"
    mapping.write_text(json.dumps(spec))
    wider = TargetResource(url=sql_pipeline.target.url, mapping_file=str(mapping))
    assert sql_pipeline.materialize(key, target=wider).success
    rows = table(sql_pipeline)
    assert rows and {r["segment"] for r in rows.values()} == {"smb"}
    # Back to the mapping without the key: the run fails naming the column, which stays.
    result = sql_pipeline.materialize(key, raise_on_error=False)
    assert not result.success
    failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    message = failures[0].step_failure_data.error.message  # type: ignore[union-attr]
    assert "'segment'" in message and "never dropped" in message
    assert "segment" in next(iter(table(sql_pipeline).values()))


@pytest.mark.parametrize("sql_url", ["postgresql", "mariadb"], indirect=True)  # SQLite: none
def test_a_wrong_password_fails_the_run_in_one_line_without_it(sql_pipeline: Pipeline) -> None:
    url = sql_pipeline.target.url
    bad = TargetResource(url=url.replace(PASSWORD, "Wrong-Pw-7731"))
    result = sql_pipeline.materialize(day_keys(1)[0], target=bad, raise_on_error=False)
    assert not result.success
    failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    message = failures[0].step_failure_data.error.message.strip()  # type: ignore[union-attr]
    assert "Wrong-Pw-7731" not in message and "***" in message
    assert message.count("\n") == 0, message
    everything = json.dumps([str(e) for e in result.all_events])
    assert "Wrong-Pw-7731" not in everything


def test_a_change_whose_update_time_moved_back_reaches_the_table(
    sql_url: str, tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    for p in make_pipeline(tmp_path, instance, companies=40, days=2, okki_overrides=HISTORY):
        p = dataclasses.replace(p, target=TargetResource(url=sql_url))
        key = day_keys(2)[0]
        assert p.materialize(key).success
        assert reconcile(p, refresh_days=1).success
        company = p.sims.okki.companies_in_window(*window_for_key(key))[-1]
        cid, when = str(company["company_id"]), parse_okki_time(company["update_time"])
        assert when is not None
        p.sims.okki.update_company(
            cid, {"name": "Moved Back Ltd"}, update_time=when - timedelta(days=3)
        )

        result = reconcile(p, refresh_days=1)
        assert result.success, figures(result)
        assert figures(result)["ledger_yielded"] == 1, figures(result)
        row = table(p)[cid]
        assert (row["fullName"], row["_deleted_at"]) == ("Moved Back Ltd", None)
        (check,) = run_reconcile(p, refresh_days=1, check_only=True).get_asset_check_evaluations()
        assert check.check_name == ACCOUNT_CHECK
        assert check.passed, {k: v.value for k, v in check.metadata.items()}
