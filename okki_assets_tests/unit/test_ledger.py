"""The load ledger's claims keep the attempt that sends them (an in-memory DuckDB, no sockets).

A claim gets a fresh attempt id, kept in ``load_ledger.attempt_id``. Only an attempt that was
interrupted (its rows still ``sending`` the same versions under one attempt id) is resent under
its own id, so its Idempotency-Key is the same and a batch the target applied before the
interruption is answered from the target's store, not applied twice. Every other claim is a new
attempt with a new id.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import duckdb
import pandas as pd
import pytest

from okki_assets import storage

AT = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


@pytest.fixture
def conn() -> Iterator[duckdb.DuckDBPyConnection]:
    with duckdb.connect(":memory:") as connection:
        storage.ensure_schema(connection)
        yield connection


def claims(*rows: tuple[int, str, int]) -> pd.DataFrame:
    """(company_id, content_hash, hour of update_time) -> the claim frame."""
    return pd.DataFrame(
        {
            "company_id": pd.Series([r[0] for r in rows], dtype="int64"),
            "partition_key": "2026-12-01",
            "content_hash": [r[1] for r in rows],
            "update_time": [pd.Timestamp(2026, 12, 1, r[2], tz="Asia/Shanghai") for r in rows],
        }
    )


def stored_attempts(conn: duckdb.DuckDBPyConnection) -> dict[int, str]:
    rows = conn.execute("select company_id, attempt_id from load_ledger").fetchall()
    return {int(cid): str(attempt) for cid, attempt in rows}


def test_a_claim_keeps_its_attempt_in_the_ledger(conn: duckdb.DuckDBPyConnection) -> None:
    claim = storage.claim_for_sending(conn, claims((1, "h1", 9), (2, "h2", 9)), "run", "A")
    assert claim.ids == {1, 2} and claim.attempt == "A"
    assert stored_attempts(conn) == {1: "A", 2: "A"}


def test_an_interrupted_attempt_is_resent_under_its_own_id(
    conn: duckdb.DuckDBPyConnection,
) -> None:
    storage.claim_for_sending(conn, claims((1, "h1", 9), (2, "h2", 9)), "run-1", "A")
    # run-1 was killed before it recorded an outcome: the same versions are claimed again
    again = storage.claim_for_sending(conn, claims((1, "h1", 9), (2, "h2", 9)), "run-2", "B")
    assert again.attempt == "A"
    assert stored_attempts(conn) == {1: "A", 2: "A"}


@pytest.mark.parametrize(
    "second",
    [
        # the same versions, but the first attempt ended with an outcome: a new attempt
        "after_outcome",
        # a newer version of one company
        "new_version",
        # rows of two interrupted attempts sent together
        "two_attempts",
    ],
)
def test_every_other_claim_is_a_new_attempt(second: str, conn: duckdb.DuckDBPyConnection) -> None:
    storage.claim_for_sending(conn, claims((1, "h1", 9), (2, "h2", 9)), "run-1", "A")
    batch = claims((1, "h1", 9), (2, "h2", 9))
    if second == "after_outcome":
        storage.record_outcomes(conn, [(1, "deleted", None), (2, "rejected", "no")], "run-1", AT)
    elif second == "new_version":
        batch = claims((1, "h1b", 10), (2, "h2", 9))
    else:
        storage.claim_for_sending(conn, claims((3, "h3", 9)), "run-1", "C")
        batch = claims((1, "h1", 9), (2, "h2", 9), (3, "h3", 9))
    again = storage.claim_for_sending(conn, batch, "run-2", "B")
    assert again.attempt == "B"
    assert set(stored_attempts(conn).values()) == {"B"}


def test_a_ledger_made_before_attempts_were_kept_gains_the_column() -> None:
    with duckdb.connect(":memory:") as old:
        old.execute(
            "create table load_ledger (company_id bigint primary key, partition_key varchar not"
            " null, content_hash varchar, update_time timestamptz, status varchar not null,"
            " attempts integer not null default 0, last_error varchar, loaded_at timestamptz,"
            " run_id varchar)"
        )
        old.execute(
            "insert into load_ledger values (1, 'k', 'h1', null, 'sending', 1, null, null, 'r')"
        )
        storage.ensure_schema(old)
        claim = storage.claim_for_sending(old, claims((1, "h1", 9)), "run-2", "B")
        assert claim.attempt == "B"  # an interrupted claim without an attempt: a new one
        assert stored_attempts(old) == {1: "B"}


def stored_target_ids(conn: duckdb.DuckDBPyConnection) -> dict[int, str | None]:
    rows = conn.execute("select company_id, target_id from load_ledger").fetchall()
    return {int(cid): target_id for cid, target_id in rows}


def test_the_target_id_is_kept_and_a_later_outcome_without_one_keeps_it(
    conn: duckdb.DuckDBPyConnection,
) -> None:
    storage.claim_for_sending(conn, claims((1, "h1", 9), (2, "h2", 9), (3, "h3", 9)), "r1", "A")
    outcomes = [(1, "created", None), (2, "created", None), (3, "rejected", "too long")]
    storage.record_outcomes(conn, outcomes, "r1", AT, {1: "100101", 2: "100102"})
    assert stored_target_ids(conn) == {1: "100101", 2: "100102", 3: None}
    # newer versions: one batch fails (no target id), one is landed, one answered with an id
    storage.claim_for_sending(conn, claims((1, "h1b", 10), (3, "h3b", 10)), "r2", "B")
    answers = [(1, "failed", "timeout"), (3, "created", None)]
    storage.record_outcomes(conn, answers, "r2", AT, {3: "100103"})
    storage.record_landed(conn, claims((2, "h2b", 10)), "r3", AT)
    assert stored_target_ids(conn) == {1: "100101", 2: "100102", 3: "100103"}
    status = dict(conn.execute("select company_id, status from load_ledger").fetchall())
    assert status == {1: "failed", 2: "landed", 3: "created"}


def test_a_ledger_made_before_target_ids_were_kept_gains_the_column() -> None:
    with duckdb.connect(":memory:") as old:
        old.execute(
            "create table load_ledger (company_id bigint primary key, partition_key varchar not"
            " null, content_hash varchar, update_time timestamptz, status varchar not null,"
            " attempts integer not null default 0, last_error varchar, loaded_at timestamptz,"
            " run_id varchar)"
        )
        old.execute(
            "insert into load_ledger values (1, 'k', 'h1', null, 'created', 1, null, null, 'r')"
        )
        storage.ensure_schema(old)
        assert stored_target_ids(old) == {1: None}
        storage.claim_for_sending(old, claims((1, "h1b", 9)), "run-2", "B")
        storage.record_outcomes(old, [(1, "updated", None)], "run-2", AT, {1: "100101"})
        assert stored_target_ids(old) == {1: "100101"}
