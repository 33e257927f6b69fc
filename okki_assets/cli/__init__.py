"""The ``okki-assets`` command: demo, simulate, dev, replay.

This is the only module besides the simulators that prints, and (with the simulators) the only
one that wires the simulators to the pipeline.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from okki_assets.cli.demo import DemoSettings, fault_profile, run_demo, run_simulators
from okki_assets.cli.replay import run_replay

PROFILES = ("none", "moderate", "heavy")

# Sub-commands living in their own module: each has add_arguments(parser) and run(args) -> int.
_PLUGGED: list[tuple[str, str]] = [
    ("dev", "start both simulators and dagster dev pointed at them; Ctrl-C stops all"),
]


def _demo(args: argparse.Namespace) -> int:
    settings = DemoSettings(
        companies=args.companies,
        days=args.days,
        partitions=args.partitions,
        faults=args.faults,
        project_dir=Path(args.project_dir).resolve(),
        seed=args.seed,
    )
    return run_demo(settings, out=sys.stdout)


def _simulate(args: argparse.Namespace) -> int:
    return run_simulators(
        companies=args.companies,
        days=args.days,
        okki_port=args.okki_port,
        target_port=args.target_port,
        profile=fault_profile(args.faults),
        seed=args.seed,
        out=sys.stdout,
    )


def _replay(args: argparse.Namespace) -> int:
    return run_replay(args.partition, out=sys.stdout, err=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="okki-assets",
        description="Sync OKKI CRM companies through Dagster into DuckDB and a target platform.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser(
        "demo",
        help="start both simulators, sync the last 7 days through Dagster, print what happened",
    )
    demo.add_argument("--companies", type=int, default=3000, help="companies in the data set")
    demo.add_argument("--days", type=int, default=14, help="days of history in the data set")
    demo.add_argument("--partitions", type=int, default=7, help="recent partitions to sync")
    demo.add_argument("--faults", choices=PROFILES, default="moderate", help="fault profile")
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument(
        "--project-dir", default=".", help="where data/ and .dagster_home/ are kept (default: .)"
    )
    demo.set_defaults(func=_demo)

    sim = sub.add_parser("simulate", help="serve the OKKI and target simulators until Ctrl-C")
    sim.add_argument("--companies", type=int, default=3000)
    sim.add_argument("--days", type=int, default=14)
    sim.add_argument("--okki-port", type=int, default=8801)
    sim.add_argument("--target-port", type=int, default=8802)
    sim.add_argument("--faults", choices=PROFILES, default="none")
    sim.add_argument("--seed", type=int, default=7)
    sim.set_defaults(func=_simulate)

    replay = sub.add_parser(
        "replay", help="re-send a partition's failed and rejected records (uses the environment)"
    )
    replay.add_argument("--partition", required=True, help="partition key, YYYY-MM-DD")
    replay.set_defaults(func=_replay)

    for name, help_text in _PLUGGED:
        module = importlib.import_module(f"okki_assets.cli.{name}")
        command = sub.add_parser(name, help=help_text)
        module.add_arguments(command)
        command.set_defaults(func=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=os.environ.get("OKKI_ASSETS_LOG", "WARNING"), format="%(message)s")
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
