"""``okki-assets demo`` / ``simulate``: the pipeline driven for people, against the simulators.

The demo starts both simulators on loopback, points the resources at them and materializes the
most recent partitions through the real ``okki_sync`` job into the project's simulated world: a
Dagster instance (``.dagster_home``) and a DuckDB file (``data/demo.duckdb``). It prints
progress while it works, a table per partition at the end, and the command that opens the UI on
the same world with live simulators (``okki-assets dev`` with the demo's options).

One world, one truth: the simulators keep their data in memory and start anew each time, so the
demo and ``okki-assets dev`` empty the world's instance and DuckDB file before they start. The UI
never shows a partition as materialized that the DuckDB file does not hold, and Materialize
always has simulators to talk to.
"""

from __future__ import annotations

import shlex
import shutil
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any, TextIO

import dagster as dg
import pandas as pd
import yaml

from okki_assets import storage
from okki_assets.cli.demo_sql import demo_target, print_table
from okki_assets.cli.kingdee import kingdee_if
from okki_assets.cli.runs import QUIET, account_rejected_only, partition_row, rejected_only
from okki_assets.definitions import build_defs
from okki_assets.partitions import ACCOUNT_WINDOW, today_key, window_for_key
from okki_assets.resources import OkkiResource, TargetResource, WarehouseResource
from okki_assets.simulator.harness import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_TARGET_TOKEN,
    FaultProfile,
    RunningSimulators,
    fault_profile,
    running_simulators,
)
from okki_assets.simulator.http import serve_forever
from okki_assets.simulator.okki import OkkiSimulator
from okki_assets.simulator.target import TargetSimConfig, TargetSimulator

DEMO_DUCKDB = "data/demo.duckdb"
#: Where the UI materializes the windows (Dagster 1.13's menu says "Catalog").
UI_HINT = "Catalog -> select raw_companies, cleaned_companies, loaded_companies -> Materialize..."
DEMO_MALFORMED_RATE = 0.01  # real exports carry a few broken records; the demo shows quarantine
# Real accounts are mostly quiet customers last touched long ago: this share of the demo's
# companies was last updated a year or more before the first window, for okki_reconcile to bring.
DEMO_HISTORY_SHARE = 0.3
COLUMNS = (
    "partition",
    "fetched",
    "okki_retries",
    "cleaned",
    "quarantined",
    "sent",
    "unchanged",
    "status",
)


@dataclass(frozen=True)
class DemoSettings:
    companies: int = 3000
    days: int = 14
    partitions: int = 7
    faults: str = "moderate"
    project_dir: Path = Path()
    seed: int = 7
    target: str = "sim"  # sim, sqlite or postgres (demo_sql.py), k3cloud (kingdee.py)


@dataclass(frozen=True)
class World:
    """Where the simulated world of ``demo`` and ``dev`` is kept: one instance, one DuckDB file."""

    home: Path
    database: Path
    target_url: str | None = None  # None: the target simulator


#: The instance settings of the demo's world: no telemetry, and no "join the community" pop-up
#: (Dagster's "nux") over the UI's first view. Added to a dagster.yaml that lacks them.
INSTANCE_SETTINGS = {"telemetry": {"enabled": False}, "nux": {"enabled": False}}


def dagster_home(project_dir: Path) -> Path:
    """A persistent instance folder inside the project (``okki-assets dev`` serves it), its
    ``dagster.yaml`` holding ``INSTANCE_SETTINGS`` (a user's own settings there are kept)."""
    home = project_dir / ".dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    text = config.read_text(encoding="utf-8") if config.exists() else ""
    present = yaml.safe_load(text) or {}
    missing = {k: v for k, v in INSTANCE_SETTINGS.items() if k not in present}
    if missing:
        glue = "" if not text or text.endswith("\n") else "\n"
        config.write_text(text + glue + yaml.safe_dump(missing), encoding="utf-8")
    return home


