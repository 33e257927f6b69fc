"""The version order end to end (versions.py): when two payloads disagree, the one read last
decides, through Dagster against both simulators on loopback.

Each case asserts on the target's records, the ledger and the check results:

- a restore (old update_time) after a tombstone that did not apply (answered ``unchanged`` for
  an id the target never held, or refused) reaches the target, and the account check is green;
  a company that never left the target, its tombstone refused, is in sync after one reconcile;
- a window cleaned and loaded again after the reconcile's refresh sent newer contacts with the
  same update_time does not put the old contacts back;
- a replay of the deletion day does not delete a company OKKI restored since;
- an update_time bump that changes nothing the mapping sends (no ``updatedAt``) moves the
  ledger on: ``load_reconciled`` and the account check are green;
- a live company whose update_time OKKI moved backwards with a change is not reported in sync
  until the target holds the change.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from okki_assets.assets.account import ACCOUNT_CHECK
from okki_assets.mapping import DEFAULT_MAPPING_SPEC
from okki_assets.okki_time import CHINA_TZ, parse_okki_time
from okki_assets.partitions import window_for_key
from okki_assets.resources import TargetResource
from okki_assets_tests.conftest import SYNC_START, Pipeline, day_keys, make_pipeline, run_reconcile

DAYS = 2
HISTORY = {"history_share": 0.5, "history_before": date.fromisoformat(SYNC_START)}


@pytest.fixture
def small(tmp_path: Path, instance: dg.DagsterInstance) -> Iterator[Pipeline]:
    yield from make_pipeline(tmp_path, instance, companies=40, days=DAYS, okki_overrides=HISTORY)


def reconcile(
    pipeline: Pipeline, *, check_only: bool = False, **overrides: Any
) -> dg.AssetCheckEvaluation:
    """One okki_reconcile (or its check alone); the account check's evaluation."""
    result = run_reconcile(pipeline, refresh_days=1, check_only=check_only, **overrides)
    (evaluation,) = result.get_asset_check_evaluations()
    assert evaluation.check_name == ACCOUNT_CHECK
    return evaluation


def counts(evaluation: dg.AssetCheckEvaluation) -> dict[str, Any]:
    return {k: v.value for k, v in evaluation.metadata.items()}


def load_check(result: dg.ExecuteInProcessResult, key: str) -> bool:
    (evaluation,) = [
        e
        for e in result.get_asset_check_evaluations()
        if e.check_name == "load_reconciled" and e.partition == key
    ]
    return evaluation.passed


def ledger_status(pipeline: Pipeline, company_id: str) -> str:
    (row,) = pipeline.query("select status from load_ledger where company_id = ?", [company_id])
    return str(row[0])


def today_moment(key: str) -> datetime:
    """A moment inside ``key``'s window, as late as now allows (a deletion that moves time)."""
    start, end = window_for_key(key)
    when = datetime.now(CHINA_TZ) - timedelta(minutes=1)
    return min(max(when, start + timedelta(seconds=1)), end - timedelta(seconds=1))


def history_company(pipeline: Pipeline) -> str:
    """A valid company last touched before OKKI_SYNC_START: no daily window lists it."""
    everything = pipeline.sims.okki.companies_in_window(datetime(1970, 1, 2), datetime(2200, 1, 1))
    old = [
        str(r["company_id"])
        for r in everything
        if str(r.get("company_id", "")).isdigit()
        and str(r.get("name", "")).strip()
        and "2000-01-01" < str(r["update_time"]) < SYNC_START
    ]
    return sorted(old)[0]


def window_company(pipeline: Pipeline, key: str) -> tuple[str, datetime]:
    """The oldest company of ``key``'s window, with its update time."""
    company = pipeline.sims.okki.companies_in_window(*window_for_key(key))[-1]
    when = parse_okki_time(company["update_time"])
    assert when is not None
    return str(company["company_id"]), when


# --- bug 1: a restore after a tombstone that did not apply ----------------------------------


@pytest.mark.parametrize("answer", ["unchanged", "rejected"])
def test_a_restore_after_a_tombstone_that_did_not_apply_reaches_the_target(
    small: Pipeline, answer: str
) -> None:
    okki, target = small.sims.okki, small.sims.target
    keys = day_keys(DAYS)
    for key in keys:
        assert small.materialize(key).success
    cid = history_company(small)  # never at the target
    assert cid not in target.records
    okki.delete_company(cid, delete_time=today_moment(keys[-1]))
    if answer == "rejected":
        target.config.reject_delete_rule = lambda r: "no such record"
    small.materialize(keys[-1], raise_on_error=False)
    assert ledger_status(small, cid) == answer
    target.config.reject_delete_rule = None

    okki.restore_company(cid)  # back with its old time, older than the tombstone's
    evaluation = reconcile(small)
    assert cid in target.records
    assert evaluation.passed, counts(evaluation)


