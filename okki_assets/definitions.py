"""The one wiring point: reads the environment and builds the code location's Definitions.

Environment (see README and .env.example):
  OKKI_BASE_URL        OKKI API root (default: the real host)
  OKKI_CLIENT_ID       OAuth client id                       (required at run start)
  OKKI_CLIENT_SECRET   OAuth client secret                   (required at run start)
  OKKI_RATE_LIMIT      requests per second to OKKI; unset or "auto" = learned (default auto)
  OKKI_RATE_LIMIT_MAX  cap of the learned rate (default: no cap)
  OKKI_CONCURRENCY     info calls in flight (default 8)
  OKKI_REFRESH_INFO    1 = call info for every company on every sync (default 0)
  OKKI_INFO_REFRESH_DAYS  okki_reconcile re-reads every company's info at least once in this
                       many days, a slice per run (default 7; 1 = every company every run)
  TARGET_URL           the target, by scheme: http(s):// batch API, postgresql://, mysql://,
                       mariadb://, sqlite:///path, k3cloud+http(s)://; unset = land-only mode
  TARGET_TOKEN         target bearer token                   (required for an http(s) TARGET_URL)
  K3CLOUD_ACCT_ID, K3CLOUD_USERNAME, K3CLOUD_APP_ID, K3CLOUD_APP_SECRET, K3CLOUD_LCID (2052)
                       Kingdee signed-header credentials (第三方系统登录授权, docs/kingdee.md);
                       K3CLOUD_PASSWORD instead of the app id/secret: ValidateUser cookie login
  K3CLOUD_ORG (100), K3CLOUD_CURRENCY (PRE001), K3CLOUD_NUMBER_PREFIX (OKKI: FNumber = prefix +
                       company id), K3CLOUD_BATCH_SIZE (50), K3CLOUD_COUNTRY_MAP (CN=China,...),
                       K3CLOUD_SETTLE_SECONDS (120: the wait after a lost create reply)
  TARGET_TABLE         SQL targets: the table, may be schema.table (default okki_companies)
  TARGET_BATCH_SIZE    records per batch (default 500)
  OKKI_MAPPING_FILE    YAML/JSON mapping file (default: built-in mapping)
  OKKI_ASSETS_DUCKDB   the DuckDB file (default data/okki_assets.duckdb)
  OKKI_ASSETS_DUCKDB_MEMORY  DuckDB's memory limit per process (default 256MB; "none" = 80% of RAM)
  OKKI_SYNC_START      first partition, YYYY-MM-DD (default 2026-01-01)
  OKKI_QUARANTINE_THRESHOLD  WARN above this quarantined share (default 0.05)
  OKKI_ALERT_WEBHOOK   robot webhook for run-failure messages; unset = no alerts

A value that cannot be read never stops the code location from loading: its default is used
for the definitions, and every step of a run fails first, in one line naming the variable and
what it expects (``_Reader``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import date
from typing import Annotated, Any, TypeVar

import dagster as dg
from pydantic import BaseModel, TypeAdapter, ValidationError

from okki_assets.assets import DEFAULT_QUARANTINE_THRESHOLD, build_assets
from okki_assets.assets.account import build_account
from okki_assets.automation import build_automation
from okki_assets.logs import okki_console_logger
from okki_assets.partitions import DEFAULT_SYNC_START, build_sync_partitions
from okki_assets.resources import (
    K3CloudConfig,
    OkkiResource,
    TargetResource,
    WarehouseResource,
)
from okki_assets.stages.reconcile import DEFAULT_REFRESH_DAYS, refresh_days_problem

T = TypeVar("T")


def build_defs(
    *,
    okki: OkkiResource,
    target: TargetResource,
    warehouse: WarehouseResource,
    sync_start: str = DEFAULT_SYNC_START,
    quarantine_threshold: float = DEFAULT_QUARANTINE_THRESHOLD,
    alert_webhook: str = "",
    info_refresh_days: int = DEFAULT_REFRESH_DAYS,
) -> dg.Definitions:
    """Definitions for explicit resources (used below with the environment, and by the CLI)."""
    partitions = build_sync_partitions(sync_start)
    assets = build_assets(partitions, quarantine_threshold=quarantine_threshold)
    return dg.Definitions.merge(
        dg.Definitions(
            assets=assets,
            resources={"okki": okki, "target": target, "warehouse": warehouse},
            loggers={"console": okki_console_logger},
        ),
        build_automation(assets, alert_webhook=alert_webhook),
        build_account(refresh_days=info_refresh_days),
    )


def _env(name: str, default: str = "") -> str:
    return os.environ.get(name, "").strip() or default


def _given(**names: str) -> dict[str, Any]:
    """``{field: value}`` of the text settings the environment sets (field=VARIABLE); a field
    left out keeps the resource's own default."""
    return {field: value for field, name in names.items() if (value := _env(name))}


