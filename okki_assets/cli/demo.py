"""``okki-assets demo`` / ``simulate``: the pipeline driven for people.

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

from okki_assets.cli.runs import QUIET, partition_row
from okki_assets.definitions import build_defs
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
                row = partition_row(key, result)
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
