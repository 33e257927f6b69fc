"""The asset graph end to end: raw -> cleaned -> loaded through Dagster, against both simulators.

Assertions compare DuckDB rows, quarantine and ledger rows and the target simulator's records
with the OKKI simulator's truth (``companies_in_window``), never with the pipeline's counters.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import dagster as dg

from okki_assets.okki_time import parse_okki_time as parse_time
from okki_assets.partitions import window_for_key
from okki_assets_tests.conftest import Pipeline, day_keys, make_pipeline


def truth_ids(pipeline: Pipeline, keys: list[str]) -> dict[str, str]:
    """company_id -> update_time of every valid company whose update time is in the windows."""
    out: dict[str, str] = {}
    for key in keys:
        start, end = window_for_key(key)
        for company in pipeline.sims.okki.companies_in_window(start, end):
            out[str(company["company_id"])] = company["update_time"]
    return out


def target_ids(pipeline: Pipeline) -> dict[str, str]:
    return {rid: rec.get("updatedAt", "") for rid, rec in pipeline.sims.target.records.items()}


def test_a_week_lands_exactly_once(pipeline: Pipeline) -> None:
    keys = day_keys(5)
    for key in keys:
        assert pipeline.materialize(key).success

    truth = truth_ids(pipeline, keys)
    quarantined = {r[0] for r in pipeline.query("select company_id from quarantined_companies")}
    expected = set(truth) - quarantined
    assert expected, "the simulator should have companies in the synced days"
    assert set(target_ids(pipeline)) == expected
    applied = pipeline.sims.target.stats()["records_applied"]
    assert all(count == 1 for count in applied.values()), applied

    # DuckDB: each company in exactly one partition, the one its update time falls in.
    rows = pipeline.query(
        "select company_id, partition_key from raw_companies where company_id is not null"
    )
    assert len(rows) == len({r[0] for r in rows}) == len(truth)
    for company_id, partition_key in rows:
        start, end = window_for_key(partition_key)
        when = parse_time(truth[company_id])
        assert when is not None and start <= when < end
    ledger = dict(pipeline.query("select status, count(*) from load_ledger group by status"))
    assert ledger == {"created": len(expected)}


def test_rematerializing_a_partition_sends_nothing(pipeline: Pipeline) -> None:
    key = day_keys(2)[0]
    assert pipeline.materialize(key).success
    before = pipeline.sims.target.stats()
    info_before = pipeline.sims.okki.stats.calls.get("/v1/company/info", 0)

    result = pipeline.materialize(key)
    assert result.success
    after = pipeline.sims.target.stats()
    assert after["batches_received"] == before["batches_received"]
    assert pipeline.sims.okki.stats.calls.get("/v1/company/info", 0) == info_before
    raw = pipeline.query("select count(*) from raw_companies where partition_key = ?", [key])
    assert raw[0][0] == len(truth_ids(pipeline, [key]))


def test_changing_one_company_sends_exactly_that_one(pipeline: Pipeline) -> None:
    key = day_keys(2)[0]
    assert pipeline.materialize(key).success
    start, end = window_for_key(key)
    company = pipeline.sims.okki.companies_in_window(start, end)[-1]
    new_time = parse_time(company["update_time"]) + timedelta(seconds=1)  # still in the window
    assert new_time < end
    pipeline.sims.okki.update_company(
        company["company_id"], {"name": "Renamed Trading Co."}, update_time=new_time
    )
    history_before = len(pipeline.sims.target.history)

    assert pipeline.materialize(key).success
    new_writes = pipeline.sims.target.history[history_before:]
    assert new_writes == [(str(company["company_id"]), "updated")]
    stored = pipeline.sims.target.records[str(company["company_id"])]
    assert stored["fullName"] == "Renamed Trading Co."


def test_a_malformed_company_ends_in_quarantine_with_its_reason(pipeline: Pipeline) -> None:
    key = day_keys(2)[0]
    start, _ = window_for_key(key)
    template = pipeline.sims.okki.companies_in_window(start, start + timedelta(days=1))[0]
    bad = {
        **template,
        "company_id": 999000111,
        "name": "   ",
        "update_time": (start + timedelta(hours=3)).strftime("%Y-%m-%d %H:%M:%S"),
    }
    pipeline.sims.okki.add_company(bad)

    assert pipeline.materialize(key).success
    rows = pipeline.query(
        "select reasons, list_json from quarantined_companies where company_id = '999000111'"
    )
    assert len(rows) == 1
    assert "name_blank" in rows[0][0]
    assert "999000111" not in pipeline.sims.target.records


def test_land_only_mode_sends_nothing(tmp_path: Path, instance: dg.DagsterInstance) -> None:
    for pipeline in make_pipeline(tmp_path, instance, land_only=True):
        key = day_keys(2)[0]
        result = pipeline.materialize(key)
        assert result.success
        assert pipeline.sims.target.stats()["batches_received"] == 0
        cleaned = pipeline.query(
            "select count(*) from cleaned_companies where partition_key = ?", [key]
        )[0][0]
        statuses = dict(pipeline.query("select status, count(*) from load_ledger group by status"))
        assert statuses == {"landed": cleaned}
        mat = [
            e.event_specific_data.materialization  # type: ignore[union-attr]
            for e in result.get_asset_materialization_events()
            if e.asset_key == dg.AssetKey("loaded_companies")
        ]
        assert "land-only" in str(mat[0].metadata["mode"].value)


def test_a_company_updated_on_two_days_ends_in_its_newest_version(pipeline: Pipeline) -> None:
    older, newer = day_keys(3)[:2]
    start, end = window_for_key(older)
    company = pipeline.sims.okki.companies_in_window(start, end)[0]
    cid = str(company["company_id"])
    assert pipeline.materialize(older).success
    assert pipeline.sims.target.records[cid]["fullName"] != "Second Day Name"

    new_start, _ = window_for_key(newer)
    pipeline.sims.okki.update_company(
        company["company_id"],
        {"name": "Second Day Name"},
        update_time=new_start + timedelta(hours=1),
    )
    assert pipeline.materialize(newer).success
    assert pipeline.sims.target.records[cid]["fullName"] == "Second Day Name"

    # Re-running the older window must not put the older version back.
    history_before = len(pipeline.sims.target.history)
    assert pipeline.materialize(older).success
    assert pipeline.sims.target.records[cid]["fullName"] == "Second Day Name"
    assert all(rid != cid for rid, _ in pipeline.sims.target.history[history_before:])


def test_a_ranged_run_records_checks_per_partition(pipeline: Pipeline) -> None:
    keys = day_keys(3)
    result = pipeline.materialize(partition_range=(keys[0], keys[-1]))
    assert result.success
    evaluations = result.get_asset_check_evaluations()
    by_check: dict[str, set[str | None]] = {}
    for evaluation in evaluations:
        assert evaluation.passed, evaluation
        by_check.setdefault(evaluation.check_name, set()).add(evaluation.partition)
    assert by_check == {
        name: set(keys)
        for name in (
            "raw_complete",
            "schema_valid",
            "company_id_unique",
            "quarantine_ratio",
            "load_reconciled",
        )
    }
    fetched = {
        e.event_specific_data.materialization.partition:  # type: ignore[union-attr]
        e.event_specific_data.materialization.metadata["fetched"].value  # type: ignore[union-attr]
        for e in result.get_asset_materialization_events()
        if e.asset_key == dg.AssetKey("raw_companies")
    }
    assert fetched == {k: len(truth_ids(pipeline, [k])) for k in keys}


def test_each_check_result_names_its_partition_and_points_at_its_materialization(
    pipeline: Pipeline,
) -> None:
    """The UI counts a check result as a partition's status only when the evaluation names the
    partition's latest materialization; the run log shows the partition only in the description.
    Both for a daily run and for a ranged single run."""
    keys = day_keys(3)
    daily = pipeline.materialize(keys[0])
    ranged = pipeline.materialize(partition_range=(keys[1], keys[2]))
    for result, run_keys in ((daily, keys[:1]), (ranged, keys[1:])):
        assert result.success
        evaluations = result.get_asset_check_evaluations()
        assert {e.partition for e in evaluations} == set(run_keys)
        for evaluation in evaluations:
            assert evaluation.description is not None
            assert evaluation.description.startswith(f"{evaluation.partition}: "), evaluation
            latest = pipeline.instance.fetch_materializations(
                dg.AssetRecordsFilter(
                    asset_key=evaluation.asset_key, asset_partitions=[evaluation.partition]
                ),
                limit=1,
            ).records[0]
            assert latest.run_id == result.run_id
            target = evaluation.target_materialization_data
            assert target is not None, evaluation
            assert (target.storage_id, target.run_id) == (latest.storage_id, result.run_id)