def _expects(error: ValidationError) -> str:
    """What a field's constraint asks for, in words (``at least 1``)."""
    first = error.errors()[0]
    ctx = first.get("ctx", {})
    if first["type"] == "greater_than_equal":
        return f"at least {ctx['ge']}"
    if first["type"] == "greater_than":
        return f"more than {ctx['gt']}"
    return str(first["msg"])


class _Reader:
    """Reads typed settings from the environment without ever failing.

    A value that cannot be read (``OKKI_RATE_LIMIT=fast``, ``OKKI_SYNC_START=2026-13-01``) is
    left out, so that its default is used, and kept in ``problems`` as one line naming the
    variable and what it expects. The definitions then always load (the UI shows the assets),
    and every step fails first with that line (``WarehouseResource.setting_problems``), before
    OKKI or the target is called or a row is written. A resource's setting is checked by the
    constraints of its own field (``Field(ge=1)``), which also hold its one default.
    """

    def __init__(self) -> None:
        self.problems: list[str] = []

    def _refused(self, problem: str, default: T) -> T:
        self.problems.append(problem)
        return default

    def field(self, name: str, model: type[BaseModel], field: str) -> dict[str, Any]:
        """``{field: value}`` when ``name`` is set to a value ``model.field`` accepts (whole
        numbers and numbers read as such); ``{}`` when unset or refused."""
        raw = _env(name)
        if not raw:
            return {}
        info = model.model_fields[field]
        whole = info.annotation is int
        try:
            value: float = int(raw) if whole else float(raw)
        except ValueError:
            kind = "a whole number" if whole else "a number"
            return self._refused(f"{name} must be {kind}, got {raw!r}", {})
        try:
            shape: Any = Annotated[info.annotation, info]
            TypeAdapter(shape).validate_python(value)
        except ValidationError as e:
            return self._refused(f"{name} must be {_expects(e)}, got {value}", {})
        return {field: value}

    def number(self, name: str, default: float) -> float:
        raw = _env(name, str(default))
        try:
            return float(raw)
        except ValueError:
            return self._refused(f"{name} must be a number, got {raw!r}", default)

    def count(self, name: str, default: int, problem: Callable[[int], str | None]) -> int:
        """A whole number that no resource holds (a number of days), judged by its own rule."""
        raw = _env(name, str(default))
        try:
            value = int(raw)
        except ValueError:
            return self._refused(f"{name} must be a whole number, got {raw!r}", default)
        if refused := problem(value):
            return self._refused(refused, default)
        return value

    def optional_number(self, name: str, *, auto: str = "") -> float | None:
        """A number, or None when unset (or set to ``auto``, if given)."""
        raw = _env(name)
        if not raw or (auto and raw.lower() == auto):
            return None
        try:
            return float(raw)
        except ValueError:
            also = f" or {auto}" if auto else ""
            return self._refused(f"{name} must be a number{also}, got {raw!r}", None)

    def day(self, name: str, default: str) -> str:
        """A date YYYY-MM-DD."""
        raw = _env(name, default)
        try:
            date.fromisoformat(raw)
        except ValueError:
            return self._refused(f"{name} must be a date YYYY-MM-DD, got {raw!r}", default)
        return raw