def fresh_world(project_dir: Path) -> World:
    """The world's instance (its ``dagster.yaml`` kept) and DuckDB file, emptied for new
    simulators: no run, materialization or row of an earlier world remains."""
    home = project_dir / ".dagster_home"
    if home.is_dir():
        for entry in home.iterdir():
            if entry.name == "dagster.yaml":
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    database = project_dir / DEMO_DUCKDB
    for stale in (database, database.with_name(database.name + ".wal")):
        stale.unlink(missing_ok=True)
    return World(home=dagster_home(project_dir), database=database)


def recent_keys(count: int, today: str | None = None) -> list[str]:
    last = date.fromisoformat(today or today_key())
    return [(last - timedelta(days=i)).isoformat() for i in range(count - 1, -1, -1)]


def _table(rows: list[dict[str, Any]]) -> str:
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in COLUMNS}
    line = "  ".join(c.ljust(widths[c]) for c in COLUMNS)
    out = [line, "  ".join("-" * widths[c] for c in COLUMNS)]
    out += ["  ".join(str(r[c]).ljust(widths[c]) for c in COLUMNS) for r in rows]
    return "\n".join(out)


def sync_partitions(
    sims: RunningSimulators,
    world: World,
    keys: list[str],
    sync_start: str,
    out: TextIO,
    stopped: Callable[[], bool] = lambda: False,
    target: TargetResource | None = None,
) -> list[dict[str, Any]]:
    """Materialize ``keys`` one run each through ``okki_sync`` into ``world``, printing progress;
    ``stopped`` is asked before each partition (Ctrl-C in ``okki-assets dev``)."""
    job = demo_defs(sims, world, sync_start, target).resolve_job_def("okki_sync")
    rows = []
    with dg.DagsterInstance.from_config(str(world.home)) as instance:
        for i, key in enumerate(keys, 1):
            if stopped():
                break
            out.write(f"[{i}/{len(keys)}] syncing {key} ... ")
            out.flush()
            t0 = time.monotonic()
            result = job.execute_in_process(
                partition_key=key, instance=instance, raise_on_error=False, run_config=QUIET
            )
            row = partition_row(key, result)
            if rejected := rejected_only(result):  # kept with the reason: explained, not failed
                row["status"] = f"ok, {rejected} rejected by the target"
            rows.append(row)
            out.write(f"{progress(row)} ({time.monotonic() - t0:.1f}s)\n")
    return rows


def progress(row: dict[str, Any]) -> str:
    """One partition's line: fetched, sent (and how many of those were deletions, which OKKI
    lists apart: "148 fetched, 152 sent" alone reads like four records too many), status."""
    deletions = row.get("deletions_sent") or 0
    of_them = f" ({deletions} of them deletions)" if deletions else ""
    return f"{row['fetched']} fetched, {row['sent']} sent{of_them}, {row['status']}"


def demo_overrides(first_key: str) -> dict[str, Any]:
    """The OKKI simulator's data quirks in the demo's world: a few broken records, and history
    before the first window."""
    return {
        "malformed_rate": DEMO_MALFORMED_RATE,
        "history_share": DEMO_HISTORY_SHARE,
        "history_before": date.fromisoformat(first_key),
    }


def reconcile_account(
    sims: RunningSimulators,
    world: World,
    sync_start: str,
    out: TextIO,
    target: TargetResource | None = None,
) -> bool:
    """Run ``okki_reconcile`` once into ``world`` and print what it brought in."""
    job = demo_defs(sims, world, sync_start, target).resolve_job_def("okki_reconcile")
    out.write("reconciling the whole account (okki_reconcile) ... ")
    out.flush()
    t0 = time.monotonic()
    history = len(sims.okki.companies_in_window(ACCOUNT_WINDOW[0], window_for_key(sync_start)[0]))
    with dg.DagsterInstance.from_config(str(world.home)) as instance:
        result = job.execute_in_process(instance=instance, raise_on_error=False, run_config=QUIET)
    figures: dict[str, Any] = {}
    for event in result.get_asset_materialization_events():
        mat = event.event_specific_data.materialization  # type: ignore[union-attr]
        figures = {k: getattr(v, "value", v) for k, v in mat.metadata.items()}
    checks = result.get_asset_check_evaluations()
    in_sync = result.success and bool(checks) and all(c.passed for c in checks)
    rejected = rejected_records(world)
    explained = not in_sync and account_rejected_only(result, set(rejected["company_id"]))
    said = "in sync" if in_sync else "NOT in sync"
    if explained:
        said = "in sync but for the companies the target rejected"
    out.write(f"{said} ({time.monotonic() - t0:.1f}s)\n")
    if figures:
        out.write(account_lines(figures, sync_start, history))
    if not rejected.empty:
        out.write(rejected_lines(rejected))
    return in_sync or explained


