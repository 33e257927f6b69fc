"""What stands between a business request and the OKKI simulator's data.

``AccessGate`` answers the token endpoint (client credentials, scopes, one expiry shared by the
tokens asked for within a token's life), checks a business call's access token (expired,
revoked, or past ``revoke_token_after`` calls), takes from the token's bucket and the daily
budget, answering in a throttle shape when empty (or when the request is one of
``throttle_calls``), and draws the injected faults from its seeded
RNG. It also holds OKKI's error answers (``business_error``, the OAuth errors, the denial).
The gate takes no lock: ``okki.OkkiSimulator`` calls it under its own.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import random
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from okki_assets.simulator.clock import CHINA, okki_text
from okki_assets.simulator.http import SimRequest, SimResponse
from okki_assets.simulator.okki_config import (
    DEFAULT_TOKEN_LIFETIME,
    OkkiSimConfig,
    OkkiSimStats,
    fault_status,
)

_DENIED = "The resource owner or authorization server denied the request."
_HTML_ERROR = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)
_REASONS = {
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def now_text() -> str:
    """The envelope's ``now``: the current China time as OKKI writes it."""
    return okki_text(dt.datetime.now(CHINA))


def business_error(code: int, message: str) -> SimResponse:
    """HTTP 200 with another business ``code`` in the envelope."""
    return SimResponse.json({"code": code, "message": message, "now": now_text()})


def echo_token(response: SimResponse, token: str, success_code: int) -> SimResponse:
    """An error answer whose ``message`` repeats the request's access token, as a gateway that
    echoes the request might; other answers as they are."""
    try:
        body = json.loads(response.body)
    except ValueError:
        return response
    if not isinstance(body, dict) or "message" not in body or body.get("code") == success_code:
        return response
    body["message"] = f"{body['message']} (access_token={token}; Authorization: Bearer {token})"
    echoed = SimResponse.json(body, status=response.status, headers=response.headers)
    echoed.delay, echoed.fault = response.delay, response.fault
    return echoed


def _oauth_error(error: str, description: str, *, message: str | None = None) -> SimResponse:
    return SimResponse.json(
        {"error": error, "error_description": description, "message": message or description},
        status=400,
    )


@dataclass(eq=False)
class AccessToken:
    scopes: frozenset[str]
    expires_at: float
    calls: int = 0
    revoked: bool = False
    bucket: float = 0.0
    stamp: float | None = None


