"""The project's error tree: one root, a branch per remote system, a leaf per kind of failure.

Messages name the endpoint, the parameters and the code. They never carry a secret: the
client secret, access tokens and target tokens are kept out of every message by construction
(callers pass only non-secret parameters in)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta


class OkkiAssetsError(Exception):
    """Root of every error raised on purpose by okki_assets."""


class ConfigError(OkkiAssetsError):
    """Bad configuration: a missing variable, a malformed URL, an unreadable mapping file."""


class OkkiError(OkkiAssetsError):
    """Anything that went wrong talking to the OKKI Open API."""

    def __init__(
        self,
        message: str,
        *,
        endpoint: str = "",
        params: Mapping[str, object] | None = None,
        code: object = None,
    ) -> None:
        self.endpoint = endpoint
        self.params = dict(params or {})
        self.code = code
        parts = [message]
        if endpoint:
            parts.append(f"endpoint={endpoint}")
        if self.params:
            parts.append("params=" + ", ".join(f"{k}={v}" for k, v in sorted(self.params.items())))
        if code is not None:
            parts.append(f"code={code}")
        super().__init__(" | ".join(parts))


class OkkiAuthError(OkkiError):
    """Credentials refused (invalid_client, unsupported grant, missing scope): not retried."""


class OkkiPermanentError(OkkiError):
    """A non-success answer that retrying will not fix."""


class OkkiBusinessError(OkkiPermanentError):
    """An HTTP 200 whose body ``code`` is neither success, nor transient, nor an auth refusal."""


class OkkiUnusableReply(OkkiPermanentError):
    """A reply that is JSON but cannot be used, the same on every try: ``reason`` says why
    (nested too deep, not valid UTF-8). Info quarantines the one company; elsewhere the call
    fails."""

    def __init__(self, message: str, *, reason: str, **kw: object):
        self.reason = reason
        super().__init__(message, **kw)  # type: ignore[arg-type]


class OkkiTransientError(OkkiError):
    """A transient signal (throttle, 5xx, reset, timeout, bad JSON), retried within a budget."""

    def __init__(self, message: str, *, cause: str, retry_after: float | None = None, **kw: object):
        self.cause = cause
        self.retry_after = retry_after
        super().__init__(message, **kw)  # type: ignore[arg-type]


class OkkiRetriesExhausted(OkkiError):
    """Transient failures went on past the attempt cap or the time budget."""


class OkkiQuotaExhausted(OkkiError):
    """A throttle answer asked to wait past the run's retry budget (a daily quota, say): the run
    ends at once, naming when OKKI will answer again, instead of sleeping or retrying against it.
    ``until`` is that moment in China time; ``progress`` says how far the pull got."""

    def __init__(
        self,
        until: datetime,
        *,
        retry_after: float,
        budget_seconds: float,
        progress: str = "",
        **kw: object,
    ) -> None:
        self.until = until
        self.retry_after = retry_after
        self.budget_seconds = budget_seconds
        self.progress = progress
        asked_on = (until - timedelta(seconds=retry_after)).date()
        when = until.strftime("%H:%M" if until.date() == asked_on else "%Y-%m-%d %H:%M")
        message = (
            f"OKKI asks to wait until {when} (China time), past the run's retry budget of "
            f"{budget_seconds:.0f} s: stopped instead of waiting"
        )
        super().__init__(message + (f"; {progress}" if progress else ""), **kw)  # type: ignore[arg-type]

    def with_progress(self, progress: str) -> OkkiQuotaExhausted:
        """The same stop, saying how far the pull got (e.g. "120 of 2000 companies fetched")."""
        return OkkiQuotaExhausted(
            self.until,
            retry_after=self.retry_after,
            budget_seconds=self.budget_seconds,
            progress=progress,
            endpoint=self.endpoint,
            params=self.params,
            code=self.code,
        )


class PaginationError(OkkiError):
    """The list endpoint misbehaved while paging: a repeated page, or the hard page cap reached."""


class RepeatedPageError(PaginationError):
    """A page repeated the one before it (same rows, same order): a server ignoring
    ``start_index``, or a bulk edit that shifted the list by exactly one page while paging."""


class IncompleteWindowError(OkkiError):
    """A window's list did not converge: some company may be missing (the 漏单 guard)."""


class TargetError(OkkiAssetsError):
    """Anything that went wrong talking to the target platform."""

    def __init__(self, message: str, *, status: int | None = None, endpoint: str = "") -> None:
        self.status = status
        self.endpoint = endpoint
        parts = [message]
        if endpoint:
            parts.append(f"endpoint={endpoint}")
        if status is not None:
            parts.append(f"status={status}")
        super().__init__(" | ".join(parts))


class TargetAuthError(TargetError):
    """HTTP 401 from the target: the token is wrong or missing."""


class TargetPermanentError(TargetError):
    """400, 409 or another answer that resending will not fix."""


class TargetTransientError(TargetError):
    """429, 5xx, timeout or reset: resent with the same Idempotency-Key."""

    def __init__(self, message: str, *, cause: str, retry_after: float | None = None, **kw: object):
        self.cause = cause
        self.retry_after = retry_after
        super().__init__(message, **kw)  # type: ignore[arg-type]


class TargetRetriesExhausted(TargetError):
    """Transient failures went on past the attempt cap or the time budget (the batch may or may
    not have been applied; resending it later with the same Idempotency-Key is safe)."""


class TargetUnreachable(TargetError):
    """The first request of a client could not even connect: a wrong TARGET_URL or no network.
    Not retried (a host never reached is not a blip); nothing was sent, so resending later is
    safe."""


class TargetBatchTooLarge(TargetError):
    """413, or 400 for a batch over max_batch: the caller splits the batch."""


class TargetNotAuditable(TargetError):
    """The target cannot be read back (land-only mode, or a target without a read-back): the
    audit says so and guesses nothing."""


class TargetSchemaError(TargetError):
    """The target's table and the mapping disagree in a way that adding a column cannot fix
    (a column of another type, a mapped key dropped): the run stops naming the column."""


class StorageError(OkkiAssetsError):
    """The DuckDB file could not be opened or written (locked, read-only, corrupt)."""


class MappingConfigError(ConfigError):
    """The mapping file is unreadable or names an unknown key."""
