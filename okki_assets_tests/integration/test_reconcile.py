"""okki_reconcile end to end: the whole account at the target, through Dagster, on loopback.

Covers what daily windows cannot see: history last touched a year or more before
OKKI_SYNC_START, deletions and restores that keep the old update_time, contact e-mails changed
without a new update_time; the account check (red before a reconcile, green after); the cost of
a reconcile with nothing to do (list requests plus the refresh slice); and a reconcile running
at the same time as a daily partition on one DuckDB file. Assertions compare the target's
records and DuckDB rows with the OKKI simulator's truth.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import zlib
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from okki_assets.assets.account import (
    ACCOUNT_CHECK,
)
from okki_assets.partitions import CHINA_TZ, window_for_key
from okki_assets.simulator.data import BAD_UPDATE_TIME
from okki_assets.simulator.harness import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_TARGET_TOKEN
from okki_assets_tests.conftest import SYNC_START, Pipeline, day_keys, make_pipeline
from okki_assets_tests.conftest import account_figures as figures
from okki_assets_tests.conftest import run_reconcile as reconcile

HISTORY = {
    "history_share": 0.6,
    "history_before": date.fromisoformat(SYNC_START),
    "malformed_rate": 0.04,
}
EVERYTHING = (datetime(1970, 1, 2), datetime(2200, 1, 1))


@pytest.fixture
def account(tmp_path: Path, instance: dg.DagsterInstance) -> Iterator[Pipeline]:
    yield from make_pipeline(tmp_path, instance, companies=300, okki_overrides=HISTORY)


def check_of(result: dg.ExecuteInProcessResult) -> dg.AssetCheckEvaluation:
    (evaluation,) = result.get_asset_check_evaluations()
    assert evaluation.check_name == ACCOUNT_CHECK
    return evaluation


def is_bad(record: dict[str, Any]) -> bool:
    """The generator's malformed kinds, judged from the record alone."""
    cid = record.get("company_id")
    return (
        cid is None
        or not str(cid).isdigit()
        or not str(record.get("name", "")).strip()
        or record.get("update_time") == BAD_UPDATE_TIME
    )


def okki_truth(pipeline: Pipeline) -> dict[str, dict[str, Any]]:
    """Every live company OKKI holds, valid ones only, by id."""
    live = pipeline.sims.okki.companies_in_window(*EVERYTHING)
    return {str(r["company_id"]): r for r in live if not is_bad(r)}


def primary_email(record: dict[str, Any]) -> str:
    customers = [c for c in record.get("customers") or [] if isinstance(c, dict)]
    main = [c for c in customers if str(c.get("main_customer_flag")) == "1"]
    return str((main or customers or [{}])[0].get("email") or "")


def test_one_reconcile_brings_a_fresh_account_with_history_to_the_target(
    account: Pipeline,
) -> None:
    truth = okki_truth(account)
    first = datetime(2026, 1, 1)
    old = [r for r in truth.values() if r["update_time"] < "2025-01-01 00:00:00"]
    assert len(old) >= 0.5 * len(truth), "the account should be mostly history"
    assert all(r["update_time"] < str(first) for r in old)

    result = reconcile(account)
    assert result.success
    assert set(account.sims.target.records) == set(truth)
    applied = account.sims.target.stats()["records_applied"]
    assert all(n == 1 for n in applied.values()), applied

    # The bad ones are kept with reasons in the account's quarantine, the good ones cleaned.
    everything = account.sims.okki.companies_in_window(*EVERYTHING)
    bad = [r for r in everything if is_bad(r)]
    assert bad, "the account should hold malformed companies"
    quarantined = account.query(
        "select reasons from quarantined_companies where partition_key = 'account'"
    )
    assert len(quarantined) == len(bad) and all(reasons for (reasons,) in quarantined)
    cleaned = account.query(
        "select company_id::varchar from cleaned_companies where partition_key = 'account'"
    )
    assert {c for (c,) in cleaned} == set(truth)

    evaluation = check_of(result)
    assert evaluation.passed
    meta = {k: v.value for k, v in evaluation.metadata.items()}
    assert meta["companies_in_okki"] == len(everything)
    assert meta["at_target"] == len(truth)
    assert meta["missing"] == meta["stale"] == meta["deleted_but_present"] == 0
    # One info call per company with an id and a time (a blank name shows only after it).
    fetchable = [
        r
        for r in everything
        if str(r.get("company_id", "")).isdigit() and r["update_time"] != BAD_UPDATE_TIME
    ]
    run = figures(result)
    assert run["found_missing"] == run["info_requests"] == len(fetchable)


