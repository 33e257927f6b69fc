"""The ``okki-assets`` command: demo, simulate, dev, replay.

This is the only module besides the simulators that prints, and (with the simulators) the only
one that wires the simulators to the pipeline. The benchmark and the soak are not part of the
installed command: they run from the repository (``python -m benchmarks.bench`` / ``.soak``).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from okki_assets.cli.demo import DemoSettings, run_demo, run_simulators
from okki_assets.cli.demo_sql import TARGET_KINDS
from okki_assets.cli.options import (
    HELP_FORMAT,
    add_partitions_argument,
    add_project_dir_argument,
    add_world_arguments,
    check_partitions,
    check_ports_free,
    port,
)
from okki_assets.cli.replay import run_replay
from okki_assets.simulator.harness import fault_profile

# Sub-commands living in their own module: each has add_arguments(parser), run(args) -> int and
# check_arguments(parser, args) for rules across options.
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
        target=args.target,
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


def _simulate_ports_free(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    check_ports_free(
        parser,
        [
            ("--okki-port", "127.0.0.1", args.okki_port),
            ("--target-port", "127.0.0.1", args.target_port),
        ],
    )


def _no_rules(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Commands whose options have no rule across them."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="okki-assets",
        description="Sync OKKI CRM companies through Dagster into DuckDB and a target platform.",
    )
    # Not required=True: argparse would then answer "okki-assets --bogus" with "the following
    # arguments are required: command" instead of naming --bogus (see main).
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser(
        "demo",
        help="start both simulators, sync the last 7 days through Dagster, print what happened",
        formatter_class=HELP_FORMAT,
    )
    add_world_arguments(demo, faults="moderate")
    add_partitions_argument(demo, default=7, help="most recent partitions to sync")
    add_project_dir_argument(demo)
    demo.add_argument(
        "--target",
        choices=(*TARGET_KINDS, "k3cloud"),
        default="sim",
        help="where the demo loads: the target simulator, an SQLite file (data/"
        "demo_target.sqlite), a throwaway PostgreSQL server, or the Kingdee K/3 Cloud simulator"
        " (docs/kingdee.md); SQL targets end with what the table holds",
    )
    demo.set_defaults(func=_demo, check=check_partitions, parser=demo)

    sim = sub.add_parser(
        "simulate",
        help="serve the OKKI and target simulators until Ctrl-C",
        formatter_class=HELP_FORMAT,
    )
    add_world_arguments(sim, faults="none")
    sim.add_argument("--okki-port", type=port(), default=8801, help="port of the OKKI simulator")
    sim.add_argument(
        "--target-port", type=port(), default=8802, help="port of the target simulator"
    )
    sim.set_defaults(func=_simulate, check=_simulate_ports_free, parser=sim)

    replay = sub.add_parser(
        "replay", help="re-send a partition's failed and rejected records (uses the environment)"
    )
    replay.add_argument("--partition", required=True, help="partition key, YYYY-MM-DD")
    replay.set_defaults(func=_replay, check=_no_rules, parser=replay)

    for name, help_text in _PLUGGED:
        module = importlib.import_module(f"okki_assets.cli.{name}")
        command = sub.add_parser(name, help=help_text, formatter_class=HELP_FORMAT)
        module.add_arguments(command)
        command.set_defaults(func=module.run, check=module.check_arguments, parser=command)
    return parser


def _commands(parser: argparse.ArgumentParser) -> list[str]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return list(sub.choices)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=os.environ.get("OKKI_ASSETS_LOG", "WARNING"), format="%(message)s")
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.command is None:
        commands = ", ".join(_commands(parser))
        parser.error(f"name a command: {commands} (okki-assets COMMAND --help for its options)")
    args.check(args.parser, args)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
