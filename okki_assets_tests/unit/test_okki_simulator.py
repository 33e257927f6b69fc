"""The OKKI simulator and its data generator, in-process (httpx over mock_transport, no sockets).

Covers the contract of docs/okki-api.md as the simulator reproduces it: the token
endpoint and its errors, bare and Bearer tokens, revocation and expiry; paging by page number,
newest first, totalItem, count clamping, removed/all/group_id/time_type filters and the four
window-boundary modes; info and its 404; every throttle shape under quota and every fault kind,
deterministic per seed and changing no state; drift (rows repeated and skipped on the first pass
only); and the generator: determinism, record shape and each data quirk it must produce.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from okki_assets.okki_time import UNSET_TIME
from okki_assets.simulator.data import (
    BAD_UPDATE_TIME,
    generate_companies,
    list_view,
)
from okki_assets.simulator.http import SimRequest, mock_transport
from okki_assets.simulator.okki import (
    INFO_PATH,
    LIST_PATH,
    TOKEN_PATH,
    OkkiSimConfig,
    OkkiSimulator,
)
from okki_assets_tests.factories import (
    LIST_FIELDS,  # the spec's twelve, stated apart from the simulator
)

START = dt.date(2024, 3, 1)
END = dt.date(2024, 3, 10)
DAY = "2024-03-04"  # a window inside the data set
CHINA = dt.timezone(dt.timedelta(hours=8))


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def companies() -> list[dict[str, Any]]:
    return generate_companies(1500, START, END, seed=11)


def make(
    companies: list[dict[str, Any]] | None = None,
    *,
    clock: Callable[[], float] | None = None,
    **config: Any,
) -> tuple[OkkiSimulator, httpx.Client]:
    sim = OkkiSimulator(companies, OkkiSimConfig(**config), clock=clock or FakeClock())
    client = httpx.Client(transport=mock_transport(sim, sleep=False), base_url="http://okki")
    return sim, client


def get_token(client: httpx.Client, **overrides: str) -> str:
    form = {
        "grant_type": "client_credentials",
        "client_id": "demo-client",
        "client_secret": "demo-secret",
        "scope": "company",
        **overrides,
    }
    response = client.post(TOKEN_PATH, data=form)
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def list_page(client: httpx.Client, token: str, **params: Any) -> httpx.Response:
    return client.get(LIST_PATH, params=params, headers={"Authorization": f"Bearer {token}"})


def day_window(day: str = DAY) -> dict[str, str]:
    return {"start_time": f"{day} 00:00:00", "end_time": f"{day} 23:59:59"}


def pull_first_pass(client: httpx.Client, token: str, count: int, **params: Any) -> list[Any]:
    """A naive client: pages until the first page's totalItem is covered."""
    ids: list[Any] = []
    page, total = 1, None
    while total is None or (page - 1) * count < total:
        data = list_page(client, token, start_index=page, count=count, **params).json()["data"]
        total = data["totalItem"] if total is None else total
        ids += [row["company_id"] for row in data["list"]]
        page += 1
    return ids


def expected_ids(records: list[dict[str, Any]], lo: str, hi: str, field: str = "update_time"):
    """Independent oracle: ids with lo <= field <= hi, newest first, ties by id descending."""
    chosen = [r for r in records if lo <= r[field] <= hi]
    chosen.sort(key=lambda r: (r[field], int(r["company_id"])), reverse=True)
    return [r["company_id"] for r in chosen]


# --- the token endpoint ------------------------------------------------------------------------


def test_token_reply_has_exactly_the_documented_fields() -> None:
    sim, client = make()
    first = client.post(
        TOKEN_PATH,
        data={
            "grant_type": "client_credentials",
            "client_id": "demo-client",
            "client_secret": "demo-secret",
            "scope": "company",
        },
    )
    second = client.post(
        TOKEN_PATH,
        json={
            "grant_type": "client_credentials",
            "client_id": "demo-client",
            "client_secret": "demo-secret",
            "scope": "company",
        },
    )
    for reply in (first, second):
        body = reply.json()
        assert reply.status_code == 200
        assert set(body) == {"token_type", "access_token", "expires_in", "refresh_token"}
        assert body["token_type"] == "Bearer"
        assert body["expires_in"] == 28800
        assert len(body["access_token"]) >= 32
    assert first.json()["access_token"] != second.json()["access_token"]
    assert sim.issued_tokens == [first.json()["access_token"], second.json()["access_token"]]


def test_token_expires_in_can_be_omitted() -> None:
    _, client = make(token_expires_in=None)
    reply = client.post(
        TOKEN_PATH,
        data={
            "grant_type": "client_credentials",
            "client_id": "demo-client",
            "client_secret": "demo-secret",
            "scope": "company",
        },
    )
    assert "expires_in" not in reply.json()
    assert reply.json()["token_type"] == "Bearer"


def test_asking_again_gives_a_token_that_does_not_live_longer() -> None:
    clock = FakeClock()
    _, client = make(clock=clock)
    form = {
        "grant_type": "client_credentials",
        "client_id": "demo-client",
        "client_secret": "demo-secret",
        "scope": "company",
    }
    assert client.post(TOKEN_PATH, data=form).json()["expires_in"] == 28800
    clock.now += 600
    assert client.post(TOKEN_PATH, data=form).json()["expires_in"] == 28200


