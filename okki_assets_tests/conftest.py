"""Shared fixtures: simulators on loopback, a DuckDB file per test, and a Dagster runner.

Integration tests materialize the real assets through Dagster (``dg.materialize``) against
both simulators served over HTTP on 127.0.0.1, then assert on DuckDB rows and the target's
records.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pytest

from okki_assets.assets import build_assets
from okki_assets.assets.account import ACCOUNT_ASSET, ACCOUNT_CHECK_KEY, build_account
from okki_assets.partitions import build_sync_partitions
from okki_assets.resources import OkkiResource, TargetResource, WarehouseResource
from okki_assets.simulator.harness import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_TARGET_TOKEN,
    RunningSimulators,
    running_simulators,
)

SYNC_START = "2026-01-01"
# Throwaway PostgreSQL and MariaDB servers (session-scoped, one per xdist worker) and sql_url.
pytest_plugins = ["okki_assets_tests.dbservers"]


@dataclass
class Pipeline:
    """The three assets wired to running simulators and a DuckDB file."""

    sims: RunningSimulators
    database: Path
    instance: dg.DagsterInstance
    okki: OkkiResource
    target: TargetResource
    assets: list[dg.AssetsDefinition]

    @property
    def warehouse(self) -> WarehouseResource:
        return WarehouseResource(database=str(self.database), lock_timeout=60)

    def resources(self, **overrides: Any) -> dict[str, Any]:
        return {
            "okki": overrides.get("okki", self.okki),
            "target": overrides.get("target", self.target),
            "warehouse": overrides.get("warehouse", self.warehouse),
        }

    def materialize(
        self,
        partition_key: str | None = None,
        *,
        partition_range: tuple[str, str] | None = None,
        selection: Sequence[str] | None = None,
        raise_on_error: bool = True,
        **overrides: Any,
    ) -> dg.ExecuteInProcessResult:
        tags = {}
        if partition_range:
            tags = {
                "dagster/asset_partition_range_start": partition_range[0],
                "dagster/asset_partition_range_end": partition_range[1],
            }
        return dg.materialize(
            self.assets,
            selection=list(selection) if selection else None,
            partition_key=partition_key,
            tags=tags,
            resources=self.resources(**overrides),
            instance=self.instance,
            raise_on_error=raise_on_error,
        )

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with duckdb.connect(str(self.database), read_only=True) as conn:
            return conn.execute(sql, list(params)).fetchall()


def day_keys(days: int, end: date | None = None) -> list[str]:
    """The last ``days`` partition keys up to ``end`` (default: today in China)."""
    from okki_assets.partitions import today_key

    last = end or date.fromisoformat(today_key())
    return [(last - timedelta(days=i)).isoformat() for i in range(days - 1, -1, -1)]


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as inst:
        yield inst


def make_pipeline(
    tmp_path: Path,
    instance: dg.DagsterInstance,
    *,
    companies: int = 300,
    days: int = 5,
    okki_overrides: dict[str, Any] | None = None,
    target_overrides: dict[str, Any] | None = None,
    land_only: bool = False,
    **kwargs: Any,
) -> Iterator[Pipeline]:
    with running_simulators(
        companies=companies,
        days=days,
        okki_overrides=okki_overrides,
        target_overrides=target_overrides,
        **kwargs,
    ) as sims:
        okki = OkkiResource(
            base_url=sims.okki_url,
            client_id=DEMO_CLIENT_ID,
            client_secret=DEMO_CLIENT_SECRET,
            rate_limit=500.0,
            concurrency=8,
            read_timeout=60.0,
        )
        target = TargetResource(
            url="" if land_only else sims.target_url, token=DEMO_TARGET_TOKEN, read_timeout=60.0
        )
        assets = build_assets(build_sync_partitions(SYNC_START))
        yield Pipeline(sims, tmp_path / "okki.duckdb", instance, okki, target, assets)


@pytest.fixture
def pipeline(tmp_path: Path, instance: dg.DagsterInstance) -> Iterator[Pipeline]:
    yield from make_pipeline(tmp_path, instance)


def run_reconcile(
    pipeline: Pipeline, *, refresh_days: int = 7, check_only: bool = False, **overrides: Any
) -> dg.ExecuteInProcessResult:
    """One okki_reconcile through Dagster (or the check ``account_in_sync`` alone)."""
    account_defs = build_account(refresh_days=refresh_days)
    return dg.materialize(
        [*(account_defs.assets or []), *(account_defs.asset_checks or [])],
        selection=dg.AssetSelection.checks(ACCOUNT_CHECK_KEY) if check_only else None,
        resources=pipeline.resources(**overrides),
        instance=pipeline.instance,
        raise_on_error=False,
    )


def account_figures(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    """The metadata of the run's okki_account materialization, as plain values."""
    (event,) = result.asset_materializations_for_node(ACCOUNT_ASSET)
    return {k: v.value for k, v in event.metadata.items()}
