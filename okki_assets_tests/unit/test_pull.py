"""The 漏单 guard: a window pulled from a live, shifting list is complete, or fails loudly.

Covers (against the OKKI simulator in-process, and a hand-written handler for the pathological
case): drift while paging (rows repeated and skipped) still yields exactly the simulator's truth;
companies exactly on the window's edges land in one partition only; malformed rows are kept for
quarantine; a list that never settles ends in IncompleteWindowError after bisecting. How a
list ends (docs/okki-api.md): an empty first page while totalItem > 0 is retried, a
capped totalItem truncates nothing, a missing or non-numeric totalItem fails at once naming it, a
one-page shift is retried as a new pass and only a repeat that persists fails. Info: another
business code quarantines the one company, an info time past the window keeps it here; and
raw_complete compares the list with the rows DuckDB holds.
"""

from __future__ import annotations

import itertools
import json
from datetime import date, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from okki_assets.clients.okki import OkkiClient, RetrySettings
from okki_assets.errors import IncompleteWindowError, OkkiPermanentError, PaginationError
from okki_assets.okki_time import CHINA_TZ
from okki_assets.resources import WarehouseResource
from okki_assets.simulator.data import generate_companies
from okki_assets.simulator.http import mock_transport
from okki_assets.simulator.okki import OkkiSimConfig, OkkiSimulator
from okki_assets.stages import window_pull
from okki_assets.stages.pull import InfoReport, PulledCompany, fetch_infos, list_window
from okki_assets.stages.reconcile import list_account

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


def _day(n: int, seed: int = 3) -> list[dict]:
    """``n`` well-formed companies, all updated inside the window."""
    return generate_companies(n, DAY, DAY, seed=seed)


def _list_calls(sim: OkkiSimulator) -> int:
    return sim.stats.calls.get("/v1/company/list", 0)


def _pulled(sim: OkkiSimulator) -> tuple[dict[str, PulledCompany], InfoReport]:
    """The window listed, then every company's info asked for: key -> company, and the report."""
    report = InfoReport()
    with _client(mock_transport(sim, sleep=False)) as client:
        listed, _ = list_window(client, START, END)
        pulled = fetch_infos(client, listed, reusable=lambda *_: False, report=report)
        return {p.key: p for p in pulled}, report


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
        pulled = list(fetch_infos(client, listed, reusable=lambda *_: False, report=report))
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
        pulled = list(fetch_infos(client, listed, reusable=lambda *_: True, report=report))
    assert sim.stats.calls.get("/v1/company/info", 0) == before
    assert report.reused == 50 and all(p.info_reused for p in pulled)


def _never_settles() -> httpx.MockTransport:
    """A list whose page 1 shows a new company every time, under a count that flips."""
    counter = itertools.count()

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("access_token"):
            return httpx.Response(200, json={"access_token": "t", "expires_in": 28800})
        n = next(counter)
        # Page 1 shows a new company every time, under a count that flips; later pages are empty.
        first = request.url.params["start_index"] == "1"
        record = {"company_id": str(n), "update_time": "2026-11-20 10:00:00"}
        body = {
            "code": 200,
            "message": "success",
            "data": {"list": [record] if first else [], "totalItem": 1 + n % 2, "count": 1},
        }
        return httpx.Response(200, content=json.dumps(body))

    return httpx.MockTransport(handler)


def test_a_list_that_never_settles_fails_loudly() -> None:
    with _client(_never_settles()) as client, pytest.raises(IncompleteWindowError) as e:
        list_window(client, START, END)
    assert "did not settle" in str(e.value)
    assert "/v1/company/list" in str(e.value)


@pytest.mark.parametrize("shape", ["empty", "null"])  # list: [] and list: null
def test_an_empty_first_page_while_total_item_is_positive_is_retried(shape: str) -> None:
    sim = OkkiSimulator(_day(50), OkkiSimConfig(empty_first_pages=2, empty_page_shape=shape))
    with _client(mock_transport(sim, sleep=False)) as client:
        listed, _ = list_window(client, START, END)
    assert {k: r["update_time"] for k, r in listed.items()} == _truth(sim)
    assert len(listed) == 50


def test_an_empty_window_is_still_empty() -> None:
    sim = OkkiSimulator(_day(10), OkkiSimConfig(empty_first_pages=5))
    with _client(mock_transport(sim, sleep=False)) as client:
        later = END + timedelta(days=3)  # no company there, not even on an edge
        listed, report = list_window(client, later, later + timedelta(days=1))
    assert len(listed) == 0 and report.converged
    assert _list_calls(sim) == 2  # two agreeing passes of one empty page each


def test_a_capped_total_item_does_not_truncate_the_window() -> None:
    sim = OkkiSimulator(_day(80), OkkiSimConfig(total_item_cap=60))
    with _client(mock_transport(sim, sleep=False)) as client:  # pages of 20
        listed, report = list_window(client, START, END)
    assert len(listed) == 80
    assert {k: r["update_time"] for k, r in listed.items()} == _truth(sim)
    assert report.passes == 2 and report.bisections == 0


def test_a_small_server_page_with_a_capped_count_does_not_truncate_the_window() -> None:
    """Pages of 10 where 20 are asked and totalItem capped at 40: all 80 are listed."""
    sim = OkkiSimulator(_day(80), OkkiSimConfig(max_page_size=10, total_item_cap=40))
    with _client(mock_transport(sim, sleep=False)) as client:
        listed, report = list_window(client, START, END)
    assert {k: r["update_time"] for k, r in listed.items()} == _truth(sim)
    assert len(listed) == 80 and report.bisections == 0


