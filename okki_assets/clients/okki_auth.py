"""OKKI's access token: fetching it, caching it, renewing it, and recognising a refusal.

- Auth is OAuth2 client_credentials. The token is cached and renewed a few minutes before it
  expires; a reply without ``expires_in`` is taken to live 8 h. One thread renews while the others
  wait. A first token request that cannot even connect stops at once (a wrong OKKI_BASE_URL or
  no network); later connection failures are retried.
- HTTP 401, or ``access_denied`` / ``invalid_token`` in a 200 body, refuses the token: it is
  renewed and the call repeated. A renewed token refused before it ever served a call means the
  credentials are at fault (a token that did serve calls may be revoked again mid-window: renewed
  again, a few times per call).
- Refused credentials, an unsupported grant or a missing scope stop at once with a message naming
  what to check; the secret never appears in a message.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping

import httpx

from okki_assets.clients.http import CallStats, parse_retry_after
from okki_assets.clients.masking import mask_secrets
from okki_assets.clients.okki_api import (
    NOT_JSON,
    TOKEN_PATH,
    coerce_int,
    is_scope_refusal,
    json_body,
    server_text,
    unreachable_hint,
)
from okki_assets.errors import OkkiAuthError, OkkiPermanentError, OkkiTransientError

log = logging.getLogger(__name__)

#: Assumed token lifetime when the reply has no ``expires_in`` (the docs' 8 hours).
DEFAULT_TOKEN_LIFETIME = 28800.0
#: Renew this many seconds before expiry (at most a tenth of the lifetime for short tokens).
RENEW_EARLY_SECONDS = 300.0
#: ``error`` values that mean "this access token is no good": renew once and repeat.
TOKEN_REFUSALS = frozenset({"access_denied", "invalid_token"})
#: Renewals one call may make, even of tokens that served other calls, before it gives up.
MAX_TOKEN_RENEWALS = 5


class AccessDenied(Exception):
    """The access token was refused; the caller renews it and repeats the request."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def refuses_token(status: int, body: object) -> bool:
    """Whether an answer refuses the access token (HTTP 401 or a token ``error`` in the body)."""
    error = body.get("error") if isinstance(body, dict) else None
    return status == 401 or (isinstance(error, str) and error in TOKEN_REFUSALS)


class TokenCache:
    """The cached access token; renewal is serialised so many expired callers cause one fetch."""

    def __init__(self, fetch: Callable[[], tuple[str, float]], clock: Callable[[], float]) -> None:
        self._fetch = fetch
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._renew_at = 0.0
        self._served: set[str] = set()  # tokens that answered at least one call
        self._issued: list[str] = []  # every token obtained, to mask wherever it is echoed

    def served(self, token: str) -> None:
        """Note that ``token`` answered a call (it was good when issued)."""
        if token not in self._served:
            with self._lock:
                self._served.add(token)

    def has_served(self, token: str) -> bool:
        return token in self._served

    def get(self) -> str:
        with self._lock:
            if self._token is None or self._clock() >= self._renew_at:
                obtained = self._clock()
                token, lifetime = self._fetch()
                self._token = token
                self._issued.append(token)
                self._renew_at = obtained + lifetime - min(RENEW_EARLY_SECONDS, lifetime / 10)
            return self._token

    def issued(self) -> tuple[str, ...]:
        """Every token obtained so far (expired and refused ones too). Takes no lock: it is
        called while a token is fetched under the lock (to mask a refusal), and copying a list
        that is only appended to is atomic."""
        return tuple(self._issued)

    def invalidate(self, stale: str) -> None:
        """Forget ``stale`` unless another thread already replaced it."""
        with self._lock:
            if self._token == stale:
                self._token = None