@pytest.mark.parametrize(
    ("overrides", "config", "error", "message"),
    [
        # wrong secret
        ({"client_secret": "nope"}, {}, "invalid_client", None),
        # unknown client id
        ({"client_id": "someone-else"}, {}, "invalid_client", None),
        # a grant the API does not support
        ({"grant_type": "password"}, {}, "unsupported_grant_type", None),
        # no grant at all
        ({"grant_type": ""}, {}, "unsupported_grant_type", None),
        # asking for a module the client has no permission for
        ({"scope": "company invoices"}, {}, "invalid_scope", "no permission invoices scopes"),
        # a client without the company module asking for it
        ({}, {"scopes": ("order",)}, "invalid_scope", "no permission company scopes"),
    ],
)
def test_token_errors(
    overrides: dict[str, str], config: dict[str, Any], error: str, message: str | None
) -> None:
    sim, client = make(**config)
    form = {
        "grant_type": "client_credentials",
        "client_id": "demo-client",
        "client_secret": "demo-secret",
        "scope": "company",
        **overrides,
    }
    reply = client.post(TOKEN_PATH, data=form)
    assert reply.status_code == 400
    assert reply.json()["error"] == error
    if error == "invalid_client":
        assert reply.json()["error_description"] == "Client authentication failed"
    if message is not None:
        assert reply.json()["message"] == message
    assert "demo-secret" not in reply.text
    assert sim.issued_tokens == []


def test_token_without_company_scope_is_refused_by_business_calls() -> None:
    _, client = make()
    token = get_token(client, scope="")
    body = list_page(client, token).json()
    assert body["code"] == 403
    assert body["message"] == "no permission company scopes"


# --- authorization -----------------------------------------------------------------------------


def test_bare_and_bearer_tokens_are_both_accepted(companies) -> None:
    _, client = make(companies)
    token = get_token(client)
    for header in (f"Bearer {token}", token, f"bearer  {token}"):
        reply = client.get(LIST_PATH, headers={"Authorization": header})
        assert reply.status_code == 200
        assert reply.json()["code"] == 200
        assert len(reply.json()["data"]["list"]) == 10


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer not-a-token"},  # unknown token
        {},  # no Authorization header
    ],
)
def test_unknown_token_is_access_denied(headers: dict[str, str]) -> None:
    sim, client = make()
    reply = client.get(LIST_PATH, headers=headers)
    assert reply.status_code == 401
    assert reply.json()["error"] == "access_denied"
    assert sim.stats.denied == 1


def test_denied_in_body_answers_200_with_access_denied() -> None:
    _, client = make(denied_in_body=True)
    reply = client.get(INFO_PATH, params={"company_id": 1}, headers={"Authorization": "x"})
    assert reply.status_code == 200
    assert reply.json()["error"] == "access_denied"


def test_token_is_revoked_after_n_business_calls_and_a_new_one_works(companies) -> None:
    sim, client = make(companies, revoke_token_after=3)
    first = get_token(client)
    statuses = [list_page(client, first).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 401]
    second = get_token(client)
    assert [list_page(client, second).status_code for _ in range(4)] == [200, 200, 200, 401]
    assert list_page(client, first).status_code == 401
    assert sim.stats.denied == 3


def test_revoke_tokens_denies_every_issued_token(companies) -> None:
    sim, client = make(companies)
    tokens = [get_token(client), get_token(client)]
    assert sim.revoke_tokens() == 2
    assert [list_page(client, t).status_code for t in tokens] == [401, 401]
    assert list_page(client, get_token(client)).status_code == 200


def test_token_expires_on_the_clock(companies) -> None:
    clock = FakeClock()
    _, client = make(companies, clock=clock, token_expires_in=60)
    token = get_token(client)
    clock.now += 59
    assert list_page(client, token).status_code == 200
    clock.now += 1
    assert list_page(client, token).status_code == 401


# --- the list ----------------------------------------------------------------------------------


@pytest.mark.parametrize("count", [7, 10, 100])  # odd size, the default, the maximum
def test_paging_returns_each_company_of_a_window_once_newest_first(companies, count) -> None:
    _, client = make(companies)
    token = get_token(client)
    ids = pull_first_pass(client, token, count, **day_window())
    want = expected_ids(companies, f"{DAY} 00:00:00", f"{DAY} 23:59:59")
    assert len(want) > 100
    assert ids == want


