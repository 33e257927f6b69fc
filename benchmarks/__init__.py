"""Measurement harnesses, run from the repository root (they are not part of the package).

``python -m benchmarks.bench`` measures throughput at OKKI's quota, CPU per record and peak
memory; ``python -m benchmarks.soak`` syncs days against faulty simulators and reconciles the
target with OKKI; ``python -m benchmarks.reconcile_cost`` counts the requests of okki_reconcile
over an account of N companies. Each module has ``add_arguments(parser)``, ``run(args) -> int``
and ``main``.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Callable, Sequence


def command_main(
    module: str,
    description: str,
    add_arguments: Callable[[argparse.ArgumentParser], None],
    run: Callable[[argparse.Namespace], int],
    argv: Sequence[str] | None = None,
) -> int:
    """Parse ``argv`` for ``python -m benchmarks.<module>`` and run it (log level as the CLI's)."""
    logging.basicConfig(level=os.environ.get("OKKI_ASSETS_LOG", "WARNING"), format="%(message)s")
    parser = argparse.ArgumentParser(prog=f"python -m benchmarks.{module}", description=description)
    add_arguments(parser)
    return run(parser.parse_args(argv))
