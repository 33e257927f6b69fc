"""The Kingdee K/3 Cloud WebAPI client: one session, signed headers or cookie login, replies.

Spec: shared/specs/kingdee-k3cloud.md (sections cited below).

- Every call is ``POST {base}/{Service}.common.kdsvc`` with the named body sdk-py 8.2.0 sends
  (§1). Signed-header mode (default, §2.1) signs every request and keeps the
  ``kdservice-sessionid`` the server hands out; cookie mode (``password`` set: ValidateUser, §2.2)
  logs in once and sends the session back as a header and a cookie.
- MsgCode 1 (§2.4): in cookie mode log in again once and repeat the call (nothing was done);
  in signed mode it means the credentials are wrong: a ``TargetAuthError``, never a loop.
- HTTP other than 200/206 (519, HTML error pages), resets, timeouts, a body that is not JSON or
  starts with ``response_error:``, and MsgCode 14 are transient (``TargetTransientError``).
  Reads are retried here with backoff; writes are sent once and the caller confirms by query
  (a lost write reply may hide a commit, §6).
- Replies are parsed leniently (§3): ``IsSuccess`` may be a string, ids int or string.
Secrets never leave this module: not in errors, logs or ``repr``.
"""

from __future__ import annotations

import base64
import codecs
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from okki_assets.clients.http import CallStats, RetrySettings, call_with_retries
from okki_assets.errors import (
    TargetAuthError,
    TargetPermanentError,
    TargetRetriesExhausted,
    TargetTransientError,
    TargetUnreachable,
)

log = logging.getLogger(__name__)

AUTH = "Kingdee.BOS.WebApi.ServicesStub.AuthService."
FORM = "Kingdee.BOS.WebApi.ServicesStub.DynamicFormService."
SUFFIX = ".common.kdsvc"
SEED = "0054s397p6234378o09pn7q3r5qropr7"
SID = "kdservice-sessionid"
MSG_SESSION_LOST = 1
MSG_CALL_LIMIT = 14
CAUSES = ("http5xx", "timeout", "transport", "invalid_json", "limit", "session_renewed")
_MAX_TEXT = 300


@dataclass(frozen=True)
class K3CloudSettings:
    """Where and as whom to call; secrets are kept out of ``repr``."""

    base_url: str  # http(s)://host/k3cloud/ (the k3cloud+ prefix already removed)
    acct_id: str
    username: str
    app_id: str = ""
    app_secret: str = field(default="", repr=False)
    password: str = field(default="", repr=False)
    lcid: int = 2052
    org: str = "100"
    currency: str = "PRE001"
    number_prefix: str = "OKKI"
    batch_size: int = 50
    country_map: dict[str, str] = field(default_factory=dict)
    timeout_seconds: float = 120.0  # the SDK's own (§1): a slow Save is normal
    settle_seconds: float = 120.0  # wait after a lost create reply before confirming by query

    @property
    def cookie_mode(self) -> bool:
        return bool(self.password)


@dataclass(frozen=True)
class ResponseStatus:
    """``Result.ResponseStatus`` of a reply (§3), parsed leniently."""

    ok: bool
    msg_code: int
    errors: dict[int, str]  # DIndex -> message
    successes: dict[int, int]  # DIndex -> Id
    first_error: str


def hex_hmac_b64(message: str, key: str) -> str:
    digest = hmac.new(key.encode("utf-8"), message.encode("utf-8"), hashlib.sha256).hexdigest()
    return base64.b64encode(digest.encode("utf-8")).decode("ascii")


def decode_app_secret(part: str) -> str:
    """The AppID's 32-character second part, decoded (sdk-py encode_util); "" otherwise."""
    if len(part) != 32:
        return ""
    raw = base64.b64decode(part)
    key = codecs.encode(SEED, "rot13").encode("ascii")
    return base64.b64encode(bytes(b ^ key[i % len(key)] for i, b in enumerate(raw))).decode()


def signed_headers(
    path: str, s: K3CloudSettings, timestamp: str, org_num: int = 0
) -> dict[str, str]:
    """The sdk-py 8.2.0 headers for a POST to ``path`` (§2.1)."""
    client_id, _, secret_part = s.app_id.partition("_")
    encoded = quote(path, encoding="utf-8").replace("/", "%2F")
    to_sign = f"POST\n{encoded}\n\nx-api-nonce:{timestamp}\nx-api-timestamp:{timestamp}\n"
    app_data = f"{s.acct_id},{s.username},{s.lcid},{org_num}"
    return {
        "X-Api-ClientID": client_id,
        "X-Api-Auth-Version": "2.0",
        "x-api-timestamp": timestamp,
        "x-api-nonce": timestamp,
        "x-api-signheaders": "x-api-timestamp,x-api-nonce",
        "X-Api-Signature": hex_hmac_b64(to_sign, decode_app_secret(secret_part)),
        "X-Kd-Appkey": s.app_id,
        "X-Kd-Appdata": base64.b64encode(app_data.encode("utf-8")).decode("ascii"),
        "X-Kd-Signature": hex_hmac_b64(s.app_id + app_data, s.app_secret),
    }


