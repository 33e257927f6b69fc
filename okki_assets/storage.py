"""Everything that speaks SQL to DuckDB: the intermediate copy of every stage and the load ledger.

Every write that replaces a partition does it in one transaction (delete the partition's rows,
insert the new ones), so a failed or killed run leaves the previous copy intact. Values always
travel as parameters or registered DataFrames; table names are constants of this module.

Times: OKKI's own strings are kept untouched in ``raw_companies``; typed times are TIMESTAMPTZ
(instants) and are handed back to pandas in Asia/Shanghai.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

import duckdb
import pandas as pd

from okki_assets.partitions import TIMEZONE

RAW_COLUMNS = ("company_id", "update_time", "list_json", "info_json", "info_reused")

_DDL = (
    """
    create table if not exists raw_companies (
        partition_key varchar not null,
        company_id varchar,
        update_time varchar,
        list_json varchar not null,
        info_json varchar,
        info_reused boolean not null default false,
        fetched_at timestamptz not null,
        run_id varchar not null
    )
    """,
    """
    create table if not exists raw_staging (
        run_id varchar not null,
        partition_key varchar not null,
        company_id varchar,
        update_time varchar,
        list_json varchar not null,
        info_json varchar,
        info_reused boolean not null default false,
        fetched_at timestamptz not null
    )
    """,
    """
    create table if not exists deleted_companies (
        partition_key varchar not null,
        company_id varchar not null,
        update_time varchar,
        list_json varchar not null,
        fetched_at timestamptz not null,
        run_id varchar not null
    )
    """,
    """
    create table if not exists quarantined_companies (
        partition_key varchar not null,
        company_id varchar,
        reasons varchar[] not null,
        list_json varchar,
        info_json varchar,
        quarantined_at timestamptz not null,
        run_id varchar not null
    )
    """,
    """
    create table if not exists load_ledger (
        company_id bigint primary key,
        partition_key varchar not null,
        content_hash varchar,
        update_time timestamptz,
        status varchar not null,
        attempts integer not null default 0,
        last_error varchar,
        loaded_at timestamptz,
        run_id varchar
    )
    """,
    """
    create table if not exists stage_metrics (
        partition_key varchar not null,
        stage varchar not null,
        run_id varchar not null,
        recorded_at timestamptz not null,
        metrics json not null
    )
    """,
)

CLEANED_TABLE_DDL = """
    create table if not exists cleaned_companies (
        partition_key varchar not null,
        company_id bigint not null,
        serial_id varchar,
        name varchar not null,
        short_name varchar,
        owner_ids varchar[],
        archive_type bigint,
        country varchar,
        contact_name varchar,
        email varchar,
        phone varchar,
        create_time timestamptz,
        update_time timestamptz not null,
        order_time timestamptz,
        edit_time timestamptz,
        archive_time timestamptz,
        email_missing boolean,
        email_invalid boolean,
        phone_missing boolean,
        phone_invalid boolean,
        contact_missing boolean,
        country_missing boolean,
        country_invalid boolean,
        short_name_missing boolean,
        run_id varchar not null
    )
"""

TIME_COLUMNS = ("create_time", "update_time", "order_time", "edit_time", "archive_time")

SENT_STATUSES = ("created", "updated", "unchanged")


def ensure_schema(conn: duckdb.DuckDBPyConnection) -> None:
    """Create every table this project uses (idempotent; cheap when they exist)."""
    for ddl in (*_DDL, CLEANED_TABLE_DDL):
        conn.execute(ddl)


# --- raw_companies -------------------------------------------------------------------------


@dataclass(frozen=True)
class RawRow:
    partition_key: str
    company_id: str | None
    update_time: str | None
    list_json: str
    info_json: str | None
    info_reused: bool = False


def stage_raw(
    conn: duckdb.DuckDBPyConnection, run_id: str, rows: Sequence[RawRow], fetched_at: datetime
) -> None:
    """Append one chunk of a run's pull to the staging table (nothing visible yet)."""
    if not rows:
        return
    conn.executemany(
        "insert into raw_staging (run_id, partition_key, company_id, update_time, list_json,"
        " info_json, info_reused, fetched_at) values (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                run_id,
                r.partition_key,
                r.company_id,
                r.update_time,
                r.list_json,
                r.info_json,
                r.info_reused,
                fetched_at,
            )
            for r in rows
        ],
    )


