"""What the three assets share: the partition-by-partition check results and the clean
failure for the project's own errors (how frames and counts show is in metadata.py).

Checks are evaluated per partition, inline in the asset that produces the data. Each is
declared as an ``AssetCheckSpec`` on its asset (each asset module declares its own) and
evaluated from what the asset just wrote to DuckDB. The result is emitted as an
``AssetCheckEvaluation`` that names its partition and the partition's materialization, so that
a ranged backfill run (one run for many partitions) still records one current result per
partition in the UI, as a daily run does.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

# Not exported at the top level in Dagster 1.13; AssetCheckResult builds the same record.
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData as TargetMaterialization,
)

from okki_assets.errors import OkkiAssetsError

GROUP = "okki"
WARN = dg.AssetCheckSeverity.WARN


class ErrorsAsFailure:
    """Turn the project's own errors into one clear ``dg.Failure`` (no wall of traceback).

    A class rather than a generator: the Failure's stack then ends in the asset and here, with
    no frames of contextlib."""

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> None:
        if isinstance(exc, OkkiAssetsError):
            # The message names what to fix; the chain of causes would only bury it.
            text = " ".join(str(exc).split())  # one line, whatever a library put in it
            raise dg.Failure(
                description=f"{type(exc).__name__}: {text}", allow_retries=False
            ) from None


@contextmanager
def partitioned_checks_allowed() -> Iterator[None]:
    """Declare partitioned checks and the single-run backfill policy without their warnings.

    Both features are marked beta/preview in Dagster 1.13 and both are what the UI needs for
    per-partition check history under efficient backfills (see docs/operations.md, "Backfills"). The
    filter is scoped to the declarations, so no other warning is hidden.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        warnings.simplefilter("ignore", dg.PreviewWarning)
        yield


def specs(
    asset: str, partitions_def: dg.PartitionsDefinition, *entries: tuple[str, bool, str]
) -> list[dg.AssetCheckSpec]:
    """AssetCheckSpecs for ``asset``: entries are (name, blocking, description)."""
    with partitioned_checks_allowed():
        return [
            dg.AssetCheckSpec(
                name,
                asset=asset,
                blocking=blocking,
                description=description,
                partitions_def=partitions_def,
            )
            for name, blocking, description in entries
        ]


@dataclass
class CheckOutcome:
    partition: str
    name: str
    passed: bool
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR
    description: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)


def emit(
    context: dg.AssetExecutionContext, asset: str, outcomes: Sequence[CheckOutcome]
) -> Iterator[dg.AssetCheckEvaluation | dg.Output[None]]:
    """Yield one evaluation per (check, partition), then the checks' step outputs.

    Call it after the asset's ``MaterializeResult`` was yielded: each evaluation then points at
    its partition's new materialization, which is what makes the UI count it as the partition's
    current result.
    """
    blocking = {spec.name: spec.blocking for spec in context.assets_def.check_specs}
    key = dg.AssetKey(asset)
    targets = {p: _materialization(context, key, p) for p in {o.partition for o in outcomes}}
    for outcome in outcomes:
        yield dg.AssetCheckEvaluation(
            asset_key=key,
            check_name=outcome.name,
            passed=outcome.passed,
            partition=outcome.partition,
            target_materialization_data=targets[outcome.partition],
            severity=outcome.severity,
            description=_described(outcome),
            metadata=outcome.metadata,
            blocking=blocking.get(outcome.name, False),
        )
    for output_name in context.assets_def.check_specs_by_output_name:
        yield dg.Output(None, output_name=output_name)


def _described(outcome: CheckOutcome) -> str:
    """The description led by the partition: a ranged run's log holds many partitions' results."""
    return f"{outcome.partition}: {outcome.description}".rstrip(": ")


def _materialization(
    context: dg.AssetExecutionContext, key: dg.AssetKey, partition: str
) -> TargetMaterialization | None:
    """The partition's latest materialization, the one the check evaluated.

    Dagster shows a partition's check result (Passed/Failed in the check's Partitions view) only
    when the evaluation names the partition's latest materialization; without it the partition
    reads "Missing" and the result is visible under Execution history alone. ``AssetCheckResult``
    fills this in for a run of one partition, but cannot name a partition of a ranged run, so the
    assets emit evaluations and fill it in here, the same way.
    """
    found = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition]), limit=1
    ).records
    if not found:
        return None
    record = found[0]
    return TargetMaterialization(
        storage_id=record.storage_id,
        run_id=record.event_log_entry.run_id,
        timestamp=record.timestamp,
    )
