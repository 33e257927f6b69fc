"""Keeping secrets out of text that came from a server: an error body may echo the request,
its access token included (``access_token=...``, ``Authorization: Bearer ...``, or the bare value).

``mask_secrets`` is the one helper both clients use (OKKI: its client secret and every access
token it was issued; the target: its token): mask first, cut afterwards, so that no cut leaves
part of a secret behind.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MASK = "***"
# What follows ``access_token=`` / ``"access_token": "`` or ``Bearer`` is a token, whoever's.
_ECHOED_TOKEN = re.compile(
    r"""(access_token["']?\s*[=:]\s*["']?|bearer\s+)[^\s"'&,;()\[\]{}<>]+""", re.IGNORECASE
)


def mask_secrets(text: str, secrets: Iterable[str], *, limit: int | None = None) -> str:
    """``text`` with every non-empty secret (longest first) and every echoed token replaced by
    ``***``, then cut to ``limit`` characters."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    text = _ECHOED_TOKEN.sub(lambda m: m.group(1) + MASK, text)
    return text if limit is None else text[:limit]
