"""The OKKI Open API's shapes as the client sees them: its paths, its success codes, the reply
types (``ListPage``, ``InfoResult``), a listed company's identity (``record_key``) and how a
reply's body is read (numbers that may be text, a body that may not be JSON, the server's words).

Everything here is plain data and pure functions; the modules that talk to OKKI (okki_auth,
okki_calls, okki_paging, okki) share them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from okki_assets.clients.masking import mask_secrets

TOKEN_PATH = "/v1/oauth2/access_token"
LIST_PATH = "/v1/company/list"
INFO_PATH = "/v1/company/info"

#: Body ``code`` values of a success.
SUCCESS_CODES = frozenset({0, 200})
_MAX_SERVER_TEXT = 200


@dataclass
class ListPage:
    """One page of ``/v1/company/list``. ``total_item`` is the reply's ``totalItem`` (0 for an
    empty result without ``data``); ``raw_count`` is the undocumented ``count`` as received."""

    page: int
    records: list[dict[str, Any]]
    total_item: int
    raw_count: object


@dataclass
class InfoResult:
    """One ``/v1/company/info`` answer. ``data`` None: code 404 (deleted while syncing), the
    other business ``code`` OKKI answered for this company, or the ``unusable`` reason of a
    payload that cannot be read (``UnusableBody``)."""

    company_id: str
    data: dict[str, Any] | None
    code: int | None = None
    unusable: str | None = None


#: How a listed company without a company_id is keyed (``record_key``).
RAW_KEY_PREFIX = "raw:"


def is_raw_key(key: str) -> bool:
    """Whether a listed company's key is its record, not a company_id (``record_key``)."""
    return key.startswith(RAW_KEY_PREFIX)


def record_key(record: Mapping[str, Any]) -> str:
    """A listed company's identity: its company_id as text (123 and "123" are one company; 0
    is an id like any other, cleaning judges it), or, when the id is absent or blank, the
    record itself (``raw:`` + its JSON), so that such a row still counts and is kept."""
    cid = record.get("company_id")
    if cid is None or str(cid).strip() == "":
        return RAW_KEY_PREFIX + json.dumps(record, sort_keys=True, ensure_ascii=False, default=str)
    return str(cid).strip()


def coerce_int(value: object) -> int | None:
    """An int from an int, a numeric string or an integral float; None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None


#: What ``json_body`` returns for a body that is not JSON.
NOT_JSON = object()
#: Containers nested deeper than this make a reply unusable. An OKKI company is some six levels
#: deep with its envelope; far deeper ones would exhaust Python's recursion in a later stage.
MAX_JSON_DEPTH = 64
NESTED_TOO_DEEP = "payload_nested_too_deep"
NOT_UTF8 = "payload_not_utf8"


@dataclass(frozen=True)
class UnusableBody:
    """A reply that is JSON but cannot be used as it is, the same on every try: nested deeper
    than ``MAX_JSON_DEPTH`` (``NESTED_TOO_DEEP``), or not valid UTF-8 (``NOT_UTF8``)."""

    reason: str


def _nested_deeper_than(value: object, limit: int) -> bool:
    """Whether containers nest deeper than ``limit`` (without recursion: any depth is safe)."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children: Iterable[object] = (
            item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        )
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return False


def read_json(resp: httpx.Response) -> Any:
    """The reply's body as JSON; ``NOT_JSON`` for a body that is not JSON at all (an HTML
    page, a cut reply: worth another try); an ``UnusableBody`` for one that is JSON but
    nested too deep or not valid UTF-8 (no retry changes it)."""
    content = resp.content
    try:
        body = json.loads(content)
    except RecursionError:
        return UnusableBody(NESTED_TOO_DEEP)
    except UnicodeDecodeError:
        try:
            json.loads(content.decode("utf-8", "replace"))
        except (ValueError, RecursionError):
            return NOT_JSON
        return UnusableBody(NOT_UTF8)
    except ValueError:
        return NOT_JSON
    # At most one container per bracket: most replies need no walk to show they are shallow.
    brackets = content.count(b"{") + content.count(b"[")
    if brackets > MAX_JSON_DEPTH and _nested_deeper_than(body, MAX_JSON_DEPTH):
        return UnusableBody(NESTED_TOO_DEEP)
    return body


def json_body(resp: httpx.Response) -> Any:
    """The reply's body as JSON, or ``NOT_JSON`` (an unusable body included)."""
    body = read_json(resp)
    return NOT_JSON if isinstance(body, UnusableBody) else body


def server_text(body: object, secrets: Iterable[str]) -> str:
    """The server's own words (error / error_description / message), the ``secrets`` and any
    echoed token masked, then shortened."""
    if not isinstance(body, dict):
        return ""
    parts = [str(body[k]) for k in ("error", "error_description", "message") if body.get(k)]
    return mask_secrets(" ".join(parts), secrets, limit=_MAX_SERVER_TEXT)


def is_scope_refusal(text: str) -> bool:
    """Whether the server's words say the app lacks the scope."""
    lowered = text.lower()
    return "no permission" in lowered and "scope" in lowered


def unreachable_hint(exc: Exception, base_url: str) -> str:
    """For a connection that could not even be opened: where to look."""
    if isinstance(exc, httpx.ConnectError):
        return f": cannot connect to {base_url}, check OKKI_BASE_URL and the network"
    return ""
