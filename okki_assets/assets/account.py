"""okki_account: the whole OKKI account at the target, its check, job and schedule.

- ``okki_account`` (group okki, unpartitioned) runs one reconcile (see stages/reconcile.py): one
  pass over the full list and the full deleted list against the load ledger; only missing,
  stale, restored and refresh-due companies are fetched, cleaned and loaded through the same
  stage functions as a daily window, under the partition ``account`` of the stage tables.
- ``account_in_sync`` (ERROR when it fails): after the run, nothing live and valid is missing
  or stale and nothing deleted is still present at the target. Run alone, it takes its own list
  pass (list requests only, no info call, no write to the target) and tells how far the target
  is from OKKI.
- ``okki_reconcile`` materializes it (UI, or ``dg launch -m okki_assets.definitions --job
  okki_reconcile``); ``okki_reconcile_daily`` runs it at 03:30 China time, off by default.
"""

# No `from __future__ import annotations` here: Dagster reads these annotations at runtime.

from contextlib import closing
from typing import Any

import dagster as dg

from okki_assets import storage
from okki_assets.account_state import AccountState
from okki_assets.assets.common import ErrorsAsFailure
from okki_assets.assets.raw import API_POOL
from okki_assets.logs import RUN_CONFIG
from okki_assets.metadata import table_metadata
from okki_assets.okki_time import TIMEZONE
from okki_assets.resources import OkkiResource, TargetResource, WarehouseResource
from okki_assets.stages.reconcile import (
    DEFAULT_REFRESH_DAYS,
    ReconcileSummary,
    observe,
    reconcile_account,
    refresh_days_problem,
    state_of,
)

ACCOUNT_ASSET = "okki_account"
# A group of its own: the UI's "Materialize all" on the windows' group (okki) then selects the
# three daily assets only, not a reconciliation of the whole account with them.
ACCOUNT_GROUP = "okki_reconcile"
ACCOUNT_CHECK = "account_in_sync"
RECONCILE_JOB = "okki_reconcile"
RECONCILE_SCHEDULE = "okki_reconcile_daily"
RECONCILE_CRON = "30 3 * * *"
# Copied from the run's materialization into the check's metadata, so both plot the same run.
RUN_FIGURES = (
    "restored",
    "refreshed",
    "contacts_changed_by_refresh",
    "list_requests",
    "info_requests",
    "sent",
    "tombstones_sent",
    # The audit of the target itself (okki_assets/stages/audit.py).
    "target_audit",
    "target_missing",
    "target_different",
    "target_extra",
    "target_repaired",
    "target_unrepaired",
    "target_offending_ids",
)
#: The account check's key, to select it alone.
ACCOUNT_CHECK_KEY = dg.AssetCheckKey(dg.AssetKey(ACCOUNT_ASSET), ACCOUNT_CHECK)


def build_account(*, refresh_days: int = DEFAULT_REFRESH_DAYS) -> dg.Definitions:
    """The account asset, its check (``ACCOUNT_CHECK_KEY``), the reconcile job and its
    schedule."""
    if problem := refresh_days_problem(refresh_days):
        raise ValueError(problem)

    asset = _account_asset(refresh_days)
    job = dg.define_asset_job(
        RECONCILE_JOB,
        selection=dg.AssetSelection.assets(asset),
        description="The whole account: one list pass, then only missing, stale, deleted,"
        " restored and refresh-due companies are fetched and loaded.",
        config=RUN_CONFIG,
    )
    schedule = dg.ScheduleDefinition(
        name=RECONCILE_SCHEDULE,
        job=job,
        cron_schedule=RECONCILE_CRON,
        execution_timezone=TIMEZONE,
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description="03:30 China time: reconcile the whole account (the safety net).",
    )
    return dg.Definitions(
        assets=[asset],
        asset_checks=[_account_check(asset)],
        jobs=[job],
        schedules=[schedule],
    )


