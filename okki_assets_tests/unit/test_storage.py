"""storage's own behaviour against an in-memory DuckDB (no sockets).

Covers: storage owns its transactions (a block that raises inside ``transaction`` or
``replacing_cleaned`` leaves the previous rows and no open transaction behind); a partition's
cleaned and quarantined rows are replaced as a whole, other partitions untouched; raw rows come
back in company_id chunks with the rows without an id last and counted as companies of their
own; cleaned times come back in China time; the cleaned table has the CleanedCompany model's
columns and types; ``unreconciled_rows`` leaves out what is acknowledged, landed or superseded
and keeps what failed or was never sent.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import duckdb
import pandas as pd
import pytest

from okki_assets import storage
from okki_assets.cleaning import clean_companies
from okki_assets.partitions import window_for_key
from okki_assets.schemas import CleanedCompany
from okki_assets_tests.factories import okki_info_record, okki_list_record

DAY = "2025-03-07"
OTHER_DAY = "2025-03-06"
AT = datetime(2025, 3, 8, 1, 0, tzinfo=UTC)


@pytest.fixture
def conn() -> Iterator[duckdb.DuckDBPyConnection]:
    with duckdb.connect(":memory:") as connection:
        storage.ensure_schema(connection)
        yield connection


def raw_frame(day: str, *company_ids: int | None) -> pd.DataFrame:
    """Raw rows of ``day`` as the pull stores them; None is a list row without a company_id."""
    rows = []
    for n, cid in enumerate(company_ids):
        when = f"{day} 10:00:{n:02d}"
        listed = okki_list_record(cid if cid is not None else "", update_time=when)
        info = okki_info_record(cid, update_time=when) if cid is not None else None
        rows.append(
            {
                "partition_key": day,
                "company_id": None if cid is None else str(cid),
                "update_time": when,
                "list_json": json.dumps(listed),
                "info_json": None if info is None else json.dumps(info),
            }
        )
    return pd.DataFrame(rows)


def store_cleaned(conn: duckdb.DuckDBPyConnection, day: str, *company_ids: int | None) -> None:
    result = clean_companies(raw_frame(day, *company_ids), *window_for_key(day))
    with storage.replacing_cleaned(conn, day):
        storage.append_cleaned(conn, result.cleaned, result.quarantined, "run", AT)


def cleaned_ids(conn: duckdb.DuckDBPyConnection, day: str) -> list[int]:
    return [int(c) for c in storage.read_cleaned(conn, day)["company_id"]]


def quarantined_count(conn: duckdb.DuckDBPyConnection, day: str) -> int:
    row = conn.execute(
        "select count(*) from quarantined_companies where partition_key = ?", [day]
    ).fetchone()
    return int(row[0]) if row else 0


def test_a_transaction_that_raises_leaves_nothing_and_nothing_open(
    conn: duckdb.DuckDBPyConnection,
) -> None:
    with pytest.raises(RuntimeError, match="midway"), storage.transaction(conn):
        conn.execute("insert into okki_rate values ('u', 'c', 1.0, null, ?)", [AT])
        raise RuntimeError("midway")
    assert conn.execute("select count(*) from okki_rate").fetchone() == (0,)
    with storage.transaction(conn):  # a new one opens: the failed one was closed
        conn.execute("insert into okki_rate values ('u', 'c', 2.0, null, ?)", [AT])
    assert storage.learned_rate(conn, "u", "c") == (2.0, None)


def test_cleaned_rows_replace_their_partition_only(conn: duckdb.DuckDBPyConnection) -> None:
    store_cleaned(conn, DAY, 1, 2, None)
    store_cleaned(conn, OTHER_DAY, 7)
    store_cleaned(conn, DAY, 3)
    assert cleaned_ids(conn, DAY) == [3]
    assert quarantined_count(conn, DAY) == 0  # the row without an id went with its copy
    assert cleaned_ids(conn, OTHER_DAY) == [7]


def test_a_clean_that_raises_keeps_the_previous_copy(conn: duckdb.DuckDBPyConnection) -> None:
    store_cleaned(conn, DAY, 1, 2, None)
    result = clean_companies(raw_frame(DAY, 5), *window_for_key(DAY))
    with pytest.raises(RuntimeError, match="killed"), storage.replacing_cleaned(conn, DAY):
        storage.append_cleaned(conn, result.cleaned, result.quarantined, "run2", AT)
        raise RuntimeError("killed")
    assert cleaned_ids(conn, DAY) == [1, 2]
    assert quarantined_count(conn, DAY) == 1


def test_cleaned_times_come_back_in_china_time(conn: duckdb.DuckDBPyConnection) -> None:
    store_cleaned(conn, DAY, 1)
    update_time = storage.read_cleaned(conn, DAY)["update_time"].iloc[0]
    assert str(update_time.tz) == "Asia/Shanghai"
    assert update_time == pd.Timestamp(f"{DAY} 10:00:00", tz="Asia/Shanghai")


def stage_and_publish(conn: duckdb.DuckDBPyConnection, frame: pd.DataFrame) -> None:
    rows = [
        storage.RawRow(r.partition_key, r.company_id, r.update_time, r.list_json, r.info_json)
        for r in frame.itertuples()
    ]
    storage.stage_raw(conn, "run", rows, AT)
    storage.publish_raw(conn, "run", [DAY])


def test_raw_rows_come_in_id_chunks_with_rows_without_id_last(
    conn: duckdb.DuckDBPyConnection,
) -> None:
    stage_and_publish(conn, raw_frame(DAY, 30, None, 10, 20, None))
    chunks = list(storage.iter_raw(conn, DAY, chunk_rows=2))
    assert [list(c["company_id"]) for c in chunks] == [["10", "20"], ["30"], [None, None]]
    # Two rows without an id are two companies (their list records differ).
    assert storage.raw_counts(conn, DAY) == (5, 5)


def ledger(conn: duckdb.DuckDBPyConnection, company_id: int, hour: int, status: str) -> None:
    claims = pd.DataFrame(
        {
            "company_id": pd.Series([company_id], dtype="int64"),
            "partition_key": DAY,
            "content_hash": "h",
            "update_time": [pd.Timestamp(f"{DAY} {hour:02d}:00:00", tz="Asia/Shanghai")],
        }
    )
    claim = storage.claim_for_sending(conn, claims, "run", "attempt")
    storage.record_outcomes(conn, [(cid, status, None) for cid in claim.ids], "run", AT)


def test_unreconciled_rows_are_those_not_acknowledged_landed_or_superseded(
    conn: duckdb.DuckDBPyConnection,
) -> None:
    store_cleaned(conn, DAY, 1, 2, 3, 4, 5)  # update_time 10:00:00..10:00:04
    ledger(conn, 1, 10, "created")  # 10:00:00: this very version, acknowledged
    ledger(conn, 2, 10, "landed")  # 10:00:00 < 10:00:01: an older version landed
    ledger(conn, 3, 11, "failed")  # 11:00: a newer version exists (superseded)
    ledger(conn, 4, 10, "failed")  # 10:00:00 < 10:00:03: an older version failed
    # 5: never claimed
    bad = storage.unreconciled_rows(conn, DAY)
    assert list(bad["company_id"]) == [2, 4, 5]
    assert list(bad["status"].fillna("none")) == ["landed", "failed", "none"]


# The DuckDB type each pandera dtype of CleanedCompany is stored as.
DUCKDB_TYPES = {
    "str": "VARCHAR",
    "int64": "BIGINT",
    "Int64": "BIGINT",
    "bool": "BOOLEAN",
    "object": "VARCHAR[]",  # owner_ids, a list of user ids
    "datetime64[ns, Asia/Shanghai]": "TIMESTAMP WITH TIME ZONE",
}


def test_the_cleaned_table_matches_the_cleaned_company_model(
    conn: duckdb.DuckDBPyConnection,
) -> None:
    table = conn.execute("describe cleaned_companies").fetchall()
    model = CleanedCompany.to_schema().columns
    # The model's columns in its order, then the run that wrote the row and its observation.
    assert [row[0] for row in table] == [*model, "run_id", "observed_at"]
    for name, column_type, null, *_ in table[:-2]:
        assert column_type == DUCKDB_TYPES[str(model[name].dtype)], name
        # The table is derived from the model: null exactly where the model allows it.
        assert (null == "YES") == model[name].nullable, name