class OkkiAuth:
    """The client's credentials and its token cache (``tokens``). Thread-safe."""

    def __init__(
        self,
        http: httpx.Client,
        *,
        base_url: str,
        client_id: str,
        client_secret: str,
        scope: str,
        stats: CallStats,
        clock: Callable[[], float],
    ) -> None:
        self.base_url = base_url
        self.scope = scope
        self._http = http
        self._client_id = client_id
        self._client_secret = client_secret
        self._stats = stats
        self._contacted = False  # any answer from OKKI yet (a first connection refused is fatal)
        self.tokens = TokenCache(self._fetch_token, clock)

    def secrets(self) -> tuple[str, ...]:
        """What no message may hold: the client secret and every access token obtained."""
        return (self._client_secret, *self.tokens.issued())

    def scrub(self, text: str) -> str:
        """``text`` with the client secret, every access token and any echoed token masked."""
        return mask_secrets(text, self.secrets())

    def renew_refused(
        self,
        token: str,
        denied: AccessDenied,
        renewals: int,
        path: str,
        params: Mapping[str, object],
    ) -> None:
        """``token`` was refused on ``path`` after ``renewals`` renewals in this call: forget it
        so the next ``tokens.get()`` fetches a new one, or raise OkkiAuthError when a freshly
        renewed token was refused (the credentials are at fault) or the call renewed too often."""
        fresh_refused = renewals > 0 and not self.tokens.has_served(token)
        if fresh_refused or renewals >= MAX_TOKEN_RENEWALS:
            raise OkkiAuthError(
                "OKKI refused a freshly renewed access token: check that the app "
                "behind OKKI_CLIENT_ID is still authorised and has the needed scope",
                endpoint=path,
                params=params,
                code=denied.status,
            ) from None
        self._stats.count_retry("token_renewed")
        self.tokens.invalidate(token)
        log.info("OKKI refused the access token on %s; renewing it", path)

    def _fetch_token(self) -> tuple[str, float]:
        """POST the client credentials; returns (access token, lifetime in seconds)."""
        self._stats.count_request("token")
        form = {
            "grant_type": "client_credentials",
            "client_id": self._client_id,
            "client_secret": self._client_secret,
            "scope": self.scope,
        }
        params = {"scope": self.scope}
        resp = self._post_token(form, params)
        status = resp.status_code
        body = json_body(resp)
        if status == 429 or status >= 500:
            raise OkkiTransientError(
                f"token endpoint answered HTTP {status}",
                cause="http429" if status == 429 else "http5xx",
                retry_after=parse_retry_after(resp.headers.get("Retry-After")),
                endpoint=TOKEN_PATH,
                params=params,
                code=status,
            )
        if body is NOT_JSON and 200 <= status < 300:
            raise OkkiTransientError(
                "token endpoint answered with a body that is not JSON",
                cause="invalid_json",
                endpoint=TOKEN_PATH,
                params=params,
                code=status,
            )
        reply = body.get("data") if isinstance(body, dict) and "access_token" not in body else body
        if isinstance(reply, dict) and reply.get("access_token"):
            token = str(reply["access_token"]).strip()
            if token[:7].lower() == "bearer ":
                token = token[7:].strip()
            expires_in = coerce_int(reply.get("expires_in"))
            lifetime = DEFAULT_TOKEN_LIFETIME
            if expires_in is not None and expires_in > 0:
                lifetime = float(expires_in)
            log.debug("obtained an OKKI access token valid for %.0fs", lifetime)
            return token, lifetime
        raise self._token_refusal(status, body, params)

    def _post_token(self, form: dict[str, str], params: Mapping[str, object]) -> httpx.Response:
        """POST the token request; no answer at all raises OkkiTransientError, or
        OkkiPermanentError when OKKI was never reached (a wrong OKKI_BASE_URL, no network)."""
        try:
            resp = self._http.post(TOKEN_PATH, data=form)
            self._contacted = True
        except httpx.TimeoutException as exc:
            raise OkkiTransientError(
                f"token request timed out ({type(exc).__name__})",
                cause="timeout",
                endpoint=TOKEN_PATH,
                params=params,
            ) from exc
        except (httpx.TransportError, httpx.DecodingError) as exc:
            if isinstance(exc, httpx.ConnectError) and not self._contacted:
                # OKKI was never reached: a wrong OKKI_BASE_URL or no network, not a blip.
                raise OkkiPermanentError(
                    f"token request failed ({type(exc).__name__})"
                    + unreachable_hint(exc, self.base_url),
                    endpoint=TOKEN_PATH,
                    params=params,
                ) from exc
            raise OkkiTransientError(
                f"token request failed in transport ({type(exc).__name__})"
                + unreachable_hint(exc, self.base_url),
                cause="transport",
                endpoint=TOKEN_PATH,
                params=params,
            ) from exc
        return resp

    def _token_refusal(self, status: int, body: object, params: Mapping[str, object]) -> Exception:
        error = self.scrub(str(body.get("error") or ""))[:40] if isinstance(body, dict) else ""
        said = server_text(body, self.secrets())
        if error == "invalid_client":
            what = (
                "OKKI refused the client credentials (invalid_client): "
                "check OKKI_CLIENT_ID and OKKI_CLIENT_SECRET"
            )
        elif error == "unsupported_grant_type":
            what = (
                "OKKI refused the client_credentials grant (unsupported_grant_type): check that "
                "OKKI_CLIENT_ID belongs to an app allowed to use client credentials"
            )
        elif is_scope_refusal(said):
            what = (
                f"the OKKI app has no permission for scope {self.scope!r}: grant the scope to the "
                "app or check the configured scope"
            )
        else:
            what = (
                "OKKI refused the access-token request: check OKKI_CLIENT_ID, "
                "OKKI_CLIENT_SECRET and the scope"
            )
        if said:
            what += f" (server said: {said})"
        return OkkiAuthError(what, endpoint=TOKEN_PATH, params=params, code=error or status)