def test_envelope_totalitem_and_count_and_the_last_pages(companies) -> None:
    _, client = make(companies)
    token = get_token(client)
    want = expected_ids(companies, f"{DAY} 00:00:00", f"{DAY} 23:59:59")
    last_page = -(-len(want) // 20)
    body = list_page(client, token, start_index=last_page, count=20, **day_window()).json()
    assert body["code"] == 200 and body["message"] == "success"
    assert dt.datetime.strptime(body["now"], "%Y-%m-%d %H:%M:%S")
    assert body["data"]["totalItem"] == len(want)
    assert body["data"]["count"] == len(body["data"]["list"]) == len(want) - 20 * (last_page - 1)
    beyond = list_page(client, token, start_index=last_page + 1, count=20, **day_window()).json()
    assert beyond["data"]["list"] == [] and beyond["data"]["totalItem"] == len(want)


def test_list_rows_have_exactly_the_twelve_fields(companies) -> None:
    _, client = make(companies)
    rows = list_page(client, get_token(client), count=100).json()["data"]["list"]
    assert all(list(row) == list(LIST_FIELDS) for row in rows)
    assert all(isinstance(row["user_id"], str) for row in rows)


@pytest.mark.parametrize(
    ("config", "count", "rows"),
    [
        ({}, None, 10),  # no count: the default page size
        ({}, 500, 100),  # above the maximum: clamped to 100
        ({"max_page_size": 30}, 50, 30),  # a smaller configured maximum
        ({"default_page_size": 25}, None, 25),  # a configured default
        ({}, 0, 10),  # zero: the default
    ],
)
def test_count_is_defaulted_and_clamped(companies, config, count, rows) -> None:
    _, client = make(companies, **config)
    params = {} if count is None else {"count": count}
    body = list_page(client, get_token(client), **params).json()
    assert len(body["data"]["list"]) == rows
    assert body["data"]["totalItem"] == len(companies)


def test_success_code_zero() -> None:
    _, client = make(success_code=0)
    assert list_page(client, get_token(client)).json()["code"] == 0


def test_removed_lists_deleted_companies_by_their_delete_time(companies) -> None:
    sim, client = make(companies)
    token = get_token(client)
    victims = [r["company_id"] for r in companies[10:13]]
    for cid in victims:
        sim.delete_company(cid, delete_time="2024-03-20 10:00:00")
    deleted = list_page(client, token, removed=1, count=100, **day_window("2024-03-20")).json()
    assert sorted(r["company_id"] for r in deleted["data"]["list"]) == sorted(victims)
    assert all(r["update_time"] == "2024-03-20 10:00:00" for r in deleted["data"]["list"])
    earlier = list_page(client, token, removed=1, **day_window("2024-03-19")).json()
    assert earlier["data"]["totalItem"] == 0
    live = list_page(client, token, count=100).json()["data"]["totalItem"]
    assert live == len(companies) - 3
    for cid in victims:
        info = client.get(
            INFO_PATH, params={"company_id": cid}, headers={"Authorization": token}
        ).json()
        assert info["code"] == 404 and info["message"] == "Not Found Resource"
        assert sim.is_removed(cid)


def test_a_restored_company_is_listed_again_at_its_restore_time(companies) -> None:
    sim, client = make(companies)
    token = get_token(client)
    cid = companies[10]["company_id"]
    sim.delete_company(cid, delete_time="2024-03-20 10:00:00")
    sim.restore_company(cid, restore_time="2024-03-20 11:00:00")
    window = day_window("2024-03-20")
    live = list_page(client, token, count=100, **window).json()["data"]["list"]
    assert [r["update_time"] for r in live if r["company_id"] == cid] == ["2024-03-20 11:00:00"]
    deleted = list_page(client, token, removed=1, count=100, **window).json()["data"]["list"]
    assert cid not in [r["company_id"] for r in deleted]
    assert not sim.is_removed(cid)


def test_all_filter_splits_private_and_public_pools(companies) -> None:
    _, client = make(companies)
    token = get_token(client)

    def ids(pool: int) -> list[Any]:
        return pull_first_pass(client, token, 100, all=pool, **day_window())

    private, public, everyone = ids(0), ids(2), ids(1)
    assert private and public
    assert sorted(map(str, private + public)) == sorted(map(str, everyone))
    by_id = {str(r["company_id"]): r for r in companies}
    assert all(list_view(by_id[str(i)])["user_id"] != "" for i in private)
    assert all(list_view(by_id[str(i)])["user_id"] == "" for i in public)


def test_group_id_filter(companies) -> None:
    _, client = make(companies)
    token = get_token(client)
    got = pull_first_pass(client, token, 100, group_id=102)
    want = [r["company_id"] for r in companies if str(r["group_id"]) == "102"]
    assert len(want) > 50
    assert sorted(map(str, got)) == sorted(map(str, want))


@pytest.mark.parametrize(
    ("time_type", "field"),
    [(2, "create_time"), (3, "archive_time")],  # create time; archive (建档) time
)
def test_time_type_selects_the_filtered_field(companies, time_type, field) -> None:
    _, client = make(companies)
    token = get_token(client)
    window = {"start_time": "2023-01-01 00:00:00", "end_time": "2023-06-30 23:59:59"}
    got = pull_first_pass(client, token, 100, time_type=time_type, **window)
    want = [
        r["company_id"]
        for r in companies
        if "2023-01-01 00:00:00" <= r[field] <= "2023-06-30 23:59:59"
    ]
    assert len(want) > 20
    assert sorted(map(str, got)) == sorted(map(str, want))


EDGES = {
    "before": "2024-02-29 23:59:59",
    "first": "2024-03-01 00:00:00",
    "last": "2024-03-01 23:59:59",
    "next": "2024-03-02 00:00:00",
}


@pytest.mark.parametrize(
    ("boundary", "visible"),
    [
        ("inclusive", {"first", "last", "next"}),  # both ends included
        ("exclusive_end", {"first", "last"}),  # end excluded: [start, end)
        ("exclusive_start", {"last", "next"}),  # start excluded: (start, end]
        ("exclusive", {"last"}),  # both excluded
    ],
)
def test_boundary_modes_at_midnight_and_235959(boundary: str, visible: set[str]) -> None:
    base = generate_companies(len(EDGES), START, START, seed=3)
    for record, when in zip(base, EDGES.values(), strict=True):
        record["update_time"] = record["edit_time"] = when
    names = {r["company_id"]: label for r, label in zip(base, EDGES, strict=True)}
    _, client = make(base, boundary=boundary)
    rows = list_page(
        client, get_token(client), start_time="2024-03-01 00:00:00", end_time="2024-03-02 00:00:00"
    ).json()["data"]["list"]
    assert {names[r["company_id"]] for r in rows} == visible


def test_date_only_bounds_mean_midnight(companies) -> None:
    _, client = make(companies)
    token = get_token(client)
    got = pull_first_pass(client, token, 100, start_time=DAY, end_time="2024-03-05")
    assert got == expected_ids(companies, f"{DAY} 00:00:00", "2024-03-05 00:00:00")


@pytest.mark.parametrize(
    "params",
    [
        {"start_time": "yesterday"},  # not a time
        {"end_time": "2024-02-30 10:00:00"},  # no such day
        {"start_time": "2024-03-01T00:00:00"},  # ISO 'T' is not OKKI's format
        {"time_type": 9},  # unknown time type
        {"start_index": "x"},  # page number not a number
        {"all": 5},  # unknown pool
    ],
)
def test_bad_list_parameters_are_a_business_error(params: dict[str, Any]) -> None:
    _, client = make()
    reply = list_page(client, get_token(client), **params)
    assert reply.status_code == 200
    assert reply.json()["code"] == 400
    assert "data" not in reply.json()


# --- info --------------------------------------------------------------------------------------


def test_info_by_company_id_and_serial_id_returns_the_full_record(companies) -> None:
    _, client = make(companies)
    token = get_token(client)
    record = companies[42]
    for params in ({"company_id": record["company_id"]}, {"serial_id": record["serial_id"]}):
        body = client.get(INFO_PATH, params=params, headers={"Authorization": token}).json()
        assert body["code"] == 200
        assert body["data"] == json.loads(json.dumps(record))


def test_info_unknown_company_is_code_404_in_a_200() -> None:
    _, client = make()
    reply = client.get(
        INFO_PATH, params={"company_id": 1}, headers={"Authorization": get_token(client)}
    )
    assert reply.status_code == 200
    assert reply.json()["code"] == 404
    assert reply.json()["message"] == "Not Found Resource"


def test_info_answers_are_counted_per_company(companies) -> None:
    sim, client = make(companies, quota_rps=1.0, quota_burst=2.0)
    token = get_token(client)
    first, second = (str(companies[i]["company_id"]) for i in (1, 2))
    for cid in (first, first, second):  # the third call is throttled: no answer served
        client.get(INFO_PATH, params={"company_id": cid}, headers={"Authorization": token})
    assert sim.stats.throttled and sim.stats.info_by_company == {first: 2}


def test_records_are_copied_in_and_out(companies) -> None:
    mine = generate_companies(3, START, END)
    sim, _ = make(mine)
    mine[0]["name"] = "changed outside"
    cid = mine[0]["company_id"]
    assert sim.get_company(cid)["name"] != "changed outside"  # type: ignore[index]
    copy = sim.get_company(cid)
    assert copy is not None
    copy["customers"].append({"name": "intruder"})
    assert sim.get_company(cid) != copy


# --- throttling --------------------------------------------------------------------------------


def test_each_throttle_shape_appears_under_quota(companies) -> None:
    clock = FakeClock()  # frozen: the bucket never refills
    sim, client = make(companies, clock=clock, quota_rps=1.0, quota_burst=1.0)
    token = get_token(client)
    assert list_page(client, token).json()["code"] == 200
    seen = []
    for _ in range(5):
        reply = list_page(client, token)
        seen.append((reply.status_code, reply.headers.get("retry-after"), reply.json()["code"]))
    assert seen == [
        (429, "1", 429),  # http429_retry_after
        (429, None, 429),  # http429
        (200, None, 429),  # body429
        (200, None, 503),  # body503
        (429, "1", 429),  # and round again
    ]
    assert sim.stats.throttled == {
        "http429_retry_after": 2,
        "http429": 1,
        "body429": 1,
        "body503": 1,
    }
    clock.now += 1.0
    assert list_page(client, token).json()["code"] == 200
    assert get_token(client)  # the token endpoint is never throttled


def test_scheduled_throttles_answer_those_requests_whatever_the_quota(companies) -> None:
    sim, client = make(companies, throttle_calls=(2, 4))  # no quota at all
    token = get_token(client)  # the token endpoint is not a business request
    codes = [list_page(client, token).json()["code"] for _ in range(5)]
    assert codes == [200, 429, 200, 429, 200]
    assert sim.stats.throttled == {"http429_retry_after": 1, "http429": 1}  # shapes in turn
    with pytest.raises(ValueError, match="from 1"):
        OkkiSimConfig(throttle_calls=(0,))


def test_quota_is_a_bucket_per_token(companies) -> None:
    clock = FakeClock()
    _, client = make(
        companies, clock=clock, quota_rps=2.0, quota_burst=3.0, throttle_shapes=("http429",)
    )
    first, second = get_token(client), get_token(client)
    assert [list_page(client, first).status_code for _ in range(4)] == [200, 200, 200, 429]
    assert [list_page(client, second).status_code for _ in range(3)] == [200, 200, 200]
    clock.now += 1.0  # two more requests' worth
    assert [list_page(client, first).status_code for _ in range(3)] == [200, 200, 429]


# --- faults ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "status", "body_code"),
    [
        ("http500", 500, 500),  # HTTP 500 with a JSON error body
        ("http502", 502, 502),  # HTTP 502
        ("http503", 503, 503),  # HTTP 503
        ("body500", 200, 500),  # HTTP 200 with code 500 in the body
        ("body503", 200, 503),  # another code in the body
    ],
)
def test_http_and_body_faults(companies, kind: str, status: int, body_code: int) -> None:
    sim, client = make(companies, fault_rate=1.0, fault_kinds=(kind,))
    reply = list_page(client, get_token(client))
    assert reply.status_code == status
    assert reply.json()["code"] == body_code
    assert "data" not in reply.json()
    assert sim.stats.faults == {kind: 1}


