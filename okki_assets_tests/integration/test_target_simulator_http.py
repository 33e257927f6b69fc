"""The target simulator over real HTTP on 127.0.0.1 (ServerThread + uvicorn).

Covers what only a real connection shows: upserts and read-back, the 401, the 429 with its
Retry-After header, the 413, stats and reset over the wire, and the lost reply after a commit,
which httpx sees as a transport error and which a resend with the same key turns into a replay.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from okki_assets.simulator.http import ServerThread
from okki_assets.simulator.target import TargetSimConfig, TargetSimulator

TOKEN = "http-target-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def served() -> Iterator[tuple[TargetSimulator, httpx.Client]]:
    sim = TargetSimulator(TargetSimConfig(token=TOKEN, max_body_bytes=10_000))
    with ServerThread(sim) as server, httpx.Client(base_url=server.url, timeout=5.0) as client:
        yield sim, client


def post(client: httpx.Client, records: list[dict[str, Any]], key: str) -> httpx.Response:
    return client.post(
        "/v1/companies/batch",
        json={"records": records},
        headers={**AUTH, "Idempotency-Key": key},
    )


def test_upsert_then_read_back(served):
    sim, client = served
    first = post(client, [{"id": "a", "name": "A"}, {"id": "b", "name": "B"}], key="k1")
    assert first.status_code == 200
    assert first.json() == {
        "code": 0,
        "results": [{"id": "a", "status": "created"}, {"id": "b", "status": "created"}],
    }
    second = post(client, [{"id": "a", "name": "A2"}, {"id": "b", "deleted": True}], key="k2")
    assert [r["status"] for r in second.json()["results"]] == ["updated", "deleted"]
    assert client.get("/v1/companies/a", headers=AUTH).json() == {"id": "a", "name": "A2"}
    assert client.get("/v1/companies/b", headers=AUTH).status_code == 404
    assert sim.records == {"a": {"id": "a", "name": "A2"}}


def test_wrong_token_is_401(served):
    sim, client = served
    response = client.post(
        "/v1/companies/batch",
        json={"records": [{"id": "a"}]},
        headers={"Authorization": "Bearer wrong", "Idempotency-Key": "k"},
    )
    assert response.status_code == 401
    assert response.json()["code"] == 401
    assert sim.records == {}


def test_body_too_large_is_413(served):
    sim, client = served
    records = [{"id": str(i), "note": "x" * 100} for i in range(200)]
    response = post(client, records, key="big")
    assert response.status_code == 413
    assert sim.records == {}


def test_throttle_carries_retry_after_and_applies_nothing(served):
    sim, client = served
    sim.config.throttle_rate = 1.0
    response = post(client, [{"id": "a"}], key="k")
    assert response.status_code == 429
    assert response.headers["retry-after"] == "1"
    assert sim.records == {}
    assert sim.stats()["throttled"] == 1


def test_lost_reply_then_resend_is_a_replay(served):
    sim, client = served
    sim.config.drop_reply_rate = 1.0
    records = [{"id": "a", "name": "A"}]
    with pytest.raises(httpx.TransportError):
        post(client, records, key="lost")
    assert sim.records == {"a": {"id": "a", "name": "A"}}
    resent = post(client, records, key="lost")
    assert resent.status_code == 200
    assert resent.json()["results"] == [{"id": "a", "status": "created"}]
    stats = client.get("/v1/_stats").json()
    assert stats["dropped_replies"] == 1
    assert stats["replays"] == 1
    assert stats["records_applied"] == {"a": 1}
    assert sim.history == [("a", "created")]


def test_stats_and_reset_over_http(served):
    sim, client = served
    post(client, [{"id": "a"}], key="k")
    post(client, [{"id": "a"}], key="k")
    stats = client.get("/v1/_stats").json()
    assert stats["batches_received"] == 2
    assert stats["replays"] == 1
    assert client.post("/v1/_reset").status_code == 200
    assert client.get("/v1/_stats").json()["batches_received"] == 0
    assert client.get("/v1/companies/a", headers=AUTH).status_code == 404
    assert sim.records == {}
