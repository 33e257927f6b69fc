"""The console logger of the project's jobs: a failure the project explains is one line, once.

Dagster's default console logger prints a step's error with its stack, then the run's failure
with a copy of that error and stack. The project's own errors end as one ``dg.Failure`` whose
description names what to fix (``ErrorsAsFailure``). For those this logger prints the
description alone, once, with the run's failure: that line comes from the process the user
started, at the end. A step's own lines come from the step's process through Dagster's capture
of its output (``tail -F`` of a file, stopped when the step ends), which may drop the step's
last lines on a busy machine; so the failed step's line says only that it failed. When several
steps fail, the run's failure names them all and explains the first; each step's error is in
the run's event log (the UI). Any other error (a bug, a library's exception, Dagster's own) is
printed as Dagster prints it, with its stack, at the step and at the run.

It replaces Dagster's logger under the same key, ``console`` (same config: ``log_level`` and
``name``). Dagster instantiates a logger only when the run config names it:
``okki_assets/launch.yaml`` does (``dg launch -c okki_assets/launch.yaml ...``) and
``okki_reconcile`` carries ``RUN_CONFIG``; a run without it (``dg launch --assets`` alone,
the UI's *Materialize*) keeps Dagster's default console logger. The run's event
log, which the UI shows, is Dagster's either way.
"""

from __future__ import annotations

import logging
from typing import Any

import dagster as dg

#: Run config naming the project's console logger, at the level Dagster's default console
#: logger has when no run config names one (every event); ``okki_reconcile`` carries it.
RUN_CONFIG: dict[str, Any] = {"loggers": {"console": {"config": {"log_level": "DEBUG"}}}}


def _explained_failure(event: dg.DagsterEvent) -> str | None:
    """The description of a step failure raised as ``dg.Failure``, else None."""
    if not event.is_step_failure:
        return None
    data = event.step_failure_data
    failure = data.user_failure_data
    if data.error is None or data.error.cls_name != "Failure" or failure is None:
        return None
    return failure.description or data.error.message.strip()


def _error_text(event: dg.DagsterEvent) -> str:
    """What Dagster appended to the event's message: its error, as displayed."""
    data = event.event_specific_data
    error = getattr(data, "error", None)
    if not error:
        return ""
    return "\n\n" + str(getattr(data, "error_display_string", error.to_string()))


def _shorten(record: logging.LogRecord) -> bool:
    """Rewrite a failure record's message in place (a filter that drops nothing)."""
    meta = getattr(record, "dagster_meta", None)
    event = meta.get("dagster_event") if isinstance(meta, dict) else None
    if not isinstance(event, dg.DagsterEvent):
        return True
    message = str(record.msg)
    error = _error_text(event)
    if not error or not message.endswith(error):
        return True
    head = message[: -len(error)]
    if _explained_failure(event) is not None:
        record.msg = f"{head} (The reason is printed with the run's failure.)"
    elif event.event_type == dg.DagsterEventType.RUN_FAILURE:
        first = event.job_failure_data.first_step_failure_event
        line = _explained_failure(first) if first is not None else None
        if line is not None:
            record.msg = f"{head}\n\n{line}\n"
    return True


def _console(init_context: dg.InitLoggerContext) -> logging.Logger:
    logger = dg.colored_console_logger.logger_fn(init_context)
    logger.addFilter(_shorten)
    return logger


okki_console_logger = dg.LoggerDefinition(
    _console,
    config_schema=dg.colored_console_logger.config_schema,
    description="Dagster's colored console logger; a dg.Failure's description without stack.",
)