def test_reset_fault_is_a_transport_error(companies) -> None:
    sim, client = make(companies, fault_rate=1.0, fault_kinds=("reset",))
    token = get_token(client)
    with pytest.raises(httpx.RemoteProtocolError):
        list_page(client, token)
    assert sim.stats.faults == {"reset": 1}


def test_invalid_json_fault_is_an_html_page(companies) -> None:
    sim, client = make(companies, fault_rate=1.0, fault_kinds=("invalid_json",))
    reply = list_page(client, get_token(client))
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/html")
    with pytest.raises(json.JSONDecodeError):
        reply.json()
    assert sim.stats.faults == {"invalid_json": 1}


def test_faults_are_deterministic_per_seed_and_near_the_rate(companies) -> None:
    def run(seed: int) -> list[tuple[int, int]]:
        _, client = make(
            companies, fault_rate=0.3, seed=seed, fault_kinds=("http500", "body500", "http503")
        )
        token = get_token(client)
        replies = [list_page(client, token) for _ in range(300)]
        return [(reply.status_code, reply.json()["code"]) for reply in replies]

    first, again, other = run(5), run(5), run(6)
    assert first == again
    assert first != other
    assert set(first) == {(200, 200), (500, 500), (200, 500), (503, 503)}
    faulted = sum(outcome != (200, 200) for outcome in first)
    assert 0.2 * 300 < faulted < 0.4 * 300


