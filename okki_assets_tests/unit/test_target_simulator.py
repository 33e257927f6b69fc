"""The target simulator against the batch write API the client speaks (``mock_transport``).

Covers every row of the contract: per-record upsert results (created, updated, unchanged,
deleted, rejected with the rest of the batch applied) in request order; idempotent replays and
the 409 on a reused key; the 400, 401 and 413 refusals; the 429 and 5xx faults that apply
nothing; the lost reply after a commit that a resend turns into a replay; read-back, stats,
reset and the 24 hour expiry of idempotency keys.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from okki_assets.simulator.http import mock_transport
from okki_assets.simulator.target import TargetSimConfig, TargetSimulator

TOKEN = "unit-target-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
DAY = 24 * 3600


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def company(cid: str, **fields: Any) -> dict[str, Any]:
    return {"id": cid, "name": f"Company {cid}", **fields}


def make(**config: Any) -> tuple[TargetSimulator, httpx.Client, FakeClock]:
    clock = FakeClock()
    sim = TargetSimulator(TargetSimConfig(token=TOKEN, **config), clock=clock)
    client = httpx.Client(transport=mock_transport(sim, sleep=False), base_url="http://target")
    return sim, client, clock


@pytest.fixture
def target() -> Iterator[tuple[TargetSimulator, httpx.Client, FakeClock]]:
    sim, client, clock = make()
    with client:
        yield sim, client, clock


def post(
    client: httpx.Client,
    records: list[Any],
    key: str = "key-1",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    return client.post(
        "/v1/companies/batch",
        json={"records": records},
        headers={**AUTH, "Idempotency-Key": key, **(headers or {})},
    )


def statuses(response: httpx.Response) -> list[tuple[str, str]]:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["code"] == 0
    return [(r["id"], r["status"]) for r in body["results"]]


def test_upsert_results_follow_request_order(target):
    sim, client, _ = target
    first = post(client, [company("b"), company("a"), company("c")], key="k1")
    assert statuses(first) == [("b", "created"), ("a", "created"), ("c", "created")]

    second = post(
        client,
        [
            company("c", city="Ningbo"),  # known, another body
            {"id": "new"},  # unknown
            company("a"),  # known, same body
            {"id": "b", "deleted": True},  # known, removed
        ],
        key="k2",
    )
    assert statuses(second) == [
        ("c", "updated"),
        ("new", "created"),
        ("a", "unchanged"),
        ("b", "deleted"),
    ]
    assert sim.records == {
        "a": company("a"),
        "c": company("c", city="Ningbo"),
        "new": {"id": "new"},
    }
    assert sim.history == [
        ("b", "created"),
        ("a", "created"),
        ("c", "created"),
        ("c", "updated"),
        ("new", "created"),
        ("b", "deleted"),
    ]


def test_update_replaces_the_record_whole(target):
    sim, client, _ = target
    post(client, [company("a", city="Hangzhou", tel="1")], key="k1")
    assert statuses(post(client, [company("a", city="Ningbo")], key="k2")) == [("a", "updated")]
    assert sim.records["a"] == company("a", city="Ningbo")


def test_same_fields_in_another_order_are_unchanged(target):
    sim, client, _ = target
    post(client, [{"id": "a", "x": 1, "y": 2}], key="k1")
    assert statuses(post(client, [{"y": 2, "id": "a", "x": 1}], key="k2")) == [("a", "unchanged")]
    assert sim.history == [("a", "created")]


def test_deleting_an_unknown_id_is_unchanged_and_not_applied(target):
    sim, client, _ = target
    assert statuses(post(client, [{"id": "ghost", "deleted": True}])) == [("ghost", "unchanged")]
    assert sim.history == []
    assert sim.stats()["records_applied"] == {}


def test_rejected_records_leave_the_rest_applied():
    def rule(record: dict[str, Any]) -> str | None:
        return None if record.get("name") else "name is required"

    sim, client, _ = make(reject_rule=rule)
    with client:
        response = post(
            client, [company("a"), {"id": "b"}, company("c"), {"id": "a2", "deleted": True}]
        )
    assert response.json()["results"] == [
        {"id": "a", "status": "created"},
        {"id": "b", "status": "rejected", "error": "name is required"},
        {"id": "c", "status": "created"},
        {"id": "a2", "status": "unchanged"},  # deletes are not put to the rule
    ]
    assert set(sim.records) == {"a", "c"}
    assert sim.stats()["status_counts"] == {
        "created": 2,
        "updated": 0,
        "unchanged": 1,
        "deleted": 0,
        "rejected": 1,
    }


def test_deletes_refused_by_the_delete_rule_are_rejected_and_kept():
    sim, client, _ = make(reject_delete_rule=lambda r: "protected" if r["id"] == "a" else None)
    with client:
        post(client, [company("a"), company("b")], key="k1")
        response = post(client, [{"id": "a", "deleted": True}, {"id": "b", "deleted": True}], "k2")
    assert response.json()["results"] == [
        {"id": "a", "status": "rejected", "error": "protected"},
        {"id": "b", "status": "deleted"},
    ]
    assert set(sim.records) == {"a"}


def test_same_key_and_body_replays_the_first_reply(target):
    sim, client, _ = target
    first = post(client, [company("a"), company("b")], key="same")
    again = post(client, [company("a"), company("b")], key="same")
    assert again.status_code == 200
    assert again.content == first.content
    assert statuses(again) == [("a", "created"), ("b", "created")]  # the first reply, not unchanged
    stats = sim.stats()
    assert stats["replays"] == 1
    assert stats["batches_received"] == 2
    assert stats["records_applied"] == {"a": 1, "b": 1}
    assert sim.history == [("a", "created"), ("b", "created")]


def test_replay_matches_a_reserialised_body(target):
    sim, client, _ = target
    post(client, [{"id": "a", "x": 1, "y": 2}], key="same")
    body = json.dumps({"records": [{"y": 2, "x": 1, "id": "a"}]}, indent=2).encode()
    again = client.post(
        "/v1/companies/batch",
        content=body,
        headers={**AUTH, "Idempotency-Key": "same", "Content-Type": "application/json"},
    )
    assert statuses(again) == [("a", "created")]
    assert sim.stats()["replays"] == 1


def test_same_key_with_another_body_is_409_and_applies_nothing(target):
    sim, client, _ = target
    post(client, [company("a")], key="same")
    response = post(client, [company("a", city="Ningbo")], key="same")
    assert response.status_code == 409
    assert response.json() == {"code": 409, "message": "idempotency key reused with another body"}
    assert sim.records["a"] == company("a")
    assert sim.history == [("a", "created")]


def test_batch_over_max_batch_is_400_and_says_so():
    sim, client, _ = make(max_batch=3)
    with client:
        response = post(client, [company(str(i)) for i in range(4)])
        assert response.status_code == 400
        body = response.json()
        assert body["code"] == 400
        assert "max_batch" in body["message"]
        assert body["max_batch"] == 3
        assert sim.records == {}
        # exactly max_batch is accepted, under the same key: the 400 was not stored
        assert len(statuses(post(client, [company(str(i)) for i in range(3)]))) == 3


def test_duplicate_ids_make_the_whole_batch_400(target):
    sim, client, _ = target
    response = post(client, [company("a"), company("b"), {"id": "a", "deleted": True}])
    assert response.status_code == 400
    assert "'a'" in response.json()["message"]
    assert sim.records == {}
    assert sim.history == []


def _send(client: httpx.Client, content: bytes, **headers: str) -> httpx.Response:
    return client.post("/v1/companies/batch", content=content, headers=headers)


GOOD_BODY = json.dumps({"records": [{"id": "a"}]}).encode()
JSON = "application/json"
KEYED = {"Content-Type": JSON, "Idempotency-Key": "k"}


@pytest.mark.parametrize(
    ("content", "headers"),
    [
        # no Idempotency-Key header
        (GOOD_BODY, {"Content-Type": JSON}),
        # an empty Idempotency-Key
        (GOOD_BODY, {"Content-Type": JSON, "Idempotency-Key": ""}),
        # an Idempotency-Key of 129 characters
        (GOOD_BODY, {"Content-Type": JSON, "Idempotency-Key": "k" * 129}),
        # a body that is not JSON
        (b'{"records": [', KEYED),
        # a body that is not UTF-8
        (b"\xff\xfe", KEYED),
        # JSON sent as another media type
        (GOOD_BODY, {"Content-Type": "text/plain", "Idempotency-Key": "k"}),
        # an array instead of {"records": [...]}
        (b'[{"id": "a"}]', KEYED),
        # records that is not a list
        (b'{"records": {"id": "a"}}', KEYED),
        # a record with a numeric id
        (b'{"records": [{"id": "a"}, {"id": 7}]}', KEYED),
        # a record without an id
        (b'{"records": [{"id": "a"}, {"name": "x"}]}', KEYED),
        # a record with an empty id
        (b'{"records": [{"id": ""}]}', KEYED),
        # a record that is not an object
        (b'{"records": ["a"]}', KEYED),
    ],
)
def test_malformed_requests_are_400_and_apply_nothing(target, content, headers):
    sim, client, _ = target
    response = _send(client, content, **AUTH, **headers)
    assert response.status_code == 400
    assert response.json()["code"] == 400
    assert sim.records == {}
    assert sim.stats()["http_status_counts"] == {"400": 1}


def test_key_of_128_characters_is_accepted(target):
    sim, client, _ = target
    assert statuses(post(client, [company("a")], key="k" * 128)) == [("a", "created")]
    assert set(sim.records) == {"a"}


def test_empty_batch_is_answered_with_no_results(target):
    _, client, _ = target
    assert statuses(post(client, [])) == []


def test_body_over_the_size_limit_is_413():
    sim, client, _ = make(max_body_bytes=200)
    with client:
        small = post(client, [company("a")], key="k1")
        big = post(client, [company(str(i)) for i in range(20)], key="k2")
    assert small.status_code == 200
    assert big.status_code == 413
    assert big.json()["code"] == 413
    assert set(sim.records) == {"a"}


@pytest.mark.parametrize(
    "headers",
    [
        # no Authorization header
        {},
        # the wrong token
        {"Authorization": "Bearer not-the-token"},
        # the right token without the Bearer scheme
        {"Authorization": TOKEN},
        # another scheme
        {"Authorization": f"Basic {TOKEN}"},
    ],
)
def test_bad_or_missing_token_is_401(target, headers):
    sim, client, _ = target
    response = client.post(
        "/v1/companies/batch",
        json={"records": [company("a")]},
        headers={"Idempotency-Key": "k", **headers},
    )
    assert response.status_code == 401
    assert response.json()["code"] == 401
    assert TOKEN not in response.text
    assert sim.records == {}


@pytest.mark.parametrize(
    ("retry_after", "header"),
    [
        # whole seconds, the usual form
        (1.0, "1"),
        # a fraction, so client tests can wait briefly
        (0.25, "0.25"),
        # no Retry-After at all
        (None, None),
    ],
)
def test_throttled_batch_applies_and_stores_nothing(retry_after, header):
    sim, client, _ = make(throttle_rate=1.0, retry_after=retry_after)
    with client:
        response = post(client, [company("a")], key="k")
        assert response.status_code == 429
        assert response.headers.get("retry-after") == header
        assert sim.records == {}
        sim.config.throttle_rate = 0.0
        # the same key is processed afresh: the 429 was not stored under it
        assert statuses(post(client, [company("a")], key="k")) == [("a", "created")]
    stats = sim.stats()
    assert stats["throttled"] == 1
    assert stats["replays"] == 0
    assert stats["records_applied"] == {"a": 1}


def test_server_errors_apply_and_store_nothing():
    sim, client, _ = make(error_rate=1.0)
    with client:
        seen = {post(client, [company("a")], key="k").status_code for _ in range(30)}
        assert seen == {500, 502, 503}
        assert sim.records == {}
        sim.config.error_rate = 0.0
        assert statuses(post(client, [company("a")], key="k")) == [("a", "created")]
    stats = sim.stats()
    assert stats["errors"] == 30
    assert stats["replays"] == 0
    assert sim.history == [("a", "created")]


def test_dropped_reply_is_committed_and_the_resend_is_a_replay():
    sim, client, _ = make(drop_reply_rate=1.0)
    with client:
        with pytest.raises(httpx.TransportError):
            post(client, [company("a"), company("b")], key="k")
        assert set(sim.records) == {"a", "b"}  # committed although the client saw nothing
        resent = post(client, [company("a"), company("b")], key="k")
    assert statuses(resent) == [("a", "created"), ("b", "created")]
    stats = sim.stats()
    assert stats["dropped_replies"] == 1
    assert stats["replays"] == 1
    assert stats["records_applied"] == {"a": 1, "b": 1}
    assert sim.history == [("a", "created"), ("b", "created")]


def test_fault_draws_repeat_for_the_same_seed():
    def run() -> list[int]:
        _, client, _ = make(throttle_rate=0.3, error_rate=0.3, seed=5)
        with client:
            return [post(client, [company(str(i))], key=str(i)).status_code for i in range(40)]

    first = run()
    assert first == run()
    assert {200, 429} <= set(first)
    assert set(first) & {500, 502, 503}


def test_latency_delays_every_answer():
    sim = TargetSimulator(TargetSimConfig(token=TOKEN, latency=5.0))
    with (
        httpx.Client(
            transport=mock_transport(sim, sleep=False), base_url="http://target", timeout=1.0
        ) as client,
        pytest.raises(httpx.ReadTimeout),
    ):
        client.get("/v1/_stats")


def test_read_back_is_200_or_404(target):
    _, client, _ = target
    post(client, [company("a", city="Ningbo")])
    found = client.get("/v1/companies/a", headers=AUTH)
    assert found.status_code == 200
    assert found.json() == company("a", city="Ningbo")
    missing = client.get("/v1/companies/zzz", headers=AUTH)
    assert missing.status_code == 404
    assert missing.json()["code"] == 404
    assert client.get("/v1/companies/a").status_code == 401


def test_records_property_is_a_copy(target):
    sim, client, _ = target
    post(client, [company("a", tags=["x"])])
    sim.records["a"]["tags"].append("y")
    assert client.get("/v1/companies/a", headers=AUTH).json()["tags"] == ["x"]


def test_stats_over_http_match_stats(target):
    sim, client, _ = target
    post(client, [company("a"), company("b")], key="k1")
    post(client, [company("a"), company("b")], key="k1")
    post(client, [company("a", city="x"), {"id": "b", "deleted": True}], key="k2")
    post(client, [company("c")], key="k2")
    body = client.get("/v1/_stats").json()
    assert body == sim.stats()
    assert body == {
        "batches_received": 4,
        "records_applied": {"a": 2, "b": 2},
        "replays": 1,
        "throttled": 0,
        "errors": 0,
        "dropped_replies": 0,
        "status_counts": {"created": 2, "updated": 1, "unchanged": 0, "deleted": 1, "rejected": 0},
        "http_status_counts": {"200": 3, "409": 1},
    }


def test_reset_clears_records_stats_and_keys(target):
    sim, client, _ = target
    post(client, [company("a")], key="k")
    response = client.post("/v1/_reset")
    assert response.status_code == 200
    assert sim.records == {}
    assert sim.history == []
    assert sim.stats()["batches_received"] == 0
    # the key is forgotten: the same batch is applied again, not replayed
    assert statuses(post(client, [company("a")], key="k")) == [("a", "created")]
    assert sim.stats()["replays"] == 0


def test_idempotency_key_expires_after_24_hours(target):
    sim, client, clock = target
    post(client, [company("a")], key="k")
    clock.now += DAY - 1
    assert statuses(post(client, [company("a")], key="k")) == [("a", "created")]  # replay
    assert post(client, [company("a", city="x")], key="k").status_code == 409
    clock.now += 1
    # expired: processed afresh, and the identical record is unchanged, not applied twice
    assert statuses(post(client, [company("a")], key="k")) == [("a", "unchanged")]
    assert sim.stats()["replays"] == 1
    assert sim.history == [("a", "created")]
    # the key now belongs to the new request
    assert post(client, [company("a", city="x")], key="k").status_code == 409


def test_expired_key_accepts_another_body(target):
    sim, client, clock = target
    post(client, [company("a")], key="k")
    clock.now += DAY
    assert statuses(post(client, [company("a", city="x")], key="k")) == [("a", "updated")]
    assert sim.records["a"] == company("a", city="x")


def test_concurrent_batches_all_land() -> None:
    sim, client, _ = make()
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(10):
                response = post(client, [company(f"{n}-{i}")], key=f"{n}-{i}")
                assert response.status_code == 200
        except BaseException as exc:  # surfaced in the main thread
            errors.append(exc)

    with client:
        threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []
    assert len(sim.records) == 80
    assert sim.stats()["batches_received"] == 80


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        # an unknown path
        ("GET", "/v1/nothing", 404),
        # the batch endpoint read with GET
        ("GET", "/v1/companies/batch", 405),
        # a record written with PUT
        ("PUT", "/v1/companies/a", 405),
    ],
)
def test_unknown_routes_and_methods(target, method, path, status):
    _, client, _ = target
    assert client.request(method, path, headers=AUTH).status_code == status


def test_read_back_pages_by_id_as_text_without_deleted_records(target):
    sim, client, _ = target
    post(client, [company(str(i)) for i in (1, 2, 10, 3)], key="k1")
    post(client, [{"id": "2", "deleted": True}], key="k2")
    pages, after = [], None
    while True:
        params = {"limit": "2", **({"after": after} if after else {})}
        body = client.get("/v1/companies", params=params, headers=AUTH).json()
        pages.append([r["id"] for r in body["records"]])
        after = body["next"]
        if after is None:
            break
    assert pages == [["1", "10"], ["3"]]  # "10" sorts before "3" as text; "2" is deleted


def test_read_back_needs_the_token_and_can_be_switched_off():
    sim, client, _ = make(read_back=False)
    with client:
        assert client.get("/v1/companies").status_code == 401
        assert client.get("/v1/companies", headers=AUTH).status_code == 404
