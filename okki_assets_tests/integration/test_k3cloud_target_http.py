"""The Kingdee adapter against the K/3 Cloud simulator over HTTP on loopback (spec §2-§7).

Covers: every fault on at once (HTML pages before and after a commit, HTTP 519, MsgCode 14,
dropped replies, creates that commit late) still leaves one audited, enabled customer per
FNumber with the last name sent, deletions forbidden, restores enabled, nothing created twice;
resending a create without waiting for a slow first attempt does create a number twice (the
race the settle wait prevents); partial batches commit their good rows and reject the others
with Kingdee's message; a BatchSave over the server's cap is halved; read_back pages past short
pages; dead sessions are renewed in both login modes; a customer forbidden or renamed by hand is
repaired by the next write; without OrderString the simulator's order is unstable.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from okki_assets.clients.http import RetrySettings
from okki_assets.errors import TargetRetriesExhausted
from okki_assets.mapping import TargetMapping, content_hash, parse_mapping
from okki_assets.simulator.http import ServerThread
from okki_assets.simulator.k3cloud import K3CloudSimConfig, K3CloudSimulator
from okki_assets.targets.k3cloud import K3CloudTarget
from okki_assets.targets.k3cloud_api import K3CloudApi, K3CloudSettings

QUERY = "/k3cloud/Kingdee.BOS.WebApi.ServicesStub.DynamicFormService.ExecuteBillQuery.common.kdsvc"


@pytest.fixture
def sim() -> Iterator[K3CloudSimulator]:
    yield K3CloudSimulator(K3CloudSimConfig())


@pytest.fixture
def server(sim: K3CloudSimulator) -> Iterator[ServerThread]:
    with ServerThread(sim) as thread:
        yield thread


_OPEN: list[K3CloudTarget] = []


@pytest.fixture(autouse=True)
def _close_targets() -> Iterator[None]:
    yield
    while _OPEN:
        _OPEN.pop().close()


def target(
    server: ServerThread, sim: K3CloudSimulator, mapping: TargetMapping | None = None, **kw: Any
) -> K3CloudTarget:
    cfg = sim.config
    base: dict[str, Any] = dict(
        base_url=f"{server.url}/k3cloud/",
        acct_id=cfg.acct_id,
        username=cfg.username,
        app_id=cfg.app_id,
        app_secret=cfg.app_secret,
        settle_seconds=cfg.late_commit_seconds * 2,
        timeout_seconds=10,
    )
    settings = K3CloudSettings(**{**base, **kw})
    retry = RetrySettings(max_attempts=8, base_delay=0.01, max_delay=0.05)
    _OPEN.append(K3CloudTarget(settings, mapping, api=K3CloudApi(settings, retry=retry)))
    return _OPEN[-1]


def rec(i: int, name: str | None = None) -> dict[str, Any]:
    return {"id": str(i), "FName": name or f"Company {i}", "FShortName": "", "FTEL": "",
            "FCOUNTRY": "CN"}  # fmt: skip


def by_number(sim: K3CloudSimulator) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for c in sim.customers():
        out.setdefault(c["FNumber"], []).append(c)
    return out


def test_every_fault_on_still_one_customer_per_number(
    sim: K3CloudSimulator, server: ServerThread
) -> None:
    cfg = sim.config
    cfg.html_before_rate = cfg.html_after_rate = cfg.drop_reply_rate = 0.1
    cfg.http519_rate = cfg.limit_rate = 0.05
    cfg.late_commit_rate, cfg.late_commit_seconds = 0.15, 0.2
    t = target(server, sim, batch_size=7, settle_seconds=0.4)
    t.check()
    live = {i: rec(i) for i in range(30)}
    statuses = [r.status for r in t.write_batch(list(live.values()))]
    assert statuses == ["created"] * 30
    live.update({i: rec(i, f"Edited {i}") for i in range(0, 30, 3) if i % 5 != 1})  # edits
    deleted = [{"id": str(i), "deleted": True} for i in range(1, 30, 5)]
    edits = [live[i] for i in range(0, 30, 3) if i % 5 != 1]
    assert {r.status for r in t.write_batch(edits + deleted)} == {"updated", "deleted"}
    restored = [live[3], live[11]]  # 11 was deleted: a flap back; 3 was only edited
    assert [r.status for r in t.write_batch(restored)] == ["unchanged", "updated"]
    t.close()
    sim.flush()
    assert sim.duplicates() == {}
    customers = by_number(sim)
    assert len(customers) == 30 and all(len(c) == 1 for c in customers.values())
    gone = {f"OKKI{i}" for i in range(1, 30, 5)} - {"OKKI11"}
    for number, (c,) in customers.items():
        assert c["FDocumentStatus"] == "C"
        assert c["FForbidStatus"] == ("B" if number in gone else "A")
        assert c["FName"] == live[int(number[4:])]["FName"]
    assert sum(v for k, v in sim.stats.items() if k.startswith("fault.")) >= 3


class _SharedClock:
    """One simulated clock for the simulator's late commits and the adapter's waits: only the
    adapter's sleeps move it, so a loaded machine cannot reorder a resend and a commit."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.mark.parametrize("settle", [0.0, 0.6])  # no wait; a wait past the slow commit
