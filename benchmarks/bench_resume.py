"""Info calls per company after a killed pull and its re-run: ``python -m benchmarks.bench_resume``.

An OKKI simulator on loopback holds one window of ``--companies`` companies. A child process
materializes ``raw_companies`` for that partition (land-only, a fixed rate) and is killed with
SIGKILL once the simulator has answered info for ``--kill-at`` of the companies; the same
partition is then materialized again in this process. The figures come from the simulator's
per-company info counters and from DuckDB:

- info calls over both runs per company (target <= 1.02);
- companies asked for twice;
- the raw rows the re-run published against the window's companies.

The exit code is 1 when the target is missed or the published rows differ from the window.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

import dagster as dg
import duckdb

from okki_assets.assets import build_assets
from okki_assets.partitions import build_sync_partitions, window_for_key
from okki_assets.resources import OkkiResource, TargetResource, WarehouseResource
from okki_assets.simulator.harness import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, running_simulators

SYNC_START = "2026-01-01"
TARGET = 1.02
QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}


def _raw(database: str, okki_url: str, key: str, rate: float) -> bool:
    """Materialize raw_companies for ``key`` into ``database``; True on success."""
    okki = OkkiResource(
        base_url=okki_url,
        client_id=DEMO_CLIENT_ID,
        client_secret=DEMO_CLIENT_SECRET,
        rate_limit=rate,
        concurrency=4,
    )
    result = dg.materialize(
        build_assets(build_sync_partitions(SYNC_START)),
        selection=["raw_companies"],
        partition_key=key,
        resources={
            "okki": okki,
            "target": TargetResource(url=""),
            "warehouse": WarehouseResource(database=database, lock_timeout=60),
        },
        run_config=QUIET,
        raise_on_error=False,
    )
    return result.success


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_resume",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--companies", type=int, default=3000, help="companies in the window")
    parser.add_argument("--rate", type=float, default=80.0, help="requests per second to OKKI")
    parser.add_argument(
        "--kill-at", type=float, default=0.5, help="share of info answers before the kill"
    )
    args = parser.parse_args(argv)
    with (
        tempfile.TemporaryDirectory() as work,
        running_simulators(companies=args.companies, days=1) as sims,
    ):
        database = str(Path(work) / "resume.duckdb")
        key = max(build_sync_partitions(SYNC_START).get_partition_keys())
        window = {str(c["company_id"]) for c in sims.okki.companies_in_window(*window_for_key(key))}
        child = multiprocessing.get_context("spawn").Process(
            target=_raw, args=(database, sims.okki_url, key, args.rate), daemon=True
        )
        started = time.monotonic()
        child.start()
        while len(sims.okki.stats.info_by_company) < len(window) * args.kill_at:
            if not child.is_alive() or time.monotonic() - started > 600:
                print("the pull ended before the kill", file=sys.stderr)
                return 1
            time.sleep(0.02)
        os.kill(child.pid or 0, signal.SIGKILL)
        child.join(10)
        before = sum(sims.okki.stats.info_by_company.values())
        resumed = _raw(database, sims.okki_url, key, args.rate)
        counts = sims.okki.stats.info_by_company
        with duckdb.connect(database, read_only=True) as conn:
            published = {
                cid
                for (cid,) in conn.execute(
                    "select company_id from raw_companies where partition_key = ?", [key]
                ).fetchall()
            }
    total = sum(counts.values())
    per_company = total / len(window)
    twice = sum(1 for n in counts.values() if n > 1)
    ok = resumed and published == window and per_company <= TARGET
    print(f"window                                {len(window)} companies")
    print(f"info calls before the kill            {before}")
    print(f"info calls, killed run + re-run       {total}")
    print(f"info calls per company                {per_company:.4f}   (target <= {TARGET})")
    print(f"companies asked for twice             {twice}")
    print(f"published rows = window's companies   {'yes' if published == window else 'no'}")
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