def _as_int(value: Any, default: int = 0) -> int:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return default


def parse_status(reply: Any) -> ResponseStatus | None:
    """The ResponseStatus of a write reply, or of an error wrapped in a query reply."""
    if isinstance(reply, list):  # [[{"Result": {...}}]] from ExecuteBillQuery
        first = reply[0][0] if reply and isinstance(reply[0], list) and reply[0] else None
        reply = first if isinstance(first, dict) else None
    result = reply.get("Result") if isinstance(reply, dict) else None
    rs = result.get("ResponseStatus") if isinstance(result, dict) else None
    if not isinstance(rs, dict):
        return None
    errors = {
        _as_int(e.get("DIndex")): str(e.get("Message") or "")
        for e in rs.get("Errors") or []
        if isinstance(e, dict)
    }
    successes = {
        _as_int(e.get("DIndex")): _as_int(e.get("Id"))
        for e in rs.get("SuccessEntitys") or []
        if isinstance(e, dict)
    }
    return ResponseStatus(
        ok=str(rs.get("IsSuccess")).lower() == "true",
        msg_code=_as_int(rs.get("MsgCode")),
        errors=errors,
        successes=successes,
        first_error=next(iter(errors.values()), ""),
    )


class K3CloudApi:
    """One session with one Kingdee account; not thread-safe (one writer per customer)."""

    def __init__(
        self,
        settings: K3CloudSettings,
        *,
        retry: RetrySettings = RetrySettings(),  # noqa: B008 - frozen dataclass
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.stats = CallStats(endpoints=("login", "query", "save", "operate"), causes=CAUSES)
        self.retry = retry
        self.sleep = sleep
        self._clock = clock
        self._sid: str | None = None
        self._logged_in = False
        self._contacted = False
        base = settings.base_url if settings.base_url.endswith("/") else settings.base_url + "/"
        self._base_path = urlsplit(base).path
        self._http = httpx.Client(
            base_url=base, timeout=settings.timeout_seconds, transport=transport
        )

    # -- sessions ----------------------------------------------------------------------------

    def login(self) -> None:
        """Cookie mode: ValidateUser once (§2.2); signed mode needs none."""
        if not self.settings.cookie_mode:
            return
        s = self.settings
        body = {"acctID": s.acct_id, "username": s.username, "password": s.password, "lcid": s.lcid}
        reply = self._post_retrying("login", AUTH + "ValidateUser", body)
        if not isinstance(reply, dict) or _as_int(reply.get("LoginResultType"), -99) != 1:
            said = str(reply.get("Message") or "") if isinstance(reply, dict) else ""
            raise TargetAuthError(
                "Kingdee refused the login (ValidateUser): check K3CLOUD_ACCT_ID, "
                f"K3CLOUD_USERNAME and K3CLOUD_PASSWORD ({self._clean(said)})"
            )
        self._sid = str(reply.get("KDSVCSessionId") or self._sid or "")
        self._logged_in = True

    def logout(self) -> None:
        if self.settings.cookie_mode and self._logged_in:
            try:
                self._send(AUTH + "Logout", {})
            except (httpx.HTTPError, TargetTransientError):
                log.debug("logout failed; the session will time out")
            self._logged_in = False

    def close(self) -> None:
        self.logout()
        self._http.close()

    # -- calls -------------------------------------------------------------------------------

    def query(self, data: dict[str, Any]) -> list[list[Any]]:
        """ExecuteBillQuery: rows in FieldKeys order; retried on transient failures."""
        reply = self._post_retrying("query", FORM + "ExecuteBillQuery", {"data": data})
        rs = parse_status(reply)
        if rs is not None:
            raise TargetPermanentError(
                f"ExecuteBillQuery refused (MsgCode {rs.msg_code}): {self._clean(rs.first_error)}",
                endpoint="ExecuteBillQuery",
            )
        if not isinstance(reply, list):
            raise TargetPermanentError("ExecuteBillQuery answered no list", endpoint="query")
        return [row for row in reply if isinstance(row, list)]

    def write(self, method: str, body: dict[str, Any]) -> ResponseStatus:
        """One write, sent once (the caller confirms a lost reply by query)."""
        endpoint = "save" if method in ("Save", "BatchSave") else "operate"
        reply = self._post(endpoint, FORM + method, body)
        rs = parse_status(reply)
        if rs is None:
            raise TargetTransientError(
                f"{method} answered no ResponseStatus", cause="invalid_json", endpoint=method
            )
        return rs

    # -- plumbing ----------------------------------------------------------------------------

    def _post_retrying(self, endpoint: str, service: str, body: dict[str, Any]) -> Any:
        def exhausted(last: BaseException, attempts: int, elapsed: float) -> BaseException:
            return TargetRetriesExhausted(
                f"gave up after {attempts} attempts in {elapsed:.1f}s ({str(last)[:200]})",
                endpoint=service.rsplit(".", 1)[-1],
            )

        return call_with_retries(
            lambda: self._post(endpoint, service, body),
            self.retry,
            transient=TargetTransientError,
            stats=self.stats,
            exhausted=exhausted,
            sleep=self.sleep,
            clock=self._clock,
        )

    def _post(self, endpoint: str, service: str, body: dict[str, Any]) -> Any:
        """One call, repeated once after a cookie-mode re-login when the session was lost."""
        self.stats.count_request(endpoint)
        reply = self._send(service, body)
        rs = parse_status(reply)
        if rs is not None and rs.msg_code == MSG_CALL_LIMIT:
            raise TargetTransientError(
                f"refused whole (MsgCode 14): {self._clean(rs.first_error)}",
                cause="limit",
                endpoint=service.rsplit(".", 1)[-1],
            )
        if rs is None or rs.msg_code != MSG_SESSION_LOST or service.startswith(AUTH):
            return reply
        if not self.settings.cookie_mode:
            raise TargetAuthError(
                "Kingdee refused the signed request (MsgCode 1): check K3CLOUD_ACCT_ID, "
                "K3CLOUD_USERNAME, K3CLOUD_APP_ID, K3CLOUD_APP_SECRET and K3CLOUD_LCID against "
                "第三方系统登录授权",
                endpoint=service.rsplit(".", 1)[-1],
            )
        log.info("Kingdee session lost; logging in again once")
        self.stats.count_retry("session_renewed")
        self._sid = None
        self.login()
        reply = self._send(service, body)
        rs = parse_status(reply)
        if rs is not None and rs.msg_code == MSG_SESSION_LOST:
            raise TargetAuthError("Kingdee lost the session again right after a new login")
        return reply

    def _send(self, service: str, body: dict[str, Any]) -> Any:
        name = service.rsplit(".", 1)[-1]
        path = self._base_path + service + SUFFIX
        headers = {"Content-Type": "application/json;charset=utf-8", "User-Agent": "okki-assets"}
        if not self.settings.cookie_mode:
            headers.update(signed_headers(path, self.settings, str(int(time.time()))))
        if self._sid:
            headers[SID] = self._sid
            headers["Cookie"] = f"{SID}={self._sid}"
        content = json.dumps(body, ensure_ascii=False).encode("utf-8")
        try:
            resp = self._http.post(service + SUFFIX, content=content, headers=headers)
        except httpx.TimeoutException as exc:
            raise TargetTransientError(f"{name} timed out", cause="timeout", endpoint=name) from exc
        except httpx.TransportError as exc:
            if isinstance(exc, httpx.ConnectError) and not self._contacted:
                raise TargetUnreachable(
                    "cannot connect to Kingdee: check TARGET_URL and the network", endpoint=name
                ) from exc
            raise TargetTransientError(
                f"{name}: transport error ({type(exc).__name__})", cause="transport", endpoint=name
            ) from exc
        finally:
            self._http.cookies.clear()
        self._contacted = True
        return self._interpret(name, resp)

    def _interpret(self, name: str, resp: httpx.Response) -> Any:
        sid = resp.cookies.get(SID) or resp.headers.get(SID)
        if sid:
            self._sid = sid
        text = resp.text
        if resp.status_code not in (200, 206):
            if "thirty passport" in text:
                raise TargetAuthError(
                    "Kingdee refused the account (Fail to verify thirty passport): "
                    "check K3CLOUD_ACCT_ID",
                    status=resp.status_code,
                    endpoint=name,
                )
            if 400 <= resp.status_code < 500 and resp.status_code not in (408, 429):
                raise TargetPermanentError(
                    f"HTTP {resp.status_code}: check TARGET_URL", status=resp.status_code,
                    endpoint=name,
                )  # fmt: skip
            raise TargetTransientError(
                f"HTTP {resp.status_code}", cause="http5xx", status=resp.status_code, endpoint=name
            )
        if text.startswith("response_error:"):
            raise TargetTransientError(
                f"server exception: {self._clean(text[15:])}", cause="http5xx", endpoint=name
            )
        try:
            return json.loads(text)
        except ValueError as exc:
            raise TargetTransientError(
                f"{name} answered no JSON", cause="invalid_json", endpoint=name
            ) from exc

    def _clean(self, text: str) -> str:
        for secret in (self.settings.app_secret, self.settings.password):
            if secret:
                text = text.replace(secret, "***")
        return text[:_MAX_TEXT]
