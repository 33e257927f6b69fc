"""cleaned_companies and quarantined_companies: a partition's cleaned and quarantined rows,
replaced together in one transaction, and what the checks and the UI read of them.

Typed times are TIMESTAMPTZ (instants) and are handed back to pandas in Asia/Shanghai.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

import duckdb
import pandas as pd

from okki_assets.okki_time import TIMEZONE
from okki_assets.schemas import TIME_COLUMNS
from okki_assets.storage.schema import chunks_by_id, transaction


@contextmanager
def replacing_cleaned(conn: duckdb.DuckDBPyConnection, partition_key: str) -> Iterator[None]:
    """The transaction that replaces a partition's cleaned and quarantined rows: they are
    deleted first, the block appends the new ones (``append_cleaned``), and all of it commits
    when the block ends or rolls back when it raises."""
    with transaction(conn):
        conn.execute("delete from cleaned_companies where partition_key = ?", [partition_key])
        conn.execute("delete from quarantined_companies where partition_key = ?", [partition_key])
        yield


def append_cleaned(
    conn: duckdb.DuckDBPyConnection,
    cleaned: pd.DataFrame,
    quarantined: pd.DataFrame,
    run_id: str,
    at: datetime,
) -> None:
    """Insert one chunk of cleaned and quarantined rows (inside ``replacing_cleaned``).

    Each cleaned row is stamped with when its payload was observed: the ``fetched_at`` of the
    partition's raw row it was cleaned from (the version order's second part, versions.py)."""
    if not cleaned.empty:
        frame = cleaned.assign(run_id=run_id)
        # A relation, not conn.register: DuckDB keeps a registered frame alive until the
        # transaction ends, which would hold the whole partition's cleaned rows in Python.
        columns = ", ".join(f'"{c}"' for c in frame.columns)
        picked = ", ".join(f'ch."{c}"' for c in frame.columns)
        conn.from_df(frame).query(
            "_cleaned_chunk",
            f"insert into cleaned_companies ({columns}, observed_at) select {picked},"  # noqa: S608 - column names come from our own frame
            " (select max(r.fetched_at) from raw_companies r"
            "  where r.partition_key = ch.partition_key"
            "  and r.company_id = ch.company_id::varchar) from _cleaned_chunk ch",
        )
    if not quarantined.empty:
        frame = quarantined[["partition_key", "company_id", "reasons", "list_json", "info_json"]]
        frame = frame.assign(quarantined_at=at, run_id=run_id)
        conn.from_df(frame).query(
            "_quarantine_chunk",
            "insert into quarantined_companies select partition_key, company_id,"
            " reasons::varchar[], list_json, info_json, quarantined_at, run_id"
            " from _quarantine_chunk",
        )


def read_cleaned(
    conn: duckdb.DuckDBPyConnection,
    partition_key: str,
    observed_since: datetime | None = None,
) -> pd.DataFrame:
    """A partition's cleaned rows with when each was observed (``observed_at``, UTC); only
    those observed at or after ``observed_since`` when given."""
    frame = conn.execute(
        "select * exclude (run_id) from cleaned_companies where partition_key = ?"
        " and (?::timestamptz is null or observed_at >= ?::timestamptz) order by company_id",
        [partition_key, observed_since, observed_since],
    ).df()
    return _local_times(frame)


def iter_cleaned(
    conn: duckdb.DuckDBPyConnection, partition_key: str, chunk_rows: int = 20_000
) -> Iterator[pd.DataFrame]:
    """The model's columns of ``read_cleaned`` in chunks of company_id ranges (all rows of one
    id in one chunk)."""
    for frame in chunks_by_id(
        conn, "cleaned_companies", "* exclude (run_id, observed_at)", partition_key, chunk_rows
    ):
        yield _local_times(frame)


def _local_times(frame: pd.DataFrame) -> pd.DataFrame:
    for column in TIME_COLUMNS:
        if column in frame:
            frame[column] = pd.to_datetime(frame[column], utc=True).dt.tz_convert(TIMEZONE)
    return frame


def duplicate_company_ids(conn: duckdb.DuckDBPyConnection, partition_key: str) -> list[int]:
    rows = conn.execute(
        "select company_id from cleaned_companies where partition_key = ?"
        " group by company_id having count(*) > 1 order by company_id",
        [partition_key],
    ).fetchall()
    return [int(r[0]) for r in rows]


def quarantine_sample(
    conn: duckdb.DuckDBPyConnection, partition_key: str, limit: int = 20
) -> pd.DataFrame:
    """The partition's first quarantined rows: company_id, reasons, and name/update_time as
    OKKI listed them (for the UI's failure-cases table)."""
    return conn.execute(
        "select company_id, array_to_string(reasons, ', ') as reasons,"
        " case when json_valid(list_json) then json_extract_string(list_json, '$.name') end"
        "  as name,"
        " case when json_valid(list_json) then json_extract_string(list_json, '$.update_time')"
        "  end as update_time"
        " from quarantined_companies where partition_key = ?"
        " order by company_id nulls first limit ?",
        [partition_key, limit],
    ).df()


def quarantine_reason_counts(conn: duckdb.DuckDBPyConnection, partition_key: str) -> dict[str, int]:
    rows = conn.execute(
        "select reason, count(*) from (select unnest(reasons) as reason from"
        " quarantined_companies where partition_key = ?) group by reason order by reason",
        [partition_key],
    ).fetchall()
    return {str(r): int(n) for r, n in rows}