def test_deletions_restores_and_silent_contact_edits_only_reconcile_finds(
    account: Pipeline,
) -> None:
    okki = account.sims.okki
    keys = day_keys(5)
    truth = okki_truth(account)
    recent = sorted(c for c, r in truth.items() if r["update_time"][:10] == keys[0])
    history = sorted(c for c, r in truth.items() if r["update_time"][:10] < SYNC_START)
    restored = history[2]
    for key in keys:
        assert account.materialize(key).success
    assert reconcile(account, refresh_days=1).success
    # Deleted today (the deletion moves update_time): today's window sends the tombstone. The
    # time stays inside that window even when the test runs across China's midnight.
    start, end = window_for_key(keys[-1])
    when = datetime.now(CHINA_TZ) - timedelta(minutes=1)
    when = min(max(when, start + timedelta(seconds=1)), end - timedelta(seconds=1))
    okki.delete_company(restored, delete_time=when)
    assert account.materialize(keys[-1]).success
    assert restored not in account.sims.target.records

    # OKKI changes in ways no daily window lists: old times kept, contacts edited silently.
    gone = [recent[0], history[0]]
    for cid in gone:
        okki.delete_company(cid)
    okki.restore_company(restored)  # back with its old time, older than the tombstone's
    edited = history[1]
    okki.edit_contact(edited, email="silent.edit@example.com")
    for key in keys[-2:]:  # the daily and intraday schedules go on, and see none of it
        assert account.materialize(key).success
    target = account.sims.target.records
    assert all(cid in target for cid in gone) and restored not in target
    assert "silent.edit@example.com" not in json.dumps(target[edited])

    before = reconcile(account, refresh_days=1, check_only=True)
    evaluation = check_of(before)
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR
    meta = {k: v.value for k, v in evaluation.metadata.items()}
    assert (meta["deleted_but_present"], meta["restored_pending"]) == (2, 1)
    offenders = {r.data["company_id"] for r in meta["offending_ids"].records}
    assert offenders == {*gone, restored}

    result = reconcile(account, refresh_days=1)
    after = {k: v.value for k, v in check_of(result).metadata.items()}
    assert result.success and check_of(result).passed, after
    truth = okki_truth(account)
    target = account.sims.target.records
    assert set(target) == set(truth)
    assert primary_email(truth[edited]) == "silent.edit@example.com"
    assert "silent.edit@example.com" in json.dumps(target[edited])
    run = figures(result)
    assert run["restored"] == 1 and run["contacts_changed_by_refresh"] >= 1
    statuses = dict(
        account.query(
            "select company_id::varchar, status from load_ledger where company_id in"
            " (select unnest(?::bigint[]))",
            [[int(c) for c in (*gone, restored)]],
        )
    )
    assert statuses == {gone[0]: "deleted", gone[1]: "deleted", restored: "created"}


def test_a_second_reconcile_sends_nothing_and_reads_only_its_refresh_slice(
    account: Pipeline,
) -> None:
    assert reconcile(account).success
    batches = account.sims.target.stats()["batches_received"]
    account.sims.okki.reset_stats()

    result = reconcile(account)
    assert result.success and check_of(result).passed
    assert account.sims.target.stats()["batches_received"] == batches
    infos = set(account.sims.okki.stats.info_by_company)
    today = datetime.now(CHINA_TZ).date().toordinal()
    slice_ = {c for c in okki_truth(account) if zlib.crc32(c.encode()) % 7 == today % 7}
    assert infos == slice_
    run = figures(result)
    assert run["info_requests"] == len(slice_) == run["refreshed"]
    live = len(account.sims.okki.companies_in_window(*EVERYTHING))
    # two agreeing passes over the live list and the (empty) deleted list, each pass ending
    # at an empty page
    assert run["list_requests"] <= 2 * (math.ceil(live / 100) + 1) + 2 * 1


