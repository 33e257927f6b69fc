"""The sync job, its two schedules and the run-failure alert.

- ``okki_intraday_sync`` (every 15 minutes, China time) syncs today's window, the one in progress.
- ``okki_daily_sync`` (00:30 China time) syncs yesterday's window once it is complete, catching
  whatever changed after the last intraday run.
Both are off by default: turn them on in the UI (Automation) once the credentials are set.

The alert sensor posts a short plain-text robot message (the ``msgtype: text`` body DingTalk and
WeCom accept, plus Feishu's ``msg_type: text`` keys) for every failed run; it exists only when a
webhook is configured.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import dagster as dg
import httpx

from okki_assets.partitions import CHINA_TZ, TIMEZONE

SYNC_JOB = "okki_sync"
INTRADAY_CRON = "*/15 * * * *"
DAILY_CRON = "30 0 * * *"
ALERT_TIMEOUT = 10.0


@dataclass
class Automation:
    jobs: list[dg.UnresolvedAssetJobDefinition]
    schedules: list[dg.ScheduleDefinition]
    sensors: list[dg.SensorDefinition]


def build_automation(
    assets: Sequence[dg.AssetsDefinition], *, alert_webhook: str = ""
) -> Automation:
    job = dg.define_asset_job(
        SYNC_JOB,
        selection=dg.AssetSelection.assets(*assets),
        description="Pull, clean and load one sync window (partition) of OKKI companies.",
    )

    @dg.schedule(
        job=job,
        cron_schedule=INTRADAY_CRON,
        execution_timezone=TIMEZONE,
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description="Every 15 minutes: sync today's window (China time).",
    )
    def okki_intraday_sync(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        when = _china(context.scheduled_execution_time)
        key = when.date().isoformat()
        return dg.RunRequest(run_key=f"intraday-{when:%Y%m%dT%H%M}", partition_key=key)

    @dg.schedule(
        job=job,
        cron_schedule=DAILY_CRON,
        execution_timezone=TIMEZONE,
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description="00:30 China time: sync yesterday's completed window.",
    )
    def okki_daily_sync(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        when = _china(context.scheduled_execution_time)
        key = (when.date() - timedelta(days=1)).isoformat()
        return dg.RunRequest(run_key=f"daily-{key}", partition_key=key)

    sensors: list[dg.SensorDefinition] = []
    if alert_webhook:
        sensors.append(_alert_sensor(alert_webhook))
    return Automation([job], [okki_intraday_sync, okki_daily_sync], sensors)


def _china(moment: datetime | None) -> datetime:
    return (moment or datetime.now(tz=CHINA_TZ)).astimezone(CHINA_TZ)


def alert_text(run_id: str, job_name: str, partition: str | None, message: str) -> str:
    """The alert's text: short, one line per fact, no secrets (Dagster's message only)."""
    lines = [
        "[okki-assets] sync run failed",
        f"job: {job_name}",
        f"partition: {partition or '-'}",
        f"run: {run_id}",
        f"error: {message[:300]}",
    ]
    return "\n".join(lines)


def robot_payload(text: str) -> dict[str, object]:
    """One body that DingTalk, WeCom (msgtype/text) and Feishu (msg_type/content) accept."""
    return {
        "msgtype": "text",
        "text": {"content": text},
        "msg_type": "text",
        "content": {"text": text},
    }


def _alert_sensor(webhook: str) -> dg.SensorDefinition:
    @dg.run_failure_sensor(
        name="okki_failure_alert",
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Posts a plain-text robot message for every failed run.",
    )
    def okki_failure_alert(context: dg.RunFailureSensorContext) -> None:
        run = context.dagster_run
        text = alert_text(
            run.run_id,
            run.job_name,
            run.tags.get("dagster/partition"),
            context.failure_event.message or "",
        )
        response = httpx.post(webhook, json=robot_payload(text), timeout=ALERT_TIMEOUT)
        response.raise_for_status()

    return okki_failure_alert
