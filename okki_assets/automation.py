"""The sync job, its two schedules and the run-failure alert.

- ``okki_intraday_sync`` (every 15 minutes, China time) syncs today's window, the one in progress.
- ``okki_daily_sync`` (00:30 China time) syncs yesterday's window once it is complete, catching
  whatever changed after the last intraday run.
Both are off by default: turn them on in the UI (Automation) once the credentials are set.

The alert sensor ``okki_failure_alert`` posts a short plain-text robot message for every failed
run of the code location (schedule runs, backfills and runs launched from the UI alike). It exists
only when a webhook is configured (``OKKI_ALERT_WEBHOOK``), and is then on by default. The body
is the plain-text robot message of the webhook's platform:

- DingTalk (``oapi.dingtalk.com``) and WeCom (``qyapi.weixin.qq.com``):
  ``{"msgtype": "text", "text": {"content": ...}}``;
- Feishu / Lark (``open.feishu.cn``, ``open.larksuite.com``):
  ``{"msg_type": "text", "content": {"text": ...}}``;
- any other host (a relay, a proxy): both sets of keys in one body, which all three accept.

These robots answer HTTP 200 with an error code in the body (``errcode`` for DingTalk and WeCom,
``code`` or ``StatusCode`` for Feishu) when they refuse a message, e.g. a DingTalk robot whose
keyword is missing from the text: that counts as a failed delivery too. The webhook URL carries
the robot's access token, so no message, log line or error ever contains the URL: only its host.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

import dagster as dg
import httpx

from okki_assets.errors import OkkiAssetsError
from okki_assets.okki_time import CHINA_TZ, TIMEZONE
from okki_assets.partitions import today_key

log = logging.getLogger(__name__)

SYNC_JOB = "okki_sync"
ALERT_SENSOR = "okki_failure_alert"
INTRADAY_CRON = "*/15 * * * *"
DAILY_CRON = "30 0 * * *"
ALERT_TIMEOUT = 10.0
ALERT_TITLE = "[okki-assets] sync run failed"
MAX_ERROR_CHARS = 300

_RANGE_START = "dagster/asset_partition_range_start"
_RANGE_END = "dagster/asset_partition_range_end"
_DINGTALK_WECOM = ("dingtalk.com", "qyapi.weixin.qq.com")
_FEISHU = ("feishu.cn", "larksuite.com")


def build_automation(
    assets: Sequence[dg.AssetsDefinition], *, alert_webhook: str = ""
) -> dg.Definitions:
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
        return dg.RunRequest(run_key=f"intraday-{when:%Y%m%dT%H%M}", partition_key=today_key(when))

    @dg.schedule(
        job=job,
        cron_schedule=DAILY_CRON,
        execution_timezone=TIMEZONE,
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description="00:30 China time: sync yesterday's completed window.",
    )
    def okki_daily_sync(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        key = daily_key(_china(context.scheduled_execution_time))
        return dg.RunRequest(run_key=f"daily-{key}", partition_key=key)

    sensors: list[dg.SensorDefinition] = []
    if alert_webhook.strip():
        sensors.append(_alert_sensor(alert_webhook.strip()))
    return dg.Definitions(
        jobs=[job], schedules=[okki_intraday_sync, okki_daily_sync], sensors=sensors
    )


def _china(moment: datetime | None) -> datetime:
    return (moment or datetime.now(tz=CHINA_TZ)).astimezone(CHINA_TZ)


def daily_key(moment: datetime) -> str:
    """The window the daily tick at ``moment`` syncs: the China day before, now complete."""
    return (_china(moment).date() - timedelta(days=1)).isoformat()


# --- the alert ----------------------------------------------------------------------------------


def run_partitions(tags: Mapping[str, str]) -> str:
    """The run's partition as people read it: ``2026-11-20``, ``2026-11-18...2026-11-20`` or -."""
    start, end = tags.get(_RANGE_START), tags.get(_RANGE_END)
    if start and end:
        return start if start == end else f"{start}...{end}"
    return str(tags.get("dagster/partition") or "-")


