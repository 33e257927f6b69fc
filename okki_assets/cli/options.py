"""Options shared by the commands that build a simulated world: demo, dev and simulate.

A count that makes no sense is refused by argparse in one line (exit code 2) instead of ending in
a traceback deep in the data generator; every command lists the fault profiles in one order
(mildest first) and shows its defaults in ``--help``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from okki_assets.simulator.harness import PROFILES

#: The fault profiles, mildest first: the order of ``--faults`` everywhere.
PROFILE_NAMES = tuple(PROFILES)
HELP_FORMAT = argparse.ArgumentDefaultsHelpFormatter


def at_least(minimum: int) -> Callable[[str], int]:
    """An argparse ``type``: a whole number of at least ``minimum``, else a one-line error."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a whole number of at least {minimum}"
            )
        return value

    return parse


def add_world_arguments(parser: argparse.ArgumentParser, *, faults: str) -> None:
    """``--companies``, ``--days``, ``--faults`` and ``--seed``: what the simulators serve."""
    parser.add_argument(
        "--companies", type=at_least(1), default=3000, help="companies in the data set"
    )
    parser.add_argument(
        "--days", type=at_least(1), default=14, help="days of history in the data set"
    )
    parser.add_argument(
        "--faults", choices=PROFILE_NAMES, default=faults, help="fault profile of the simulators"
    )
    parser.add_argument("--seed", type=int, default=7, help="seed of the simulated data")


def add_partitions_argument(parser: argparse.ArgumentParser, *, default: int, help: str) -> None:
    minimum = 1 if default else 0
    parser.add_argument("--partitions", type=at_least(minimum), default=default, help=help)


def check_partitions(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """More partitions than days would sync days the data set does not hold: refuse them."""
    if args.partitions > args.days:
        parser.error(
            f"--partitions {args.partitions} is more than --days {args.days}:"
            f" the data set holds only {args.days} days"
        )


def add_project_dir_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--project-dir", default=".", help="where data/ and .dagster_home/ are kept"
    )


def add_target_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--target",
        choices=("sim", "k3cloud"),
        default="sim",
        help="the target: the target simulator, or the Kingdee K/3 Cloud simulator"
        " (docs/kingdee.md)",
    )
