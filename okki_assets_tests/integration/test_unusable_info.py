"""One info payload that cannot be used quarantines that company; the window goes on.

OKKI may answer a company's info with JSON that no retry changes and no stage could carry: a
custom field nested 5,000 levels deep (Python's parser gives up in recursion) or a name that is
not valid UTF-8. Through Dagster against both simulators on loopback: the window's run succeeds,
those companies are asked once each and quarantined with their reason (as info code 403 is),
every other company reaches DuckDB and the target, ``raw_complete`` passes, and once OKKI
details them properly the next sync brings them.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from okki_assets.partitions import window_for_key
from okki_assets.resources import OkkiResource
from okki_assets_tests.conftest import day_keys, make_pipeline


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("nested_too_deep", "info_payload_nested_too_deep"),  # RecursionError in the parser
        ("invalid_utf8", "info_payload_not_utf8"),  # was "not JSON", retried until given up
    ],
)
def test_an_unusable_info_payload_quarantines_its_company_and_the_window_goes_on(
    tmp_path: Path, instance: dg.DagsterInstance, fault: str, reason: str
) -> None:
    for p in make_pipeline(tmp_path, instance, companies=120, days=2):
        key = day_keys(2)[0]
        sim = p.sims.okki
        window = sim.companies_in_window(*window_for_key(key))
        companies = sorted(str(c["company_id"]) for c in window)
        spoilt = companies[3]
        sim.config.info_payload_faults[spoilt] = fault
        okki = OkkiResource(**{**p.okki.model_dump(), "retry_base_delay": 0.01})

        result = p.materialize(key, okki=okki)
        assert result.success
        checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
        assert checks["raw_complete"]
        reasons = p.query(
            "select company_id, reasons from quarantined_companies where partition_key = ?", [key]
        )
        assert reasons == [(spoilt, [reason])]
        assert sorted(p.sims.target.records) == sorted(set(companies) - {spoilt})
        assert sim.stats.info_by_company[spoilt] == 1  # no retry changes such a payload
        (raw,) = result.asset_materializations_for_node("raw_companies")
        assert raw.metadata["info_unusable"].value == 1

        sim.config.info_payload_faults.clear()  # OKKI details it properly again
        assert p.materialize(key, okki=okki).success
        assert sorted(p.sims.target.records) == companies
        assert p.query("select count(*) from quarantined_companies") == [(0,)]
