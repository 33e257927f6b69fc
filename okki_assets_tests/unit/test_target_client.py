"""TargetClient against httpx.MockTransport handlers that play the target API: the
Idempotency-Key names one attempt and its canonical body (a new attempt with the same bytes gets a
new key and is applied; the same attempt resent keeps its key); every resend after 5xx, reset,
timeout or 429 carries identical bytes and key, so an idempotent target applies a batch once even
when the first reply was lost; 413 and "too large" 400s split the batch in halves with results
kept in record order; 401, 409 and other 400s stop; a reply whose results do not match the
records is refused."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

import httpx
import pytest

from okki_assets.clients.http import RetrySettings
from okki_assets.errors import (
    TargetAuthError,
    TargetNotAuditable,
    TargetPermanentError,
    TargetRetriesExhausted,
    TargetUnreachable,
)
from okki_assets.mapping import content_hash
from okki_assets.simulator.http import mock_transport
from okki_assets.simulator.target import TargetSimConfig, TargetSimulator
from okki_assets.targets.http import RecordResult, TargetClient, canonical_body, new_attempt
from okki_assets_tests.factories import FakeClock, target_batch_reply

BASE = "https://target.test/api"
TOKEN = "target-token-never-shown"
SIM = "http://target.test"  # the simulator serves at the root
BATCH = "/api/v1/companies/batch"

Step = httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]


def recs(*ids: str | int) -> list[dict[str, Any]]:
    return [{"id": str(i), "name": f"Company {i}", "country": "DE"} for i in ids]


class FakeTarget:
    """An idempotent target: applies a batch, remembers the reply by Idempotency-Key, replays it
    for the same key and body, refuses a key reused with another body (409), refuses batches
    over ``max_batch`` with ``too_large_status``. ``faults`` are played first, one per request;
    a ``("after", status)`` fault applies the batch and then answers ``status`` (a lost reply)."""

    def __init__(
        self,
        faults: list[Step | tuple[str, int]] | None = None,
        *,
        max_batch: int = 500,
        too_large_status: int = 413,
    ) -> None:
        self.faults = list(faults or [])
        self.max_batch = max_batch
        self.too_large_status = too_large_status
        self.requests: list[httpx.Request] = []
        self.applied: dict[str, int] = {}
        self.store: dict[str, dict[str, Any]] = {}
        self.replies: dict[str, tuple[bytes, dict[str, Any]]] = {}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            return httpx.Response(401, json={"code": 401, "message": "bad token"})
        fault = self.faults.pop(0) if self.faults else None
        if isinstance(fault, Exception):
            raise fault
        if isinstance(fault, httpx.Response):
            return fault
        if callable(fault):
            return fault(request)
        if request.method == "GET":
            record_id = unquote(request.url.raw_path.decode().rsplit("/", 1)[-1])
            found = self.store.get(record_id)
            return httpx.Response(200, json=found) if found else httpx.Response(404)
        reply = self._apply(request)
        if isinstance(fault, tuple):  # committed, but the client sees a failure
            return httpx.Response(fault[1], text="gateway error")
        return reply

    def _apply(self, request: httpx.Request) -> httpx.Response:
        key = request.headers["idempotency-key"]
        body = request.content
        if key in self.replies:
            first_body, first_reply = self.replies[key]
            if first_body != body:
                return httpx.Response(
                    409, json={"code": 409, "message": "idempotency key reused with another body"}
                )
            return httpx.Response(200, json=first_reply)
        records = json.loads(body)["records"]
        if len(records) > self.max_batch:
            return httpx.Response(
                self.too_large_status,
                json={"code": self.too_large_status, "message": "batch too large: max_batch"},
            )
        results = []
        for record in records:
            status = "updated" if record["id"] in self.store else "created"
            self.store[record["id"]] = record
            self.applied[record["id"]] = self.applied.get(record["id"], 0) + 1
            results.append({"id": record["id"], "status": status})
        reply = {"code": 0, "results": results}
        self.replies[key] = (body, reply)
        return httpx.Response(200, json=reply)

    def batches(self) -> list[httpx.Request]:
        return [r for r in self.requests if r.method == "POST"]

    def batch_sizes(self) -> list[int]:
        return [len(json.loads(r.content)["records"]) for r in self.batches()]


def make_client(handler: Callable[[httpx.Request], httpx.Response], **kw: Any) -> TargetClient:
    clock = kw.pop("clock", None) or FakeClock()
    return TargetClient(
        BASE, TOKEN, transport=httpx.MockTransport(handler), sleep=clock.sleep, clock=clock, **kw
    )


def test_write_batch_sends_canonical_body_with_headers_and_returns_results_in_order() -> None:
    target = FakeTarget()
    records = recs(3, 1, 2)
    with make_client(target) as client:
        results = client.write_batch(records, "attempt-1")
    assert results == [RecordResult("3", "created"), RecordResult("1", "created"),
                       RecordResult("2", "created")]  # fmt: skip
    (req,) = target.batches()
    assert req.url.path == BATCH
    assert req.headers["authorization"] == f"Bearer {TOKEN}"
    assert req.headers["content-type"] == "application/json"
    assert req.content == canonical_body(records)
    assert json.loads(req.content) == {"records": records}
    assert req.headers["idempotency-key"] == TargetClient.idempotency_key("attempt-1", req.content)
    assert target.applied == {"1": 1, "2": 1, "3": 1}


def test_idempotency_key_names_one_attempt_and_its_exact_body() -> None:
    a = [{"id": "1", "name": "Ä GmbH", "tags": ["x", "y"]}]
    same_reordered = [{"tags": ["x", "y"], "name": "Ä GmbH", "id": "1"}]  # key order differs
    changed = [{"id": "1", "name": "Ä GmbH", "tags": ["y", "x"]}]
    key = TargetClient.idempotency_key
    assert canonical_body(a) == canonical_body(same_reordered)
    assert key("a1", canonical_body(a)) == key("a1", canonical_body(same_reordered))
    assert key("a1", canonical_body(a)) != key("a1", canonical_body(changed))
    assert key("a1", canonical_body(a)) != key("a1", canonical_body(recs(1)))
    assert key("a1", canonical_body(a)) != key("a2", canonical_body(a))  # another attempt
    assert len(key(new_attempt(), canonical_body(recs(*range(500))))) <= 128
    assert "Ä".encode() in canonical_body(a)  # UTF-8, not \\u escapes


def test_a_new_attempt_with_the_same_bytes_gets_a_new_key_and_is_applied() -> None:
    target = FakeTarget()
    records = recs(1, 2)
    with make_client(target) as client:
        client.write_batch(records)
        client.write_batch(records)  # deleted, restored and deleted again: a second attempt
        attempt = new_attempt()
        client.write_batch(records, attempt)
        client.write_batch(records, attempt)  # the same attempt resent: replayed
    keys = [r.headers["idempotency-key"] for r in target.batches()]
    assert len(set(keys[:3])) == 3 and keys[3] == keys[2]
    assert {r.content for r in target.batches()} == {canonical_body(records)}
    assert target.applied == {"1": 3, "2": 3}


@pytest.mark.parametrize(
    ("fault", "cause"),
    [
        (httpx.Response(500, text="boom"), "http5xx"),  # 5xx before anything was applied
        (("after", 502), "http5xx"),  # applied, then the reply was lost behind a 502
        (httpx.RemoteProtocolError("peer closed connection"), "transport"),  # reset
        (httpx.ReadError("[Errno 104] Connection reset by peer"), "transport"),  # reset
        (httpx.ReadTimeout("timed out"), "timeout"),  # the reply never came
        (httpx.Response(429), "http429"),  # throttled without Retry-After
        (httpx.Response(200, text="<html>proxy</html>"), "invalid_json"),  # not JSON
    ],
)
def test_resend_uses_identical_bytes_and_key(fault: Step | tuple[str, int], cause: str) -> None:
    target = FakeTarget([fault])
    records = recs(1, 2, 3)
    with make_client(target) as client:
        results = client.write_batch(records)
        retries = client.stats.retries
    assert [r.id for r in results] == ["1", "2", "3"]
    first, second = target.batches()
    assert first.content == second.content == canonical_body(records)
    assert first.headers["idempotency-key"] == second.headers["idempotency-key"]
    assert target.applied == {"1": 1, "2": 1, "3": 1}  # applied once, however often sent
    assert retries[cause] == 1


def test_429_retry_after_is_a_floor() -> None:
    clock = FakeClock()
    target = FakeTarget([httpx.Response(429, headers={"Retry-After": "9"})])
    with make_client(target, clock=clock) as client:
        client.write_batch(recs(1))
    assert clock.sleeps == [9.0]
    assert len(target.batches()) == 2


def test_retries_exhausted() -> None:
    target = FakeTarget([httpx.Response(503)] * 10)
    with (
        make_client(target, retry=RetrySettings(max_attempts=3)) as client,
        pytest.raises(TargetRetriesExhausted, match="http5xx") as info,
    ):
        client.write_batch(recs(1))
    assert len(target.batches()) == 3
    assert TOKEN not in str(info.value)
    assert len({r.headers["idempotency-key"] for r in target.batches()}) == 1


@pytest.mark.parametrize(
    "too_large_status",
    [
        413,  # body too large
        400,  # a 400 whose message says the batch is too large
    ],
)
def test_too_large_batches_split_in_halves_with_results_in_order(too_large_status: int) -> None:
    target = FakeTarget(max_batch=2, too_large_status=too_large_status)
    records = recs(*"abcde")
    with make_client(target) as client:
        results = client.write_batch(records)
    assert [r.id for r in results] == list("abcde")
    assert target.batch_sizes() == [5, 2, 3, 1, 2]
    assert target.applied == dict.fromkeys("abcde", 1)


def test_batches_over_max_batch_split_before_sending() -> None:
    target = FakeTarget()
    with make_client(target, max_batch=4) as client:
        results = client.write_batch(recs(*range(10)))
    assert [r.id for r in results] == [str(i) for i in range(10)]
    assert target.batch_sizes() == [2, 3, 2, 3]


def test_a_single_record_too_large_is_permanent() -> None:
    target = FakeTarget([httpx.Response(413, json={"code": 413, "message": "body too large"})])
    with make_client(target) as client, pytest.raises(TargetPermanentError, match="single"):
        client.write_batch(recs(1))
    assert len(target.batches()) == 1


def test_empty_batch_sends_nothing() -> None:
    target = FakeTarget()
    with make_client(target) as client:
        assert client.write_batch([]) == []
    assert target.requests == []


def test_401_is_an_auth_error_without_the_token() -> None:
    target = FakeTarget()
    with (
        TargetClient(BASE, "wrong-token", transport=httpx.MockTransport(target)) as client,
        pytest.raises(TargetAuthError) as info,
    ):
        client.write_batch(recs(1))
    assert info.value.status == 401
    assert "wrong-token" not in str(info.value)
    assert "token" in str(info.value)
    assert len(target.requests) == 1


def test_409_is_a_permanent_client_bug() -> None:
    conflict = httpx.Response(409, json={"code": 409, "message": "idempotency key reused"})
    target = FakeTarget([conflict])
    with make_client(target) as client, pytest.raises(TargetPermanentError, match="bug") as info:
        client.write_batch(recs(1))
    assert info.value.status == 409
    assert len(target.requests) == 1


def test_other_400_is_permanent() -> None:
    bad = httpx.Response(400, json={"code": 400, "message": "record 1: id must be a string"})
    target = FakeTarget([bad])
    with make_client(target) as client, pytest.raises(TargetPermanentError, match="id must be"):
        client.write_batch(recs(1, 2))
    assert target.batch_sizes() == [2]  # not split, not retried


@pytest.mark.parametrize(
    "reply",
    [
        {"code": 0, "results": [{"id": "1", "status": "created"}]},  # one result short
        # the right results, swapped
        {
            "code": 0,
            "results": [{"id": "2", "status": "created"}, {"id": "1", "status": "created"}],
        },
        {"code": 0},  # no results at all
    ],
)
def test_results_must_match_the_records_in_order(reply: dict[str, Any]) -> None:
    target = FakeTarget([httpx.Response(200, json=reply)])
    with make_client(target) as client, pytest.raises(TargetPermanentError, match="result"):
        client.write_batch(recs(1, 2))


def test_rejected_records_come_back_with_their_error() -> None:
    reply = {
        "code": 0,
        "results": [
            {"id": "1", "status": "created"},
            {"id": "2", "status": "rejected", "error": "country must be ISO-2"},
        ],
    }
    target = FakeTarget([httpx.Response(200, json=reply)])
    with make_client(target) as client:
        results = client.write_batch(recs(1, 2))
    assert results == [
        RecordResult("1", "created"),
        RecordResult("2", "rejected", "country must be ISO-2"),
    ]


def test_get_reads_back_records_and_404_is_none() -> None:
    target = FakeTarget()
    with make_client(target) as client:
        client.write_batch([{"id": "a/b", "name": "slash"}, *recs(7)])
        assert client.get("7") == recs(7)[0]
        assert client.get("a/b") == {"id": "a/b", "name": "slash"}
        assert client.get("missing") is None
    paths = [r.url.raw_path for r in target.requests if r.method == "GET"]
    assert paths == [
        b"/api/v1/companies/7",
        b"/api/v1/companies/a%2Fb",
        b"/api/v1/companies/missing",
    ]


def test_factory_reply_matches_the_contract() -> None:
    records = recs(1, 2)
    target = FakeTarget([httpx.Response(200, json=target_batch_reply(records, "unchanged"))])
    with make_client(target) as client:
        assert [r.status for r in client.write_batch(records)] == ["unchanged", "unchanged"]


def test_a_target_never_reached_fails_at_once_naming_the_setting() -> None:
    attempts: list[str] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        attempts.append(request.url.path)
        raise httpx.ConnectError("connection refused", request=request)

    with make_client(refuse) as client, pytest.raises(TargetUnreachable) as info:
        client.write_batch(recs(1, 2))
    assert attempts == [BATCH], "a host never reached is not retried"
    assert "TARGET_URL" in str(info.value) and "target.test" in str(info.value)
    assert TOKEN not in str(info.value)


def test_a_connection_refused_after_the_target_answered_is_retried() -> None:
    target = FakeTarget()
    with make_client(target) as client:
        client.write_batch(recs(1))
        target.faults = [httpx.ConnectError("connection refused")]
        results = client.write_batch(recs(2))
        assert client.stats.retries["transport"] == 1
    assert [r.id for r in results] == ["2"]
    assert target.applied == {"1": 1, "2": 1}


def test_read_back_follows_next_until_null_and_hashes_each_record() -> None:
    """2,500 stored records come back in three pages of at most 1,000, each with the
    project's content hash; a target without the read-back (404) is not auditable."""
    sim = TargetSimulator(TargetSimConfig(token=TOKEN))
    records = [{"id": f"{i:05d}", "fullName": f"C{i}"} for i in range(2500)]
    with TargetClient(SIM, TOKEN, transport=mock_transport(sim, sleep=False)) as client:
        for start in range(0, 2500, 500):
            client.write_batch(records[start : start + 500], new_attempt())
        rows = list(client.read_back())
        assert client.stats.requests["list"] == 3
    assert [r.id for r in rows] == [r["id"] for r in records]
    assert all(r.content_hash == content_hash(rec) for r, rec in zip(rows, records, strict=True))
    off = TargetSimulator(TargetSimConfig(token=TOKEN, read_back=False))
    client = TargetClient(SIM, TOKEN, transport=mock_transport(off, sleep=False))
    with client, pytest.raises(TargetNotAuditable):
        list(client.read_back())
