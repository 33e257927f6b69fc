"""The pipeline into Kingdee K/3 Cloud through Dagster, against the OKKI and K/3 Cloud simulators
over HTTP with the Kingdee faults on (IIS pages before and after a commit, HTTP 519, MsgCode 14
call limits and a BatchSave cap, dropped replies, creates that commit late, sessions that die).

A week of daily windows, then deletions, a flap (deleted and restored), name edits and
``okki_reconcile``: every live OKKI company is exactly one customer ``OKKI<id>``, audited and
enabled, with OKKI's (cleaned) name; deleted companies are forbidden; no FNumber was ever
created twice. A customer forbidden or renamed by hand in Kingdee is found by the reconcile's
audit of the target (read back through the port) and repaired: enabled, renamed back. The
load ledger keeps each company's customer id (FCUSTID, as the simulator holds it) through
creates, deletions, re-runs and a failed edit.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pytest

from okki_assets.cli import main
from okki_assets.cli.demo import DEMO_DUCKDB
from okki_assets.field_rules import clean_text
from okki_assets.resources import K3CloudConfig, TargetResource
from okki_assets.simulator.http import ServerThread
from okki_assets.simulator.k3cloud import K3CloudSimConfig, K3CloudSimulator
from okki_assets_tests.conftest import SYNC_START, Pipeline, day_keys, make_pipeline
from okki_assets_tests.conftest import account_figures as figures
from okki_assets_tests.conftest import run_reconcile as reconcile

EVERYTHING = (datetime(1970, 1, 2), datetime(2200, 1, 1))
FAULTS = K3CloudSimConfig(
    html_before_rate=0.05,
    html_after_rate=0.05,
    http519_rate=0.03,
    limit_rate=0.03,
    drop_reply_rate=0.05,
    late_commit_rate=0.05,
    late_commit_seconds=0.2,
    max_batch=6,  # under K3CLOUD_BATCH_SIZE: the first BatchSaves are halved
    session_max_calls=40,
)


@pytest.fixture
def kingdee() -> Iterator[tuple[K3CloudSimulator, str]]:
    sim = K3CloudSimulator(dataclasses.replace(FAULTS))
    with ServerThread(sim) as server:
        yield sim, f"k3cloud+{server.url}/k3cloud/"


@pytest.fixture
def pipeline(
    tmp_path: Path, instance: dg.DagsterInstance, kingdee: tuple[K3CloudSimulator, str]
) -> Iterator[Pipeline]:
    sim, url = kingdee
    config = sim.config
    target = TargetResource(
        url=url,
        retry_base_delay=0.01,
        k3cloud=K3CloudConfig(
            acct_id=config.acct_id,
            username=config.username,
            app_id=config.app_id,
            app_secret=config.app_secret,
            batch_size=10,
            timeout_seconds=5.0,
            settle_seconds=0.4,  # past the simulator's late commits
        ),
    )
    history = {"history_share": 0.3, "history_before": date.fromisoformat(SYNC_START)}
    for p in make_pipeline(tmp_path, instance, companies=150, days=7, okki_overrides=history):
        yield dataclasses.replace(p, target=target)


def live_names(pipeline: Pipeline) -> dict[str, str]:
    """OKKI's live, valid companies: number -> the cleaned name Kingdee should hold."""
    out = {}
    for r in pipeline.sims.okki.companies_in_window(*EVERYTHING):
        cid, name = str(r.get("company_id", "")), clean_text(r.get("name"))
        if cid.isdigit() and name and r.get("update_time", "").startswith(("19", "20")):
            out[f"OKKI{cid}"] = name
    return out


def customers(sim: K3CloudSimulator) -> dict[str, list[dict[str, Any]]]:
    sim.flush()
    out: dict[str, list[dict[str, Any]]] = {}
    for c in sim.customers():
        out.setdefault(c["FNumber"], []).append(c)
    return out


def test_a_week_deletions_a_flap_edits_and_a_reconcile_leave_one_customer_each(
    pipeline: Pipeline, kingdee: tuple[K3CloudSimulator, str]
) -> None:
    sim, _ = kingdee
    okki = pipeline.sims.okki
    for key in day_keys(7):
        assert pipeline.materialize(key).success
    assert reconcile(pipeline).success
    numbers = sorted(live_names(pipeline))
    gone, flap, edited = numbers[:3], numbers[3], numbers[4:7]
    for number in gone + [flap]:
        okki.delete_company(number[4:])
    okki.restore_company(flap[4:])
    for number in edited:
        okki.update_company(number[4:], {"name": f"Renamed {number}"})
    assert pipeline.materialize(day_keys(1)[0]).success
    assert reconcile(pipeline).success

    held = customers(sim)
    assert sim.duplicates() == {} and all(len(c) == 1 for c in held.values())
    live = live_names(pipeline)
    for number, name in live.items():
        (customer,) = held[number]
        assert (customer["FDocumentStatus"], customer["FForbidStatus"]) == ("C", "A"), number
        assert customer["FName"] == name
    assert all(held[n][0]["FName"] == f"Renamed {n}" for n in edited)
    for number in gone:
        (customer,) = held[number]
        assert customer["FForbidStatus"] == "B"
    assert set(held) - set(live) == set(gone)
    assert sum(v for k, v in sim.stats.items() if k.startswith("fault.")) > 0