def rejected_records(world: World) -> pd.DataFrame:
    """The records the target rejected, from the world's load ledger (company_id as text)."""
    with WarehouseResource(database=str(world.database)).get_connection() as conn:
        rejected = storage.rejected_records(conn)
    return rejected.assign(company_id=rejected["company_id"].astype(str))


def rejected_lines(rejected: pd.DataFrame) -> str:
    """The target's rejections, by reason: kept outcomes, explained, not failures."""
    reasons = rejected["last_error"].fillna("no reason given").value_counts()
    by_reason = "; ".join(f"{reason} ({n})" for reason, n in reasons.items())
    companies = f"{len(rejected)} {'company' if len(rejected) == 1 else 'companies'}"
    return (
        f"  rejected by the target, kept in load_ledger with the reason: {companies}"
        f" ({by_reason}); the checks load_reconciled and account_in_sync show them until they"
        " are fixed in OKKI (or the mapping) and sent again\n"
    )


def account_lines(figures: dict[str, Any], sync_start: str, history: int) -> str:
    """What okki_reconcile brought in, in words that say why: the synced days list only the
    companies updated on them, so the account's older history (``history`` companies last
    updated before ``sync_start``, as OKKI holds them) reaches the target now."""
    return (
        f"  {figures['companies_in_okki']} companies in OKKI, {figures['deleted_in_okki']}"
        f" deleted. Brought in now: {figures['found_missing']} companies no synced day listed"
        f" (history older than the synced days: OKKI holds {history} last updated before"
        f" {sync_start}, which no daily window lists), {figures['found_stale']} updated since"
        f" their day was synced, {figures['found_deleted_but_present']} deleted in OKKI but"
        " still at the target\n"
        f"  sent {figures.get('sent', 0)} ({figures.get('tombstones_sent', 0)} deletions),"
        f" {figures['refreshed']} infos refreshed, {figures['quarantined']} quarantined;"
        f" {figures['list_requests']} list and {figures['info_requests']} info requests\n"
    )


def demo_defs(
    sims: RunningSimulators, world: World, sync_start: str, target: TargetResource | None = None
) -> dg.Definitions:
    """The demo's definitions; ``target`` replaces the target simulator (Kingdee's)."""
    return build_defs(
        okki=OkkiResource(
            base_url=sims.okki_url,
            client_id=DEMO_CLIENT_ID,
            client_secret=DEMO_CLIENT_SECRET,
            rate_limit=200.0,
            concurrency=8,
        ),
        target=target
        or TargetResource(url=world.target_url or sims.target_url, token=DEMO_TARGET_TOKEN),
        warehouse=WarehouseResource(database=str(world.database)),
        sync_start=sync_start,
    )


def okki_assets_command() -> list[str]:
    """This installation's okki-assets command, as a path that works without an activated venv."""
    script = Path(sys.executable).parent / "okki-assets"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "okki_assets.cli"]


def dev_hint(settings: DemoSettings) -> str:
    """The command that serves the demo's world in the UI, with live simulators."""
    return shlex.join(
        [
            *okki_assets_command(),
            "dev",
            *("--companies", str(settings.companies), "--days", str(settings.days)),
            *("--partitions", str(settings.partitions), "--faults", settings.faults),
            *("--seed", str(settings.seed), "--project-dir", str(settings.project_dir)),
            *(("--target", "k3cloud") if settings.target == "k3cloud" else ()),
        ]
    )