def test_faulted_and_throttled_requests_change_no_state(companies) -> None:
    sim, client = make(
        companies, fault_rate=1.0, fault_kinds=("http500",), revoke_token_after=2, drift_rate=0.5
    )
    token = get_token(client)
    for page in (1, 2, 3, 2, 1):
        assert list_page(client, token, start_index=page, **day_window()).status_code == 500
    assert sim.drift_log == []
    sim.config.fault_rate = 0.0
    # the five faulted calls did not count towards revocation, nor end the drift's first pass
    assert list_page(client, token, start_index=1, **day_window()).status_code == 200
    assert list_page(client, token, start_index=2, **day_window()).status_code == 200
    assert list_page(client, token, start_index=3, **day_window()).status_code == 401


def test_latency_and_spikes_are_set_on_the_response(companies) -> None:
    sim, client = make(companies, latency=0.05, latency_spike_rate=1.0, latency_spike=2.0)
    token = get_token(client)
    request = SimRequest("GET", LIST_PATH, {}, {"authorization": token})
    assert sim.handle(request).delay == pytest.approx(2.05)
    token_request = SimRequest("POST", TOKEN_PATH, {}, {}, b"grant_type=x")
    assert sim.handle(token_request).delay == pytest.approx(0.05)  # auth is never spiked
    with pytest.raises(httpx.ReadTimeout):
        client.get(LIST_PATH, headers={"Authorization": token}, timeout=1.0)


# --- drift -------------------------------------------------------------------------------------


def test_drift_repeats_and_skips_rows_on_the_first_pass_only(companies) -> None:
    sim, client = make(companies, drift_rate=0.1)
    token = get_token(client)
    first_pass = pull_first_pass(client, token, 10, **day_window())
    log = sim.drift_log
    assert {kind for kind, *_ in log} == {"leave", "enter", "bump"}
    assert len(log) == round(
        0.1 * len(expected_ids(companies, f"{DAY} 00:00:00", f"{DAY} 23:59:59"))
    )
    for kind, _cid, old, new in log:
        if kind == "leave":
            assert f"{DAY} 00:00:00" <= old <= f"{DAY} 23:59:59" < new
        elif kind == "enter":
            assert old < f"{DAY} 00:00:00" <= new <= f"{DAY} 23:59:59"
        else:
            assert f"{DAY} 00:00:00" <= old < new <= f"{DAY} 23:59:59"

    truth = [
        r["company_id"]
        for r in sim.companies_in_window(dt.datetime(2024, 3, 4), dt.datetime(2024, 3, 5))
    ]
    repeated = [cid for cid, n in Counter(first_pass).items() if n > 1]
    skipped = set(truth) - set(first_pass)
    assert repeated, "drift should make rows repeat across pages"
    assert skipped, "drift should make the naive first pass miss companies"

    second_pass = pull_first_pass(client, token, 10, **day_window())
    assert second_pass == truth
    assert sim.drift_log == log  # only the first pass drifts


def test_a_re_read_ends_the_first_pass_even_when_it_stopped_halfway(companies) -> None:
    sim, client = make(companies, drift_rate=0.2)
    token = get_token(client)
    for page in (1, 2, 3):
        list_page(client, token, start_index=page, count=10, **day_window())
    drifted = len(sim.drift_log)
    second_pass = pull_first_pass(client, token, 10, **day_window())
    assert len(sim.drift_log) == drifted
    assert second_pass == [
        r["company_id"]
        for r in sim.companies_in_window(dt.datetime(2024, 3, 4), dt.datetime(2024, 3, 5))
    ]


def test_no_drift_on_a_single_page_window(companies) -> None:
    sim, client = make(companies, drift_rate=0.5)
    token = get_token(client)
    ids = pull_first_pass(
        client, token, 100, start_time=f"{DAY} 10:00:00", end_time=f"{DAY} 10:59:59"
    )
    assert 0 < len(ids) <= 100
    assert sim.drift_log == []


def test_drift_kinds_can_be_chosen(companies) -> None:
    sim, client = make(companies, drift_rate=0.05, drift_kinds=("leave",))
    pull_first_pass(client, get_token(client), 10, **day_window())
    assert sim.drift_log and {kind for kind, *_ in sim.drift_log} == {"leave"}


# --- stats and the truth API -------------------------------------------------------------------


def test_stats_count_calls_and_record_request_times(companies) -> None:
    clock = FakeClock()
    sim, client = make(companies, clock=clock)
    token = get_token(client)
    for step in range(3):
        clock.now = 2000.0 + step
        list_page(client, token)
    client.get(INFO_PATH, params={"company_id": 1}, headers={"Authorization": token})
    client.get("/v1/nowhere")
    stats = sim.stats
    assert stats.calls == {TOKEN_PATH: 1, LIST_PATH: 3, INFO_PATH: 1, "/v1/nowhere": 1}
    assert stats.request_times == [2000.0, 2001.0, 2002.0, 2002.0]
    sim.reset_stats()
    assert sim.stats.calls == {} and sim.stats.request_times == []


