"""``okki-assets replay --partition D``: re-send a partition's failed and rejected records.

It materializes ``loaded_companies`` for one partition with the environment's settings (the
same as ``dagster dev``'s). The load ledger makes this a replay: only failed, rejected and
interrupted records (and any that changed) are sent; acknowledged ones are skipped. A partition
with nothing cleaned in the DuckDB file named by ``OKKI_ASSETS_DUCKDB`` has nothing to replay:
the command says so instead of reporting an empty success.
"""

from __future__ import annotations

import os
from typing import TextIO

import dagster as dg

from okki_assets import storage
from okki_assets.cli.runs import QUIET, partition_row
from okki_assets.definitions import defs_from_env
from okki_assets.resources import WarehouseResource


def _instance() -> dg.DagsterInstance:
    """The DAGSTER_HOME instance when it is set, else an ephemeral one (nothing recorded)."""
    if os.environ.get("DAGSTER_HOME", "").strip():
        return dg.DagsterInstance.get()
    return dg.DagsterInstance.ephemeral()


def run_replay(partition_key: str, out: TextIO, err: TextIO | None = None) -> int:
    """Materialize loaded_companies for one partition; 2 when there is nothing to replay."""
    err = err or out
    defs = defs_from_env()
    job = defs.resolve_job_def("okki_sync")
    partitions = job.partitions_def
    if partitions is not None and not partitions.has_partition_key(partition_key):
        err.write(f"replay: {partition_key} is not a partition (OKKI_SYNC_START up to today)\n")
        return 2
    warehouse = (defs.resources or {})["warehouse"]
    assert isinstance(warehouse, WarehouseResource)
    with warehouse.get_connection() as conn:
        cleaned = next(storage.iter_cleaned(conn, partition_key, chunk_rows=1), None)
        deleted = storage.read_deleted(conn, partition_key)
    if cleaned is None and deleted.empty:
        err.write(
            f"replay: partition {partition_key} has nothing cleaned in {warehouse.database}"
            " (OKKI_ASSETS_DUCKDB): sync it first, or point OKKI_ASSETS_DUCKDB at the file"
            " that holds it\n"
        )
        return 2
    if not os.environ.get("DAGSTER_HOME", "").strip():
        out.write("(DAGSTER_HOME is unset: this replay run is not recorded for the UI)\n")
    with _instance() as instance:
        result = job.execute_in_process(
            partition_key=partition_key,
            instance=instance,
            asset_selection=[dg.AssetKey("loaded_companies")],
            raise_on_error=False,
            run_config=QUIET,
        )
    row = partition_row(partition_key, result)
    with warehouse.get_connection() as conn:
        counts = storage.ledger_status_counts(conn, partition_key)
    out.write(f"replay {partition_key}: sent {row['sent']}, ledger now {counts}, {row['status']}\n")
    return 0 if result.success else 1