def stored_update_times(
    conn: duckdb.DuckDBPyConnection, company_ids: Iterable[str]
) -> dict[str, str]:
    """company_id -> update_time of the newest stored raw copy that has its info payload."""
    ids = pd.DataFrame({"company_id": list(company_ids)})
    if ids.empty:
        return {}
    conn.register("_wanted_ids", ids)
    try:
        rows = conn.execute(
            "select r.company_id, max(r.update_time) from raw_companies r"
            " join _wanted_ids w using (company_id) where r.info_json is not null"
            " group by r.company_id"
        ).fetchall()
    finally:
        conn.unregister("_wanted_ids")
    return {cid: ut for cid, ut in rows}


def publish_raw(conn: duckdb.DuckDBPyConnection, run_id: str, partition_keys: Sequence[str]) -> int:
    """Replace the partitions' raw rows with what this run staged, atomically.

    Rows staged with ``info_reused`` get the info payload of the stored copy with the same
    company_id and update_time (the unchanged re-sync makes no info call). Returns rows published.
    """
    conn.execute("begin transaction")
    try:
        conn.execute(
            "update raw_staging s set info_json = r.info_json from ("
            "  select company_id, update_time, arg_max(info_json, fetched_at) as info_json"
            "  from raw_companies where info_json is not null group by company_id, update_time"
            ") r where s.run_id = ? and s.info_reused and s.company_id = r.company_id"
            " and s.update_time = r.update_time",
            [run_id],
        )
        missing = conn.execute(
            "select count(*) from raw_staging"
            " where run_id = ? and info_reused and info_json is null",
            [run_id],
        ).fetchone()
        if missing and missing[0]:
            raise RuntimeError(f"{missing[0]} reused info payloads vanished while publishing")
        conn.execute(
            "delete from raw_companies where partition_key in (select unnest(?::varchar[]))",
            [list(partition_keys)],
        )
        inserted = conn.execute(
            "insert into raw_companies (partition_key, company_id, update_time, list_json,"
            " info_json, info_reused, fetched_at, run_id)"
            " select partition_key, company_id, update_time, list_json, info_json, info_reused,"
            " fetched_at, run_id from raw_staging where run_id = ?",
            [run_id],
        ).fetchone()
        conn.execute("delete from raw_staging where run_id = ?", [run_id])
        conn.execute("commit")
    except BaseException:
        conn.execute("rollback")
        raise
    return int(inserted[0]) if inserted else 0


def discard_staging(conn: duckdb.DuckDBPyConnection, run_id: str) -> None:
    conn.execute("delete from raw_staging where run_id = ?", [run_id])


def replace_deleted(
    conn: duckdb.DuckDBPyConnection,
    partition_key: str,
    rows: Sequence[tuple[str, str | None, str]],
    run_id: str,
    fetched_at: datetime,
) -> None:
    """Replace a partition's deleted-company list: rows of (company_id, update_time, list_json)."""
    conn.execute("begin transaction")
    try:
        conn.execute("delete from deleted_companies where partition_key = ?", [partition_key])
        if rows:
            conn.executemany(
                "insert into deleted_companies values (?, ?, ?, ?, ?, ?)",
                [(partition_key, cid, ut, lj, fetched_at, run_id) for cid, ut, lj in rows],
            )
        conn.execute("commit")
    except BaseException:
        conn.execute("rollback")
        raise


def read_deleted(conn: duckdb.DuckDBPyConnection, partition_key: str) -> pd.DataFrame:
    return conn.execute(
        "select company_id, update_time from deleted_companies where partition_key = ?"
        " order by company_id",
        [partition_key],
    ).df()


