"""Automation and the operator's repairs: alerts, schedules, replay and tombstones.

- The run-failure sensor posts one short plain-text robot message to a webhook (a small
  receiver on 127.0.0.1), naming job, partition, step and error, never a secret; a refusing
  robot or an unreachable one fails the tick with a message naming the host only; no webhook,
  no sensor.
- The schedules request the right partition keys, China time: intraday the day in progress,
  daily the completed day before.
- ``okki-assets replay --partition D`` (run_replay) re-sends exactly the partition's failed and
  rejected records, and works without DAGSTER_HOME.
- Companies on OKKI's ``removed=1`` list reach the target as tombstones, are recorded in the
  ledger, and are not sent again on a re-run.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from okki_assets.automation import ALERT_SENSOR, post_alert, robot_payload
from okki_assets.cli.replay import run_replay
from okki_assets.definitions import build_defs, defs_from_env
from okki_assets.errors import OkkiAssetsError
from okki_assets.okki_time import CHINA_TZ
from okki_assets.partitions import window_for_key
from okki_assets.resources import OkkiResource, TargetResource, WarehouseResource
from okki_assets.simulator.harness import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_TARGET_TOKEN
from okki_assets.simulator.http import ServerThread, SimRequest, SimResponse
from okki_assets.simulator.target import TargetSimConfig
from okki_assets_tests.conftest import SYNC_START, Pipeline, day_keys

ROBOT_TOKEN = "robot-access-token-5f2e"
WRONG_SECRET = "not-the-secret-81c3"


class Robot:
    """A robot webhook on loopback: keeps every request, answers with ``reply``."""

    def __init__(self, reply: dict[str, Any] | None = None, status: int = 200) -> None:
        self.requests: list[SimRequest] = []
        self.reply = reply if reply is not None else {"errcode": 0, "errmsg": "ok"}
        self.status = status

    def handle(self, request: SimRequest) -> SimResponse:
        self.requests.append(request)
        return SimResponse.json(self.reply, status=self.status)


@pytest.fixture
def robot() -> Iterator[tuple[Robot, str]]:
    receiver = Robot()
    with ServerThread(receiver) as server:
        yield receiver, f"{server.url}/robot/send?access_token={ROBOT_TOKEN}"


def _failed_run(pipeline: Pipeline, webhook: str, key: str) -> tuple[dg.Definitions, Any]:
    """Run the real okki_sync job with a wrong OKKI secret: raw_companies fails on auth."""
    okki = OkkiResource(
        base_url=pipeline.sims.okki_url, client_id=DEMO_CLIENT_ID, client_secret=WRONG_SECRET
    )
    defs = build_defs(
        okki=okki,
        target=pipeline.target,
        warehouse=pipeline.warehouse,
        sync_start=SYNC_START,
        alert_webhook=webhook,
    )
    result = defs.resolve_job_def("okki_sync").execute_in_process(
        partition_key=key, instance=pipeline.instance, raise_on_error=False
    )
    assert not result.success
    return defs, result


def _evaluate_alert(defs: dg.Definitions, pipeline: Pipeline, result: Any) -> None:
    sensor = defs.resolve_sensor_def(ALERT_SENSOR)
    context = dg.build_run_status_sensor_context(
        sensor_name=ALERT_SENSOR,
        dagster_event=result.get_run_failure_event(),
        dagster_instance=pipeline.instance,
        dagster_run=result.dagster_run,
    ).for_run_failure()
    sensor(context)


# --- alerts ----------------------------------------------------------------------------------


def test_a_failed_run_posts_one_short_text_message(
    pipeline: Pipeline, robot: tuple[Robot, str]
) -> None:
    receiver, webhook = robot
    key = day_keys(2)[0]
    defs, result = _failed_run(pipeline, webhook, key)
    _evaluate_alert(defs, pipeline, result)

    assert len(receiver.requests) == 1
    request = receiver.requests[0]
    assert request.method == "POST" and request.path == "/robot/send"
    assert request.query == {"access_token": ROBOT_TOKEN}
    body = request.json()
    # A loopback host is no known platform: both DingTalk/WeCom and Feishu keys are present.
    assert body["msgtype"] == "text" and body["msg_type"] == "text"
    text = body["text"]["content"]
    assert body["content"]["text"] == text
    lines = text.splitlines()
    assert lines[0] == "[okki-assets] sync run failed"
    assert "job: okki_sync" in lines
    assert f"partition: {key}" in lines
    assert "step: raw_companies" in lines
    assert f"run: {result.dagster_run.run_id}" in lines
    error = next(line for line in lines if line.startswith("error: "))
    assert "OkkiAuthError" in error and len(error) <= 320
    assert len(text) < 600
    for secret in (ROBOT_TOKEN, WRONG_SECRET, DEMO_TARGET_TOKEN):
        assert secret not in text


@pytest.mark.parametrize(
    ("reply", "status", "expected"),
    [
        # DingTalk refuses a message without the robot's keyword with HTTP 200 and errcode.
        ({"errcode": 310000, "errmsg": "keywords not in content"}, 200, "errcode=310000"),
        # Feishu says no with a non-zero code.
        (
            {"code": 19021, "msg": "sign match fail or timestamp is not within one hour"},
            200,
            "code=19021",
        ),
        # A relay or proxy in front of the robot answers with an HTTP error.
        ({"message": "bad gateway"}, 502, "HTTP 502"),
    ],
)
def test_a_refused_alert_fails_the_tick_naming_only_the_host(
    pipeline: Pipeline, reply: dict[str, Any], status: int, expected: str
) -> None:
    receiver = Robot(reply, status)
    with ServerThread(receiver) as server:
        webhook = f"{server.url}/robot/send?access_token={ROBOT_TOKEN}"
        defs, result = _failed_run(pipeline, webhook, day_keys(2)[0])
        with pytest.raises(OkkiAssetsError) as caught:
            _evaluate_alert(defs, pipeline, result)
    message = str(caught.value)
    assert expected in message and "127.0.0.1" in message
    assert ROBOT_TOKEN not in message
    assert len(receiver.requests) == 1


def test_an_unreachable_webhook_names_the_host_not_the_url() -> None:
    with ServerThread(Robot()) as server:
        webhook = f"{server.url}/robot/send?access_token={ROBOT_TOKEN}"
    # The server is stopped: nothing listens on that port any more.
    with pytest.raises(OkkiAssetsError) as caught:
        post_alert(webhook, "text")
    assert "127.0.0.1" in str(caught.value) and ROBOT_TOKEN not in str(caught.value)


@pytest.mark.parametrize(
    ("webhook", "keys"),
    [
        # DingTalk custom robot.
        ("https://oapi.dingtalk.com/robot/send?access_token=x", {"msgtype", "text"}),
        # WeCom group robot.
        ("https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=x", {"msgtype", "text"}),
        # Feishu and Lark custom bots.
        ("https://open.feishu.cn/open-apis/bot/v2/hook/x", {"msg_type", "content"}),
        ("https://open.larksuite.com/open-apis/bot/v2/hook/x", {"msg_type", "content"}),
    ],
)
def test_known_robots_get_their_own_plain_text_body(webhook: str, keys: set[str]) -> None:
    body = robot_payload("hello", webhook)
    assert set(body) == keys
    flat = json.dumps(body)
    assert '"hello"' in flat


def test_without_a_webhook_there_is_no_alert_sensor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OKKI_ALERT_WEBHOOK", raising=False)
    assert [s.name for s in defs_from_env().sensors or []] == []
    monkeypatch.setenv("OKKI_ALERT_WEBHOOK", "https://oapi.dingtalk.com/robot/send?access_token=x")
    sensors = list(defs_from_env().sensors or [])
    assert [s.name for s in sensors] == [ALERT_SENSOR]
    assert sensors[0].default_status == dg.DefaultSensorStatus.RUNNING


# --- schedules -------------------------------------------------------------------------------


def _offline_defs(tmp_path: Path) -> dg.Definitions:
    """The definitions with resources that are never opened (schedules only).

    Tests using them take the ``instance`` fixture: resolving definitions after another test's
    instance was closed fails in Dagster 1.13 unless an instance is live."""
    return build_defs(
        okki=OkkiResource(client_id="id", client_secret="secret"),
        target=TargetResource(),
        warehouse=WarehouseResource(database=str(tmp_path / "unused.duckdb")),
    )


def _tick(
    defs: dg.Definitions, name: str, when: datetime, instance: dg.DagsterInstance
) -> dg.RunRequest:
    schedule = defs.resolve_schedule_def(name)
    context = dg.build_schedule_context(
        instance=instance, scheduled_execution_time=when, repository_def=defs.get_repository_def()
    )
    data = schedule.evaluate_tick(context)
    assert data.run_requests is not None and len(data.run_requests) == 1
    return data.run_requests[0]


@pytest.mark.parametrize(
    ("name", "when", "expected"),
    [
        # Intraday, mid-morning in China: today's window.
        ("okki_intraday_sync", datetime(2026, 3, 10, 10, 15, tzinfo=CHINA_TZ), "2026-03-10"),
        # Intraday at 16:15 UTC, which is 00:15 the next day in China: the new China day.
        ("okki_intraday_sync", datetime(2026, 3, 10, 16, 15, tzinfo=UTC), "2026-03-11"),
        # Daily at 00:30 China time: yesterday's completed window.
        ("okki_daily_sync", datetime(2026, 3, 11, 0, 30, tzinfo=CHINA_TZ), "2026-03-10"),
        # Daily given in UTC (16:30 UTC is 00:30 the next China day): still the day before.
        ("okki_daily_sync", datetime(2026, 3, 10, 16, 30, tzinfo=UTC), "2026-03-10"),
    ],
)
def test_schedules_request_the_right_window(
    tmp_path: Path, instance: dg.DagsterInstance, name: str, when: datetime, expected: str
) -> None:
    defs = _offline_defs(tmp_path)
    request = _tick(defs, name, when, instance)
    assert request.partition_key == expected
    assert request.tags["dagster/partition"] == expected
    job = defs.resolve_job_def("okki_sync")
    assert job.partitions_def is not None and job.partitions_def.has_partition_key(expected)


def test_schedules_are_off_by_default_and_run_in_china_time(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    defs = _offline_defs(tmp_path)
    found = {}
    for name in ("okki_intraday_sync", "okki_daily_sync"):
        schedule = defs.resolve_schedule_def(name)
        found[name] = (
            schedule.cron_schedule,
            schedule.execution_timezone,
            schedule.default_status,
        )
    stopped = dg.DefaultScheduleStatus.STOPPED
    assert found == {
        "okki_intraday_sync": ("*/15 * * * *", "Asia/Shanghai", stopped),
        "okki_daily_sync": ("30 0 * * *", "Asia/Shanghai", stopped),
    }


# --- replay ----------------------------------------------------------------------------------


def _ledger(pipeline: Pipeline, key: str) -> dict[str, str]:
    rows = pipeline.query(
        "select company_id, status from load_ledger where partition_key = ?", [key]
    )
    return {str(cid): status for cid, status in rows}


def _cleaned_ids(pipeline: Pipeline, key: str) -> list[str]:
    rows = pipeline.query(
        "select company_id from cleaned_companies where partition_key = ? order by company_id",
        [key],
    )
    return [str(r[0]) for r in rows]


def _replay_env(monkeypatch: pytest.MonkeyPatch, pipeline: Pipeline, tmp_path: Path) -> None:
    monkeypatch.setenv("OKKI_BASE_URL", pipeline.sims.okki_url)
    monkeypatch.setenv("OKKI_CLIENT_ID", DEMO_CLIENT_ID)
    monkeypatch.setenv("OKKI_CLIENT_SECRET", DEMO_CLIENT_SECRET)
    monkeypatch.setenv("TARGET_URL", pipeline.sims.target_url)
    monkeypatch.setenv("TARGET_TOKEN", DEMO_TARGET_TOKEN)
    monkeypatch.setenv("OKKI_ASSETS_DUCKDB", str(pipeline.database))
    monkeypatch.setenv("OKKI_SYNC_START", SYNC_START)
    for name in ("DAGSTER_HOME", "OKKI_MAPPING_FILE", "TARGET_BATCH_SIZE", "OKKI_ALERT_WEBHOOK"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def test_replay_resends_exactly_the_failed_and_rejected_records(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    rejected_day, failed_day = day_keys(3)[:2]
    target = pipeline.sims.target

    # Day 1: the target rejects three companies; the rest is created.
    start, end = window_for_key(rejected_day)
    ids = sorted(str(c["company_id"]) for c in pipeline.sims.okki.companies_in_window(start, end))
    refused = set(ids[::7][:3])
    target.config.reject_rule = lambda r: "blocked by the test" if r["id"] in refused else None
    assert not pipeline.materialize(rejected_day, raise_on_error=False).success  # blocking check
    ledger = _ledger(pipeline, rejected_day)
    assert {cid for cid, s in ledger.items() if s == "rejected"} == refused
    assert {s for cid, s in ledger.items() if cid not in refused} == {"created"}
    target.config.reject_rule = None

    # Day 2: every batch is refused as too large (413 even for one record): all failed.
    target.config.max_body_bytes = 50
    assert not pipeline.materialize(failed_day, raise_on_error=False).success
    failed = _cleaned_ids(pipeline, failed_day)
    assert failed and set(_ledger(pipeline, failed_day).values()) == {"failed"}
    target.config.max_body_bytes = TargetSimConfig().max_body_bytes

    _replay_env(monkeypatch, pipeline, tmp_path)
    history_before = len(target.history)
    out = io.StringIO()
    assert run_replay(rejected_day, out=out) == 0
    assert run_replay(failed_day, out=out) == 0

    resent = target.history[history_before:]
    assert sorted(resent) == sorted((cid, "created") for cid in refused | set(failed))
    assert set(_ledger(pipeline, rejected_day).values()) == {"created"}
    assert set(_ledger(pipeline, failed_day).values()) == {"created"}
    text = out.getvalue()
    assert f"replay {rejected_day}: sent {len(refused)}," in text
    assert f"replay {failed_day}: sent {len(failed)}," in text
    assert "DAGSTER_HOME is unset" in text

    # A second replay finds nothing left to send.
    batches = target.stats()["batches_received"]
    assert run_replay(failed_day, out=io.StringIO()) == 0
    assert target.stats()["batches_received"] == batches


def test_replay_of_an_unknown_partition_says_so(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _replay_env(monkeypatch, pipeline, tmp_path)
    out = io.StringIO()
    assert run_replay("2019-01-01", out=out) == 2
    assert "2019-01-01 is not a partition" in out.getvalue()
    assert pipeline.sims.target.stats()["batches_received"] == 0


# --- tombstones ------------------------------------------------------------------------------


def test_deleted_companies_reach_the_target_as_tombstones(pipeline: Pipeline) -> None:
    older, newer = day_keys(3)[:2]
    assert pipeline.materialize(older).success
    start, end = window_for_key(older)
    victim = str(pipeline.sims.okki.companies_in_window(start, end)[0]["company_id"])
    assert victim in pipeline.sims.target.records

    new_start, _ = window_for_key(newer)
    pipeline.sims.okki.delete_company(victim, delete_time=new_start + timedelta(hours=2))
    result = pipeline.materialize(newer)
    assert result.success

    target = pipeline.sims.target
    assert victim not in target.records
    assert [status for rid, status in target.history if rid == victim] == ["created", "deleted"]
    deleted = pipeline.query(
        "select company_id, update_time from deleted_companies where partition_key = ?", [newer]
    )
    assert deleted == [(victim, (new_start + timedelta(hours=2)).strftime("%Y-%m-%d %H:%M:%S"))]
    ledger = pipeline.query(
        "select partition_key, status from load_ledger where company_id = ?", [int(victim)]
    )
    assert ledger == [(newer, "deleted")]
    loaded = [
        e.event_specific_data.materialization  # type: ignore[union-attr]
        for e in result.get_asset_materialization_events()
        if e.asset_key == dg.AssetKey("loaded_companies")
    ]
    assert loaded[0].metadata["tombstones"].value == 1
    assert loaded[0].metadata["status_deleted"].value == 1

    # Re-running the window sends nothing: the tombstone is acknowledged in the ledger.
    batches = target.stats()["batches_received"]
    assert pipeline.materialize(newer).success
    assert target.stats()["batches_received"] == batches
