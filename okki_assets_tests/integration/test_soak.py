"""``python -m benchmarks.soak`` and the reconciliation it prints.

- The command syncs days against the heavy fault profile on loopback, with OKKI data changing
  between rounds, prints the reconciliation report (expected, at the target, lost, doubled,
  stale, quarantined by reason, retries by cause) and exits 0 only when nothing is lost,
  doubled or stale.
- ``reconcile`` itself notices each kind of damage done to a correct target behind the
  pipeline's back (a record removed, an older version written back, a version applied twice,
  a deleted company resurrected, a field changed, a bad record taken out of quarantine), so a
  passing soak means something.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from benchmarks.soak import doubled_ids, main, reconcile
from okki_assets.partitions import window_for_key
from okki_assets.simulator.http import SimRequest
from okki_assets.simulator.target import BATCH_PATH, TargetSimulator
from okki_assets_tests.conftest import Pipeline, day_keys, make_pipeline


def test_the_soak_command_passes_under_heavy_faults_and_prints_its_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["--days", "2", "--faults", "heavy", "--companies", "160"]
        + ["--malformed-rate", "0.05", "--churn", "0.1", "--workdir", str(tmp_path)]
    )
    report = capsys.readouterr().out
    assert code == 0, report
    figures = {
        label: int(value)
        for label, value in re.findall(r"^  (\S[^\n]*?)\s{2,}(\d+)", report, flags=re.MULTILINE)
    }
    assert figures["lost"] == 0
    assert figures["applied twice with the same content"] == 0
    assert figures["stale (older version, or deleted)"] == 0
    assert figures["content different from OKKI"] == 0
    assert figures["expected companies (valid in OKKI)"] > 100
    assert (
        figures["at the target, newest version"] + figures["rejected by the target, with reason"]
        == figures["expected companies (valid in OKKI)"]
    )
    assert figures["quarantined (rows, by reason)"] >= figures["malformed in OKKI"] > 0
    for heading in ("Retries by cause", "Faults injected", "OKKI data changed between rounds"):
        assert heading in report
    assert figures["okki http5xx"] > 0 and figures["target replies dropped after commit"] > 0
    assert report.rstrip().endswith("PASS: lost 0, doubled 0, stale 0, different 0")
    with duckdb.connect(str(tmp_path / "soak.duckdb"), read_only=True) as conn:
        assert conn.execute("select count(*) from load_ledger").fetchone() != (0,)


def test_a_company_deleted_restored_and_deleted_again_is_not_doubled() -> None:
    tombstone, v1, v2 = "fingerprint-t", "fingerprint-1", "fingerprint-2"
    # restored with a new update time: another version, then the same tombstone again
    flap = [("1", "created", v1), ("1", "deleted", tombstone), ("1", "created", v2)]
    assert doubled_ids([*flap, ("1", "deleted", tombstone)]) == []
    # the same upsert content applied again after another version: a stale resend
    assert doubled_ids([("2", "created", v1), ("2", "updated", v2), ("2", "updated", v1)]) == ["2"]
    # a delete applied twice with nothing in between
    assert doubled_ids([("3", "deleted", tombstone), ("3", "deleted", tombstone)]) == ["3"]
    # restored with its old update_time: the old content comes back after the tombstone
    assert (
        doubled_ids([("4", "created", v1), ("4", "deleted", tombstone), ("4", "created", v1)]) == []
    )
    # ... but sent twice without a delete in between it is doubled
    assert doubled_ids(
        [
            ("5", "created", v1),
            ("5", "deleted", tombstone),
            ("5", "created", v1),
            ("5", "updated", v1),
        ]
    ) == ["5"]


@pytest.fixture
def synced(tmp_path: Path, instance: dg.DagsterInstance) -> Iterator[Pipeline]:
    for pipeline in make_pipeline(
        tmp_path, instance, companies=90, days=2, okki_overrides={"malformed_rate": 0.1}
    ):
        for key in day_keys(2):
            assert pipeline.materialize(key).success
        yield pipeline


def _write(target: TargetSimulator, records: list[dict], key: str) -> None:
    body = json.dumps({"records": records}).encode()
    response = target.handle(
        SimRequest(
            "POST",
            BATCH_PATH,
            {},
            {
                "authorization": f"Bearer {target.config.token}",
                "content-type": "application/json",
                "idempotency-key": key,
            },
            body,
        )
    )
    assert response.status == 200, response.body


def test_reconcile_notices_every_kind_of_damage(synced: Pipeline) -> None:
    keys = day_keys(2)
    okki, target = synced.sims.okki, synced.sims.target
    clean = reconcile(okki, target, synced.database, keys)
    assert clean.ok and clean.expected > 50 and clean.malformed > 0

    first_day = {
        str(c.get("company_id")) for c in okki.companies_in_window(*window_for_key(keys[0]))
    }
    lost, stale, doubled, different, resurrected = sorted(first_day & set(target.records))[:5]
    # Newer versions of `stale` and `doubled` (in the second window) reach the target.
    late = window_for_key(keys[-1])[0].replace(hour=23)
    first_version = target.records[doubled]
    for n, cid in enumerate((stale, doubled)):
        okki.update_company(cid, {"name": f"Newer {n}"}, update_time=late)
    assert synced.materialize(keys[-1]).success
    newer_version = target.records[doubled]
    # Then, behind the pipeline's back: an older version of `stale` (never sent before) is
    # written over the newer one; `doubled`'s first and newer versions are applied once more;
    # `lost` is deleted; `different` gets another country; `resurrected` is deleted in OKKI.
    older = {**target.records[stale], "fullName": "Older", "updatedAt": "2000-01-01T00:00:00+08:00"}
    _write(target, [older], "older")
    _write(target, [first_version], "first-again")
    _write(target, [newer_version], "newer-again")
    _write(target, [{"id": lost, "deleted": True}], "drop-lost")
    _write(target, [{**target.records[different], "country": "XX"}], "changed")
    okki.delete_company(resurrected, delete_time=late.replace(minute=30))
    # A malformed record's quarantine row vanishes.
    with duckdb.connect(str(synced.database)) as conn:
        gone = conn.execute(
            "select company_id from quarantined_companies where company_id is not null limit 1"
        ).fetchone()
        assert gone is not None
        conn.execute("delete from quarantined_companies where company_id = ?", [gone[0]])

    rec = reconcile(okki, target, synced.database, keys)
    assert not rec.ok
    assert rec.lost == [lost]
    assert rec.stale == [stale]
    assert rec.doubled == [doubled]
    assert rec.different == [different]
    assert rec.deleted_at_target == [resurrected]
    assert rec.malformed_unquarantined == [gone[0]]
    assert rec.lost_total == 2 and rec.stale_total == 2
