"""The one private Dagster name the project uses, pinned.

``assets/common.py`` ties each partition's check evaluation to that partition's materialization
with ``AssetCheckEvaluationTargetMaterializationData``, which Dagster 1.13 does not export at its
top level. This test fails the day Dagster moves or reshapes it, before a user sees every check
partition read "Missing" after a ranged backfill.
"""

from __future__ import annotations

import dagster as dg

from okki_assets.assets import common


def test_the_private_target_materialization_record_is_where_the_assets_take_it_from() -> None:
    target = common.TargetMaterialization(storage_id=42, run_id="run-1", timestamp=1.5)
    evaluation = dg.AssetCheckEvaluation(
        asset_key=dg.AssetKey("raw_companies"),
        check_name="raw_complete",
        passed=True,
        partition="2026-11-20",
        target_materialization_data=target,
    )
    held = evaluation.target_materialization_data
    assert held is not None
    assert (held.storage_id, held.run_id, held.timestamp) == (42, "run-1", 1.5)
    assert evaluation.partition == "2026-11-20"
