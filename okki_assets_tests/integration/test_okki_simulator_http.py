"""The OKKI simulator over real HTTP (ServerThread on 127.0.0.1).

Covers what only a real server shows: the token/list/info round trip through uvicorn, latency
actually delaying answers (a lower bound: a loaded machine only adds), the quota enforced per
access token at the configured rate (on the simulator's injected clock, which the test moves
between requests, so the machine's speed does not matter), a connection reset seen by httpx
as a transport error, and a latency spike past the client's timeout seen as a read timeout.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from okki_assets.simulator.data import generate_companies
from okki_assets.simulator.http import ServerThread
from okki_assets.simulator.okki import (
    INFO_PATH,
    LIST_PATH,
    TOKEN_PATH,
    OkkiSimConfig,
    OkkiSimulator,
)
from okki_assets_tests.factories import FakeClock

COMPANIES = generate_companies(600, dt.date(2024, 3, 1), dt.date(2024, 3, 5), seed=5)


@pytest.fixture
def serve() -> Iterator[Any]:
    opened: list[tuple[ServerThread, httpx.Client]] = []

    def start(clock: FakeClock | None = None, **config: Any) -> tuple[OkkiSimulator, httpx.Client]:
        sim = OkkiSimulator(COMPANIES, OkkiSimConfig(**config), clock=clock or time.monotonic)
        server = ServerThread(sim).start()
        client = httpx.Client(base_url=server.url, timeout=60.0)  # a loaded machine is slow
        opened.append((server, client))
        return sim, client

    yield start
    for server, client in opened:
        client.close()
        server.stop()


def get_token(client: httpx.Client) -> str:
    reply = client.post(
        TOKEN_PATH,
        data={
            "grant_type": "client_credentials",
            "client_id": "demo-client",
            "client_secret": "demo-secret",
            "scope": "company",
        },
    )
    assert reply.status_code == 200
    return str(reply.json()["access_token"])


def test_token_list_and_info_over_http(serve) -> None:
    sim, client = serve()
    token = get_token(client)
    window = {"start_time": "2024-03-02 00:00:00", "end_time": "2024-03-02 23:59:59"}
    ids: list[Any] = []
    for page in range(1, 100):
        data = client.get(
            LIST_PATH,
            params={"start_index": page, "count": 25, **window},
            headers={"Authorization": f"Bearer {token}"},
        ).json()["data"]
        ids += [row["company_id"] for row in data["list"]]
        if page * 25 >= data["totalItem"]:
            break
    truth = sim.companies_in_window(dt.datetime(2024, 3, 2), dt.datetime(2024, 3, 3))
    assert ids == [r["company_id"] for r in truth]
    info = client.get(
        INFO_PATH, params={"company_id": ids[3]}, headers={"Authorization": token}
    ).json()
    assert info["code"] == 200
    assert info["data"] == truth[3]  # UTF-8 names, nested contacts survive the wire


def test_latency_is_applied(serve) -> None:
    _, client = serve(latency=0.15)
    began = time.perf_counter()
    token = get_token(client)
    reply = client.get(LIST_PATH, headers={"Authorization": token})
    elapsed = time.perf_counter() - began
    assert reply.json()["code"] == 200
    assert elapsed >= 0.3  # two answers, each delayed 0.15 s (no upper bound: load only adds)


def test_quota_is_enforced_per_token_at_the_configured_rate(serve) -> None:
    # The simulator's clock is the test's: it moves 1/80 s between requests (four times the
    # quota), so the bucket's arithmetic is checked exactly, however slow the machine is.
    rate, burst, step, rounds = 20.0, 2.0, 1 / 80, 160
    clock = FakeClock(start=0.0)
    sim, client = serve(
        clock=clock, quota_rps=rate, quota_burst=burst, throttle_shapes=("http429",)
    )
    tokens = [get_token(client), get_token(client)]
    admitted = {token: 0 for token in tokens}
    for _ in range(rounds):
        for token in tokens:  # both tokens hammer the server in turn, at the same instant
            if client.get(LIST_PATH, headers={"Authorization": token}).status_code == 200:
                admitted[token] += 1
        clock.advance(step)
    span = (rounds - 1) * step  # from each token's first request to its last
    sent = len(sim.stats.request_times)
    assert sent == 2 * rounds
    for token in tokens:  # each token has its own bucket: burst + rate x time, to the request
        assert admitted[token] == burst + int(rate * span + 1e-9)
    assert sim.stats.throttled["http429"] == sent - sum(admitted.values())
    # An idle token refills only its burst, and the other token's use does not drain it.
    clock.advance(60.0)
    replies = [client.get(LIST_PATH, headers={"Authorization": tokens[0]}) for _ in range(3)]
    assert [r.status_code for r in replies] == [200, 200, 429]


def test_reset_fault_is_a_transport_error(serve) -> None:
    sim, client = serve(fault_rate=1.0, fault_kinds=("reset",))
    token = get_token(client)  # the token endpoint is never faulted
    with pytest.raises(httpx.TransportError):
        client.get(LIST_PATH, headers={"Authorization": token})
    assert sim.stats.faults == {"reset": 1}
    sim.config.fault_rate = 0.0
    assert client.get(LIST_PATH, headers={"Authorization": token}).json()["code"] == 200


def test_latency_spike_past_the_timeout_is_a_read_timeout(serve) -> None:
    _, client = serve(latency_spike_rate=1.0, latency_spike=0.6)
    token = get_token(client)
    with pytest.raises(httpx.ReadTimeout):
        client.get(LIST_PATH, headers={"Authorization": token}, timeout=0.2)
