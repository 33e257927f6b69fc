"""Two runs at once into one SQL table, through Dagster, against the real PostgreSQL and MariaDB
servers of the session: no older version lands over a newer one.

The two runs belong to two deployments (two DuckDB files, two Dagster instances) writing the
same table. One deployment shares its load lock and its ledger between its own runs, so two of
its runs never race at the target (``WarehouseResource.load_lock``); two deployments share only
the table, and the table's guard (targets/sql_write.py, ``versions.supersedes``) is all that
stands between them.

The interleaving is made, not hoped for: run B reads today's window (a deletion and a contact
as they were), then pauses before its first write; meanwhile OKKI restores the company and
edits the contact silently (both keep the update time), and run A's okki_reconcile reads them
and writes them; then B writes what it read earlier. B's deletion is observed before A's
restore, and B's contact on the same update time before A's: neither may land.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa

from okki_assets.partitions import CHINA_TZ, window_for_key
from okki_assets.resources import TargetResource, WarehouseResource
from okki_assets.targets import RecordResult, RecordVersion, Target, TargetRow
from okki_assets.targets.port import Stats
from okki_assets_tests.conftest import Pipeline, day_keys, make_pipeline
from okki_assets_tests.conftest import run_reconcile as reconcile
from okki_assets_tests.integration.test_reconcile import okki_truth

DAYS = 2
WAIT = 300.0  # seconds: a safety net only; the events decide the order
#: name -> (the run reached its first write, the run may write)
GATES: dict[str, tuple[threading.Event, threading.Event]] = {}


class _Paused:
    """A target whose writes wait until the test lets them through."""

    def __init__(self, inner: Target, reached: threading.Event, go: threading.Event) -> None:
        self.inner, self.reached, self.go = inner, reached, go
        self.kind = inner.kind

    @property
    def stats(self) -> Stats:
        return self.inner.stats

    def check(self) -> None:
        self.inner.check()

    def write_batch(
        self,
        records: list[dict[str, Any]],
        attempt: str,
        versions: Sequence[RecordVersion] | None = None,
    ) -> list[RecordResult]:
        self.reached.set()
        assert self.go.wait(WAIT), "the test never let the paused run write"
        return self.inner.write_batch(records, attempt, versions)

    def read_back(self) -> Iterator[TargetRow]:
        return self.inner.read_back()

    def close(self) -> None:
        self.inner.close()


class PausedTarget(TargetResource):
    """The SQL target of a run that pauses before its first write (see ``GATES``)."""

    gate: str = ""

    def open(self) -> Target:
        reached, go = GATES[self.gate]
        return _Paused(super().open(), reached, go)


#: Two runs at once in one process: Dagster's local compute-log capture redirects the process's
#: stdout and stderr through a ``tail -F`` per step, and two runs in two threads capture over each
#: other (CI saw four of those ``tail`` processes garbage-collected still running: a
#: ResourceWarning, an error under the suite's filterwarnings). The runs' printed output is not
#: what this test checks, so neither instance captures it.
NO_CAPTURE = {
    "compute_logs": {
        "module": "dagster._core.storage.noop_compute_log_manager",
        "class": "NoOpComputeLogManager",
    }
}


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test(overrides=NO_CAPTURE) as inst:
        yield inst


@pytest.fixture
def deployment_a(sql_url: str, tmp_path: Path, instance: dg.DagsterInstance) -> Iterator[Pipeline]:
    for pipeline in make_pipeline(tmp_path, instance, companies=60, days=DAYS):
        pipeline.target = TargetResource(url=sql_url)
        yield pipeline


def table(url: str) -> dict[str, dict[str, Any]]:
    url = url.replace("postgresql://", "postgresql+psycopg://")
    engine = sa.create_engine(url.replace("mariadb://", "mariadb+pymysql://"))
    with engine.connect() as conn:
        t = sa.Table("okki_companies", sa.MetaData(), autoload_with=conn)
        rows = conn.execute(sa.select(t)).mappings().all()
    engine.dispose()
    return {str(r["id"]): dict(r) for r in rows}


def utc_naive(okki_time: str) -> datetime:
    local = datetime.fromisoformat(okki_time).replace(tzinfo=CHINA_TZ)
    return local.astimezone(UTC).replace(tzinfo=None)


def email_of(row: dict[str, Any]) -> str:
    info = row["contactInfo"]
    return str((json.loads(info) if isinstance(info, str) else info)["emailAddress"])


@pytest.mark.parametrize("sql_url", ["postgresql", "mariadb"], indirect=True)
def test_a_slower_run_never_writes_an_older_version_over_a_concurrent_ones(
    deployment_a: Pipeline, tmp_path: Path
) -> None:
    a, okki, url = deployment_a, deployment_a.sims.okki, deployment_a.target.url
    keys = day_keys(DAYS)
    yesterday, today = (
        sorted(str(r["company_id"]) for r in okki.companies_in_window(*window_for_key(key)))
        for key in keys
    )
    assert yesterday and today, "each window should hold companies"
    flap, edited = yesterday[0], today[0]  # deleted today; edited and read in today's window
    for key in keys:
        assert a.materialize(key).success
    start, end = window_for_key(keys[-1])
    when = min(max(datetime.now(CHINA_TZ) - timedelta(minutes=1), start), end)
    okki.delete_company(flap, delete_time=when)
    assert a.materialize(keys[-1]).success  # A sends the deletion
    assert table(url)[flap]["_deleted_at"] is not None

    # B: another deployment reads today's window (the deletion, the contact as it is) and
    # pauses before it writes.
    GATES["b"] = reached, go = threading.Event(), threading.Event()
    results: list[dg.ExecuteInProcessResult] = []
    errors: list[BaseException] = []

    def run_b() -> None:
        with dg.instance_for_test(overrides=NO_CAPTURE) as other:
            try:
                results.append(
                    dg.materialize(
                        a.assets,
                        partition_key=keys[-1],
                        resources=a.resources(
                            target=PausedTarget(url=url, gate="b"),
                            warehouse=WarehouseResource(database=str(tmp_path / "b.duckdb")),
                        ),
                        instance=other,
                        raise_on_error=False,
                    )
                )
            except BaseException as e:  # pragma: no cover - reported below
                errors.append(e)
                reached.set()

    b = threading.Thread(target=run_b)
    b.start()
    try:
        assert reached.wait(WAIT) and not errors, errors
        # Meanwhile OKKI restores the company and edits a contact, both keeping the update
        # time, and A's reconcile reads and writes them.
        okki.restore_company(flap)
        okki.edit_contact(edited, email="silent.edit@example.com")
        assert reconcile(a, refresh_days=1).success
        assert table(url)[flap]["_deleted_at"] is None
    finally:
        go.set()
        b.join(WAIT)
        GATES.pop("b", None)
    assert not errors and results and results[0].success, errors

    rows = table(url)
    truth = okki_truth(a)
    # Neither B's deletion (read before the restore) nor B's contact (read before the edit).
    assert (rows[flap]["_deleted_at"], email_of(rows[edited])) == (None, "silent.edit@example.com")
    assert rows[flap]["_okki_update_time"] == utc_naive(truth[flap]["update_time"])
    assert rows[edited]["_okki_update_time"] == utc_naive(truth[edited]["update_time"])
    assert {c for c, r in rows.items() if r["_deleted_at"] is None} == set(truth)