def run_demo(settings: DemoSettings, out: TextIO) -> int:
    with demo_target(settings.target, settings.project_dir) as target_url:
        world = replace(fresh_world(settings.project_dir), target_url=target_url)
        code = _run_demo(settings, world, out)
        if target_url is not None:
            print_table(target_url, out)
    return code


def _run_demo(settings: DemoSettings, world: World, out: TextIO) -> int:
    profile = fault_profile(settings.faults)
    keys = recent_keys(settings.partitions)
    out.write(
        f"okki-assets demo: {settings.companies} companies over {settings.days} days,"
        f" fault profile '{profile.name}'\n"
    )
    started = time.monotonic()
    with (
        running_simulators(
            companies=settings.companies,
            days=settings.days,
            profile=profile,
            seed=settings.seed,
            okki_overrides=demo_overrides(keys[0]),
        ) as sims,
        kingdee_if(settings.target == "k3cloud", settings.faults, settings.seed) as kingdee,
    ):
        out.write(f"  OKKI simulator   {sims.okki_url}\n  target simulator {sims.target_url}\n")
        if world.target_url:
            out.write(f"  target (SQL)     {settings.target}, table okki_companies\n")
        if kingdee:
            out.write(f"  target (Kingdee) {kingdee.url}\n")
        out.write(f"  DuckDB file      {world.database}\n  DAGSTER_HOME     {world.home}\n\n")
        target = kingdee.resource() if kingdee else None
        rows = sync_partitions(sims, world, keys, keys[0], out, target=target)
        out.write("\n" + _table(rows) + "\n\n")
        in_sync = reconcile_account(sims, world, keys[0], out, target)
        stats = sims.target.stats()
        if kingdee:
            out.write(kingdee.summary() + "\n")
        elif not world.target_url:  # a SQL target's table is printed at the end
            out.write(
                f"target now holds {len(sims.target.records)} companies"
                f" ({stats['replays']} replayed batches, {stats['dropped_replies']} dropped"
                f" replies recovered, {stats['throttled']} throttled)\n"
            )
        out.write(
            f"OKKI simulator answered {sum(sims.okki.stats.calls.values())} requests"
            f" in {time.monotonic() - started:.0f}s\n\n"
        )
    out.write(
        "The simulators have stopped. To review these partitions in the Dagster UI and"
        " materialize more, run\n"
        f"  {dev_hint(settings)}\n"
        "(the same simulated data, synced again, then the UI with live simulators on"
        f" http://127.0.0.1:3000 -> {UI_HINT}; Ctrl-C stops it).\n"
    )
    return 0 if in_sync and all(r["status"].startswith("ok") for r in rows) else 1


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _stop_on_sigint_and_sigterm() -> None:
    """SIGINT and SIGTERM stop the simulators, however the command was started: one started in
    the background by a non-interactive shell (``&``) inherits SIGINT ignored, and Python then
    leaves it ignored, so Ctrl-C or ``kill -INT`` would do nothing."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupted)


def run_simulators(
    *,
    companies: int,
    days: int,
    okki_port: int,
    target_port: int,
    profile: FaultProfile,
    seed: int,
    out: TextIO,
) -> int:
    okki = OkkiSimulator.demo(n=companies, days=days, seed=seed, **profile.okki)
    target = TargetSimulator(TargetSimConfig(seed=seed, **profile.target))
    _stop_on_sigint_and_sigterm()
    out.write(
        f"OKKI simulator   http://127.0.0.1:{okki_port}  (client_id={DEMO_CLIENT_ID},"
        f" {companies} companies over {days} days)\n"
        f"target simulator http://127.0.0.1:{target_port}  (Bearer token = the demo token)\n"
        "Ctrl-C stops both.\n"
    )
    out.flush()
    serve_forever({"OKKI": (okki, okki_port), "target": (target, target_port)})
    return 0