def test_an_account_list_that_never_settles_fails_loudly() -> None:
    with _client(_never_settles()) as client, pytest.raises(IncompleteWindowError) as e:
        list_account(client, removed=0)
    assert "account list (removed=0) did not settle after 4 passes" in str(e.value)


ACCOUNT_GLITCHES = {
    "an empty page 2 once": {"empty_middle_pages": 1},
    "an empty page 1 with totalItem 0 once": {
        "empty_first_pages": 1,
        "empty_page_shape": "zero_total",
    },
    "a small server page with a capped count": {"max_page_size": 10, "total_item_cap": 40},
}


@pytest.mark.parametrize("glitch", list(ACCOUNT_GLITCHES))
def test_the_account_list_ends_only_where_the_list_does(glitch: str) -> None:
    companies = generate_companies(120, DAY - timedelta(days=400), DAY, seed=5)
    sim = OkkiSimulator(companies, OkkiSimConfig(**ACCOUNT_GLITCHES[glitch]))
    truth = sim.companies_in_window(datetime(1970, 1, 2), datetime(2200, 1, 1))
    with _client(mock_transport(sim, sleep=False)) as client:
        listed = list_account(client, removed=0)
    assert {k: r["update_time"] for k, r in listed.items()} == {
        str(c["company_id"]): c["update_time"] for c in truth
    }
    assert len(listed) == 120


@pytest.mark.parametrize("shape", ["missing", "not_a_number"])
def test_a_missing_or_non_numeric_total_item_fails_at_once_naming_it(shape: str) -> None:
    sim = OkkiSimulator(_day(50), OkkiSimConfig(total_item_shape=shape))
    with (
        _client(mock_transport(sim, sleep=False)) as client,
        pytest.raises(OkkiPermanentError, match="totalItem") as e,
    ):
        list_window(client, START, END)
    assert "/v1/company/list" in str(e.value)
    assert _list_calls(sim) == 1


def test_a_one_page_shift_is_retried_as_a_new_pass() -> None:
    sim = OkkiSimulator(_day(80), OkkiSimConfig(page_shift_times=1))
    with _client(mock_transport(sim, sleep=False)) as client:
        listed, report = list_window(client, START, END)
    assert {k: r["update_time"] for k, r in listed.items()} == _truth(sim)
    assert report.passes == 3  # the shifted pass, then two that agree


def test_a_page_repeat_that_persists_across_passes_fails() -> None:
    sim = OkkiSimulator(_day(80), OkkiSimConfig(page_shift_times=10**6))
    with (
        _client(mock_transport(sim, sleep=False)) as client,
        pytest.raises(PaginationError, match="repeats page 1") as e,
    ):
        list_window(client, START, END)
    assert "passes" in str(e.value)
    assert 4 <= _list_calls(sim) <= 20  # a second pass, then no bisection of the window


def test_info_refused_with_another_code_quarantines_only_that_company() -> None:
    companies = _day(30)
    refused = str(companies[4]["company_id"])
    pulled, report = _pulled(
        OkkiSimulator(companies, OkkiSimConfig(info_error_codes={refused: 403}))
    )
    assert len(pulled) == 30
    assert pulled[refused].info is None
    assert pulled[refused].list_record["okki_assets_error"] == "info_code_403"
    assert all(p.info is not None for k, p in pulled.items() if k != refused)
    assert report.info_refused == [refused]


def test_info_time_past_the_window_keeps_the_company_in_the_window_that_listed_it() -> None:
    companies = _day(30)
    ahead = str(companies[2]["company_id"])
    config = OkkiSimConfig(info_time_ahead={ahead: 2 * 86_400})
    pulled, report = _pulled(OkkiSimulator(companies, config))
    assert len(pulled) == 30
    company = pulled[ahead]
    assert company.info is not None and company.info["update_time"] > "2026-11-22"
    assert company.update_time == companies[2]["update_time"]  # the list's time files it
    assert report.info_ahead_of_list == [ahead]


def test_raw_complete_compares_the_list_with_the_rows_duckdb_holds(tmp_path: Path) -> None:
    sim = OkkiSimulator(_day(40), OkkiSimConfig())
    warehouse = WarehouseResource(database=str(tmp_path / "okki.duckdb"))
    connect = warehouse.get_connection
    with _client(mock_transport(sim, sleep=False)) as client:
        summary = window_pull.pull_partition(client, connect, DAY.isoformat(), "run-1")
    assert summary.distinct == summary.stored_in_duckdb == 40 and summary.accounted

    # The stored copy loses a listed company (a second writer, a restore): the check sees it.
    with connect() as conn:
        conn.execute(
            "delete from raw_companies where company_id ="
            " (select min(company_id) from raw_companies)"
        )
    assert window_pull.count_stored(connect, summary) == 39
    assert not summary.accounted

    # And another stored twice: as many rows as listed again, one company still missing.
    with connect() as conn:
        conn.execute(
            "insert into raw_companies select * from raw_companies where company_id ="
            " (select max(company_id) from raw_companies)"
        )
    assert window_pull.count_stored(connect, summary) == 40
    assert summary.distinct_in_duckdb == 39
    assert not summary.accounted
