"""The project's console logger: a ``dg.Failure`` is its one line, once, with the run's failure;
any other error is printed as Dagster prints it (okki_assets/logs.py).

The runs are real Dagster runs in process; what is asserted is the text the logger wrote."""

from __future__ import annotations

import dagster as dg
import pytest

from okki_assets.logs import RUN_CONFIG, okki_console_logger

LINE = "ConfigError: OKKI_RATE_LIMIT must be a number or auto, got 'fast'"


@dg.op
def explained() -> None:
    try:
        raise ValueError("the project's own error")
    except ValueError:
        raise dg.Failure(description=LINE, allow_retries=False) from None


@dg.op
def unexpected() -> None:
    {}["a key that is not there"]  # noqa: B018  (a bug: KeyError)


@dg.job(logger_defs={"console": okki_console_logger})
def explained_job() -> None:
    explained()


@dg.job(logger_defs={"console": okki_console_logger})
def unexpected_job() -> None:
    unexpected()


def _run(job: dg.JobDefinition, capsys: pytest.CaptureFixture[str]) -> str:
    result = job.execute_in_process(run_config=RUN_CONFIG, raise_on_error=False)
    assert not result.success
    captured = capsys.readouterr()
    return captured.out + captured.err


def test_a_failure_is_its_description_once_with_the_runs_failure_without_stack(
    capsys: pytest.CaptureFixture[str],
) -> None:
    output = _run(explained_job, capsys)
    assert output.count(LINE) == 1, output
    assert "Stack Trace" not in output and "Traceback" not in output, output
    step = next(line for line in output.splitlines() if "STEP_FAILURE" in line)
    assert step.endswith("(The reason is printed with the run's failure.)"), step
    run = output[output.index("RUN_FAILURE") :]
    assert LINE in run, output


def test_an_unexpected_error_is_printed_as_dagster_prints_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """With its stack, at the step and at the run: nothing of a bug is hidden."""
    output = _run(unexpected_job, capsys)
    frame = 'in unexpected\n    {}["a key that is not there"]'
    assert output.count("KeyError: 'a key that is not there'") == 2, output
    assert output.count(frame) == 2, output
    assert output.index("STEP_FAILURE") < output.index(frame), output
    assert frame in output[output.index("RUN_FAILURE") :], output


def test_dagster_config_of_its_console_logger_still_applies(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The commands' run config (log level WARNING) keeps working under the same key."""
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    result = explained_job.execute_in_process(run_config=quiet, raise_on_error=False)
    assert not result.success
    output = capsys.readouterr().err
    assert "STEP_START" not in output, output
    assert output.count(LINE) == 1, output