def test_the_next_reconcile_repairs_customers_forbidden_or_renamed_by_hand(
    pipeline: Pipeline, kingdee: tuple[K3CloudSimulator, str]
) -> None:
    sim, _ = kingdee
    sim.config.html_before_rate = sim.config.html_after_rate = 0.0  # the audit, not the faults
    assert reconcile(pipeline).success
    forbidden, renamed = sorted(live_names(pipeline))[:2]
    sim.forbid_by_hand(forbidden)
    sim.rename_by_hand(renamed, "renamed in Kingdee")
    repairing = reconcile(pipeline)
    assert repairing.success
    found = figures(repairing)
    assert (found["target_missing"], found["target_different"]) == (1, 1)  # forbidden: missing
    held = customers(sim)
    assert held[forbidden][0]["FForbidStatus"] == "A"
    assert held[renamed][0]["FName"] == live_names(pipeline)[renamed]
    after = figures(reconcile(pipeline))
    assert (after["target_missing"], after["target_different"], after["target_extra"]) == (0, 0, 0)


def test_the_ledger_keeps_each_customers_fcustid(
    pipeline: Pipeline, kingdee: tuple[K3CloudSimulator, str]
) -> None:
    sim, _ = kingdee
    keys = day_keys(2)
    for key in keys:
        assert pipeline.materialize(key).success
    first_day = ledger_ids(pipeline, keys[0])
    gone, edited = [n for n in sorted(live_names(pipeline)) if n[4:] in first_day][:2]
    # a deletion, then an edit, in today's window (OKKI's times are China's)
    pipeline.sims.okki.delete_company(gone[4:], delete_time=f"{keys[-1]} 00:00:01")
    assert pipeline.materialize(keys[-1]).success  # the tombstone: Forbid

    live, held = live_names(pipeline), fcustids(sim)
    ledger = ledger_target_ids(pipeline)
    assert ledger[gone[4:]] == ("deleted", held[gone])
    of_live = {cid: tid for cid, (_, tid) in ledger.items() if f"OKKI{cid}" in live}
    assert len(of_live) > 20 and of_live == {cid: held.get(f"OKKI{cid}") for cid in of_live}
    assert all(tid for status, tid in ledger.values() if status != "rejected")
    assert pipeline.materialize(keys[-1]).success  # nothing to send: every row kept
    assert ledger_target_ids(pipeline) == ledger and fcustids(sim) == held

    # an edit whose sending fails: the FCUSTID stays
    pipeline.sims.okki.update_company(
        edited[4:], {"name": f"Renamed {edited}"}, update_time=f"{keys[-1]} 00:00:02"
    )
    cap, sim.config.max_batch = sim.config.max_batch, 0  # every BatchSave refused whole
    assert not pipeline.materialize(keys[-1], raise_on_error=False).success
    assert ledger_target_ids(pipeline)[edited[4:]] == ("failed", held[edited])
    sim.config.max_batch = cap
    assert pipeline.materialize(keys[-1]).success
    assert ledger_target_ids(pipeline)[edited[4:]] == ("updated", held[edited])
    assert customers(sim)[edited][0]["FName"] == f"Renamed {edited}"


def fcustids(sim: K3CloudSimulator) -> dict[str, str]:
    """FNumber -> FCUSTID, as the simulator holds its customers."""
    return {number: str(c["FCUSTID"]) for number, (c, *_) in customers(sim).items()}


def ledger_ids(pipeline: Pipeline, partition_key: str) -> set[str]:
    rows = pipeline.query(
        "select company_id from load_ledger where partition_key = ?", [partition_key]
    )
    return {str(cid) for (cid,) in rows}


def ledger_target_ids(pipeline: Pipeline) -> dict[str, tuple[str, str | None]]:
    """company id -> (status, target_id), as the load ledger keeps them."""
    rows = pipeline.query("select company_id, status, target_id from load_ledger")
    return {str(cid): (status, tid) for cid, status, tid in rows}


def test_the_kingdee_demo_keeps_and_explains_a_rejected_company_and_succeeds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The demo's first day holds a company whose name is longer than Kingdee accepts: rejected,
    # with the reason, is an outcome the demo reports, not a failure of the demo.
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    demo = ["demo", "--companies", "60", "--days", "2", "--partitions", "2", "--faults", "none"]
    assert main([*demo, "--target", "k3cloud", "--project-dir", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"\[1/2\] syncing .* sent, ok, 1 rejected by the target \(", printed)
    assert "(okki_reconcile) ... in sync but for the companies the target rejected" in printed
    assert (
        "rejected by the target, kept in load_ledger with the reason: 1 company"
        " (FName is longer than 255 characters (1))"
    ) in printed
    with duckdb.connect(str(tmp_path / DEMO_DUCKDB), read_only=True) as conn:
        rows = conn.execute(
            "select status, target_id is not null, count(*) from load_ledger"
            " group by all order by all"
        ).fetchall()
    assert rows[-1] == ("rejected", False, 1) and len(rows) == 2  # the others: created, FCUSTID
    assert rows[0][:2] == ("created", True) and rows[0][2] > 50