def test_update_company_moves_it_to_the_front_of_a_later_window(companies) -> None:
    sim, client = make(companies)
    token = get_token(client)
    cid = companies[5]["company_id"]
    updated = sim.update_company(cid, {"name": "Renamed Ltd"})
    newest = max(r["update_time"] for r in companies)
    assert updated["update_time"] == (
        dt.datetime.fromisoformat(newest) + dt.timedelta(seconds=1)
    ).isoformat(sep=" ")
    row = list_page(client, token).json()["data"]["list"][0]
    assert row["company_id"] == cid and row["name"] == "Renamed Ltd"
    sim.update_company(cid, update_time="2024-03-04 12:00:00")
    assert cid in [
        r["company_id"]
        for r in sim.companies_in_window(
            dt.datetime(2024, 3, 4, 12), dt.datetime(2024, 3, 4, 12, 0, 1)
        )
    ]
    with pytest.raises(KeyError):
        sim.update_company(123)
    with pytest.raises(ValueError):
        sim.update_company(cid, {"company_id": 99})


def test_add_company_and_duplicates(companies) -> None:
    sim, client = make(companies[:20])
    extra = dict(companies[100], update_time="2024-04-01 08:00:00")
    sim.add_company(extra)
    rows = list_page(client, get_token(client), **day_window("2024-04-01")).json()["data"]
    assert [r["company_id"] for r in rows["list"]] == [extra["company_id"]]
    with pytest.raises(ValueError):
        sim.add_company(extra)
    assert len(sim) == 21


def test_companies_in_window_takes_aware_datetimes(companies) -> None:
    sim, _ = make(companies)
    naive = sim.companies_in_window(dt.datetime(2024, 3, 4), dt.datetime(2024, 3, 5))
    aware = sim.companies_in_window(
        dt.datetime(2024, 3, 3, 16, tzinfo=dt.UTC), dt.datetime(2024, 3, 4, 16, tzinfo=dt.UTC)
    )
    assert naive == aware
    assert [r["company_id"] for r in naive] == expected_ids(
        companies, f"{DAY} 00:00:00", f"{DAY} 23:59:59"
    )


def test_malformed_records_are_listed_in_their_window() -> None:
    records = generate_companies(400, START, END, seed=2, malformed_rate=0.1)
    _, client = make(records)
    token = get_token(client)
    assert list_page(client, token).json()["data"]["totalItem"] == 400
    bad = next(r for r in records if r["update_time"] == BAD_UPDATE_TIME)
    day = bad["edit_time"][:10]
    rows = pull_first_pass(client, token, 100, **day_window(day))
    assert bad["company_id"] in rows


def test_concurrent_use_from_threads(companies) -> None:
    sim, client = make(companies)
    token = get_token(client)
    codes: list[int] = []

    def reader() -> None:
        local = httpx.Client(transport=mock_transport(sim, sleep=False), base_url="http://okki")
        for page in range(1, 40):
            codes.append(list_page(local, token, start_index=page, count=30).json()["code"])

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for thread in threads:
        thread.start()
    for record in companies[:200]:
        sim.update_company(record["company_id"], {"remark": "touched"})
    for thread in threads:
        thread.join()
    assert codes == [200] * 4 * 39
    total = list_page(client, token, **day_window()).json()["data"]["totalItem"]
    assert total == len(sim.companies_in_window(dt.datetime(2024, 3, 4), dt.datetime(2024, 3, 5)))


def test_demo_spans_the_last_days() -> None:
    sim = OkkiSimulator.demo(n=300, days=3, seed=1, fault_rate=0.1)
    today = dt.datetime.now(CHINA).date()
    start = dt.datetime.combine(today - dt.timedelta(days=2), dt.time())
    assert len(sim.companies_in_window(start, start + dt.timedelta(days=3))) == 300
    assert sim.config.fault_rate == 0.1 and sim.config.seed == 1


# --- the generator -----------------------------------------------------------------------------


def test_generator_is_deterministic() -> None:
    first = generate_companies(300, START, END, seed=9, malformed_rate=0.05)
    assert first == generate_companies(300, START, END, seed=9, malformed_rate=0.05)
    assert first != generate_companies(300, START, END, seed=10, malformed_rate=0.05)
    clean = generate_companies(300, START, END, seed=9)
    assert sum(a == b for a, b in zip(first, clean, strict=True)) == 300 - 30


def test_generator_shape_range_ids_and_size(companies) -> None:
    info_fields = {
        "company_id",
        "serial_id",
        "name",
        "short_name",
        "user_id",
        "owner",
        "create_time",
        "update_time",
        "order_time",
        "edit_time",
        "archive_time",
        "archive_type",
        "create_user",
        "last_edit_user",
        "recent_follow_up_time",
        "next_follow_up_time",
        "private_time",
        "public_time",
        "country",
        "country_name",
        "province",
        "city",
        "timezone",
        "scale_id",
        "star",
        "intention_level",
        "group_id",
        "pool_id",
        "trail_status",
        "origin_list",
        "homepage",
        "fax",
        "tel",
        "address",
        "remark",
        "company",
        "customers",
    }
    assert all(set(r) == info_fields for r in companies)
    assert all(
        "2024-03-01 00:00:00" <= r["update_time"] <= "2024-03-10 23:59:59" for r in companies
    )
    ids = [int(r["company_id"]) for r in companies]
    assert len(set(ids)) == len(ids)
    assert all(3 * 10**12 <= i < 4 * 10**12 for i in ids)
    assert len({r["serial_id"] for r in companies}) == len(companies)
    sizes = [len(json.dumps(r, ensure_ascii=False).encode()) for r in companies]
    assert 1000 <= sum(sizes) / len(sizes) <= 2200
    assert companies[0]["update_time"] == "2024-03-01 00:00:00"
    assert companies[1]["update_time"] == "2024-03-10 23:59:59"


