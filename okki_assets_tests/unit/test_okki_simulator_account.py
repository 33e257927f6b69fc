"""The OKKI simulator's whole-account knobs (in-process, no sockets).

Covers what the reconcile must survive: history (companies last updated long before the first
window), a deletion that keeps the old ``update_time`` (the default), a restore with the old
time, ``deletion_moves_time`` for the old behaviour, and contact edits that do not move
``update_time`` (found only by re-reading info).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from okki_assets.simulator.data import generate_companies, parse_time
from okki_assets_tests.unit.test_okki_simulator import (
    END,
    INFO_PATH,
    START,
    day_window,
    get_token,
    list_page,
    make,
)


def _all_ids(client: Any, token: str, **params: Any) -> dict[Any, str]:
    out: dict[Any, str] = {}
    page = 1
    while True:
        rows = list_page(client, token, start_index=page, count=100, **params).json()["data"]
        if not rows["list"]:
            return out
        out.update({r["company_id"]: r["update_time"] for r in rows["list"]})
        page += 1


def test_history_share_files_that_share_a_year_or_more_before_the_first_window() -> None:
    records = generate_companies(500, START, END, seed=3, history_share=0.6)
    plain = generate_companies(500, START, END, seed=3)
    first = dt.datetime(START.year, START.month, START.day)
    old = [r for r in records if (t := parse_time(r["update_time"])) and t < first]
    assert len(old) == round(498 * 0.6)
    assert all(
        first - dt.timedelta(days=5 * 365) <= t <= first - dt.timedelta(days=365)
        for r in old
        if (t := parse_time(r["update_time"]))
    )
    # the rest keep the times drawn without history: the windows' data does not move
    recent = {r["company_id"]: r["update_time"] for r in records if r not in old}
    assert recent == {r["company_id"]: r["update_time"] for r in plain if r["company_id"] in recent}


def test_a_deletion_keeps_the_old_update_time_by_default() -> None:
    records = generate_companies(50, START, END, seed=5)
    sim, client = make(records)
    token = get_token(client)
    victim = records[10]
    sim.delete_company(victim["company_id"])
    day = victim["update_time"][:10]
    deleted = list_page(client, token, removed=1, count=100, **day_window(day)).json()["data"]
    assert [(r["company_id"], r["update_time"]) for r in deleted["list"]] == [
        (victim["company_id"], victim["update_time"])
    ]
    today = list_page(client, token, removed=1, count=100, **day_window("2024-03-10")).json()
    assert victim["company_id"] not in [r["company_id"] for r in today["data"]["list"]]
    assert _all_ids(client, token, removed=1) == {victim["company_id"]: victim["update_time"]}


def test_deletion_moves_time_restores_the_old_default() -> None:
    records = generate_companies(50, START, END, seed=5)
    sim, client = make(records, deletion_moves_time=True)
    newest = max(r["update_time"] for r in records)
    deleted = sim.delete_company(records[10]["company_id"])
    assert deleted["update_time"] > newest


def test_a_restore_keeps_the_old_update_time_by_default() -> None:
    records = generate_companies(50, START, END, seed=5)
    sim, client = make(records)
    token = get_token(client)
    cid, old_time = records[10]["company_id"], records[10]["update_time"]
    sim.delete_company(cid, delete_time="2024-03-10 12:00:00")  # a deletion that did move
    assert _all_ids(client, token, removed=1) == {cid: "2024-03-10 12:00:00"}
    sim.restore_company(cid)
    assert _all_ids(client, token)[cid] == old_time  # back with the time it had before
    sim.delete_company(cid)
    sim.restore_company(cid)
    assert _all_ids(client, token)[cid] == old_time
    assert _all_ids(client, token, removed=1) == {}


def test_edit_contact_changes_info_but_not_update_time() -> None:
    records = generate_companies(50, START, END, seed=5)
    sim, client = make(records)
    token = get_token(client)
    bare = next(r for r in records if not r.get("customers"))
    for record in (records[10], bare):
        cid = record["company_id"]
        sim.edit_contact(cid, email="new.contact@example.com", phone="13800000000")
        info = client.get(
            INFO_PATH, params={"company_id": cid}, headers={"Authorization": token}
        ).json()["data"]
        primary = next(
            (c for c in info["customers"] if str(c.get("main_customer_flag")) == "1"),
            info["customers"][0],
        )
        assert primary["email"] == "new.contact@example.com"
        assert primary["tel_list"] == [["", "13800000000"]]
        assert info["update_time"] == record["update_time"]
        assert _all_ids(client, token)[cid] == record["update_time"]


def test_a_purged_company_is_in_no_list_and_info_answers_404() -> None:
    records = generate_companies(50, START, END, seed=5)
    sim, client = make(records)
    token = get_token(client)
    live, deleted = records[10], records[11]
    sim.delete_company(deleted["company_id"])
    for record in (live, deleted):
        sim.purge_company(record["company_id"])
        info = client.get(
            INFO_PATH,
            params={"company_id": record["company_id"]},
            headers={"Authorization": token},
        ).json()
        assert info["code"] == 404
    assert live["company_id"] not in _all_ids(client, token)
    assert _all_ids(client, token, removed=1) == {}
    assert len(sim) == len(records) - 2
    # A company added afterwards is its own (sequence numbers are not reused).
    added = sim.add_company({**live, "company_id": 99999999, "serial_id": "NEW"})
    assert _all_ids(client, token)[added["company_id"]] == live["update_time"]
    assert sim.get_company(records[49]["company_id"]) == records[49]
