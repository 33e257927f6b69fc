"""Each run says which OKKI and which target it used, never a secret.

Dagster's ``dg dev`` and ``dg launch`` load a ``.env`` of the working folder over the shell's
variables, so a command meant for the simulators can reach production. Every
``raw_companies`` partition therefore records the OKKI it called (``okki_base_url``) and the
target it wrote to (``target``: the batch API's address, or land-only), and every
``loaded_companies`` partition the target.
"""

from __future__ import annotations

import dagster as dg

from okki_assets.resources import TargetResource
from okki_assets_tests.conftest import Pipeline, day_keys


def _metadata(pipeline: Pipeline, asset: str, key: str) -> dict[str, object]:
    record = pipeline.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[key]), limit=1
    ).records[0]
    materialization = record.asset_materialization
    assert materialization is not None
    return {k: getattr(v, "value", v) for k, v in materialization.metadata.items()}


def test_each_partition_names_the_okki_and_the_target_it_used(pipeline: Pipeline) -> None:
    key = day_keys(2)[0]
    assert pipeline.materialize(key).success

    raw = _metadata(pipeline, "raw_companies", key)
    assert raw["okki_base_url"] == pipeline.sims.okki_url
    assert raw["target"] == f"batch API at {pipeline.sims.target_url}"
    loaded = _metadata(pipeline, "loaded_companies", key)
    assert loaded["target"] == f"batch API at {pipeline.sims.target_url}"
    assert len(pipeline.sims.target.records) > 0  # it did write there


def test_land_only_says_so(pipeline: Pipeline) -> None:
    key = day_keys(2)[0]
    target = TargetResource(**{**pipeline.target.model_dump(), "url": ""})
    assert pipeline.materialize(key, target=target).success

    for asset in ("raw_companies", "loaded_companies"):
        metadata = _metadata(pipeline, asset, key)
        assert metadata["target"] == "land-only: nothing sent (TARGET_URL unset)", asset
    assert pipeline.sims.target.records == {}