def _contacts(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [c for r in records for c in r["customers"]]


def _phones(records: list[dict[str, Any]]) -> list[list[str]]:
    return [r["tel"] for r in records] + [t for c in _contacts(records) for t in c["tel_list"]]


QUIRKS: dict[str, Callable[[list[dict[str, Any]]], bool]] = {
    "chinese name": lambda rs: any("有限公司" in r["name"] for r in rs),
    "english name": lambda rs: any(r["name"].endswith("LLC") for r in rs),
    "full-width name": lambda rs: any(
        any("\uff21" <= ch <= "\uff3a" for ch in r["name"]) for r in rs
    ),
    "leading space": lambda rs: any(r["name"].startswith(" ") for r in rs),
    "trailing spaces": lambda rs: any(r["name"].endswith(" ") for r in rs),
    "double space": lambda rs: any("  " in r["name"].strip() for r in rs),
    "empty email": lambda rs: any(c["email"] == "" for c in _contacts(rs)),
    "email without @": lambda rs: any(c["email"] and "@" not in c["email"] for c in _contacts(rs)),
    "uppercase email": lambda rs: any(
        c["email"] and c["email"] == c["email"].upper() and "@" in c["email"] for c in _contacts(rs)
    ),
    "email with spaces": lambda rs: any(" " in c["email"] for c in _contacts(rs)),
    "phone +86 138 0013 8000": lambda rs: any(p[1].startswith("+86 ") for p in _phones(rs)),
    "phone 0086-755-1234567": lambda rs: any(
        p[1].startswith("00") and "-" in p[1] for p in _phones(rs)
    ),
    "phone (021) 5555 1234": lambda rs: any(p[1].startswith("(0") for p in _phones(rs)),
    "phone ['86', '13800138000']": lambda rs: any(
        p[0] == "86" and p[1].isdigit() and len(p[1]) == 11 for p in _phones(rs)
    ),
    "no contacts": lambda rs: any(r["customers"] == [] for r in rs),
    "several contacts, one main": lambda rs: any(
        len(r["customers"]) > 1 and sum(c["main_customer_flag"] for c in r["customers"]) == 1
        for r in rs
    ),
    "several contacts, none main": lambda rs: any(
        len(r["customers"]) > 1 and sum(c["main_customer_flag"] for c in r["customers"]) == 0
        for r in rs
    ),
    "company_id as string": lambda rs: any(isinstance(r["company_id"], str) for r in rs),
    "scale_id as string": lambda rs: any(isinstance(r["scale_id"], str) for r in rs),
    "1970 sentinel": lambda rs: any(r["order_time"] == UNSET_TIME for r in rs),
    "user_id string": lambda rs: any(isinstance(r["user_id"], str) for r in rs),
    "user_id list": lambda rs: any(isinstance(r["user_id"], list) for r in rs),
    "public pool (no owner)": lambda rs: any(r["owner"] == [] for r in rs),
    "update at midnight": lambda rs: sum(r["update_time"].endswith(" 00:00:00") for r in rs) > 5,
    "update at 23:59:59": lambda rs: sum(r["update_time"].endswith(" 23:59:59") for r in rs) > 5,
    "update_time ties": lambda rs: len({r["update_time"] for r in rs}) < len(rs) - 10,
    "empty external_field_data as []": lambda rs: any(
        c["external_field_data"] == [] for c in _contacts(rs)
    ),
    "arabic name": lambda rs: any("شركة" in r["name"] for r in rs),
}


@pytest.mark.parametrize("quirk", sorted(QUIRKS))  # one case per data quirk the brief lists
def test_generator_produces_each_quirk(companies, quirk: str) -> None:
    assert QUIRKS[quirk](companies)


def test_malformed_rate_makes_that_many_records_invalid_and_some_nasty() -> None:
    records = generate_companies(400, START, END, seed=4, malformed_rate=0.1)
    kinds: Counter[str] = Counter()
    for r in records:
        if "company_id" not in r:
            kinds["missing_company_id"] += 1
        elif not str(r["company_id"]).isdigit():
            kinds["non_numeric_company_id"] += 1
        elif r["name"].strip() == "":
            kinds["blank_name"] += 1
        elif r["update_time"] == BAD_UPDATE_TIME:
            kinds["bad_update_time"] += 1
    assert kinds == {
        "missing_company_id": 10,
        "non_numeric_company_id": 10,
        "blank_name": 10,
        "bad_update_time": 10,
    }
    names = [r["name"] for r in records]
    assert any(len(n) == 600 for n in names)
    assert any("\x00" in n or "\x07" in n for n in names)
    assert any("🚀" in n for n in names)
    assert any("\u202e" in n for n in names)


def test_list_view_projects_to_the_list_fields() -> None:
    record = generate_companies(1, START, END)[0]
    record["user_id"] = [55280038, "55280041"]
    view = list_view(record)
    assert list(view) == list(LIST_FIELDS)
    assert view["user_id"] == "55280038,55280041"
    assert view["update_time"] == record["update_time"]
    record["user_id"] = ""
    assert list_view(record)["user_id"] == ""


# --- how a list may end or lie, and info's other answers ---------------------------------------


@pytest.mark.parametrize("shape", ["empty", "null"])
def test_empty_first_page_while_total_item_is_positive_n_times(companies, shape: str) -> None:
    sim, client = make(companies, empty_first_pages=2, empty_page_shape=shape)
    token = get_token(client)
    want = expected_ids(companies, f"{DAY} 00:00:00", f"{DAY} 23:59:59")
    answers = [list_page(client, token, count=100, **day_window()).json()["data"] for _ in range(3)]
    for glitch in answers[:2]:
        assert glitch["list"] == ([] if shape == "empty" else None)
        assert glitch["totalItem"] == len(want) > 0
    assert [row["company_id"] for row in answers[2]["list"]] == want[:100]
    assert sim.stats.faults == {"empty_first_page": 2}
    # An empty window is no glitch: it answers empty without using up a glitch.
    _, client = make(companies, empty_first_pages=1)
    token = get_token(client)
    nothing = list_page(client, token, start_time="2030-01-01 00:00:00").json()["data"]
    assert nothing["list"] == [] and nothing["totalItem"] == 0
    assert list_page(client, token, **day_window()).json()["data"]["list"] == []


def test_empty_first_pages_can_be_spread_out(companies) -> None:
    sim, client = make(companies, empty_first_pages=2, empty_first_page_every=3)
    token = get_token(client)
    answers = [list_page(client, token, **day_window()).json()["data"]["list"] for _ in range(9)]
    assert [not rows for rows in answers] == [False, False, True] * 2 + [False] * 3
    assert sim.stats.faults == {"empty_first_page": 2}


def test_an_empty_first_page_with_total_item_zero(companies) -> None:
    sim, client = make(companies, empty_first_pages=1, empty_page_shape="zero_total")
    token = get_token(client)
    glitch = list_page(client, token, **day_window()).json()["data"]
    assert glitch == {"list": [], "count": 0, "totalItem": 0}
    assert list_page(client, token, **day_window()).json()["data"]["totalItem"] > 0
    assert sim.stats.faults == {"empty_first_page": 1}


def test_an_empty_page_once_in_the_middle_of_a_list(companies) -> None:
    sim, client = make(companies, empty_middle_pages=1)
    token = get_token(client)
    want = expected_ids(companies, f"{DAY} 00:00:00", f"{DAY} 23:59:59")
    assert len(want) > 40

    def page(n: int) -> dict[str, Any]:
        return list_page(client, token, start_index=n, count=20, **day_window()).json()["data"]

    assert [r["company_id"] for r in page(1)["list"]] == want[:20]
    glitch = page(2)
    assert glitch["list"] == [] and glitch["totalItem"] == len(want)
    assert [r["company_id"] for r in page(2)["list"]] == want[20:40]  # once only
    assert sim.stats.faults == {"empty_middle_page": 1}


def test_pages_smaller_than_asked_with_a_capped_total_item(companies) -> None:
    sim, client = make(companies, max_page_size=10, total_item_cap=40)
    token = get_token(client)
    want = expected_ids(companies, f"{DAY} 00:00:00", f"{DAY} 23:59:59")
    assert len(want) > 40
    seen: list[Any] = []
    for n in range(1, 100):
        data = list_page(client, token, start_index=n, count=20, **day_window()).json()["data"]
        assert data["totalItem"] == 40 and len(data["list"]) <= 10
        if not data["list"]:
            break
        seen += [row["company_id"] for row in data["list"]]
    assert seen == want


def test_total_item_cap_understates_the_list_but_the_pages_hold_everything(companies) -> None:
    sim, client = make(companies, total_item_cap=60)
    token = get_token(client)
    want = expected_ids(companies, f"{DAY} 00:00:00", f"{DAY} 23:59:59")
    assert len(want) > 60
    seen: list[Any] = []
    for page in range(1, 100):
        data = list_page(client, token, start_index=page, count=20, **day_window()).json()["data"]
        assert data["totalItem"] == 60
        if not data["list"]:
            break
        seen += [row["company_id"] for row in data["list"]]
    assert seen == want
    assert sim.stats.faults == {"total_item_capped": page}  # every answer was capped


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        ("number", 5),  # the documented int
        ("string", "5"),  # integers as strings, as elsewhere in the API
        ("missing", None),  # no totalItem key at all
        ("not_a_number", "about many"),  # something that is no count
    ],
)
def test_total_item_shapes(shape: str, expected: object) -> None:
    records = generate_companies(5, START, START, seed=3)
    _, client = make(records, total_item_shape=shape)
    data = list_page(client, get_token(client)).json()["data"]
    assert data.get("totalItem") == expected and ("totalItem" in data) == (shape != "missing")
    assert len(data["list"]) == 5