def _account_asset(refresh_days: int) -> dg.AssetsDefinition:
    """The account asset: one reconcile per run."""

    @dg.asset(
        name=ACCOUNT_ASSET,
        group_name=ACCOUNT_GROUP,
        pool=API_POOL,
        kinds={"duckdb"},
        # Shown on the asset's page: how often each company's info is re-read at the least.
        metadata={"info_refresh_days": refresh_days},
    )
    def okki_account(
        context: dg.AssetExecutionContext,
        okki: OkkiResource,
        target: TargetResource,
        warehouse: WarehouseResource,
    ) -> dg.MaterializeResult[None]:
        """The whole account at the target: every live, valid company of any update_time,
        every deletion, fresh contacts (rolling info refresh).

        Re-running is safe: the ``account`` partition of the stage tables is replaced, the
        ledger skips what the target already has and never sends an older version, and loads
        hold the same load lock as the daily windows'."""
        with ErrorsAsFailure():
            target.check()
            mapping = target.mapping()
            with (
                closing(target.open()) as client,
                okki.session(warehouse.get_connection) as okki_client,
            ):
                summary = reconcile_account(
                    okki_client,
                    client,
                    warehouse.get_connection,
                    warehouse.load_lock,
                    context.run.run_id,
                    mapping,
                    refresh_days=refresh_days,
                    batch_size=target.batch_size,
                )
        _log(context, summary)
        return dg.MaterializeResult(
            metadata={**summary.metadata(), **okki.settings_used(), **target.settings_used()}
        )

    return okki_account


def _account_check(asset: dg.AssetsDefinition) -> dg.AssetChecksDefinition:
    """The account check: the target against OKKI, after a reconcile or alone."""

    @dg.asset_check(
        asset=asset,
        name=ACCOUNT_CHECK,
        description="The target holds every live, valid OKKI company in its newest version and"
        " content (as last read) and no company OKKI lists as deleted.",
    )
    def account_in_sync(
        context: dg.AssetCheckExecutionContext,
        okki: OkkiResource,
        target: TargetResource,
        warehouse: WarehouseResource,
    ) -> dg.AssetCheckResult:
        run_id = context.run.run_id
        with ErrorsAsFailure():
            mapping = target.mapping()
            with warehouse.get_connection() as conn:
                snapshot = storage.read_account_list(conn, run_id)
                state = None
                if snapshot is not None:  # this run's: compare content read since it too
                    seen = snapshot["observed_at"].min().to_pydatetime()
                    state = state_of(conn, snapshot, seen, mapping)
            if state is None:  # run alone: observe the account now (list requests only)
                with okki.session(warehouse.get_connection) as client:
                    _, _, state = observe(client, warehouse.get_connection, run_id)
        return _check_result(state, _run_figures(context, run_id))

    return account_in_sync


def _log(context: dg.AssetExecutionContext, s: ReconcileSummary) -> None:
    found, after = s.before.counts(), (s.after or s.before).counts()
    context.log.info(
        "account: %d companies in OKKI, %d deleted; found %d missing, %d stale, %d restored,"
        " %d deleted but present; %d refreshed; %d list and %d info requests",
        found["companies_in_okki"],
        found["deleted_in_okki"],
        found["missing"],
        found["stale"],
        found["restored_pending"],
        found["deleted_but_present"],
        s.refreshed,
        s.list_requests,
        s.info_requests,
    )
    context.log.info(
        "account after the load: %d at the target, %d missing, %d stale, %d deleted but"
        " present, %d quarantined",
        after["at_target"],
        after["missing"],
        after["stale"],
        after["deleted_but_present"],
        after["quarantined"],
    )


def _run_figures(context: dg.AssetCheckExecutionContext, run_id: str) -> dict[str, Any]:
    """This run's reconcile figures from its materialization (none when the check ran alone)."""
    event = context.instance.get_latest_materialization_event(dg.AssetKey(ACCOUNT_ASSET))
    if event is None or event.run_id != run_id or event.asset_materialization is None:
        return {}
    metadata = event.asset_materialization.metadata
    return {k: metadata[k].value for k in RUN_FIGURES if k in metadata}


def _check_result(state: AccountState, figures: dict[str, Any]) -> dg.AssetCheckResult:
    counts = state.counts()
    metadata: dict[str, Any] = {**counts, **figures}
    offenders = state.offenders()
    if not offenders.empty:
        metadata["offending_ids"] = table_metadata(offenders, limit=len(offenders))
    problems = len(state.missing) + len(state.stale) + len(state.restored)
    problems += len(state.deleted_but_present) + len(state.moved_back) + len(state.different)
    return dg.AssetCheckResult(
        passed=state.in_sync and not figures.get("target_unrepaired"),
        severity=dg.AssetCheckSeverity.ERROR,
        description=f"{counts['at_target']} of {counts['companies_in_okki']} at the target;"
        f" {problems} missing, stale, not restored, deleted but present, moved back or"
        " different",
        metadata=metadata,
    )
