"""okki_reconcile where the account list alone misleads, through Dagster, on loopback:

- a company purged from OKKI (in neither the live nor the deleted list) but live at the target
  is confirmed gone by info (404) and tombstoned; one info still answers is left alone;
- the rolling refresh counts the contacts it really changed (``contacts_changed_by_refresh``),
  in land-only mode too, where every refreshed company is landed again.

Assertions compare the target's records, the ledger rows and the reconcile's metadata with
the OKKI simulator's truth.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from okki_assets.assets.account import ACCOUNT_ASSET, ACCOUNT_CHECK, build_account
from okki_assets_tests.conftest import Pipeline, make_pipeline

EVERYTHING = (datetime(1970, 1, 2), datetime(2200, 1, 1))


def reconcile(pipeline: Pipeline, *, refresh_days: int = 7) -> dg.ExecuteInProcessResult:
    asset, check, _, _ = build_account(refresh_days=refresh_days)
    return dg.materialize(
        [asset, check],
        resources=pipeline.resources(),
        instance=pipeline.instance,
        raise_on_error=False,
    )


def figures(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    (event,) = result.asset_materializations_for_node(ACCOUNT_ASSET)
    return {k: v.value for k, v in event.metadata.items()}


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
