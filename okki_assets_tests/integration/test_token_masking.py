"""OKKI's access token never reaches a run failure, the event log or the alert, even when an
OKKI error body repeats it (``access_token=...``, ``Authorization: Bearer ...``).

Through Dagster against both simulators on loopback: the OKKI simulator echoes the request's
token in every error message (``echo_token_in_errors``) while the window's list is refused with
a business code, or throttled until the retries give up. The failed run's records, every event
of its event log and the alert text built from it by the failure sensor's own function are
searched for every token OKKI issued; the masked echo is there, so the search covered it.
"""

from __future__ import annotations

from typing import Any

import dagster as dg
import pytest
from dagster._serdes import serialize_value

from okki_assets.automation import alert_text, failure_summary, run_partitions
from okki_assets.resources import OkkiResource
from okki_assets_tests.conftest import Pipeline, day_keys, make_pipeline


def _alert(result: dg.ExecuteInProcessResult, instance: dg.DagsterInstance) -> str:
    context = dg.build_run_status_sensor_context(
        sensor_name="okki_failure_alert",
        dagster_event=result.get_run_failure_event(),
        dagster_instance=instance,
        dagster_run=result.dagster_run,
    ).for_run_failure()
    step, message = failure_summary(context)
    run = result.dagster_run
    return alert_text(run.run_id, run.job_name, run_partitions(run.tags), message, step)


@pytest.mark.parametrize(
    "okki_overrides",
    [
        {"list_error_code": 400},  # a permanent refusal: OkkiBusinessError with OKKI's words
        # every call throttled in the body: OkkiRetriesExhausted naming the last answer
        {"throttle_calls": tuple(range(1, 1000)), "throttle_shapes": ("body429",)},
    ],
)
def test_a_token_echoed_in_an_error_body_never_reaches_the_failure_events_or_alert(
    tmp_path: Any, instance: dg.DagsterInstance, okki_overrides: dict[str, Any]
) -> None:
    overrides = {"echo_token_in_errors": True, **okki_overrides}
    pipeline: Pipeline
    for pipeline in make_pipeline(
        tmp_path, instance, companies=40, days=1, okki_overrides=overrides
    ):
        okki = OkkiResource(**{**pipeline.okki.model_dump(), "retry_base_delay": 0.01})
        result = pipeline.materialize(day_keys(1)[0], okki=okki, raise_on_error=False)
        assert not result.success

        failure = result.get_run_failure_event()
        steps = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
        places = {
            "run failure": f"{failure.message} {serialize_value(failure)}",
            "step failure": " ".join(serialize_value(e) for e in steps),
            "event log": "\n".join(
                serialize_value(entry) for entry in instance.all_logs(result.run_id)
            ),
            "alert": _alert(result, instance),
        }
        tokens = pipeline.sims.okki.issued_tokens
        assert tokens
        for place, text in places.items():
            for token in tokens:
                assert token not in text, f"an access token appears in the {place}"
        # OKKI's echo reached the failure, masked.
        assert "access_token=***" in places["step failure"]
        assert "access_token=***" in places["alert"]
