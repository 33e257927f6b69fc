"""okki_reconcile where the account list alone misleads, through Dagster, on loopback:

- a company purged from OKKI (in neither the live nor the deleted list) but live at the target
  is confirmed gone by info (404) and tombstoned; one info still answers is left alone;
- the rolling refresh counts the contacts it really changed (``contacts_changed_by_refresh``),
  in land-only mode too, where every refreshed company is landed again.

Assertions compare the target's records, the ledger rows and the reconcile's metadata with
the OKKI simulator's truth.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from okki_assets.assets.account import ACCOUNT_CHECK
from okki_assets.simulator.http import SimRequest, SimResponse
from okki_assets.simulator.okki import LIST_PATH, OkkiSimulator
from okki_assets_tests.conftest import Pipeline, make_pipeline
from okki_assets_tests.conftest import account_figures as figures
from okki_assets_tests.conftest import run_reconcile as reconcile

EVERYTHING = (datetime(1970, 1, 2), datetime(2200, 1, 1))


def in_sync(result: dg.ExecuteInProcessResult) -> bool:
    (evaluation,) = result.get_asset_check_evaluations()
    assert evaluation.check_name == ACCOUNT_CHECK
    return evaluation.passed


@pytest.fixture
def land_only(tmp_path: Path, instance: dg.DagsterInstance) -> Iterator[Pipeline]:
    yield from make_pipeline(tmp_path, instance, companies=120, days=3, land_only=True)


def test_the_refresh_counts_only_real_changes_in_land_only_mode(land_only: Pipeline) -> None:
    okki = land_only.sims.okki
    assert reconcile(land_only, refresh_days=1).success
    # Every company is due again (refresh_days=1) and landed again; none of them changed.
    quiet = figures(reconcile(land_only, refresh_days=1))
    assert quiet["refreshed"] == quiet["at_target"] > 100
    assert quiet["contacts_changed_by_refresh"] == 0

    edited = sorted(land_only.sims.okki.companies_in_window(*EVERYTHING), key=_id)[:2]
    for record in edited:
        okki.edit_contact(record["company_id"], email=f"new.{record['company_id']}@example.com")
    changed = figures(reconcile(land_only, refresh_days=1))
    assert changed["contacts_changed_by_refresh"] == len(edited)
    landed = land_only.query(
        "select company_id from raw_companies where partition_key = 'account'"
        " and contains(info_json, '@example.com') and contains(info_json, '\"new.')"
    )
    assert sorted(landed) == sorted((str(r["company_id"]),) for r in edited)


def _id(record: dict[str, Any]) -> int:
    return int(record["company_id"])


class ListMisses(OkkiSimulator):
    """OKKI whose live account list (no time filter) leaves out the live companies in
    ``hidden`` on every page, ``totalItem`` counting without them, while info still details
    them."""

    hidden: frozenset[str] = frozenset()

    def handle(self, request: SimRequest) -> SimResponse:
        response = super().handle(request)
        whole_live_list = request.query.get("removed", "0") == "0" and not any(
            request.query.get(k) for k in ("start_time", "end_time")
        )
        if request.path != LIST_PATH or not self.hidden or response.status != 200:
            return response
        if not whole_live_list:
            return response
        body = json.loads(response.body)
        data = body.get("data")
        if not isinstance(data, dict) or data.get("list") is None:
            return response
        rows = [r for r in data["list"] if str(r.get("company_id")) not in self.hidden]
        data.update(list=rows, count=len(rows), totalItem=int(data["totalItem"]) - len(self.hidden))
        return SimResponse.json(body)


def test_companies_purged_from_okki_are_confirmed_by_info_and_tombstoned(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    sim = ListMisses.demo(n=120, days=3, seed=11)
    assert isinstance(sim, ListMisses)
    for pipeline in make_pipeline(tmp_path, instance, okki=sim):
        assert reconcile(pipeline).success
        ids = sorted(str(r["company_id"]) for r in sim.companies_in_window(*EVERYTHING))
        assert set(pipeline.sims.target.records) == set(ids)
        purged, unlisted = ids[:2], ids[2]
        for cid in purged:
            sim.purge_company(cid)
        sim.hidden = frozenset({unlisted})  # listed nowhere, but info still details it
        sim.reset_stats()

        result = reconcile(pipeline)
        assert result.success and in_sync(result)
        target = pipeline.sims.target.records
        assert set(target) == set(ids) - set(purged)
        run = figures(result)
        assert (run["purged_in_okki"], run["unlisted_still_answered"]) == (2, 1)
        assert run["tombstones_sent"] == 2
        assert {c: sim.stats.info_by_company.get(c) for c in (*purged, unlisted)} == dict.fromkeys(
            (*purged, unlisted), 1
        )
        statuses = dict(
            pipeline.query(
                "select company_id::varchar, status from load_ledger where company_id in"
                " (select unnest(?::bigint[]))",
                [[int(c) for c in (*purged, unlisted)]],
            )
        )
        assert statuses == {purged[0]: "deleted", purged[1]: "deleted", unlisted: "created"}

        # Once tombstoned they are not asked for again.
        sim.reset_stats()
        again = figures(reconcile(pipeline))
        assert again["purged_in_okki"] == 0
        assert not set(purged) & set(sim.stats.info_by_company)