def test_a_slow_create_is_waited_for_before_confirming(settle: float) -> None:
    # Every create commits 0.5 s after it arrived and its reply is lost at once: a client that
    # confirms (and resends) at once meets the uniqueness race and makes several customers.
    clock = _SharedClock()
    sim = K3CloudSimulator(K3CloudSimConfig(), clock=clock)
    sim.config.late_commit_rate, sim.config.late_commit_seconds = 1.0, 0.5
    with ServerThread(sim) as server:
        cfg = sim.config
        settings = K3CloudSettings(
            base_url=f"{server.url}/k3cloud/",
            acct_id=cfg.acct_id,
            username=cfg.username,
            app_id=cfg.app_id,
            app_secret=cfg.app_secret,
            settle_seconds=settle,
            timeout_seconds=10,
        )
        retry = RetrySettings(max_attempts=8, base_delay=0.01, max_delay=0.05)
        api = K3CloudApi(settings, retry=retry, sleep=clock.sleep, clock=clock)
        t = K3CloudTarget(settings, None, api=api, sleep=clock.sleep)
        _OPEN.append(t)
        if settle:
            assert [r.status for r in t.write_batch([rec(1)])] == ["created"]
        else:
            with pytest.raises(TargetRetriesExhausted):
                t.write_batch([rec(1)])
        clock.sleep(1.0)  # every late commit is due
        sim.flush()
        copies = len(by_number(sim)["OKKI1"])
    assert (copies == 1) if settle else (copies > 1)


def test_partial_batch_commits_good_rows_and_rejects_with_kingdee_message(
    sim: K3CloudSimulator, server: ServerThread
) -> None:
    sim.config.refuse_rule = lambda m: "字段“客户名称”不合法" if m.get("FName") == "bad" else None
    t = target(server, sim)
    results = t.write_batch([rec(1), rec(2, "bad"), rec(3), {"id": "4", "FName": ""}])
    assert [(r.status, r.error) for r in results] == [
        ("created", None),
        ("rejected", "BD_Customer BatchSave: 字段“客户名称”不合法"),
        ("created", None),
        ("rejected", "FName (客户名称) is empty and required by Kingdee"),
    ]
    assert sorted(by_number(sim)) == ["OKKI1", "OKKI3"]


def test_batch_over_the_server_cap_is_halved(sim: K3CloudSimulator, server: ServerThread) -> None:
    sim.config.max_batch = 3
    results = target(server, sim, batch_size=8).write_batch([rec(i) for i in range(10)])
    assert [r.status for r in results] == ["created"] * 10
    assert sim.stats["refused.batch_size"] >= 1 and len(sim.customers()) == 10


def test_read_back_pages_past_short_pages(sim: K3CloudSimulator, server: ServerThread) -> None:
    sim.config.query_cap = 4  # Limit 2000 asked, 4 answered: not the end
    t = target(server, sim)
    t.write_batch([rec(i) for i in range(10)])
    t.write_batch([{"id": "3", "deleted": True}])
    rows = list(t.read_back())
    assert [r.id for r in rows] == [str(i) for i in range(10)]
    assert [r.id for r in rows if r.deleted] == ["3"]
    assert rows[0].values == rec(0) and rows[0].content_hash is not None


def test_a_mapping_file_with_references_and_custom_fields_reads_back_exactly(
    sim: K3CloudSimulator, server: ServerThread
) -> None:
    fields = {
        "id": {"column": "company_id", "type": "str"},
        "FName": "name",
        "FCustTypeId.FNumber": {"const": "KHLB001_SYS"},
        "F_OKKI_Serial": "serial_id",
    }
    t = target(server, sim, parse_mapping({"fields": fields}))
    record = {"id": "5", "FName": "Five", "FCustTypeId": {"FNumber": "KHLB001_SYS"},
              "F_OKKI_Serial": "S-5"}  # fmt: skip
    assert [r.status for r in t.write_batch([record])] == ["created"]
    assert [r.status for r in t.write_batch([record])] == ["unchanged"]
    (row,) = t.read_back()
    assert row.values == record and row.content_hash == content_hash(record)


