"""The load's green checks are true: what the ledger and ``load_reconciled`` say is what the
target holds.

Each case goes through Dagster against both simulators on loopback and asserts on the target's
records, DuckDB rows and the check results:

- a new attempt to apply a batch carries a new Idempotency-Key, even when its bytes repeat an
  earlier batch (a company deleted, restored and deleted again in one day; a rejected record
  replayed after the target's rule was fixed; an edit reverted under a mapping without
  ``updatedAt``), so the target applies it instead of replaying the earlier answer;
- a company deleted while its window was pulled (its info came, then it was listed as deleted)
  is sent once, in its newest word, not twice in one batch;
- a tombstone the target refuses fails ``load_reconciled``;
- a tombstone whose time cannot be parsed is counted and quarantined with its reason.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from okki_assets.mapping import DEFAULT_MAPPING_SPEC
from okki_assets.okki_time import parse_okki_time
from okki_assets.partitions import window_for_key
from okki_assets.resources import TargetResource
from okki_assets.simulator.http import SimRequest, SimResponse
from okki_assets.simulator.okki import LIST_PATH, OkkiSimulator
from okki_assets_tests.conftest import Pipeline, day_keys, make_pipeline

COMPANIES = 60
DAYS = 2


def oldest_company(pipeline: Pipeline, key: str) -> tuple[str, datetime]:
    """The window's company with the oldest update time (room for later edits in the window)."""
    company = pipeline.sims.okki.companies_in_window(*window_for_key(key))[-1]
    when = parse_okki_time(company["update_time"])
    assert when is not None
    assert when + timedelta(minutes=1) < window_for_key(key)[1]
    return str(company["company_id"]), when


def synced_once(
    tmp_path: Path, instance: dg.DagsterInstance, okki: OkkiSimulator
) -> Iterator[tuple[Pipeline, str, str, datetime]]:
    """A pipeline over ``okki`` with its first window synced, and that window's oldest company."""
    for pipeline in make_pipeline(tmp_path, instance, okki=okki):
        key = day_keys(DAYS)[0]
        assert pipeline.materialize(key).success
        yield pipeline, key, *oldest_company(pipeline, key)


@pytest.fixture
def synced(
    tmp_path: Path, instance: dg.DagsterInstance
) -> Iterator[tuple[Pipeline, str, str, datetime]]:
    yield from synced_once(tmp_path, instance, OkkiSimulator.demo(n=COMPANIES, days=DAYS, seed=7))


def load_check(result: dg.ExecuteInProcessResult, key: str) -> bool:
    (evaluation,) = [
        e
        for e in result.get_asset_check_evaluations()
        if e.check_name == "load_reconciled" and e.partition == key
    ]
    return evaluation.passed


def load_metadata(result: dg.ExecuteInProcessResult, name: str) -> Any:
    (value,) = [
        e.event_specific_data.materialization.metadata[name].value  # type: ignore[union-attr]
        for e in result.get_asset_materialization_events()
        if e.asset_key == dg.AssetKey("loaded_companies")
    ]
    return value


def ledger_status(pipeline: Pipeline, company_id: str) -> str:
    rows = pipeline.query("select status from load_ledger where company_id = ?", [company_id])
    assert len(rows) == 1
    return str(rows[0][0])


# --- a key names one attempt ----------------------------------------------------------------


def test_a_company_deleted_restored_and_deleted_again_in_one_day_leaves_the_target(
    synced: tuple[Pipeline, str, str, datetime],
) -> None:
    small, key, cid, when = synced
    okki, target = small.sims.okki, small.sims.target

    okki.delete_company(cid, delete_time=when + timedelta(seconds=1))
    assert small.materialize(key).success
    assert cid not in target.records
    okki.restore_company(cid, restore_time=when + timedelta(seconds=2))
    assert small.materialize(key).success
    assert cid in target.records
    # The second delete sends the very bytes of the first (the only record of its batch).
    okki.delete_company(cid, delete_time=when + timedelta(seconds=3))
    result = small.materialize(key)

    assert cid not in target.records
    assert ledger_status(small, cid) == "deleted"
    assert load_check(result, key)
    assert [status for rid, status in target.history if rid == cid][-3:] == [
        "deleted",
        "created",
        "deleted",
    ]


def test_a_rejected_record_replayed_after_the_target_rule_was_fixed_is_applied(
    synced: tuple[Pipeline, str, str, datetime],
) -> None:
    small, key, cid, when = synced
    okki, target = small.sims.okki, small.sims.target
    okki.update_company(cid, {"name": "Refused For Now"}, update_time=when + timedelta(seconds=1))

    target.config.reject_rule = lambda r: (
        "names like this are refused" if r.get("fullName") == "Refused For Now" else None
    )
    refused = small.materialize(key, raise_on_error=False)
    assert not load_check(refused, key)
    assert ledger_status(small, cid) == "rejected"

    target.config.reject_rule = None  # the target's rule is fixed; the same record is replayed
    replayed = small.materialize(key, selection=["loaded_companies"])
    assert load_check(replayed, key)
    assert target.records[cid]["fullName"] == "Refused For Now"
    assert ledger_status(small, cid) == "updated"


