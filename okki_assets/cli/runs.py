"""What one run of the ``okki_sync`` job did, in the figures the commands print."""

from __future__ import annotations

from typing import Any

import dagster as dg

#: Run config that keeps Dagster's console logger to warnings while a command prints progress.
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def _value(metadata: dict[str, Any], key: str) -> Any:
    entry = metadata.get(key)
    return getattr(entry, "value", entry) if entry is not None else ""


def partition_row(key: str, result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    """One partition's figures from its run's materializations, and ``ok`` or what failed."""
    by_asset: dict[str, dict[str, Any]] = {}
    for event in result.get_asset_materialization_events():
        mat = event.event_specific_data.materialization  # type: ignore[union-attr]
        by_asset[mat.asset_key.to_user_string()] = dict(mat.metadata)
    raw, clean, load = (
        by_asset.get(a, {}) for a in ("raw_companies", "cleaned_companies", "loaded_companies")
    )
    failed_checks = [
        f"{e.check_name}" for e in result.get_asset_check_evaluations() if not e.passed
    ]
    status = "ok" if result.success and not failed_checks else "FAILED " + ",".join(failed_checks)
    if not result.success and not failed_checks:
        status = "FAILED (see the run in the UI)"
    return {
        "partition": key,
        "fetched": _value(raw, "fetched"),
        "okki_retries": _value(raw, "retries_total"),
        "cleaned": _value(clean, "cleaned"),
        "quarantined": _value(clean, "quarantined"),
        "sent": _value(load, "sent"),
        "deletions_sent": _value(load, "tombstones"),
        "unchanged": _value(load, "skipped_unchanged"),
        "status": status,
    }