@pytest.mark.parametrize("cookie", [False, True])  # signed headers; ValidateUser cookies
def test_dead_sessions_are_renewed(
    sim: K3CloudSimulator, server: ServerThread, cookie: bool
) -> None:
    sim.config.session_max_calls = 2
    t = target(server, sim, **({"password": sim.config.password} if cookie else {}))
    t.check()
    assert [r.status for r in t.write_batch([rec(i) for i in range(5)])] == ["created"] * 5
    sim.kill_sessions()
    assert [r.status for r in t.write_batch([rec(1, "x")])] == ["updated"]
    t.close()
    assert sim.sessions.opened >= 3
    assert sim.stats["logins.validateuser"] >= (2 if cookie else 0)


def test_hand_edits_are_repaired(sim: K3CloudSimulator, server: ServerThread) -> None:
    t = target(server, sim)
    t.write_batch([rec(1), rec(2)])
    sim.forbid_by_hand("OKKI1")
    sim.rename_by_hand("OKKI2", "renamed in Kingdee")
    rows = list(t.read_back())  # what an audit sees: one forbidden, one with another hash
    assert [(r.id, r.deleted) for r in rows] == [("1", True), ("2", False)]
    assert rows[1].content_hash != content_hash(rec(2)) and rows[0].values == rec(1)
    assert [r.status for r in t.write_batch([rec(1), rec(2)])] == ["updated", "updated"]
    assert [(c["FForbidStatus"], c["FDocumentStatus"], c["FName"]) for c in sim.customers()] == [
        ("A", "C", "Company 1"),
        ("A", "C", "Company 2"),
    ]


def test_order_is_unstable_without_order_string(
    sim: K3CloudSimulator, server: ServerThread
) -> None:
    target(server, sim).write_batch([rec(i) for i in range(20)])
    t = target(server, sim)
    t.check()
    sid = t.api._sid or ""
    orders = set()
    for _ in range(3):
        body = {"data": {"FormId": "BD_Customer", "FieldKeys": "FNumber"}}
        reply = httpx.post(
            server.url + QUERY, content=json.dumps(body), headers={"kdservice-sessionid": sid}
        )
        orders.add(tuple(row[0] for row in reply.json()))
    assert len(orders) > 1


@pytest.mark.parametrize("faults", [False, True])  # clean replies; replies lost or late
def test_every_verdict_carries_the_customers_fcustid(
    sim: K3CloudSimulator, server: ServerThread, faults: bool
) -> None:
    if faults:
        cfg = sim.config
        cfg.html_after_rate = cfg.drop_reply_rate = 0.2
        cfg.late_commit_rate, cfg.late_commit_seconds = 0.2, 0.2
    sim.config.refuse_rule = lambda m: "字段“客户名称”不合法" if m.get("FName") == "bad" else None
    t = target(server, sim, batch_size=4, settle_seconds=0.4)

    def fcustid() -> dict[str, str]:
        sim.flush()
        return {c["FNumber"][4:]: str(c["FCUSTID"]) for c in sim.customers()}

    first = t.write_batch(
        [rec(i) for i in range(8)] + [rec(8, "bad"), {"id": "9", "deleted": True}]
    )
    held = fcustid()
    assert [(r.id, r.status, r.target_id) for r in first] == [
        *((str(i), "created", held[str(i)]) for i in range(8)),
        ("8", "rejected", None),  # never created: no customer
        ("9", "unchanged", None),  # a deletion of a company Kingdee never had
    ]
    second = t.write_batch([rec(0, "Edited"), rec(1), rec(2, "bad"), {"id": "3", "deleted": True}])
    assert fcustid() == held  # no customer made or lost
    assert [(r.status, r.target_id) for r in second] == [
        ("updated", held["0"]),
        ("unchanged", held["1"]),
        ("rejected", held["2"]),  # refused, but the customer is there
        ("deleted", held["3"]),
    ]
    assert [r.target_id for r in t.write_batch([{"id": "3", "deleted": True}])] == [held["3"]]
    assert (sum(v for k, v in sim.stats.items() if k.startswith("fault.")) > 0) is faults
