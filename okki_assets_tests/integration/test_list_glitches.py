"""How an OKKI list ends or lies, and info's odd answers, through Dagster against both simulators.

Covers (docs/okki-api.md, "Listing companies": a count never ends paging alone): an empty page 1
while ``totalItem`` > 0 is retried and never replaces a stored window with nothing, and when it
persists the run fails leaving the stored copy as it was; a capped ``totalItem`` truncates
nothing, not even with server pages smaller than asked; one company whose info answers another
business code (403) is quarantined with the code and the window goes on; a company whose info
time is past the window (edited between list and info) still reaches DuckDB and the target;
``raw_complete`` compares what the list said with what DuckDB holds, so a published copy that
lost a company fails it. Judged from DuckDB rows, target records and checks.
"""

from __future__ import annotations

from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from okki_assets import storage
from okki_assets.okki_time import parse_okki_time
from okki_assets.partitions import window_for_key
from okki_assets.resources import OkkiResource
from okki_assets_tests.conftest import Pipeline, day_keys, make_pipeline

pipeline_for = contextmanager(make_pipeline)


def fast_okki(pipeline: Pipeline, **settings: Any) -> OkkiResource:
    """The pipeline's OKKI resource with fast retries and pages of 20 (several per window)."""
    return OkkiResource(
        **{**pipeline.okki.model_dump(), "retry_base_delay": 0.01, "page_size": 20, **settings}
    )


def truth(pipeline: Pipeline, key: str) -> dict[str, dict[str, Any]]:
    return {
        str(c["company_id"]): c
        for c in pipeline.sims.okki.companies_in_window(*window_for_key(key))
    }


def raw_ids(pipeline: Pipeline, key: str) -> list[str]:
    rows = pipeline.query(
        "select company_id from raw_companies where partition_key = ? order by company_id", [key]
    )
    return [r[0] for r in rows]


def sync(pipeline: Pipeline, key: str, okki: OkkiResource) -> None:
    """Materialize the partition; it succeeds and its raw_complete check passes."""
    result = pipeline.materialize(key, okki=okki)
    evaluations = result.get_asset_check_evaluations()
    assert result.success
    assert [e.passed for e in evaluations if e.check_name == "raw_complete"] == [True]


def test_an_empty_first_page_never_wipes_the_window(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    overrides = {"empty_first_pages": 2}  # page 1 answers list: [] twice while totalItem > 0
    with pipeline_for(tmp_path, instance, companies=120, days=2, okki_overrides=overrides) as p:
        key = day_keys(2)[0]
        okki = fast_okki(p)
        sync(p, key, okki)
        expected = sorted(truth(p, key))
        assert len(expected) > 20
        assert raw_ids(p, key) == expected
        assert expected == sorted(set(expected) & set(p.sims.target.records))

        p.sims.okki.config.empty_first_pages = 10**9  # the glitch persists
        failed = p.materialize(key, okki=okki, raise_on_error=False)
        assert not failed.success
        failures = [e for e in failed.all_events if e.event_type_value == "STEP_FAILURE"]
        assert "empty_first_page" in str(failures[0].event_specific_data)
        assert raw_ids(p, key) == expected  # the stored copy is untouched


def test_a_capped_total_item_stores_and_loads_every_company(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    overrides = {"total_item_cap": 60}  # totalItem says 60 for the 80 companies of the day
    with pipeline_for(tmp_path, instance, companies=80, days=1, okki_overrides=overrides) as p:
        key = day_keys(1)[0]
        expected = sorted(truth(p, key))
        assert len(expected) == 80
        sync(p, key, fast_okki(p))
        assert raw_ids(p, key) == expected
        assert sorted(p.sims.target.records) == expected


def test_a_small_server_page_with_a_capped_count_stores_and_loads_every_company(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    # OKKI serves 10 rows a page where 20 are asked, and says totalItem 40 for 80 companies.
    overrides = {"max_page_size": 10, "total_item_cap": 40}
    with pipeline_for(tmp_path, instance, companies=80, days=1, okki_overrides=overrides) as p:
        key = day_keys(1)[0]
        expected = sorted(truth(p, key))
        assert len(expected) == 80
        sync(p, key, fast_okki(p))
        assert raw_ids(p, key) == expected
        assert sorted(p.sims.target.records) == expected


def test_info_refusing_one_company_quarantines_it_and_the_window_goes_on(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    with pipeline_for(tmp_path, instance, companies=120, days=2) as p:
        key = day_keys(2)[0]
        companies = truth(p, key)
        refused = sorted(companies)[3]
        p.sims.okki.config.info_error_codes[refused] = 403
        okki = fast_okki(p)
        sync(p, key, okki)
        reasons = p.query(
            "select company_id, reasons from quarantined_companies where partition_key = ?", [key]
        )
        assert reasons == [(refused, ["info_code_403"])]
        assert sorted(p.sims.target.records) == sorted(set(companies) - {refused})

        del p.sims.okki.config.info_error_codes[refused]  # OKKI details it again
        sync(p, key, okki)
        assert sorted(p.sims.target.records) == sorted(companies)
        assert p.query("select count(*) from quarantined_companies") == [(0,)]


def test_info_time_past_the_window_still_reaches_duckdb_and_the_target(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    with pipeline_for(tmp_path, instance, companies=120, days=2) as p:
        key = day_keys(2)[0]
        companies = truth(p, key)
        edited = sorted(companies)[5]
        # Edited between the list and the info call: info's update_time is two days later.
        p.sims.okki.config.info_time_ahead[edited] = 2 * 86_400
        sync(p, key, fast_okki(p))
        assert edited in raw_ids(p, key)
        cleaned = p.query(
            "select partition_key from cleaned_companies where company_id = ?", [int(edited)]
        )
        assert cleaned == [(key,)]
        assert sorted(p.sims.target.records) == sorted(companies)
        # The newer version (info's time) is the one the target holds.
        listed = parse_okki_time(companies[edited]["update_time"])
        assert listed is not None
        at_target = datetime.fromisoformat(p.sims.target.records[edited]["updatedAt"])
        assert at_target == listed + timedelta(days=2)


def test_raw_complete_fails_when_duckdb_holds_less_than_the_list_said(
    tmp_path: Path, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    publish = storage.publish_raw

    def publish_losing_one(conn: Any, run_id: str, keys: Any) -> int:
        """Publishes, then loses one company's row (a second writer, a restored backup)."""
        published = publish(conn, run_id, keys)
        conn.execute(
            "delete from raw_companies where partition_key = ? and company_id ="
            " (select min(company_id) from raw_companies where partition_key = ?)",
            [keys[0], keys[0]],
        )
        return published

    with pipeline_for(tmp_path, instance, companies=60, days=1) as p:
        key = day_keys(1)[0]
        listed = len(truth(p, key))
        monkeypatch.setattr(storage, "publish_raw", publish_losing_one)
        result = p.materialize(key, okki=fast_okki(p), raise_on_error=False)
        (check,) = [
            e for e in result.get_asset_check_evaluations() if e.check_name == "raw_complete"
        ]
        assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
        assert check.description == f"{key}: {listed} listed, {listed - 1} in DuckDB"
        assert len(raw_ids(p, key)) == listed - 1

        monkeypatch.setattr(storage, "publish_raw", publish)
        sync(p, key, fast_okki(p))  # the next pull stores the whole window again: green
        assert raw_ids(p, key) == sorted(truth(p, key))
