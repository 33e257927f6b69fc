"""Dagster resources: configuration in, ready clients and connections out.

Resources hold settings only; they hand out a fresh client per step (``open``), so nothing
network-bound happens at import or at definition time. Secrets are plain fields filled from
``dg.EnvVar`` in definitions.py, which Dagster resolves at run start and never displays.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import duckdb
import httpx
from pydantic import Field
from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_exponential

from okki_assets import storage
from okki_assets.clients.http import checked_url as _checked_url
from okki_assets.clients.http import credential as _credential
from okki_assets.clients.okki import DEFAULT_CONCURRENCY, OkkiClient, RetrySettings, Timeouts
from okki_assets.clients.ratecontrol import AutoRate, LearnedRate
from okki_assets.errors import ConfigError, StorageError
from okki_assets.mapping import TargetMapping, load_mapping
from okki_assets.targets import Target, TargetSettings, open_target
from okki_assets.targets.k3cloud_config import mapping_for as k3cloud_mapping_for

try:
    import fcntl
except ImportError:  # Windows: loads are not serialised across processes there
    fcntl = None  # type: ignore[assignment]

REAL_OKKI_BASE_URL = "https://api-sandbox.xiaoman.cn"
log = logging.getLogger(__name__)


def shown_url(value: str) -> str:
    """A URL as run metadata may show it: scheme, host, port and path, never a user, a password,
    a query or a fragment (any of which may hold a secret); "" if it is not a URL."""
    try:
        url = httpx.URL(value.strip())
    except Exception:  # httpx raises several types for malformed URLs
        return ""
    port = f":{url.port}" if url.port else ""
    if url.host:
        return f"{url.scheme}://{url.host}{port}{url.path}".rstrip("/")
    return f"{url.scheme}://{url.path}" if url.scheme and url.path else ""  # sqlite:///a/file


# Dagster's type parameter is the resource's own class; subscribing it would build a new model
# (the same for each resource below).
class OkkiResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """The OKKI Open API: credentials, pacing and paging settings."""

    base_url: str = Field(default=REAL_OKKI_BASE_URL, description="OKKI API root (OKKI_BASE_URL).")
    client_id: str = Field(description="OAuth client id (OKKI_CLIENT_ID).")
    client_secret: str = Field(description="OAuth client secret (OKKI_CLIENT_SECRET).")
    rate_limit: float | None = Field(
        default=None,
        description="Requests per second, all calls together; unset = learned from OKKI's"
        " answers (OKKI_RATE_LIMIT unset or auto).",
    )
    rate_limit_max: float | None = Field(
        default=None,
        description="Cap of the learned rate (OKKI_RATE_LIMIT_MAX); unset = no cap.",
    )
    concurrency: int = Field(
        default=DEFAULT_CONCURRENCY, ge=1, description="Info calls in flight at once."
    )
    page_size: int = Field(default=100, ge=1, description="`count` of each list page.")
    read_timeout: float = Field(default=30.0, description="Seconds to wait for an answer.")
    retry_base_delay: float = Field(
        default=RetrySettings.base_delay,
        description="Seconds before the first retry of a transient failure (doubles each time).",
    )
    refresh_info: bool = Field(
        default=False,
        description="Call info for every company even when the stored copy has the same"
        " update_time (costs one request per company; catches edits OKKI does not date).",
    )

    def settings_used(self) -> dict[str, str]:
        """What a run shows of the OKKI it called (never a secret): its host, since a ``.env``
        in the working folder wins over the shell for ``dg dev`` and ``dg launch``."""
        return {"okki_base_url": shown_url(self.base_url) or "(not a URL)"}

    def check(self) -> None:
        """Fail fast on missing credentials or a bad rate setting; calls nothing."""
        missing = [
            name
            for name, value in (
                ("OKKI_CLIENT_ID", self.client_id),
                ("OKKI_CLIENT_SECRET", self.client_secret),
            )
            if not value.strip()
        ]
        if missing:
            verb = "is" if len(missing) == 1 else "are"
            raise ConfigError(
                f"{' and '.join(missing)} {verb} empty or not set: set the OKKI Open API"
                " application's credentials in the environment (or .env)"
            )
        if self.rate_limit is not None and self.rate_limit <= 0:
            raise ConfigError(f"OKKI_RATE_LIMIT must be positive or auto, got {self.rate_limit}")
        if self.rate_limit_max is not None and self.rate_limit_max <= 0:
            raise ConfigError(f"OKKI_RATE_LIMIT_MAX must be positive, got {self.rate_limit_max}")

    def open(self, learned: LearnedRate | None = None) -> OkkiClient:
        """A client; under automatic pacing it starts from ``learned`` (a previous run's)."""
        self.check()
        cap = self.rate_limit_max
        pacing: float | AutoRate = self.rate_limit or AutoRate(
            max_rate=cap,
            min_rate=min(AutoRate.min_rate, cap or AutoRate.min_rate),
            learned=learned,
        )
        return OkkiClient(
            _checked_url("OKKI_BASE_URL", self.base_url),
            _credential("OKKI_CLIENT_ID", self.client_id),
            _credential("OKKI_CLIENT_SECRET", self.client_secret),
            rate_limit=pacing,
            concurrency=self.concurrency,
            page_size=self.page_size,
            timeouts=Timeouts(read=self.read_timeout),
            retry=RetrySettings(base_delay=self.retry_base_delay),
        )

    @contextmanager
    def session(
        self, connect: Callable[[], AbstractContextManager[duckdb.DuckDBPyConnection]]
    ) -> Iterator[OkkiClient]:
        """A client that starts from the rate the last run learned for this OKKI account (kept
        in DuckDB by URL and client id) and leaves what it learned for the next run, however
        it ends, if OKKI answered anything (a run that failed before would only overwrite the
        memory with a cold start). Keeping the rate is best effort: a DuckDB failure there is
        only logged."""
        base_url = _checked_url("OKKI_BASE_URL", self.base_url)
        with connect() as conn:
            row = storage.learned_rate(conn, base_url, self.client_id)
        client = self.open(LearnedRate(*row) if row else None)
        try:
            yield client
        finally:
            learned = client.pacer.learned()
            answered, _ = client.pacer.answers()
            client.close()
            if learned is not None and answered:
                try:
                    with connect() as conn:
                        storage.remember_rate(
                            conn,
                            base_url,
                            self.client_id,
                            learned.rate,
                            learned.ceiling,
                            datetime.now(tz=UTC),
                        )
                except (StorageError, duckdb.Error) as e:
                    log.warning("could not keep the learned OKKI rate: %s", e)


class K3CloudConfig(dg.Config):
    """Kingdee K/3 Cloud settings, used when TARGET_URL is ``k3cloud+http(s)://host/k3cloud/``
    (docs/kingdee.md); checked by okki_assets/targets/k3cloud.py."""

    acct_id: str = Field(default="", description="账套ID, the data centre id (K3CLOUD_ACCT_ID).")
    username: str = Field(default="", description="The integration user (K3CLOUD_USERNAME).")
    app_id: str = Field(default="", description="第三方系统登录授权 AppID (K3CLOUD_APP_ID).")
    app_secret: str = Field(default="", description="Its AppSecret (K3CLOUD_APP_SECRET).")
    password: str = Field(default="", description="Set instead: ValidateUser (K3CLOUD_PASSWORD).")
    lcid: int = Field(default=2052, ge=1, description="Language id (K3CLOUD_LCID).")
    org: str = Field(default="100", description="Create/use organisation number (K3CLOUD_ORG).")
    currency: str = Field(default="PRE001", description="Trading currency (K3CLOUD_CURRENCY).")
    number_prefix: str = Field(default="OKKI", description="FNumber = prefix + company id.")
    batch_size: int = Field(
        default=50, ge=1, description="Customers per BatchSave (K3CLOUD_BATCH_SIZE)."
    )
    country_map: str = Field(default="", description="ISO=number pairs (K3CLOUD_COUNTRY_MAP).")
    timeout_seconds: float = Field(default=120.0, description="Seconds to wait for a reply.")
    settle_seconds: float = Field(default=120.0, description="Wait after a lost create reply.")


class TargetResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """The target, chosen by the scheme of ``url`` (okki_assets/targets). An empty ``url`` is
    land-only mode: nothing is sent."""

    url: str = Field(
        default="",
        description="Target (TARGET_URL): http(s):// batch API, postgresql://, mysql://,"
        " mariadb://, sqlite:///path, k3cloud+http(s)://; empty = land-only.",
    )
    token: str = Field(default="", description="Bearer token for the target (TARGET_TOKEN).")
    table: str = Field(
        default="okki_companies",
        description="SQL targets: the table, may be schema.table (TARGET_TABLE).",
    )
    batch_size: int = Field(
        default=TargetSettings.batch_size,
        ge=1,
        description="Records per batch, the target's max_batch (TARGET_BATCH_SIZE).",
    )
    read_timeout: float = Field(default=30.0, description="Seconds to wait for an answer.")
    retry_base_delay: float = Field(
        default=RetrySettings.base_delay,
        description="Seconds before the first retry of a transient failure (doubles each time).",
    )
    mapping_file: str = Field(default="", description="YAML/JSON mapping file; empty = built-in.")
    k3cloud: K3CloudConfig = Field(
        default_factory=lambda: K3CloudConfig(), description="Kingdee settings (K3CLOUD_*)."
    )

    @property
    def land_only(self) -> bool:
        return not self.url.strip()

    @property
    def is_k3cloud(self) -> bool:
        return self.url.strip().lower().startswith("k3cloud+")

    def settings(self) -> TargetSettings:
        return TargetSettings(
            token=self.token,
            batch_size=self.batch_size,
            read_timeout=self.read_timeout,
            retry_base_delay=self.retry_base_delay,
            table=self.table.strip() or TargetSettings.table,
            k3cloud={**self.k3cloud.model_dump(), "mapping_file": self.mapping_file},
        )

    def open(self) -> Target:
        """The target's adapter (close it after use); the null target in land-only mode."""
        return open_target(self.url.strip() or None, self.settings())

    def settings_used(self) -> dict[str, str]:
        """What a run shows of the target it wrote to (never a secret): its kind and host."""
        if self.land_only:
            return {"target": "land-only: nothing sent (TARGET_URL unset)"}
        url = self.url.strip()
        scheme = url.split(":", 1)[0].lower()
        if scheme in ("http", "https"):
            kind = "batch API"
        elif scheme.startswith("k3cloud"):
            kind = "Kingdee K/3 Cloud"
        else:
            kind = f"SQL table {self.table.strip() or TargetSettings.table}"
        return {"target": f"{kind} at {shown_url(url) or '(not a URL)'}"}

    def mapping(self) -> TargetMapping:
        if self.is_k3cloud:
            return k3cloud_mapping_for(self.mapping_file or None)
        return load_mapping(self.mapping_file or None)

    def check(self) -> None:
        """Fail fast on a bad TARGET_URL, TARGET_TOKEN or mapping file; writes nothing."""
        self.open().close()
        self.mapping()


def _is_lock_error(error: BaseException) -> bool:
    return isinstance(error, duckdb.IOException) and "lock" in str(error).lower()


class WarehouseResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """The DuckDB file holding every stage's copy and the load ledger.

    DuckDB allows one writing process per file, so connections are short and opened per unit
    of work; a connection that finds the file locked by another run waits (with back-off) up to
    ``lock_timeout`` seconds, then fails with a clear message.
    """

    database: str = Field(
        default="data/okki_assets.duckdb",
        description="Path of the DuckDB file (OKKI_ASSETS_DUCKDB).",
    )
    lock_timeout: float = Field(default=120.0, description="Seconds to wait for a locked file.")
    memory_limit: str = Field(
        default="256MB",
        description="DuckDB's memory limit in this process (bigger work spills to disk), so a"
        " large window keeps the run's memory flat; empty = DuckDB's default, 80% of the RAM"
        " (OKKI_ASSETS_DUCKDB_MEMORY).",
    )
    setting_problems: list[str] = Field(
        default_factory=list,
        description="Settings of the environment that could not be read (each names its"
        " variable and what it expects; the definitions use the default meanwhile). Every step"
        " opens this file first, so while any is left, every step fails with them, before OKKI"
        " or the target is called or a row is written.",
    )

    def check_settings(self) -> None:
        """Fail with the settings that could not be read, in one line."""
        if self.setting_problems:
            raise ConfigError("; ".join(self.setting_problems))

    @contextmanager
    def get_connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        self.check_settings()
        path = Path(self.database)
        if self.database != ":memory:":
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise StorageError(
                    f"cannot create the folder of the DuckDB file {path}: {e}"
                ) from e
        try:
            conn = Retrying(
                retry=retry_if_exception(_is_lock_error),
                wait=wait_exponential(multiplier=0.05, max=2.0),
                stop=stop_after_delay(self.lock_timeout),
                reraise=True,
            )(duckdb.connect, self.database)
        except duckdb.IOException as e:
            reason = "is locked by another process" if _is_lock_error(e) else "cannot be opened"
            raise StorageError(f"DuckDB file {path} {reason}: {str(e).splitlines()[0]}") from e
        except duckdb.Error as e:
            raise StorageError(f"DuckDB file {path} cannot be used: {e}") from e
        try:
            limit = self.memory_limit.strip()
            if limit:
                try:
                    conn.execute("set memory_limit = ?", [limit])
                except duckdb.Error as e:
                    raise StorageError(
                        f"DuckDB memory limit {limit!r} (OKKI_ASSETS_DUCKDB_MEMORY) is not a"
                        " size such as 256MB or 1GB"
                    ) from e
            conn.execute("set enable_progress_bar = false")  # it would print into run logs
            storage.ensure_schema(conn)
            yield conn
        except duckdb.IOException as e:
            raise StorageError(f"DuckDB file {path} cannot be written: {e}") from e
        finally:
            conn.close()

    def check(self) -> None:
        """Fail fast on a DuckDB file that cannot be opened, locked past ``lock_timeout``, or
        a bad memory limit: opens a connection (creating the tables) and closes it."""
        with self.get_connection():
            pass

    @contextmanager
    def load_lock(self) -> Iterator[None]:
        """One load into the target per DuckDB file at a time, across processes and threads.

        A load claims ledger rows, then sends them. Two loads in flight at once (a backfill with
        concurrency) could each claim a different version of one company and have the older
        one land last: a stale overwrite that the ledger would not see. The lock is an OS file
        lock on ``<database>.load.lock``, released when its holder ends, even by SIGKILL; a
        second load waits for it.
        """
        if self.database == ":memory:" or fcntl is None:
            yield
            return
        lock_path = Path(f"{self.database}.load.lock")
        try:
            lock_path.parent.mkdir(parents=True, exist_ok=True)
            handle = lock_path.open("a+")
        except OSError as e:
            raise StorageError(f"cannot open the load lock {lock_path}: {e}") from e
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log.info("another run is loading from %s; waiting for it to finish", self.database)
                fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