def alert_text(
    run_id: str, job_name: str, partition: str | None, message: str, step: str | None = None
) -> str:
    """The alert's text: short, one line per fact, no secrets (Dagster's messages only)."""
    message = " ".join(message.split())
    if len(message) > MAX_ERROR_CHARS:
        message = message[: MAX_ERROR_CHARS - 3] + "..."
    lines = [ALERT_TITLE, f"job: {job_name}", f"partition: {partition or '-'}"]
    if step:
        lines.append(f"step: {step}")
    lines += [f"error: {message or '-'}", f"run: {run_id}"]
    return "\n".join(lines)


def robot_payload(text: str, webhook: str = "") -> dict[str, object]:
    """The plain-text robot message body for the webhook's platform (see the module docstring)."""
    host = _host(webhook)
    dingtalk_wecom: dict[str, object] = {"msgtype": "text", "text": {"content": text}}
    feishu: dict[str, object] = {"msg_type": "text", "content": {"text": text}}
    if host.endswith(_DINGTALK_WECOM):
        return dingtalk_wecom
    if host.endswith(_FEISHU):
        return feishu
    return {**dingtalk_wecom, **feishu}


def _host(url: str) -> str:
    try:
        return httpx.URL(url).host.lower()
    except Exception:  # httpx raises several types for malformed URLs
        return ""


def _refusal(body: object) -> str | None:
    """The robot's own refusal in a 200 reply, or None when it accepted the message."""
    if not isinstance(body, dict):
        return None
    for code_key, message_key in (("errcode", "errmsg"), ("code", "msg"), ("StatusCode", "msg")):
        code = body.get(code_key)
        if code not in (None, 0, "0") and not (code_key == "code" and code in (200, "200")):
            return f"{code_key}={code} {body.get(message_key) or body.get('StatusMessage') or ''}"
    return None


def post_alert(webhook: str, text: str, *, transport: httpx.BaseTransport | None = None) -> None:
    """Post ``text`` to the robot; raise ``OkkiAssetsError`` naming only the host on failure."""
    host = _host(webhook) or "(unparseable URL)"
    try:
        with httpx.Client(timeout=ALERT_TIMEOUT, transport=transport) as client:
            response = client.post(webhook, json=robot_payload(text, webhook))
    except httpx.HTTPError as e:
        # str(e) of some httpx errors repeats the URL; the exception type is enough.
        raise OkkiAssetsError(
            f"alert webhook on {host} could not be reached ({type(e).__name__})"
        ) from None
    if response.status_code >= 400:
        raise OkkiAssetsError(f"alert webhook on {host} answered HTTP {response.status_code}")
    try:
        body = response.json()
    except ValueError:
        body = None
    refusal = _refusal(body)
    if refusal:
        raise OkkiAssetsError(f"alert webhook on {host} refused the message: {refusal[:200]}")
    log.info("alert posted to the webhook on %s", host)


def failure_summary(context: dg.RunFailureSensorContext) -> tuple[str | None, str]:
    """(failed step, its error message) of a failed run, else (None, the run's failure message)."""
    for event in context.get_step_failure_events():
        data = event.step_failure_data
        error = data.error.message if data.error is not None else ""
        if data.user_failure_data is not None and data.user_failure_data.description:
            error = data.user_failure_data.description
        return event.step_key, error.strip() or (event.message or "")
    return None, context.failure_event.message or ""


def _alert_sensor(webhook: str) -> dg.SensorDefinition:
    @dg.run_failure_sensor(
        name=ALERT_SENSOR,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Posts a plain-text robot message (DingTalk, WeCom, Feishu) for every failed"
        " run of this code location.",
    )
    def okki_failure_alert(context: dg.RunFailureSensorContext) -> None:
        run = context.dagster_run
        step, message = failure_summary(context)
        text = alert_text(run.run_id, run.job_name, run_partitions(run.tags), message, step)
        post_alert(webhook, text)

    return okki_failure_alert