def test_a_company_whose_refused_tombstone_was_followed_by_a_restore_is_in_sync(
    small: Pipeline,
) -> None:
    okki, target = small.sims.okki, small.sims.target
    keys = day_keys(DAYS)
    assert small.materialize(keys[0]).success
    cid, _ = window_company(small, keys[0])
    okki.delete_company(cid, delete_time=today_moment(keys[-1]))
    target.config.reject_delete_rule = lambda r: "this record is protected"
    small.materialize(keys[-1], raise_on_error=False)
    assert ledger_status(small, cid) == "rejected" and cid in target.records
    target.config.reject_delete_rule = None
    okki.restore_company(cid)  # the target already holds exactly this

    first = reconcile(small)
    assert first.passed, counts(first)
    second = reconcile(small)
    assert second.passed and counts(second)["missing"] == 0, counts(second)
    assert cid in target.records


# --- bug 4: a re-cleaned window after the reconcile's refresh -------------------------------


def test_a_window_cleaned_again_after_a_refresh_keeps_the_newer_contacts(
    small: Pipeline,
) -> None:
    okki, target = small.sims.okki, small.sims.target
    key = day_keys(DAYS)[0]
    assert small.materialize(key).success
    cid, _ = window_company(small, key)
    okki.edit_contact(cid, email="newer.contact@example.com")  # update_time unchanged
    assert reconcile(small).passed
    assert "newer.contact@example.com" in json.dumps(target.records[cid])

    result = small.materialize(key, selection=["cleaned_companies", "loaded_companies"])
    assert load_check(result, key)
    assert "newer.contact@example.com" in json.dumps(target.records[cid])
    assert reconcile(small, check_only=True).passed


# --- bug 5: a replayed deletion day ----------------------------------------------------------


def test_a_replay_of_the_deletion_day_does_not_delete_a_restored_company(
    small: Pipeline,
) -> None:
    okki, target = small.sims.okki, small.sims.target
    keys = day_keys(DAYS)
    for key in keys:
        assert small.materialize(key).success
    cid, _ = window_company(small, keys[0])
    okki.delete_company(cid, delete_time=today_moment(keys[-1]))
    assert small.materialize(keys[-1]).success
    assert cid not in target.records
    okki.restore_company(cid)  # back with its old time
    assert reconcile(small).passed
    assert cid in target.records

    replay = small.materialize(keys[-1], selection=["loaded_companies"])
    assert cid in target.records
    assert load_check(replay, keys[-1])
    assert reconcile(small, check_only=True).passed


# --- bug 9: a bump that changes nothing the mapping sends -----------------------------------


def test_an_update_time_bump_without_a_mapped_change_moves_the_ledger_on(
    small: Pipeline, tmp_path: Path
) -> None:
    fields = {k: v for k, v in DEFAULT_MAPPING_SPEC["fields"].items() if k != "updatedAt"}
    mapping_file = tmp_path / "no_updated_at.json"
    mapping_file.write_text(json.dumps({**DEFAULT_MAPPING_SPEC, "fields": fields}))
    no_updated_at = {
        "target": TargetResource(**{**small.target.model_dump(), "mapping_file": str(mapping_file)})
    }
    key = day_keys(DAYS)[0]
    assert small.materialize(key, **no_updated_at).success
    cid, when = window_company(small, key)
    small.sims.okki.update_company(cid, {}, update_time=when + timedelta(seconds=1))

    result = small.materialize(key, **no_updated_at)
    assert load_check(result, key)
    assert reconcile(small, **no_updated_at).passed
    evaluation = reconcile(small, check_only=True, **no_updated_at)
    assert evaluation.passed and counts(evaluation)["stale"] == 0, counts(evaluation)


# --- bug 7: the account check compares content ----------------------------------------------


def test_a_change_whose_update_time_moved_back_is_not_in_sync_until_the_target_has_it(
    small: Pipeline,
) -> None:
    okki, target = small.sims.okki, small.sims.target
    key = day_keys(DAYS)[0]
    assert small.materialize(key).success
    assert reconcile(small).passed
    cid, when = window_company(small, key)
    okki.update_company(cid, {"name": "Moved Back Ltd"}, update_time=when - timedelta(days=3))

    before = reconcile(small, check_only=True)
    assert not before.passed and counts(before)["moved_back"] == 1, counts(before)
    after = reconcile(small)
    assert after.passed, counts(after)
    assert target.records[cid]["fullName"] == "Moved Back Ltd"