def test_an_edit_reverted_under_a_mapping_without_updated_at_reaches_the_target(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    fields = {k: v for k, v in DEFAULT_MAPPING_SPEC["fields"].items() if k != "updatedAt"}
    mapping_file = tmp_path / "no_updated_at.json"
    mapping_file.write_text(json.dumps({**DEFAULT_MAPPING_SPEC, "fields": fields}))
    for small in make_pipeline(tmp_path, instance, companies=COMPANIES, days=DAYS):
        without = {"mapping_file": str(mapping_file)}
        resources = {"target": TargetResource(**{**small.target.model_dump(), **without})}
        key = day_keys(DAYS)[0]
        okki, target = small.sims.okki, small.sims.target
        assert small.materialize(key, **resources).success
        cid, when = oldest_company(small, key)
        original = target.records[cid]["fullName"]

        # B, back to A, then B again: the last batch repeats the bytes of the first edit's.
        for step, name in enumerate(("Edited Name", original, "Edited Name"), start=1):
            okki.update_company(cid, {"name": name}, update_time=when + timedelta(seconds=step))
            result = small.materialize(key, **resources)
            assert target.records[cid]["fullName"] == name, step
            assert load_check(result, key)
        assert ledger_status(small, cid) == "updated"


# --- one version per company per batch ------------------------------------------------------


class DeletesDuringPull(OkkiSimulator):
    """OKKI where one company is deleted just before the window's ``removed=1`` pass: its info
    has already been read, so the pull holds it both listed and deleted."""

    victim: str = ""
    delete_time: datetime | None = None

    def handle(self, request: SimRequest) -> SimResponse:
        if self.victim and request.path == LIST_PATH and request.query.get("removed") == "1":
            self.delete_company(self.victim, delete_time=self.delete_time)
            self.victim = ""
        return super().handle(request)


def test_a_company_deleted_during_the_pull_is_sent_once_as_deleted(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    okki = DeletesDuringPull.demo(n=COMPANIES, days=DAYS, seed=7)
    for pipeline, key, cid, when in synced_once(tmp_path, instance, okki):
        okki.update_company(
            cid, {"name": "Edited Then Deleted"}, update_time=when + timedelta(seconds=1)
        )
        okki.victim, okki.delete_time = cid, when + timedelta(seconds=2)

        result = pipeline.materialize(key, raise_on_error=False)
        assert result.success
        assert load_check(result, key)
        listed = pipeline.query(
            "select count(*) from cleaned_companies where company_id = ?", [cid]
        )
        assert listed == [(1,)], "the pull held the company both listed and deleted"
        assert cid not in pipeline.sims.target.records
        assert ledger_status(pipeline, cid) == "deleted"
        assert load_metadata(result, "status_failed") == 0

        replay = pipeline.materialize(key, selection=["loaded_companies"])
        assert load_check(replay, key)
        assert cid not in pipeline.sims.target.records


# --- tombstones are reconciled and never vanish --------------------------------------------


def test_a_tombstone_the_target_refuses_fails_load_reconciled(
    synced: tuple[Pipeline, str, str, datetime],
) -> None:
    small, key, cid, when = synced
    okki, target = small.sims.okki, small.sims.target
    okki.delete_company(cid, delete_time=when + timedelta(seconds=1))
    target.config.reject_delete_rule = lambda r: "this record is protected"

    result = small.materialize(key, raise_on_error=False)
    assert cid in target.records
    assert ledger_status(small, cid) == "rejected"
    assert not load_check(result, key)

    target.config.reject_delete_rule = None
    fixed = small.materialize(key, selection=["loaded_companies"])
    assert load_check(fixed, key)
    assert cid not in target.records


class GarbledDeleteTime(OkkiSimulator):
    """OKKI listing one deleted company (``victim``) with a delete time that is not a time."""

    victim: str = ""

    def handle(self, request: SimRequest) -> SimResponse:
        response = super().handle(request)
        if request.path == LIST_PATH and request.query.get("removed") == "1" and self.victim:
            body = json.loads(response.body)
            if isinstance(body.get("data"), dict):
                for row in body["data"]["list"] or []:
                    if str(row.get("company_id")) == self.victim:
                        row["update_time"] = "2026-13-45 99:99:99"
                response.body = json.dumps(body, ensure_ascii=False).encode()
        return response


def test_a_tombstone_whose_time_cannot_be_parsed_is_counted_and_quarantined(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    okki = GarbledDeleteTime.demo(n=COMPANIES, days=DAYS, seed=7)
    for pipeline, key, cid, when in synced_once(tmp_path, instance, okki):
        okki.delete_company(cid, delete_time=when + timedelta(seconds=1))
        okki.victim = cid

        result = pipeline.materialize(key)
        rows = pipeline.query(
            "select partition_key, reasons, list_json from quarantined_companies"
            " where company_id = ?",
            [cid],
        )
        assert [(r[0], r[1]) for r in rows] == [(key, ["delete_time_unparseable"])]
        assert json.loads(rows[0][2])["update_time"] == "2026-13-45 99:99:99"
        assert load_metadata(result, "tombstones_quarantined") == 1
        assert load_check(result, key)
