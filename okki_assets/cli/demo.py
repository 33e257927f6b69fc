"""``okki-assets demo`` / ``simulate`` / ``replay``: the pipeline driven for people.

The demo starts both simulators on loopback, points the resources at them and materializes the
most recent partitions through the real ``okki_sync`` job into a persistent DAGSTER_HOME inside
the project folder, so ``dagster dev`` afterwards shows these runs. It prints progress while it
works and a table per partition at the end.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any, TextIO

import dagster as dg

from okki_assets import storage
from okki_assets.definitions import build_defs, defs_from_env
from okki_assets.partitions import today_key
from okki_assets.resources import OkkiResource, TargetResource, WarehouseResource
from okki_assets.simulator.harness import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_TARGET_TOKEN,
    FaultProfile,
    fault_profile,
    running_simulators,
)
from okki_assets.simulator.http import serve_forever
from okki_assets.simulator.okki import OkkiSimulator
from okki_assets.simulator.target import TargetSimConfig, TargetSimulator

DEMO_DUCKDB = "data/demo.duckdb"
DEMO_MALFORMED_RATE = 0.01  # real exports carry a few broken records; the demo shows quarantine
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
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


def dagster_home(project_dir: Path) -> Path:
    """A persistent instance folder inside the project (``dagster dev`` reads it afterwards)."""
    home = project_dir / ".dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text("telemetry:\n  enabled: false\n")
    return home


def recent_keys(count: int, today: str | None = None) -> list[str]:
    last = date.fromisoformat(today or today_key())
    return [(last - timedelta(days=i)).isoformat() for i in range(count - 1, -1, -1)]


def _value(metadata: dict[str, Any], key: str) -> Any:
    entry = metadata.get(key)
    return getattr(entry, "value", entry) if entry is not None else ""


def _row(key: str, result: dg.ExecuteInProcessResult) -> dict[str, Any]:
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
        "unchanged": _value(load, "skipped_unchanged"),
        "status": status,
    }


def _table(rows: list[dict[str, Any]]) -> str:
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in COLUMNS}
    line = "  ".join(c.ljust(widths[c]) for c in COLUMNS)
    out = [line, "  ".join("-" * widths[c] for c in COLUMNS)]
    out += ["  ".join(str(r[c]).ljust(widths[c]) for c in COLUMNS) for r in rows]
    return "\n".join(out)


def run_demo(settings: DemoSettings, out: TextIO) -> int:
    project = settings.project_dir
    home = dagster_home(project)
    os.environ["DAGSTER_HOME"] = str(home)
    # The demo's simulators start empty each time, so its DuckDB file (and ledger) does too.
    database = project / DEMO_DUCKDB
    for stale in (database, database.with_name(database.name + ".wal")):
        stale.unlink(missing_ok=True)
    profile = fault_profile(settings.faults)
    keys = recent_keys(settings.partitions)
    out.write(
        f"okki-assets demo: {settings.companies} companies over {settings.days} days,"
        f" fault profile '{profile.name}'\n"
    )
    started = time.monotonic()
    with running_simulators(
        companies=settings.companies,
        days=settings.days,
        profile=profile,
        seed=settings.seed,
        okki_overrides={"malformed_rate": DEMO_MALFORMED_RATE},
    ) as sims:
        out.write(f"  OKKI simulator   {sims.okki_url}\n  target simulator {sims.target_url}\n")
        out.write(f"  DuckDB file      {database}\n  DAGSTER_HOME     {home}\n\n")
        defs = build_defs(
            okki=OkkiResource(
                base_url=sims.okki_url,
                client_id=DEMO_CLIENT_ID,
                client_secret=DEMO_CLIENT_SECRET,
                rate_limit=200.0,
                concurrency=8,
            ),
            target=TargetResource(url=sims.target_url, token=DEMO_TARGET_TOKEN),
            warehouse=WarehouseResource(database=str(database)),
            sync_start=keys[0],
        )
        job = defs.resolve_job_def("okki_sync")
        rows = []
        with dg.DagsterInstance.get() as instance:
            for i, key in enumerate(keys, 1):
                out.write(f"[{i}/{len(keys)}] syncing {key} ... ")
                out.flush()
                t0 = time.monotonic()
                result = job.execute_in_process(
                    partition_key=key, instance=instance, raise_on_error=False, run_config=QUIET
                )
                row = _row(key, result)
                rows.append(row)
                out.write(
                    f"{row['fetched']} fetched, {row['sent']} sent, {row['status']}"
                    f" ({time.monotonic() - t0:.1f}s)\n"
                )
        stats = sims.target.stats()
        out.write("\n" + _table(rows) + "\n\n")
        out.write(
            f"target now holds {len(sims.target.records)} companies"
            f" ({stats['replays']} replayed batches, {stats['dropped_replies']} dropped replies"
            f" recovered, {stats['throttled']} throttled)\n"
        )
        out.write(
            f"OKKI simulator answered {sum(sims.okki.stats.calls.values())} requests"
            f" in {time.monotonic() - started:.0f}s\n\n"
        )
    out.write(
        "Open the UI on these runs:\n"
        f"  DAGSTER_HOME={home} dagster dev -w workspace.yaml\n"
        "then http://127.0.0.1:3000 -> Assets -> okki.\n"
    )
    return 0 if all(r["status"] == "ok" for r in rows) else 1


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
    out.write(
        f"OKKI simulator   http://127.0.0.1:{okki_port}  (client_id={DEMO_CLIENT_ID},"
        f" {companies} companies over {days} days)\n"
        f"target simulator http://127.0.0.1:{target_port}  (Bearer token = the demo token)\n"
        "Ctrl-C stops both.\n"
    )
    out.flush()
    serve_forever({"OKKI": (okki, okki_port), "target": (target, target_port)})
    return 0


def _instance() -> dg.DagsterInstance:
    """The DAGSTER_HOME instance when it is set, else an ephemeral one (nothing recorded)."""
    if os.environ.get("DAGSTER_HOME", "").strip():
        return dg.DagsterInstance.get()
    return dg.DagsterInstance.ephemeral()


def run_replay(partition_key: str, out: TextIO) -> int:
    """Materialize loaded_companies for one partition with the environment's settings.

    The load ledger makes this a replay: only failed, rejected and interrupted records (and any
    that changed) are sent; acknowledged ones are skipped.
    """
    defs = defs_from_env()
    job = defs.resolve_job_def("okki_sync")
    partitions = job.partitions_def
    if partitions is not None and not partitions.has_partition_key(partition_key):
        out.write(f"replay: {partition_key} is not a partition (OKKI_SYNC_START up to today)\n")
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
    row = _row(partition_key, result)
    warehouse = (defs.resources or {})["warehouse"]
    assert isinstance(warehouse, WarehouseResource)
    with warehouse.get_connection() as conn:
        counts = storage.ledger_status_counts(conn, partition_key)
    out.write(f"replay {partition_key}: sent {row['sent']}, ledger now {counts}, {row['status']}\n")
    return 0 if result.success else 1
