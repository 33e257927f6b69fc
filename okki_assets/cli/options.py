"""Options shared by the commands that build a simulated world: demo, dev and simulate.

A count that makes no sense is refused by argparse in one line (exit code 2) instead of ending in
a traceback deep in the data generator; every command lists the fault profiles in one order
(mildest first) and shows its defaults in ``--help``.
"""

from __future__ import annotations

import argparse
import socket
from collections.abc import Callable, Sequence
from pathlib import Path

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


def port(*, free_ok: bool = False) -> Callable[[str], int]:
    """An argparse ``type``: a TCP port, 1 to 65535 (0 too, meaning "a free one", if
    ``free_ok``), else a one-line error."""
    lowest = 0 if free_ok else 1

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = -1
        if not lowest <= value <= 65535:
            also = " (0: a free one)" if free_ok else ""
            raise argparse.ArgumentTypeError(f"{text!r} is not a port: {lowest} to 65535{also}")
        return value

    return parse


def existing_folder(text: str) -> str:
    """An argparse ``type``: a folder that exists (a typo is not created silently)."""
    path = Path(text)
    if not path.is_dir():
        what = "is not a folder" if path.exists() else "does not exist"
        raise argparse.ArgumentTypeError(f"{text!r} {what}: create it first, or pick another")
    return text


def port_taken(host: str, number: int) -> str | None:
    """Why ``host``:``number`` cannot be served (in use, or the host is not this machine's),
    or None when it can. Binds the way the servers do (SO_REUSEADDR), then lets go."""
    if number == 0:
        return None
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, number))
            sock.listen(1)
        except OSError as e:
            return e.strerror or str(e)
    return None


def check_ports_free(
    parser: argparse.ArgumentParser, ports: Sequence[tuple[str, str, int]]
) -> None:
    """Refuse, in one line and before anything starts, a port another program holds.

    ``ports`` are (option, host, port). Exit code 2, as for argparse's own errors."""
    for option, host, number in ports:
        reason = port_taken(host, number)
        if reason is not None:
            parser.exit(
                2,
                f"{parser.prog}: error: {option} {number}: cannot serve on {host}:{number}"
                f" ({reason}); stop what holds it or choose another port\n",
            )


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
        "--project-dir",
        type=existing_folder,
        default=".",
        help="where data/ and .dagster_home/ are kept (an existing folder)",
    )


def add_target_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--target",
        choices=("sim", "k3cloud"),
        default="sim",
        help="the target: the target simulator, or the Kingdee K/3 Cloud simulator"
        " (docs/kingdee.md)",
    )
