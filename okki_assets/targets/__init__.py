"""Where loaded_companies writes: the target port (port.py) and its adapters.

``open_target`` chooses the adapter by the scheme of ``TARGET_URL``:

- ``http://``, ``https://``: the batch API (http.py, docs/target-api.md);
- ``postgresql://``, ``postgresql+psycopg://``, ``mysql://``, ``mysql+pymysql://``,
  ``mariadb://``, ``sqlite:///path``: a SQL table (sql.py);
- ``k3cloud+http://``, ``k3cloud+https://``: Kingdee K/3 Cloud (k3cloud.py);
- unset: land-only, nothing sent (land_only.py).
"""

from __future__ import annotations

import importlib
from typing import cast

from okki_assets.clients.http import RetrySettings, Timeouts, checked_url, credential
from okki_assets.errors import ConfigError
from okki_assets.targets.http import TargetClient
from okki_assets.targets.land_only import LandOnlyTarget
from okki_assets.targets.port import (
    KIND_LAND_ONLY,
    RecordResult,
    RecordVersion,
    Target,
    TargetNotAuditable,
    TargetRow,
    TargetSettings,
)

__all__ = [
    "KIND_LAND_ONLY",
    "LandOnlyTarget",
    "RecordResult",
    "RecordVersion",
    "SQL_SCHEMES",
    "Target",
    "TargetClient",
    "TargetNotAuditable",
    "TargetRow",
    "TargetSettings",
    "open_target",
]

SQL_SCHEMES = ("postgresql", "postgres", "mysql", "mariadb", "sqlite")
K3CLOUD_SCHEMES = ("k3cloud+http", "k3cloud+https")


def scheme_of(url: str) -> str:
    """The URL's scheme in lower case ("" when it has none)."""
    scheme, sep, _ = url.partition("://")
    return scheme.lower() if sep else ""


def open_target(url: str | None, settings: TargetSettings) -> Target:
    """The adapter for ``url`` (``TARGET_URL``; None or empty = land-only). Builds it only: a
    network call waits for ``check`` or the first batch. Errors name the scheme, never the URL's
    password."""
    if not url or not url.strip():
        return LandOnlyTarget()
    url = url.strip()
    scheme = scheme_of(url)
    if scheme in ("http", "https"):
        return _http_target(url, settings)
    if scheme.split("+", 1)[0] in SQL_SCHEMES:
        sql = importlib.import_module("okki_assets.targets.sql")
        return cast(Target, sql.open_target(url, settings))
    if scheme in K3CLOUD_SCHEMES:
        try:
            k3cloud = importlib.import_module("okki_assets.targets.k3cloud")
        except ModuleNotFoundError as e:
            raise ConfigError("TARGET_URL: the k3cloud target is not available here") from e
        return cast(Target, k3cloud.open_target(url, settings))
    raise ConfigError(
        f"TARGET_URL has the scheme {scheme or '(none)'!r}; use http(s)://, postgresql://,"
        " mysql://, mariadb://, sqlite:///path or k3cloud+http(s)://, or leave it unset"
        " (land-only)"
    )


def _http_target(url: str, settings: TargetSettings) -> TargetClient:
    if not settings.token.strip():
        raise ConfigError("TARGET_TOKEN is empty or not set while TARGET_URL is set")
    return TargetClient(
        checked_url("TARGET_URL", url),
        credential("TARGET_TOKEN", settings.token),
        max_batch=settings.batch_size,
        timeouts=Timeouts(read=settings.read_timeout),
        retry=RetrySettings(base_delay=settings.retry_base_delay),
    )