def test_page_shift_answers_the_previous_page_n_times(companies) -> None:
    sim, client = make(companies, page_shift_times=1)
    token = get_token(client)
    want = expected_ids(companies, f"{DAY} 00:00:00", f"{DAY} 23:59:59")

    def ids(page: int) -> list[Any]:
        data = list_page(client, token, start_index=page, count=10, **day_window()).json()["data"]
        return [row["company_id"] for row in data["list"]]

    assert ids(1) == want[:10]
    assert ids(2) == want[:10]  # shifted: page 1's rows again
    assert ids(2) == want[10:20]  # the shift is spent
    assert ids(3) == want[20:30]
    assert sim.stats.faults == {"page_shift": 1}


def test_info_answers_another_business_code_for_chosen_ids(companies) -> None:
    chosen, other = companies[5], companies[6]
    _, client = make(companies, info_error_codes={str(chosen["company_id"]): 403})
    token = get_token(client)

    def info(record: dict[str, Any]) -> dict[str, Any]:
        params = {"company_id": record["company_id"]}
        return client.get(INFO_PATH, params=params, headers={"Authorization": token}).json()

    refused = info(chosen)
    assert refused["code"] == 403 and "data" not in refused
    assert info(other)["code"] == 200


def test_info_update_time_ahead_of_the_list(companies) -> None:
    record = companies[7]
    cid = str(record["company_id"])
    sim, client = make(companies, info_time_ahead={cid: 90_000})
    token = get_token(client)
    body = client.get(INFO_PATH, params={"company_id": cid}, headers={"Authorization": token})
    listed = dt.datetime.fromisoformat(record["update_time"])
    ahead = dt.datetime.fromisoformat(body.json()["data"]["update_time"])
    assert ahead - listed == dt.timedelta(seconds=90_000)
    day = record["update_time"][:10]
    rows = list_page(client, token, count=100, **day_window(day)).json()["data"]["list"]
    assert {r["update_time"] for r in rows if str(r["company_id"]) == cid} == {
        record["update_time"]
    }
    assert sim.get_company(cid)["update_time"] == record["update_time"]  # the truth is unchanged
