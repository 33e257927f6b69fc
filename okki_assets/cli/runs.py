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


def _failed_checks(result: dg.ExecuteInProcessResult) -> dict[str, dict[str, Any]]:
    """The run's failed checks by name, with their metadata as plain values."""
    return {
        e.check_name: {k: _value(dict(e.metadata), k) for k in e.metadata}
        for e in result.get_asset_check_evaluations()
        if not e.passed
    }


def rejected_only(result: dg.ExecuteInProcessResult) -> int:
    """The records the target rejected, when they are the run's only failure: the blocking
    check ``load_reconciled`` red for them alone (every record not loaded was rejected, with
    the target's reason kept in the load ledger), nothing failed. 0 otherwise."""
    failed = _failed_checks(result)
    if result.success or list(failed) != ["load_reconciled"]:
        return 0
    load: dict[str, Any] = {}
    for event in result.get_asset_materialization_events():
        mat = event.event_specific_data.materialization  # type: ignore[union-attr]
        if mat.asset_key.to_user_string() == "loaded_companies":
            load = dict(mat.metadata)
    check, rejected = failed["load_reconciled"], int(_value(load, "status_rejected") or 0)
    if check.get("failed") or int(check.get("unreconciled") or 0) > rejected:
        return 0
    return rejected


#: The account check's figures that are wrong whatever the target rejected.
_ACCOUNT_PROBLEMS = (
    "stale",
    "restored_pending",
    "deleted_but_present",
    "moved_back",
    "different",
    "target_unrepaired",
)


def account_rejected_only(result: dg.ExecuteInProcessResult, rejected: set[str]) -> bool:
    """Whether the account check is red only for companies the target rejected (``rejected``:
    their ids, from the load ledger): every company it finds missing is one of them, and
    nothing is stale, different or unrepaired."""
    failed = _failed_checks(result)
    if not result.success or list(failed) != ["account_in_sync"]:
        return False
    check = failed["account_in_sync"]
    if any(check.get(k) for k in _ACCOUNT_PROBLEMS):
        return False
    rows = [dict(r.data) for r in getattr(check.get("offending_ids"), "records", None) or []]
    missing = {str(r.get("company_id")) for r in rows if r.get("problem") == "missing"}
    return len(rows) == int(check.get("missing") or 0) > 0 and missing <= rejected