def _dg_launch(
    pipeline: Pipeline, home: Path, job: str, partition: str = ""
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "OKKI_BASE_URL": pipeline.sims.okki_url,
        "OKKI_CLIENT_ID": DEMO_CLIENT_ID,
        "OKKI_CLIENT_SECRET": DEMO_CLIENT_SECRET,
        "OKKI_RATE_LIMIT": "500",
        "TARGET_URL": pipeline.sims.target_url,
        "TARGET_TOKEN": DEMO_TARGET_TOKEN,
        "OKKI_ASSETS_DUCKDB": str(pipeline.database),
        "OKKI_SYNC_START": SYNC_START,
    }
    # The README's command (Dagster 1.13's successor of `dagster job execute`, which warns).
    command = [str(Path(sys.executable).parent / "dg"), "launch"]
    command += ["-m", "okki_assets.definitions", "--job", job]
    if partition:
        command += ["--partition", partition]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_reconcile_and_a_daily_partition_at_once_lose_nothing_and_write_nothing_stale(
    account: Pipeline, tmp_path: Path
) -> None:
    homes = [tmp_path / "home_reconcile", tmp_path / "home_daily"]
    for home in homes:  # one instance each: two fresh SQLite instances at once would race
        home.mkdir()
        (home / "dagster.yaml").write_text("")
    key = day_keys(2)[0]
    runs = [
        _dg_launch(account, homes[0], "okki_reconcile"),
        _dg_launch(account, homes[1], "okki_sync", key),
    ]
    outputs = [run.communicate(timeout=900)[0].decode(errors="replace") for run in runs]
    for run, output in zip(runs, outputs, strict=True):
        assert run.returncode == 0, output[-3000:]
        assert "Warning" not in output, output[:3000]

    truth = okki_truth(account)
    target = account.sims.target.records
    assert set(target) == set(truth)
    for cid, record in truth.items():  # nothing stale: the newest version of each
        assert target[cid]["updatedAt"][:19].replace("T", " ") == record["update_time"], cid
    applied = account.sims.target.stats()["records_applied"]
    assert all(n == 1 for n in applied.values()), applied
    # One cleaned copy per company, whichever of the two runs cleaned it.
    copies = account.query(
        "select company_id, count(*) from cleaned_companies group by company_id having count(*) > 1"
    )
    assert copies == []


def test_companies_jumping_to_the_front_while_the_account_is_paged_are_not_lost(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    overrides = {**HISTORY, "drift_rate": 0.05, "drift_kinds": ("bump",)}
    for pipeline in make_pipeline(tmp_path, instance, companies=300, okki_overrides=overrides):
        result = reconcile(pipeline)
        assert result.success and check_of(result).passed
        assert pipeline.sims.okki.drift_log, "the first pass should have drifted"
        truth = okki_truth(pipeline)
        target = pipeline.sims.target.records
        assert set(target) == set(truth)
        for cid, record in truth.items():
            assert target[cid]["updatedAt"][:19].replace("T", " ") == record["update_time"]


ACCOUNT_LIST_GLITCHES = {
    "an empty page 2 once": {"empty_middle_pages": 1},
    "an empty page 1 with totalItem 0 once": {
        "empty_first_pages": 1,
        "empty_page_shape": "zero_total",
    },
    "a small server page with a capped count": {"max_page_size": 10, "total_item_cap": 40},
}


@pytest.mark.parametrize("glitch", list(ACCOUNT_LIST_GLITCHES))
def test_an_account_list_that_lies_about_its_end_still_brings_every_company(
    tmp_path: Path, instance: dg.DagsterInstance, glitch: str
) -> None:
    overrides = {**HISTORY, **ACCOUNT_LIST_GLITCHES[glitch]}
    for pipeline in make_pipeline(tmp_path, instance, companies=300, okki_overrides=overrides):
        result = reconcile(pipeline)
        assert result.success
        assert set(pipeline.sims.target.records) == set(okki_truth(pipeline))
        evaluation = check_of(result)
        assert evaluation.passed
        meta = {k: v.value for k, v in evaluation.metadata.items()}
        everything = pipeline.sims.okki.companies_in_window(*EVERYTHING)
        assert meta["companies_in_okki"] == len(everything)


def test_the_audit_repairs_records_lost_or_edited_at_the_target(account: Pipeline) -> None:
    """The target itself is read back (GET /v1/companies?after=&limit=): a record removed and
    one edited by hand at the target, which the ledger cannot see, are counted and sent again
    by the next reconcile."""
    assert reconcile(account).success
    lost, edited = sorted(account.sims.target.records)[:2]
    hacked = {**account.sims.target.records[edited], "fullName": "edited by hand"}
    account.sims.target.edit_by_hand(lost, None)
    account.sims.target.edit_by_hand(edited, hacked)

    result = reconcile(account)
    run = figures(result)
    assert result.success and check_of(result).passed, run
    assert (run["target_missing"], run["target_different"], run["target_extra"]) == (1, 1, 0)
    assert {r.data["company_id"] for r in run["target_offending_ids"].records} == {lost, edited}
    records = account.sims.target.records
    assert set(records) == set(okki_truth(account))
    assert records[edited]["fullName"] != "edited by hand"

    settled = figures(reconcile(account))
    assert (settled["target_missing"], settled["target_different"]) == (0, 0)


def test_land_only_says_the_target_is_not_audited(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    for pipeline in make_pipeline(tmp_path, instance, companies=40, land_only=True):
        result = reconcile(pipeline)
        assert result.success
        assert figures(result)["target_audit"].startswith("target not audited")
