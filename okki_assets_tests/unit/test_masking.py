"""clients/masking.mask_secrets: the one helper both clients mask server text with.

Covers a known secret anywhere in the text, tokens echoed after ``access_token=`` (query or
JSON) or ``Bearer`` even when the client does not know them, masking before cutting (a secret
across the cut leaves no part behind), and a secret that contains another.
"""

from __future__ import annotations

import pytest

from okki_assets.clients.masking import mask_secrets

TOKEN = "tok-Zq8Xv3LmWn4Pw7Kd2RnYs"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # the value anywhere
        (f"token {TOKEN} has expired", "token *** has expired"),
        # echoed tokens the client never held
        ("bad request access_token=other-9f8e7d&x=1", "bad request access_token=***&x=1"),
        (
            '{"access_token": "other-9f8e7d", "scope": "company"}',
            '{"access_token": "***", "scope": "company"}',
        ),
        ("Authorization: Bearer other-9f8e7d rejected", "Authorization: Bearer *** rejected"),
        ("ACCESS_TOKEN = 'other'", "ACCESS_TOKEN = '***'"),
        # nothing to mask
        ("Invalid parameter start_time", "Invalid parameter start_time"),
    ],
)
def test_known_secrets_and_echoed_tokens_are_masked(text: str, expected: str) -> None:
    assert mask_secrets(text, [TOKEN, ""]) == expected


def test_masking_comes_before_the_cut() -> None:
    text = "x" * 190 + TOKEN + " tail"  # the cut at 200 falls inside the token
    masked = mask_secrets(text, [TOKEN], limit=200)
    assert masked == "x" * 190 + "*** tail"
    assert TOKEN[:8] not in masked


def test_a_secret_containing_another_is_masked_whole() -> None:
    assert mask_secrets(f"a {TOKEN} b", [TOKEN[:6], TOKEN]) == "a *** b"
