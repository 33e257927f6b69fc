"""raw_companies -> cleaned_companies -> loaded_companies, one sync window per partition.

One module per asset, each holding the asset's definition, its checks (specs, pass/fail rules)
and its metadata, and calling one stage (okki_assets/stages/: one partition's work against
DuckDB, returning a summary): raw.py, cleaned.py, loaded.py, and account.py for the
unpartitioned okki_account that okki_reconcile materializes (built apart, in definitions.py,
because it has no sync windows). What they share is in common.py. The assets orchestrate only:
they loop over the run's partitions (one, or a range in a single-run backfill), call their
stage, and report per-partition metadata and check results. Their data lives in DuckDB tables
written by the storage package, so they return no value to an IO manager.
"""

from __future__ import annotations

import dagster as dg

from okki_assets.assets.cleaned import DEFAULT_QUARANTINE_THRESHOLD, build_cleaned_companies
from okki_assets.assets.common import partitioned_checks_allowed
from okki_assets.assets.loaded import build_loaded_companies
from okki_assets.assets.raw import build_raw_companies

__all__ = ["DEFAULT_QUARANTINE_THRESHOLD", "build_assets"]


def build_assets(
    partitions_def: dg.PartitionsDefinition,
    *,
    quarantine_threshold: float = DEFAULT_QUARANTINE_THRESHOLD,
) -> list[dg.AssetsDefinition]:
    """The three assets over ``partitions_def`` (built here so definitions.py sets the start)."""
    with partitioned_checks_allowed():
        policy = dg.BackfillPolicy.single_run()
    raw = build_raw_companies(partitions_def, policy)
    cleaned = build_cleaned_companies(partitions_def, policy, raw, quarantine_threshold)
    loaded = build_loaded_companies(partitions_def, policy, cleaned)
    return [raw, cleaned, loaded]
