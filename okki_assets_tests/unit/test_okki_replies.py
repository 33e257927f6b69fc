"""How a reply's body is read (clients/okki_api.read_json), and what info does with one that
cannot be used (in-process, no sockets).

A body that is not JSON at all (an HTML page, a cut reply) is worth another try; one that is JSON
but nested deeper than ``MAX_JSON_DEPTH`` or not valid UTF-8 is the same on every try: info
answers it as ``InfoResult(unusable=reason)`` after one call, any other call fails at once.
"""

from __future__ import annotations

import json
from datetime import date

import httpx
import pytest

from okki_assets.clients.okki import LIST_PATH, OkkiClient, RetrySettings
from okki_assets.clients.okki_api import (
    MAX_JSON_DEPTH,
    NESTED_TOO_DEEP,
    NOT_JSON,
    NOT_UTF8,
    UnusableBody,
    json_body,
    read_json,
)
from okki_assets.errors import OkkiUnusableReply
from okki_assets.simulator.data import generate_companies
from okki_assets.simulator.http import mock_transport
from okki_assets.simulator.okki import OkkiSimConfig, OkkiSimulator


def _reply(content: bytes) -> httpx.Response:
    return httpx.Response(200, content=content, headers={"content-type": "application/json"})


def _nested(levels: int) -> bytes:
    return b'{"code": 200, "data": ' + b"[" * levels + b"]" * levels + b"}"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        # a company with its envelope: a handful of levels
        (b'{"code": 200, "data": {"customers": [{"tel_list": [["", "1"]]}]}}', None),
        # many brackets, none deep: a list page of 100 records
        (json.dumps({"data": {"list": [{"a": [[1]]}] * 100}}).encode(), None),
        # the envelope and the deepest list together at the limit
        (_nested(MAX_JSON_DEPTH - 1), None),
        (_nested(MAX_JSON_DEPTH), UnusableBody(NESTED_TOO_DEEP)),  # parses, deeper than allowed
        (_nested(5000), UnusableBody(NESTED_TOO_DEEP)),  # the parser itself gives up
        (b'{"code": 200, "data": {"name": "caf\xe9 \xff"}}', UnusableBody(NOT_UTF8)),
        (b"<html><body>502 Bad Gateway</body></html>", NOT_JSON),  # worth another try
        (b'{"code": 200, "data": {"name": "\xff', NOT_JSON),  # cut and not UTF-8: not JSON
    ],
)
def test_read_json_tells_a_retryable_reply_from_an_unusable_one(
    content: bytes, expected: object
) -> None:
    body = read_json(_reply(content))
    if expected is None:
        assert body == json.loads(content) == json_body(_reply(content))
    else:
        assert body == expected
        assert json_body(_reply(content)) is NOT_JSON  # what the token endpoint reads


def _client(transport: httpx.BaseTransport) -> OkkiClient:
    return OkkiClient(
        "http://okki.test",
        "demo-client",
        "demo-secret",
        rate_limit=None,
        transport=transport,
        retry=RetrySettings(max_attempts=3, base_delay=0.0, jitter=False),
    )


def test_info_answers_an_unusable_payload_for_its_company_after_one_call() -> None:
    companies = generate_companies(10, date(2026, 11, 20), date(2026, 11, 20), seed=3)
    deep, latin = (str(c["company_id"]) for c in companies[:2])
    faults = {deep: "nested_too_deep", latin: "invalid_utf8"}
    sim = OkkiSimulator(companies, OkkiSimConfig(info_payload_faults=faults))
    with _client(mock_transport(sim, sleep=False)) as client:
        results = {
            r.company_id: r for r in client.company_infos([c["company_id"] for c in companies])
        }
    assert (results[deep].data, results[deep].unusable) == (None, NESTED_TOO_DEEP)
    assert (results[latin].data, results[latin].unusable) == (None, NOT_UTF8)
    assert all(r.data is not None for cid, r in results.items() if cid not in faults)
    assert sim.stats.info_by_company[deep] == sim.stats.info_by_company[latin] == 1


def test_a_list_page_that_is_not_utf8_fails_at_once_naming_why() -> None:
    sim = OkkiSimulator(generate_companies(10, date(2026, 11, 20), date(2026, 11, 20), seed=3))
    serve = mock_transport(sim, sleep=False)
    list_calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal list_calls
        if request.url.path != LIST_PATH:
            return serve.handle_request(request)
        list_calls += 1
        return _reply(b'{"code": 200, "data": {"list": [{"name": "\xff"}], "totalItem": 1}}')

    with (
        _client(httpx.MockTransport(handler)) as client,
        pytest.raises(OkkiUnusableReply, match="payload_not_utf8") as failed,
    ):
        client.list_page(1)
    assert failed.value.reason == NOT_UTF8
    assert list_calls == 1  # no retry changes it
