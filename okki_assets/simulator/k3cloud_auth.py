"""The Kingdee simulator's side of authentication: signed headers and cookie sessions.

Written from the spec (kingdee-k3cloud.md §2), independently of the production client:

- Signed headers (sdk-py 8.2.0): ``X-Api-Signature`` is base64 of the hex HMAC-SHA256, keyed by
  the decoded second part of the AppID, of ``"POST\\n" + quote(path) with "/" as "%2F" +
  "\\n\\nx-api-nonce:" + nonce + "\\nx-api-timestamp:" + ts + "\\n"``; ``X-Kd-Signature`` is the
  same construction keyed by the AppSecret over ``AppID + "acct,user,lcid,orgnum"``; the
  decoded key is the base64 of the 24 decoded bytes of that part XOR the ROT13 of a fixed seed.
- Sessions: a uuid per session under the ``kdservice-sessionid`` cookie (and header); a session
  dies when the simulator kills it, after ``max_calls`` calls, or when its identity opens more
  than ``max_sessions`` (the oldest dies: the "踢人" of the V6.0 spec).
"""

from __future__ import annotations

import base64
import codecs
import hashlib
import hmac
import threading
import uuid
from dataclasses import dataclass
from urllib.parse import quote

SEED = "0054s397p6234378o09pn7q3r5qropr7"


def hex_hmac_b64(message: str, key: str) -> str:
    digest = hmac.new(key.encode("utf-8"), message.encode("utf-8"), hashlib.sha256).hexdigest()
    return base64.b64encode(digest.encode("utf-8")).decode("ascii")


def decode_app_secret(part: str) -> str:
    """The key of ``X-Api-Signature``: the AppID's second part decoded (empty if not 32 chars)."""
    if len(part) != 32:
        return ""
    raw = base64.b64decode(part)
    key = codecs.encode(SEED, "rot13").encode("ascii")
    return base64.b64encode(bytes(b ^ key[i] for i, b in enumerate(raw))).decode("ascii")


def api_signature(path: str, app_id: str, ts: str, nonce: str) -> str:
    encoded = quote(path, encoding="utf-8").replace("/", "%2F")
    text = f"POST\n{encoded}\n\nx-api-nonce:{nonce}\nx-api-timestamp:{ts}\n"
    secret_part = app_id.split("_", 1)[1] if "_" in app_id else ""
    return hex_hmac_b64(text, decode_app_secret(secret_part))


def kd_signature(app_id: str, app_secret: str, app_data: str) -> str:
    return hex_hmac_b64(app_id + app_data, app_secret)


@dataclass(frozen=True)
class Identity:
    acct_id: str
    username: str
    lcid: int


@dataclass
class Session:
    sid: str
    identity: Identity
    calls: int = 0


class Sessions:
    """Live sessions by id; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._live: dict[str, Session] = {}
        self.opened = 0

    def open(self, identity: Identity, max_sessions: int) -> Session:
        with self._lock:
            mine = [s for s in self._live.values() if s.identity == identity]
            while len(mine) >= max_sessions:
                oldest = mine.pop(0)
                self._live.pop(oldest.sid, None)
            session = Session(sid=str(uuid.uuid4()), identity=identity)
            self._live[session.sid] = session
            self.opened += 1
            return session

    def use(self, sid: str | None, max_calls: int | None) -> Session | None:
        """The live session ``sid`` with this call counted, or None (absent, dead or spent)."""
        with self._lock:
            session = self._live.get(sid or "")
            if session is None:
                return None
            session.calls += 1
            if max_calls is not None and session.calls > max_calls:
                self._live.pop(session.sid, None)
                return None
            return session

    def close(self, sid: str | None) -> None:
        with self._lock:
            self._live.pop(sid or "", None)

    def kill_all(self) -> int:
        with self._lock:
            n = len(self._live)
            self._live.clear()
            return n

    def live(self) -> int:
        with self._lock:
            return len(self._live)