class AccessGate:
    """Tokens issued, the quota granted so far, the throttle turn and the fault RNG."""

    def __init__(self, clock: Callable[[], float], fault_rng: random.Random) -> None:
        self._clock = clock
        self._fault_rng = fault_rng
        self.tokens: dict[str, AccessToken] = {}
        self.issued: list[str] = []
        self._token_expiry: float | None = None
        self._throttle_turn = 0
        self._granted = 0  # business requests the quota let through, ever
        self._asked = 0  # business requests that reached the quota, ever

    # the token endpoint

    def token_endpoint(self, request: SimRequest, cfg: OkkiSimConfig) -> SimResponse:
        if request.method != "POST":
            return SimResponse.json({"code": 405, "message": "Method Not Allowed"}, status=405)
        params = dict(request.query)
        is_json = "json" in request.headers.get("content-type", "")
        try:
            if is_json or request.body.lstrip()[:1] == b"{":
                payload = request.json()
                if not isinstance(payload, dict):
                    raise ValueError("not an object")
                params.update({k: "" if v is None else str(v) for k, v in payload.items()})
            else:
                params.update(request.form())
        except (ValueError, UnicodeDecodeError):
            return _oauth_error(
                "invalid_request",
                "The request is missing a required parameter, includes an invalid parameter "
                "value, includes a parameter more than once, or is otherwise malformed.",
            )
        if params.get("grant_type") != "client_credentials":
            return _oauth_error(
                "unsupported_grant_type",
                "The authorization grant type is not supported by the authorization server.",
            )
        client_ok = secrets.compare_digest(params.get("client_id", ""), cfg.client_id)
        secret_ok = secrets.compare_digest(params.get("client_secret", ""), cfg.client_secret)
        if not (client_ok and secret_ok):
            return _oauth_error("invalid_client", "Client authentication failed")
        requested = params.get("scope", "").split()
        missing = [scope for scope in requested if scope not in cfg.scopes]
        if missing:
            return _oauth_error(
                "invalid_scope",
                "The requested scope is invalid, unknown, or malformed",
                message=f"no permission {missing[0]} scopes",
            )
        now = self._clock()
        if self._token_expiry is None or self._token_expiry <= now:
            # Asking again within a token's life gives a token that does not live longer.
            self._token_expiry = now + (cfg.token_expires_in or DEFAULT_TOKEN_LIFETIME)
        token = secrets.token_urlsafe(32)
        self.tokens[token] = AccessToken(scopes=frozenset(requested), expires_at=self._token_expiry)
        self.issued.append(token)
        reply: dict[str, Any] = {"token_type": "Bearer", "access_token": token}
        if cfg.token_expires_in is not None:
            reply["expires_in"] = int(self._token_expiry - now)
        reply["refresh_token"] = "def50200" + secrets.token_hex(48)
        return SimResponse.json(reply)

    def revoke_all(self) -> int:
        """Revoke every issued token; returns how many were still valid."""
        live = [t for t in self.tokens.values() if not t.revoked]
        for token in live:
            token.revoked = True
        self._token_expiry = None
        return len(live)

    # a business call's token

    def authenticate(self, header: str, cfg: OkkiSimConfig) -> AccessToken | None:
        value = header.strip()
        if value[:7].lower() == "bearer ":
            value = value[7:].strip()
        token = self.tokens.get(value)
        if token is None or token.revoked:
            return None
        limit = cfg.revoke_token_after
        if self._clock() >= token.expires_at or (limit is not None and token.calls >= limit):
            token.revoked = True
            return None
        return token

    @staticmethod
    def denied(cfg: OkkiSimConfig, stats: OkkiSimStats) -> SimResponse:
        stats.denied += 1
        body = {
            "error": "access_denied",
            "error_description": _DENIED,
            "hint": "Access token could not be verified",
            "message": _DENIED,
        }
        return SimResponse.json(body, status=200 if cfg.denied_in_body else 401)

    # the quota and the daily budget

    def _quota_now(self, cfg: OkkiSimConfig) -> float | None:
        rps = cfg.quota_rps
        for after, changed in cfg.quota_after:
            if self._granted >= after:
                rps = changed
        return rps

    def take_quota(
        self, token: AccessToken, now: float, cfg: OkkiSimConfig, stats: OkkiSimStats
    ) -> SimResponse | None:
        """None when the call may go on, else the throttle answer."""
        self._asked += 1
        if cfg.daily_budget is not None and self._granted >= cfg.daily_budget:
            return self._budget_spent(cfg, stats)
        if self._asked in cfg.throttle_calls:
            return self._throttle(cfg, stats)
        rps = self._quota_now(cfg)
        if rps is None:
            self._grant(now, stats)
            return None
        burst = cfg.quota_burst if cfg.quota_burst is not None else max(1.0, rps)
        if token.stamp is None:
            token.bucket = burst
        else:
            token.bucket = min(burst, token.bucket + (now - token.stamp) * rps)
        token.stamp = now
        if token.bucket >= 1.0:
            token.bucket -= 1.0
            self._grant(now, stats)
            return None
        return self._throttle(cfg, stats)

    def _throttle(self, cfg: OkkiSimConfig, stats: OkkiSimStats) -> SimResponse:
        """A throttle answer, in the next of the configured shapes."""
        shape = cfg.throttle_shapes[self._throttle_turn % len(cfg.throttle_shapes)]
        self._throttle_turn += 1
        stats.throttled[shape] = stats.throttled.get(shape, 0) + 1
        if shape == "http429_retry_after":
            return SimResponse.json(
                {"code": 429, "message": "Too Many Requests"},
                status=429,
                headers={"Retry-After": "1"},
            )
        if shape == "http429":
            return SimResponse.json({"code": 429, "message": "Too Many Requests"}, status=429)
        if shape == "body429":
            return business_error(429, "请求过于频繁 Too Many Requests")
        return business_error(503, "服务繁忙，请稍后重试 Service Busy")

    def _grant(self, now: float, stats: OkkiSimStats) -> None:
        self._granted += 1
        stats.granted_times.append(now)

    @staticmethod
    def _budget_spent(cfg: OkkiSimConfig, stats: OkkiSimStats) -> SimResponse:
        wait = cfg.daily_retry_after
        if wait is None:
            now = dt.datetime.now(CHINA)
            midnight = dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time(), CHINA)
            wait = (midnight - now).total_seconds()
        stats.throttled["daily_budget"] = stats.throttled.get("daily_budget", 0) + 1
        return SimResponse.json(
            {"code": 429, "message": "daily request quota exceeded"},
            status=429,
            headers={"Retry-After": str(math.ceil(wait))},
        )

    # faults

    def pick_fault(self, cfg: OkkiSimConfig, stats: OkkiSimStats) -> SimResponse | None:
        """None, or (at ``fault_rate``) one of ``fault_kinds`` drawn from the fault RNG."""
        if cfg.fault_rate <= 0 or not cfg.fault_kinds:
            return None
        if self._fault_rng.random() >= cfg.fault_rate:
            return None
        kind = self._fault_rng.choice(cfg.fault_kinds)
        stats.faults[kind] = stats.faults.get(kind, 0) + 1
        if kind == "reset":
            partial = b'{"code":200,"message":"success","data":{"list":[{"company_id":'
            return SimResponse(
                status=200,
                body=partial,
                fault="reset",
                headers={"content-type": "application/json; charset=utf-8"},
            )
        if kind == "invalid_json":
            return SimResponse.text(_HTML_ERROR, status=200)
        status = fault_status(kind) or 500
        message = _REASONS.get(status, "Server Error")
        if kind.startswith("http"):
            return SimResponse.json({"code": status, "message": message}, status=status)
        return business_error(status, message)