def _secret(name: str) -> str:
    """``dg.EnvVar(name)`` when the variable is set: the UI shows its name, never its value.

    An unset EnvVar fails the run in Dagster's config resolution, with a long traceback and no
    word from us; an unset secret is therefore passed as "", and the resource stops the run's
    first step with one line naming the variable.
    """
    return dg.EnvVar(name) if os.environ.get(name, "").strip() else ""


def _memory_limit() -> dict[str, Any]:
    raw = _env("OKKI_ASSETS_DUCKDB_MEMORY")
    if not raw:
        return {}
    return {"memory_limit": "" if raw.lower() == "none" else raw}


def _k3cloud_from_env(env: _Reader) -> K3CloudConfig:
    if not _env("TARGET_URL").lower().startswith("k3cloud+"):
        return K3CloudConfig()
    return K3CloudConfig(
        app_secret=_secret("K3CLOUD_APP_SECRET"),
        password=_secret("K3CLOUD_PASSWORD"),
        **_given(
            acct_id="K3CLOUD_ACCT_ID",
            username="K3CLOUD_USERNAME",
            app_id="K3CLOUD_APP_ID",
            org="K3CLOUD_ORG",
            currency="K3CLOUD_CURRENCY",
            number_prefix="K3CLOUD_NUMBER_PREFIX",
            country_map="K3CLOUD_COUNTRY_MAP",
        ),
        **env.field("K3CLOUD_LCID", K3CloudConfig, "lcid"),
        **env.field("K3CLOUD_BATCH_SIZE", K3CloudConfig, "batch_size"),
        **env.field("K3CLOUD_SETTLE_SECONDS", K3CloudConfig, "settle_seconds"),
    )


def _okki_from_env(env: _Reader) -> OkkiResource:
    return OkkiResource(
        client_id=_secret("OKKI_CLIENT_ID"),
        client_secret=_secret("OKKI_CLIENT_SECRET"),
        rate_limit=env.optional_number("OKKI_RATE_LIMIT", auto="auto"),
        rate_limit_max=env.optional_number("OKKI_RATE_LIMIT_MAX"),
        refresh_info=_env("OKKI_REFRESH_INFO", "0") in ("1", "true", "yes"),
        **_given(base_url="OKKI_BASE_URL"),
        **env.field("OKKI_CONCURRENCY", OkkiResource, "concurrency"),
    )


def _target_from_env(env: _Reader) -> TargetResource:
    return TargetResource(
        # An EnvVar: a password in a database URL is never shown in the UI.
        url=_secret("TARGET_URL"),
        token=_secret("TARGET_TOKEN") if _env("TARGET_URL") else "",
        k3cloud=_k3cloud_from_env(env),
        **_given(table="TARGET_TABLE", mapping_file="OKKI_MAPPING_FILE"),
        **env.field("TARGET_BATCH_SIZE", TargetResource, "batch_size"),
    )


def defs_from_env() -> dg.Definitions:
    env = _Reader()
    okki, target = _okki_from_env(env), _target_from_env(env)
    sync_start = env.day("OKKI_SYNC_START", DEFAULT_SYNC_START)
    quarantine_threshold = env.number("OKKI_QUARANTINE_THRESHOLD", DEFAULT_QUARANTINE_THRESHOLD)
    info_refresh_days = env.count(
        "OKKI_INFO_REFRESH_DAYS", DEFAULT_REFRESH_DAYS, refresh_days_problem
    )
    return build_defs(
        okki=okki,
        target=target,
        warehouse=WarehouseResource(
            setting_problems=env.problems,
            **_given(database="OKKI_ASSETS_DUCKDB"),
            **_memory_limit(),
        ),
        sync_start=sync_start,
        quarantine_threshold=quarantine_threshold,
        alert_webhook=_env("OKKI_ALERT_WEBHOOK"),
        info_refresh_days=info_refresh_days,
    )


defs = defs_from_env()