def iter_raw(
    conn: duckdb.DuckDBPyConnection, partition_key: str, chunk_rows: int = 20_000
) -> Iterator[pd.DataFrame]:
    """A partition's raw rows in chunks, so no stage holds a large window's payloads at once."""
    result = conn.execute(
        "select partition_key, company_id, update_time, list_json, info_json from raw_companies"
        " where partition_key = ? order by company_id",
        [partition_key],
    )
    while True:
        chunk = result.fetch_df_chunk(max(1, chunk_rows // 2048))
        if chunk.empty:
            return
        yield chunk


def raw_count(conn: duckdb.DuckDBPyConnection, partition_key: str) -> int:
    row = conn.execute(
        "select count(*) from raw_companies where partition_key = ?", [partition_key]
    ).fetchone()
    return int(row[0]) if row else 0


# --- cleaned_companies and quarantined_companies ------------------------------------------


def begin_cleaned(conn: duckdb.DuckDBPyConnection, partition_key: str) -> None:
    """Open the transaction that replaces a partition's cleaned and quarantined rows."""
    conn.execute("begin transaction")
    conn.execute("delete from cleaned_companies where partition_key = ?", [partition_key])
    conn.execute("delete from quarantined_companies where partition_key = ?", [partition_key])


def append_cleaned(
    conn: duckdb.DuckDBPyConnection,
    cleaned: pd.DataFrame,
    quarantined: pd.DataFrame,
    run_id: str,
    at: datetime,
) -> None:
    """Insert one chunk of cleaned and quarantined rows (inside ``begin_cleaned``'s transaction)."""
    if not cleaned.empty:
        frame = cleaned.assign(run_id=run_id)
        conn.register("_cleaned_chunk", frame)
        try:
            columns = ", ".join(f'"{c}"' for c in frame.columns)
            conn.execute(
                f"insert into cleaned_companies ({columns}) select {columns} from _cleaned_chunk"  # noqa: S608 - column names come from our own frame
            )
        finally:
            conn.unregister("_cleaned_chunk")
    if not quarantined.empty:
        frame = quarantined[["partition_key", "company_id", "reasons", "list_json", "info_json"]]
        frame = frame.assign(quarantined_at=at, run_id=run_id)
        conn.register("_quarantine_chunk", frame)
        try:
            conn.execute(
                "insert into quarantined_companies select partition_key, company_id,"
                " reasons::varchar[], list_json, info_json, quarantined_at, run_id"
                " from _quarantine_chunk"
            )
        finally:
            conn.unregister("_quarantine_chunk")


def commit(conn: duckdb.DuckDBPyConnection) -> None:
    conn.execute("commit")


def rollback(conn: duckdb.DuckDBPyConnection) -> None:
    conn.execute("rollback")


def read_cleaned(conn: duckdb.DuckDBPyConnection, partition_key: str) -> pd.DataFrame:
    frame = conn.execute(
        "select * exclude (run_id) from cleaned_companies where partition_key = ?"
        " order by company_id",
        [partition_key],
    ).df()
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


def quarantine_reason_counts(conn: duckdb.DuckDBPyConnection, partition_key: str) -> dict[str, int]:
    rows = conn.execute(
        "select reason, count(*) from (select unnest(reasons) as reason from"
        " quarantined_companies where partition_key = ?) group by reason order by reason",
        [partition_key],
    ).fetchall()
    return {str(r): int(n) for r, n in rows}


def partition_counts(conn: duckdb.DuckDBPyConnection, partition_key: str) -> dict[str, int]:
    """Rows per stage table for one partition (used by checks, the demo and the soak report)."""
    out: dict[str, int] = {}
    for table in (
        "raw_companies",
        "cleaned_companies",
        "quarantined_companies",
        "deleted_companies",
    ):
        row = conn.execute(
            f"select count(*) from {table} where partition_key = ?",  # noqa: S608 - table is a constant
            [partition_key],
        ).fetchone()
        out[table] = int(row[0]) if row else 0
    return out


# --- load_ledger ---------------------------------------------------------------------------


def ledger_rows(conn: duckdb.DuckDBPyConnection, company_ids: Sequence[int]) -> pd.DataFrame:
    """Ledger rows of these companies: company_id, content_hash, update_time, status, attempts."""
    ids = pd.DataFrame({"company_id": pd.Series(list(company_ids), dtype="int64")})
    conn.register("_ledger_ids", ids)
    try:
        frame = conn.execute(
            "select l.company_id, l.content_hash, l.update_time, l.status, l.attempts,"
            " l.partition_key from load_ledger l join _ledger_ids using (company_id)"
        ).df()
    finally:
        conn.unregister("_ledger_ids")
    if not frame.empty:
        frame["update_time"] = pd.to_datetime(frame["update_time"], utc=True).dt.tz_convert(
            TIMEZONE
        )
    return frame


def claim_for_sending(
    conn: duckdb.DuckDBPyConnection,
    claims: pd.DataFrame,
    run_id: str,
    at: datetime,
) -> set[int]:
    """Mark records as being sent, unless a newer version is already in the ledger.

    ``claims`` has company_id, partition_key, content_hash, update_time. In one transaction the
    rows whose ledger update_time is not newer become ``sending`` (attempts + 1); the ids claimed
    are returned. A record the ledger knows in a newer version is never sent (no stale overwrite),
    and a run killed after this point leaves ``sending`` rows that the next run sends again.
    """
    if claims.empty:
        return set()
    conn.register("_claims", claims)
    conn.execute("begin transaction")
    try:
        claimed = conn.execute(
            "insert into load_ledger (company_id, partition_key, content_hash, update_time, status,"
            " attempts, last_error, loaded_at, run_id)"
            " select company_id, partition_key, content_hash, update_time, 'sending', 1,"
            " null, null, ?"
            " from _claims"
            " on conflict (company_id) do update set"
            "  partition_key = excluded.partition_key, content_hash = excluded.content_hash,"
            "  update_time = excluded.update_time, status = 'sending',"
            "  attempts = load_ledger.attempts + 1, run_id = excluded.run_id"
            " where load_ledger.update_time is null"
            "  or load_ledger.update_time <= excluded.update_time"
            " returning company_id",
            [run_id],
        ).fetchall()
        conn.execute("commit")
    except BaseException:
        conn.execute("rollback")
        raise
    finally:
        conn.unregister("_claims")
    return {int(r[0]) for r in claimed}


def record_outcomes(
    conn: duckdb.DuckDBPyConnection,
    outcomes: Sequence[tuple[int, str, str | None]],
    run_id: str,
    at: datetime,
) -> None:
    """Write per-record outcomes (company_id, status, error) of this run's claimed rows."""
    if not outcomes:
        return
    frame = pd.DataFrame(outcomes, columns=["company_id", "status", "last_error"])
    conn.register("_outcomes", frame)
    try:
        conn.execute(
            "update load_ledger l set status = o.status, last_error = o.last_error,"
            " loaded_at = ? from _outcomes o where l.company_id = o.company_id and l.run_id = ?",
            [at, run_id],
        )
    finally:
        conn.unregister("_outcomes")


def record_landed(
    conn: duckdb.DuckDBPyConnection, claims: pd.DataFrame, run_id: str, at: datetime
) -> int:
    """Land-only mode: record each record as ``landed`` (nothing was sent); newer rows win."""
    claimed = claim_for_sending(conn, claims, run_id, at)
    record_outcomes(conn, [(cid, "landed", None) for cid in sorted(claimed)], run_id, at)
    return len(claimed)


def ledger_status_counts(conn: duckdb.DuckDBPyConnection, partition_key: str) -> dict[str, int]:
    rows = conn.execute(
        "select status, count(*) from load_ledger where partition_key = ? group by status",
        [partition_key],
    ).fetchall()
    return {str(s): int(n) for s, n in rows}


def ledger_for_partition(conn: duckdb.DuckDBPyConnection, partition_key: str) -> pd.DataFrame:
    return conn.execute(
        "select * from load_ledger where partition_key = ? order by company_id", [partition_key]
    ).df()


# --- stage metrics -------------------------------------------------------------------------


def record_stage_metrics(
    conn: duckdb.DuckDBPyConnection,
    partition_key: str,
    stage: str,
    run_id: str,
    at: datetime,
    metrics: dict[str, object],
) -> None:
    conn.execute(
        "insert into stage_metrics values (?, ?, ?, ?, ?)",
        [partition_key, stage, run_id, at, json.dumps(metrics, default=str)],
    )


def latest_stage_metrics(
    conn: duckdb.DuckDBPyConnection, partition_key: str, stage: str
) -> dict[str, object]:
    row = conn.execute(
        "select metrics from stage_metrics where partition_key = ? and stage = ?"
        " order by recorded_at desc limit 1",
        [partition_key, stage],
    ).fetchone()
    return json.loads(row[0]) if row else {}


def unreconciled_rows(conn: duckdb.DuckDBPyConnection, partition_key: str) -> pd.DataFrame:
    """Cleaned rows whose version is neither acknowledged, landed nor superseded by a newer one."""
    return conn.execute(
        "select c.company_id, l.status, l.last_error from cleaned_companies c"
        " left join load_ledger l using (company_id)"
        " where c.partition_key = ? and not coalesce(l.update_time > c.update_time"
        "  or (l.update_time = c.update_time"
        "      and l.status in ('created', 'updated', 'unchanged', 'landed')), false)"
        " order by c.company_id",
        [partition_key],
    ).df()
