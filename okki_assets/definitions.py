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
from datetime import date
from typing import TypeVar

import dagster as dg

from okki_assets.assets import DEFAULT_QUARANTINE_THRESHOLD, build_assets
from okki_assets.assets.account import build_account
from okki_assets.automation import build_automation
from okki_assets.partitions import DEFAULT_SYNC_START, build_sync_partitions
from okki_assets.reconcile import DEFAULT_REFRESH_DAYS
from okki_assets.resources import (
    REAL_OKKI_BASE_URL,
    K3CloudConfig,
    OkkiResource,
    TargetResource,
    WarehouseResource,
)

DEFAULT_DUCKDB = "data/okki_assets.duckdb"
DEFAULT_DUCKDB_MEMORY = "256MB"
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
    automation = build_automation(assets, alert_webhook=alert_webhook)
    account, account_check, reconcile_job, reconcile_schedule = build_account(
        refresh_days=info_refresh_days
    )
    return dg.Definitions(
        assets=[*assets, account],
        asset_checks=[account_check],
        jobs=[*automation.jobs, reconcile_job],
        schedules=[*automation.schedules, reconcile_schedule],
        sensors=automation.sensors,
        resources={"okki": okki, "target": target, "warehouse": warehouse},
    )


def _env(name: str, default: str) -> str:
    return os.environ.get(name, "").strip() or default


class _Reader:
    """Reads typed settings from the environment without ever failing.

    A value that cannot be read (``OKKI_RATE_LIMIT=fast``, ``OKKI_SYNC_START=2026-13-01``) is
    replaced by its default and kept in ``problems`` as one line naming the variable and what it
    expects. The definitions then always load (the UI shows the assets), and every step fails
    first with that line (``WarehouseResource.setting_problems``), before OKKI or the target is
    called or a row is written.
    """

    def __init__(self) -> None:
        self.problems: list[str] = []

    def _refused(self, problem: str, default: T) -> T:
        self.problems.append(problem)
        return default

    def number(self, name: str, default: float) -> float:
        raw = _env(name, str(default))
        try:
            return float(raw)
        except ValueError:
            return self._refused(f"{name} must be a number, got {raw!r}", default)

    def count(self, name: str, default: int) -> int:
        """A whole number of at least 1 (a concurrency, a batch size, a number of days)."""
        raw = _env(name, str(default))
        try:
            value = int(raw)
        except ValueError:
            return self._refused(f"{name} must be a whole number, got {raw!r}", default)
        if value < 1:
            return self._refused(f"{name} must be at least 1, got {value}", default)
        return value

    def optional_number(self, name: str, *, auto: str = "") -> float | None:
        """A number, or None when unset (or set to ``auto``, if given)."""
        raw = _env(name, "")
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


def _memory_limit() -> str:
    raw = _env("OKKI_ASSETS_DUCKDB_MEMORY", DEFAULT_DUCKDB_MEMORY)
    return "" if raw.lower() == "none" else raw


def _k3cloud_from_env(env: _Reader) -> K3CloudConfig:
    if not _env("TARGET_URL", "").lower().startswith("k3cloud+"):
        return K3CloudConfig()
    return K3CloudConfig(
        acct_id=_env("K3CLOUD_ACCT_ID", ""),
        username=_env("K3CLOUD_USERNAME", ""),
        app_id=_env("K3CLOUD_APP_ID", ""),
        app_secret=_secret("K3CLOUD_APP_SECRET"),
        password=_secret("K3CLOUD_PASSWORD"),
        lcid=env.count("K3CLOUD_LCID", 2052),
        org=_env("K3CLOUD_ORG", "100"),
        currency=_env("K3CLOUD_CURRENCY", "PRE001"),
        number_prefix=_env("K3CLOUD_NUMBER_PREFIX", "OKKI"),
        batch_size=env.count("K3CLOUD_BATCH_SIZE", 50),
        country_map=_env("K3CLOUD_COUNTRY_MAP", ""),
        settle_seconds=env.number("K3CLOUD_SETTLE_SECONDS", 120.0),
    )


def defs_from_env() -> dg.Definitions:
    env = _Reader()
    target_url = _env("TARGET_URL", "")
    okki = OkkiResource(
        base_url=_env("OKKI_BASE_URL", REAL_OKKI_BASE_URL),
        client_id=_secret("OKKI_CLIENT_ID"),
        client_secret=_secret("OKKI_CLIENT_SECRET"),
        rate_limit=env.optional_number("OKKI_RATE_LIMIT", auto="auto"),
        rate_limit_max=env.optional_number("OKKI_RATE_LIMIT_MAX"),
        concurrency=env.count("OKKI_CONCURRENCY", 8),
        refresh_info=_env("OKKI_REFRESH_INFO", "0") in ("1", "true", "yes"),
    )
    target = TargetResource(
        # An EnvVar: a password in a database URL is never shown in the UI.
        url=_secret("TARGET_URL"),
        token=_secret("TARGET_TOKEN") if target_url else "",
        table=_env("TARGET_TABLE", "okki_companies"),
        batch_size=env.count("TARGET_BATCH_SIZE", 500),
        mapping_file=_env("OKKI_MAPPING_FILE", ""),
        k3cloud=_k3cloud_from_env(env),
    )
    sync_start = env.day("OKKI_SYNC_START", DEFAULT_SYNC_START)
    quarantine_threshold = env.number("OKKI_QUARANTINE_THRESHOLD", DEFAULT_QUARANTINE_THRESHOLD)
    info_refresh_days = env.count("OKKI_INFO_REFRESH_DAYS", DEFAULT_REFRESH_DAYS)
    return build_defs(
        okki=okki,
        target=target,
        warehouse=WarehouseResource(
            database=_env("OKKI_ASSETS_DUCKDB", DEFAULT_DUCKDB),
            memory_limit=_memory_limit(),
            setting_problems=env.problems,
        ),
        sync_start=sync_start,
        quarantine_threshold=quarantine_threshold,
        alert_webhook=_env("OKKI_ALERT_WEBHOOK", ""),
        info_refresh_days=info_refresh_days,
    )


defs = defs_from_env()
