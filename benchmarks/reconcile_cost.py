"""``benchmarks.reconcile_cost``: what okki_reconcile costs over an account of N companies.

Starts both simulators on loopback (no faults; ``--history`` of the companies last updated a
year or more before the first window), runs ``okki_reconcile`` twice through Dagster and prints,
per run, the requests OKKI served (the simulator's counters: list and info), what the run sent
and its time. The first run brings the whole account; the second, with nothing changed, should
cost ``ceil(N / 100)`` list requests (plus one when the last page is full, plus the deleted
list) and the rolling refresh slice (about N / ``--refresh-days`` info calls), and send nothing.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import date
from pathlib import Path

import dagster as dg

from benchmarks import command_main
from okki_assets.assets.account import ACCOUNT_ASSET, build_account
from okki_assets.cli.runs import QUIET
from okki_assets.partitions import DEFAULT_SYNC_START
from okki_assets.resources import OkkiResource, TargetResource, WarehouseResource
from okki_assets.simulator.harness import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_TARGET_TOKEN,
    running_simulators,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--companies", type=int, default=3000)
    parser.add_argument("--history", type=float, default=0.6, help="share of history")
    parser.add_argument("--refresh-days", type=int, default=7)


def run(args: argparse.Namespace) -> int:
    overrides = {
        "history_share": args.history,
        "history_before": date.fromisoformat(DEFAULT_SYNC_START),
    }
    account_defs = build_account(refresh_days=args.refresh_days)
    with (
        running_simulators(companies=args.companies, days=14, okki_overrides=overrides) as sims,
        dg.instance_for_test() as instance,
        tempfile.TemporaryDirectory(prefix="okki-reconcile-") as scratch,
    ):
        resources = {
            "okki": OkkiResource(
                base_url=sims.okki_url,
                client_id=DEMO_CLIENT_ID,
                client_secret=DEMO_CLIENT_SECRET,
                rate_limit=1000.0,
            ),
            "target": TargetResource(url=sims.target_url, token=DEMO_TARGET_TOKEN),
            "warehouse": WarehouseResource(database=str(Path(scratch) / "cost.duckdb")),
        }
        for label in ("first run", "second run, nothing changed"):
            sims.okki.reset_stats()
            started = time.monotonic()
            result = dg.materialize(
                [*(account_defs.assets or []), *(account_defs.asset_checks or [])],
                resources=resources,
                instance=instance,
                raise_on_error=False,
                run_config=QUIET,
            )
            passed = all(e.passed for e in result.get_asset_check_evaluations())
            (event,) = result.asset_materializations_for_node(ACCOUNT_ASSET)
            figures = {k: v.value for k, v in event.metadata.items()}
            calls = sims.okki.stats.calls
            sys.stdout.write(
                f"{label}: {args.companies} companies, {time.monotonic() - started:.1f}s,"
                f" list requests {calls.get('/v1/company/list', 0)},"
                f" info requests {calls.get('/v1/company/info', 0)},"
                f" found missing {figures['found_missing']}, refreshed {figures['refreshed']},"
                f" sent {figures.get('sent', 0)}, at the target {figures['at_target']},"
                f" account_in_sync {'passed' if result.success and passed else 'FAILED'}\n"
            )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    description = "the requests okki_reconcile makes over an account of N companies"
    return command_main("reconcile_cost", description, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
