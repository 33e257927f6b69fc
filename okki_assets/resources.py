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
from okki_assets.clients.okki import OkkiClient, RetrySettings, Timeouts
from okki_assets.clients.ratecontrol import AutoRate, LearnedRate
from okki_assets.clients.target import LandOnlyTarget, TargetClient
from okki_assets.errors import ConfigError, StorageError
from okki_assets.mapping import TargetMapping, load_mapping
from okki_assets.targets.k3cloud import K3CloudTarget, k3cloud_mapping
from okki_assets.targets.k3cloud_api import K3CloudSettings

try:
    import fcntl
except ImportError:  # Windows: loads are not serialised across processes there
    fcntl = None  # type: ignore[assignment]

REAL_OKKI_BASE_URL = "https://api-sandbox.xiaoman.cn"
log = logging.getLogger(__name__)


K3CLOUD_SCHEME = "k3cloud+"


def _checked_url(name: str, value: str) -> str:
    try:
        url = httpx.URL(value)
    except Exception as e:  # httpx raises several types for malformed URLs
        raise ConfigError(f"{name} is not a valid URL: {value!r}") from e
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigError(f"{name} must be an http(s) URL with a host, got {value!r}")
    return str(url).rstrip("/")


def _credential(name: str, value: str) -> str:
    """A credential as it is sent: surrounding whitespace stripped (a mounted secret's file often
    ends in a newline). One that still holds a character no HTTP header or form can carry as
    typed (a control or non-ASCII character) fails at once, naming the variable, never the
    value."""
    value = value.strip()
    if not all(" " <= ch <= "~" for ch in value):
        raise ConfigError(
            f"{name} contains a control or non-ASCII character: check how the secret is stored"
        )
    return value


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
    concurrency: int = Field(default=8, description="Info calls in flight at once.")
    page_size: int = Field(default=100, description="`count` of each list page.")
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
    """Kingdee K/3 Cloud settings, used when TARGET_URL is ``k3cloud+http(s)://host/k3cloud/``."""

    acct_id: str = Field(default="", description="账套ID, the data centre id (K3CLOUD_ACCT_ID).")
    username: str = Field(default="", description="The integration user (K3CLOUD_USERNAME).")
    app_id: str = Field(default="", description="第三方系统登录授权 AppID (K3CLOUD_APP_ID).")
    app_secret: str = Field(default="", description="Its AppSecret (K3CLOUD_APP_SECRET).")
    password: str = Field(default="", description="Set instead: ValidateUser (K3CLOUD_PASSWORD).")
    lcid: int = Field(default=2052, description="Language id (K3CLOUD_LCID).")
    org: str = Field(default="100", description="Create/use organisation number (K3CLOUD_ORG).")
    currency: str = Field(default="PRE001", description="Trading currency (K3CLOUD_CURRENCY).")
    number_prefix: str = Field(default="OKKI", description="FNumber = prefix + company id.")
    batch_size: int = Field(default=50, description="Customers per BatchSave (K3CLOUD_BATCH_SIZE).")
    country_map: str = Field(default="", description="ISO=number pairs, comma-separated.")
    timeout_seconds: float = Field(default=120.0, description="Seconds to wait for a reply.")
    settle_seconds: float = Field(default=120.0, description="Wait after a lost create reply.")

    def settings(self, url: str) -> K3CloudSettings:
        base = _checked_url("TARGET_URL", url.strip()[len(K3CLOUD_SCHEME) :]) + "/"
        for name, value in (("K3CLOUD_ACCT_ID", self.acct_id), ("K3CLOUD_USERNAME", self.username)):
            if not value.strip():
                raise ConfigError(f"{name} is empty or not set while TARGET_URL is k3cloud+")
        if not self.password.strip() and not (self.app_id.strip() and self.app_secret.strip()):
            raise ConfigError(
                "set K3CLOUD_APP_ID and K3CLOUD_APP_SECRET (or K3CLOUD_PASSWORD for ValidateUser)"
            )
        return K3CloudSettings(
            base_url=base,
            acct_id=self.acct_id.strip(),
            username=self.username.strip(),
            app_id=self.app_id.strip(),
            app_secret=_credential("K3CLOUD_APP_SECRET", self.app_secret),
            password=_credential("K3CLOUD_PASSWORD", self.password),
            lcid=self.lcid,
            org=self.org,
            currency=self.currency,
            number_prefix=self.number_prefix,
            batch_size=self.batch_size,
            country_map=_pairs("K3CLOUD_COUNTRY_MAP", self.country_map),
            timeout_seconds=self.timeout_seconds,
            settle_seconds=self.settle_seconds,
        )


def _pairs(name: str, text: str) -> dict[str, str]:
    """``CN=China,US=USA`` as a dict."""
    out: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ConfigError(f"{name} must be ISO=number pairs separated by commas, got {item!r}")
        out[key.strip()] = value.strip()
    return out


class TargetResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """The target platform. An empty ``url`` is land-only mode: nothing is sent."""

    url: str = Field(default="", description="Target API root (TARGET_URL); empty = land-only.")
    token: str = Field(default="", description="Bearer token for the target (TARGET_TOKEN).")
    batch_size: int = Field(default=500, description="Records per batch (the target's max_batch).")
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
        return self.url.strip().lower().startswith(K3CLOUD_SCHEME)

    def open(self) -> TargetClient | LandOnlyTarget | K3CloudTarget:
        """A client to use in a ``with`` block; the null client in land-only mode."""
        if self.land_only:
            return LandOnlyTarget()
        if self.is_k3cloud:
            return K3CloudTarget(self.k3cloud.settings(self.url), self.mapping())
        if not self.token.strip():
            raise ConfigError("TARGET_TOKEN is empty or not set while TARGET_URL is set")
        return TargetClient(
            _checked_url("TARGET_URL", self.url),
            _credential("TARGET_TOKEN", self.token),
            max_batch=self.batch_size,
            timeouts=Timeouts(read=self.read_timeout),
            retry=RetrySettings(base_delay=self.retry_base_delay),
        )

    def mapping(self) -> TargetMapping:
        if self.is_k3cloud and not self.mapping_file:
            return k3cloud_mapping()
        return load_mapping(self.mapping_file or None)

    def check(self) -> None:
        """Fail fast on a bad TARGET_URL, TARGET_TOKEN or mapping file; sends nothing."""
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

    database: str = Field(description="Path of the DuckDB file (OKKI_ASSETS_DUCKDB).")
    lock_timeout: float = Field(default=120.0, description="Seconds to wait for a locked file.")
    memory_limit: str = Field(
        default="256MB",
        description="DuckDB's memory limit in this process (bigger work spills to disk), so a"
        " large window keeps the run's memory flat; empty = DuckDB's default, 80% of the RAM"
        " (OKKI_ASSETS_DUCKDB_MEMORY).",
    )

    @contextmanager
    def get_connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
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
