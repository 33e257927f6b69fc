"""The 漏单 guard: a window pulled from a live, shifting list is complete, or fails loudly.

Covers (against the OKKI simulator in-process, and a hand-written handler for the pathological
case): drift while paging (rows repeated and skipped) still yields exactly the simulator's truth;
companies exactly on the window's edges land in one partition only; malformed rows are kept for
quarantine; a list that never settles ends in IncompleteWindowError after bisecting.
"""

from __future__ import annotations

import itertools
import json
from datetime import date, datetime, timedelta

import httpx
import pytest

from okki_assets.clients.okki import OkkiClient, RetrySettings
from okki_assets.errors import IncompleteWindowError
from okki_assets.partitions import CHINA_TZ
from okki_assets.pull import InfoReport, fetch_infos, list_window
from okki_assets.simulator.data import generate_companies
from okki_assets.simulator.http import mock_transport
from okki_assets.simulator.okki import OkkiSimConfig, OkkiSimulator

DAY = date(2026, 11, 20)
START = datetime(2026, 11, 20, tzinfo=CHINA_TZ)
END = START + timedelta(days=1)


def _client(transport: httpx.BaseTransport) -> OkkiClient:
    return OkkiClient(
        "http://okki.test",
        "demo-client",
        "demo-secret",
        rate_limit=None,
        page_size=20,
        transport=transport,
        retry=RetrySettings(max_attempts=3, base_delay=0.0, jitter=False),
    )


def _truth(sim: OkkiSimulator) -> dict[str, str]:
    return {str(c["company_id"]): c["update_time"] for c in sim.companies_in_window(START, END)}


def test_drift_while_paging_still_yields_exactly_the_window() -> None:
    companies = generate_companies(400, DAY - timedelta(days=1), DAY + timedelta(days=1), seed=9)
    sim = OkkiSimulator(companies, OkkiSimConfig(drift_rate=0.1, seed=4))
    with _client(mock_transport(sim, sleep=False)) as client:
        listed, report = list_window(client, START, END)
    kinds = {entry[0] for entry in sim.drift_log}
    assert kinds == {"leave", "enter", "bump"}, "the simulator should have drifted every way"
    truth = _truth(sim)
    assert {k: r["update_time"] for k, r in listed.items()} == truth
    assert report.passes >= 3  # the drifting pass, then two that agree
    assert report.converged


@pytest.mark.parametrize(
    "boundary",
    [
        "inclusive",  # the documented-as-observed behaviour
        "exclusive_end",  # variants the client must survive ([GAP] in the spec)
        "exclusive_start",
        "exclusive",
    ],
)
def test_edge_companies_land_in_exactly_one_partition(boundary: str) -> None:
    companies = generate_companies(60, DAY - timedelta(days=1), DAY + timedelta(days=1), seed=2)
    edges = {
        "1000000001": "2026-11-20 00:00:00",  # first second of the window: ours
        "1000000002": "2026-11-20 23:59:59",  # last second: ours
        "1000000003": "2026-11-21 00:00:00",  # first second of the next window: not ours
        "1000000004": "2026-11-19 23:59:59",  # last second of the previous window: not ours
    }
    for cid, when in edges.items():
        companies.append({**companies[0], "company_id": int(cid), "update_time": when})
    sim = OkkiSimulator(companies, OkkiSimConfig(boundary=boundary))
    with _client(mock_transport(sim, sleep=False)) as client:
        listed, report = list_window(client, START, END)
        next_day, _ = list_window(client, END, END + timedelta(days=1))
    assert {"1000000001", "1000000002"} <= set(listed)
    assert not {"1000000003", "1000000004"} & set(listed)
    assert "1000000003" in next_day
    assert set(listed) == set(_truth(sim))


def test_malformed_rows_are_kept_for_quarantine_and_infos_are_fetched_once() -> None:
    companies = generate_companies(200, DAY, DAY, seed=11, malformed_rate=0.1)
    sim = OkkiSimulator(companies, OkkiSimConfig())
    with _client(mock_transport(sim, sleep=False)) as client:
        listed, _ = list_window(client, START, END)
        report = InfoReport()
        pulled = list(fetch_infos(client, listed, END, reusable=lambda *_: False, report=report))
    assert len(pulled) == len(listed) == 200
    without_id = [p for p in pulled if p.company_id is None]
    assert without_id, "records without company_id must still be kept"
    assert all(p.info is None for p in without_id)
    fetched = [p for p in pulled if p.info is not None]
    assert len({p.company_id for p in fetched}) == len(fetched) == report.requested


def test_reusable_companies_make_no_info_call() -> None:
    companies = generate_companies(50, DAY, DAY, seed=12)
    sim = OkkiSimulator(companies, OkkiSimConfig())
    with _client(mock_transport(sim, sleep=False)) as client:
        listed, _ = list_window(client, START, END)
        before = sim.stats.calls.get("/v1/company/info", 0)
        report = InfoReport()
        pulled = list(fetch_infos(client, listed, END, reusable=lambda *_: True, report=report))
    assert sim.stats.calls.get("/v1/company/info", 0) == before
    assert report.reused == 50 and all(p.info_reused for p in pulled)


def test_a_list_that_never_settles_fails_loudly() -> None:
    counter = itertools.count()

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("access_token"):
            return httpx.Response(200, json={"access_token": "t", "expires_in": 28800})
        n = next(counter)
        record = {"company_id": str(n), "update_time": "2026-11-20 10:00:00"}
        body = {
            "code": 200,
            "message": "success",
            "data": {"list": [record], "totalItem": 1 + n % 2, "count": 1},
        }
        return httpx.Response(200, content=json.dumps(body))

    with _client(httpx.MockTransport(handler)) as client, pytest.raises(IncompleteWindowError) as e:
        list_window(client, START, END)
    assert "did not settle" in str(e.value)
    assert "/v1/company/list" in str(e.value)
