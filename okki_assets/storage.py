"""Everything that speaks SQL to DuckDB: the intermediate copy of every stage and the load ledger.

Every write that replaces a partition does it in one transaction (delete the partition's rows,
insert the new ones), so a failed or killed run leaves the previous copy intact. Info payloads
are also kept as they arrive (``kept_infos``), so that a pull that ends early does not pay for
them again. Values always
travel as parameters or registered DataFrames; table names are constants of this module.

Times: OKKI's own strings are kept untouched in ``raw_companies``; typed times are TIMESTAMPTZ
(instants) and are handed back to pandas in Asia/Shanghai.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import duckdb
import pandas as pd

from okki_assets.okki_time import TIMEZONE
from okki_assets.schemas import RAW_COLUMNS, TIME_COLUMNS

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
    create table if not exists kept_infos (
        partition_key varchar not null,
        company_id varchar not null,
        list_update_time varchar not null,
        update_time varchar,
        info_json varchar not null,
        fetched_at timestamptz not null,
        run_id varchar not null
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
        run_id varchar,
        attempt_id varchar
    )
    """,
    # Files made before the ledger kept the attempt of each claim.
    "alter table load_ledger add column if not exists attempt_id varchar",
    """
    create table if not exists okki_rate (
        base_url varchar not null,
        client_id varchar not null,
        rate double not null,
        ceiling double,
        updated_at timestamptz not null,
        primary key (base_url, client_id)
    )
    """,
    """
    create table if not exists info_fetched (
        company_id varchar primary key,
        fetched_at timestamptz not null
    )
    """,
    """
    create table if not exists account_list (
        company_id varchar not null,
        update_time varchar,
        removed boolean not null,
        observed_at timestamptz not null,
        run_id varchar not null
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


class LedgerStatus(StrEnum):
    """A ledger row's status: where the record's last claimed version stands."""

    SENDING = "sending"  # claimed by an attempt that has not recorded its outcome (yet)
    CREATED = "created"  # the target's answers, per record
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    DELETED = "deleted"  # a tombstone, applied
    REJECTED = "rejected"
    FAILED = "failed"  # the batch failed: the next run sends it again
    LANDED = "landed"  # land-only mode: kept in DuckDB, nothing sent


#: Acknowledged by the target: the same content is not sent again.
SENT_STATUSES = (
    LedgerStatus.CREATED,
    LedgerStatus.UPDATED,
    LedgerStatus.UNCHANGED,
    LedgerStatus.DELETED,
)
#: A cleaned row's version is reconciled when the ledger holds it with one of these; a
#: tombstone's with one of the second.
UPSERT_DONE = (
    LedgerStatus.CREATED,
    LedgerStatus.UPDATED,
    LedgerStatus.UNCHANGED,
    LedgerStatus.LANDED,
)
DELETE_DONE = (LedgerStatus.DELETED, LedgerStatus.UNCHANGED, LedgerStatus.LANDED)


def ensure_schema(conn: duckdb.DuckDBPyConnection) -> None:
    """Create every table this project uses (idempotent; cheap when they exist)."""
    for ddl in (*_DDL, CLEANED_TABLE_DDL):
        conn.execute(ddl)


@contextmanager
def transaction(conn: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """One transaction: committed when the block ends, rolled back when it raises (or is
    interrupted), so no caller leaves one open."""
    conn.execute("begin transaction")
    try:
        yield
        conn.execute("commit")
    except BaseException:
        # An interrupted query may have ended the transaction already: the error that ended
        # it is the one to see, not a failed rollback.
        with suppress(duckdb.TransactionException):
            conn.execute("rollback")
        raise


# --- raw_companies -------------------------------------------------------------------------


@dataclass(frozen=True)
class RawRow:
    partition_key: str
    company_id: str | None
    update_time: str | None
    list_json: str
    info_json: str | None
    info_reused: bool = False
    resumed_from: str | None = None  # the list update_time whose kept info payload is used


def stage_raw(
    conn: duckdb.DuckDBPyConnection, run_id: str, rows: Sequence[RawRow], fetched_at: datetime
) -> None:
    """Append one chunk of a run's pull to the staging table (nothing visible yet).

    A row ``resumed_from`` a list update_time gets the info payload kept for that version (see
    ``keep_infos``). Should that payload be gone (a run of the same partition published it in
    the meantime), the row is staged as ``info_reused``: the published copy of that version
    stands in for it.

    The chunk goes in as one registered frame: ``executemany`` runs one statement per row and
    took about a second per 1,000 rows, long enough to stall the info fan-out behind it."""
    if not rows:
        return
    frame = pd.DataFrame(
        {
            "partition_key": [r.partition_key for r in rows],
            "company_id": pd.Series([r.company_id for r in rows], dtype=object),
            "update_time": pd.Series([r.update_time for r in rows], dtype=object),
            "list_json": [r.list_json for r in rows],
            "info_json": pd.Series([r.info_json for r in rows], dtype=object),
            "info_reused": [r.info_reused for r in rows],
            "resumed_from": pd.Series([r.resumed_from for r in rows], dtype=object),
        }
    )
    conn.register("_raw_chunk", frame)
    try:
        conn.execute(
            "insert into raw_staging (run_id, partition_key, company_id, update_time, list_json,"
            " info_json, info_reused, fetched_at) select ?, c.partition_key,"
            " c.company_id::varchar, c.update_time::varchar, c.list_json,"
            " coalesce(c.info_json::varchar, k.info_json),"
            " c.info_reused or (c.resumed_from is not null and k.info_json is null), ?"
            " from _raw_chunk c left join ("
            "  select company_id, list_update_time, arg_max(info_json, fetched_at) as info_json"
            "  from kept_infos semi join _raw_chunk r on r.resumed_from is not null"
            "   and r.company_id::varchar = kept_infos.company_id"
            "   and r.resumed_from::varchar = kept_infos.list_update_time"
            "  group by company_id, list_update_time"
            " ) k on c.company_id::varchar = k.company_id"
            "  and c.resumed_from::varchar = k.list_update_time",
            [run_id, fetched_at],
        )
    finally:
        conn.unregister("_raw_chunk")


# --- kept_infos: info payloads of pulls not yet published ----------------------------------


@dataclass(frozen=True)
class KeptInfo:
    company_id: str
    list_update_time: str  # the version the list showed when info was asked for
    update_time: str | None  # the update_time its raw row gets (the newer of list and info)
    info_json: str


def keep_infos(
    conn: duckdb.DuckDBPyConnection,
    partition_key: str,
    run_id: str,
    infos: Sequence[KeptInfo],
    fetched_at: datetime,
) -> None:
    """Keep a few info payloads of a pull in progress, committed at once (one statement).

    They outlive the run: a pull that ends early, even by SIGKILL, leaves them for the next
    pull of the partition, which asks OKKI only for the rest (``kept_info_times``)."""
    if not infos:
        return
    frame = pd.DataFrame(
        {
            "company_id": [i.company_id for i in infos],
            "list_update_time": [i.list_update_time for i in infos],
            "update_time": pd.Series([i.update_time for i in infos], dtype=object),
            "info_json": [i.info_json for i in infos],
        }
    )
    conn.register("_kept_chunk", frame)
    try:
        conn.execute(
            "insert into kept_infos (partition_key, company_id, list_update_time, update_time,"
            " info_json, fetched_at, run_id) select ?, company_id, list_update_time,"
            " update_time::varchar, info_json, ?, ? from _kept_chunk",
            [partition_key, fetched_at, run_id],
        )
    finally:
        conn.unregister("_kept_chunk")


def _listed_frame(listed: Mapping[str, str]) -> pd.DataFrame:
    return pd.DataFrame(
        {"company_id": list(listed), "list_update_time": list(listed.values())}, dtype=object
    )


def kept_info_times(
    conn: duckdb.DuckDBPyConnection, listed: Mapping[str, str]
) -> dict[str, str | None]:
    """company_id -> raw update_time of the kept info payloads that were fetched for exactly
    the listed version (company_id -> list update_time); a company updated since has none."""
    if not listed:
        return {}
    conn.register("_listed", _listed_frame(listed))
    try:
        rows = conn.execute(
            "select k.company_id, arg_max(k.update_time, k.fetched_at) from kept_infos k"
            " join _listed l on k.company_id = l.company_id"
            "  and k.list_update_time = l.list_update_time"
            " group by k.company_id"
        ).fetchall()
    finally:
        conn.unregister("_listed")
    return {cid: ut for cid, ut in rows}


def prune_kept_infos(
    conn: duckdb.DuckDBPyConnection,
    partition_key: str,
    listed: Mapping[str, str],
    older_than: datetime,
) -> int:
    """Drop kept info payloads that can no longer be used, in one short transaction: the
    partition's payloads for a version it no longer lists (the company changed or left), and
    every payload (and every run's staged rows) fetched before ``older_than``, such as those of
    a partition never pulled again. Returns the payloads dropped."""
    conn.register("_listed", _listed_frame(listed))
    try:
        with transaction(conn):
            superseded = conn.execute(
                "delete from kept_infos k where k.partition_key = ? and not exists ("
                " select 1 from _listed l where l.company_id = k.company_id"
                " and l.list_update_time = k.list_update_time)",
                [partition_key],
            ).fetchone()
            aged = conn.execute(
                "delete from kept_infos where fetched_at < ?", [older_than]
            ).fetchone()
            conn.execute("delete from raw_staging where fetched_at < ?", [older_than])
    finally:
        conn.unregister("_listed")
    return sum(int(r[0]) for r in (superseded, aged) if r)


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
    """Replace the partitions' raw rows with what this run staged, atomically; the partitions'
    kept info payloads (``keep_infos``) go in the same transaction, now that they are published.

    Rows staged with ``info_reused`` get the info payload of the stored copy with the same
    company_id and update_time (the unchanged re-sync makes no info call). Returns rows published.

    The reused payloads are copied into a temporary table and joined in while inserting: an
    ``update`` of the staged rows would hold every new payload in memory (a 200,000-company
    re-sync ran out of a 256 MB limit), a temporary table spills to disk.
    """
    with transaction(conn):
        conn.execute(
            "create temp table _reused_info as select r.company_id, r.update_time, r.info_json"
            " from raw_companies r join ("
            "  select c.company_id, c.update_time, arg_max(c.rowid, c.fetched_at) as newest"
            "  from raw_companies c semi join raw_staging s on s.run_id = ? and s.info_reused"
            "   and s.company_id = c.company_id and s.update_time = c.update_time"
            "  where c.info_json is not null group by c.company_id, c.update_time"
            ") p on r.rowid = p.newest",
            [run_id],
        )
        conn.execute(
            "delete from raw_companies where partition_key in (select unnest(?::varchar[]))",
            [list(partition_keys)],
        )
        inserted = conn.execute(
            "insert into raw_companies (partition_key, company_id, update_time, list_json,"
            " info_json, info_reused, fetched_at, run_id)"
            " select s.partition_key, s.company_id, s.update_time, s.list_json,"
            " coalesce(s.info_json, u.info_json), s.info_reused, s.fetched_at, s.run_id"
            " from raw_staging s left join _reused_info u on s.info_reused"
            "  and s.company_id = u.company_id and s.update_time = u.update_time"
            " where s.run_id = ?",
            [run_id],
        ).fetchone()
        missing = conn.execute(
            "select count(*) from raw_companies where run_id = ? and info_reused"
            " and info_json is null and partition_key in (select unnest(?::varchar[]))",
            [run_id, list(partition_keys)],
        ).fetchone()
        if missing and missing[0]:
            raise RuntimeError(f"{missing[0]} reused info payloads vanished while publishing")
        conn.execute("drop table _reused_info")
        conn.execute("delete from raw_staging where run_id = ?", [run_id])
        conn.execute(
            "delete from kept_infos where partition_key in (select unnest(?::varchar[]))",
            [list(partition_keys)],
        )
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
    with transaction(conn):
        conn.execute("delete from deleted_companies where partition_key = ?", [partition_key])
        if rows:
            conn.executemany(
                "insert into deleted_companies values (?, ?, ?, ?, ?, ?)",
                [
                    (partition_key, company_id, update_time, list_json, fetched_at, run_id)
                    for company_id, update_time, list_json in rows
                ],
            )


def read_deleted(conn: duckdb.DuckDBPyConnection, partition_key: str) -> pd.DataFrame:
    return conn.execute(
        "select company_id, update_time, list_json from deleted_companies"
        " where partition_key = ? order by company_id",
        [partition_key],
    ).df()


def iter_raw(
    conn: duckdb.DuckDBPyConnection, partition_key: str, chunk_rows: int = 20_000
) -> Iterator[pd.DataFrame]:
    """A partition's raw rows in chunks, so no stage holds a large window's payloads at once.

    Rows come in company_id order (rows without one last), each chunk a range of company_ids:
    a single ``order by`` over the payload columns makes DuckDB sort, and hold, the whole
    partition's payloads first (about 1 GB for 200,000 companies)."""
    columns = ", ".join(RAW_COLUMNS)
    yield from _chunks_by_id(conn, "raw_companies", columns, partition_key, chunk_rows)
    without_id = conn.execute(
        f"select {columns} from raw_companies"  # noqa: S608 - the columns are constants
        " where partition_key = ? and company_id is null",
        [partition_key],
    ).df()
    if not without_id.empty:
        yield without_id


def raw_counts(conn: duckdb.DuckDBPyConnection, partition_key: str) -> tuple[int, int]:
    """(rows, distinct companies) of a partition's raw rows; a row without a company_id counts
    as a company of its own."""
    row = conn.execute(
        "select count(*), count(distinct coalesce(company_id, list_json)) from raw_companies"
        " where partition_key = ?",
        [partition_key],
    ).fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


# --- cleaned_companies and quarantined_companies ------------------------------------------


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
    """Insert one chunk of cleaned and quarantined rows (inside ``replacing_cleaned``)."""
    if not cleaned.empty:
        frame = cleaned.assign(run_id=run_id)
        # A relation, not conn.register: DuckDB keeps a registered frame alive until the
        # transaction ends, which would hold the whole partition's cleaned rows in Python.
        columns = ", ".join(f'"{c}"' for c in frame.columns)
        conn.from_df(frame).query(
            "_cleaned_chunk",
            f"insert into cleaned_companies ({columns}) select {columns} from _cleaned_chunk",  # noqa: S608 - column names come from our own frame
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


def read_cleaned(conn: duckdb.DuckDBPyConnection, partition_key: str) -> pd.DataFrame:
    frame = conn.execute(
        "select * exclude (run_id) from cleaned_companies where partition_key = ?"
        " order by company_id",
        [partition_key],
    ).df()
    return _local_times(frame)


def iter_cleaned(
    conn: duckdb.DuckDBPyConnection, partition_key: str, chunk_rows: int = 20_000
) -> Iterator[pd.DataFrame]:
    """``read_cleaned`` in chunks of company_id ranges (all rows of one id in one chunk)."""
    for frame in _chunks_by_id(
        conn, "cleaned_companies", "* exclude (run_id)", partition_key, chunk_rows
    ):
        yield _local_times(frame)


def _chunks_by_id(
    conn: duckdb.DuckDBPyConnection,
    table: str,
    columns: str,
    partition_key: str,
    chunk_rows: int,
) -> Iterator[pd.DataFrame]:
    """A partition's rows with a company_id, in chunks of company_id ranges (id order).

    ``table`` and ``columns`` are this module's constants, never user input."""
    ids = [
        row[0]
        for row in conn.execute(
            f"select distinct company_id from {table} where partition_key = ?"  # noqa: S608
            " and company_id is not null order by company_id",
            [partition_key],
        ).fetchall()
    ]
    query = f"select {columns} from {table} where partition_key = ? and company_id >= ?"  # noqa: S608
    for first in range(0, len(ids), chunk_rows):
        if first + chunk_rows < len(ids):
            yield conn.execute(
                query + " and company_id < ? order by company_id",
                [partition_key, ids[first], ids[first + chunk_rows]],
            ).df()
        else:
            yield conn.execute(query + " order by company_id", [partition_key, ids[first]]).df()


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


# --- load_ledger ---------------------------------------------------------------------------


def ledger_rows(conn: duckdb.DuckDBPyConnection, company_ids: Sequence[int]) -> pd.DataFrame:
    """Ledger rows of these companies (one per company, however often an id is given):
    company_id, content_hash, update_time, status, attempts."""
    ids = pd.DataFrame({"company_id": pd.Series(sorted(set(company_ids)), dtype="int64")})
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


@dataclass(frozen=True)
class Claim:
    """The ledger rows claimed for one attempt to send them, and that attempt's id."""

    ids: set[int]
    attempt: str


def claim_for_sending(
    conn: duckdb.DuckDBPyConnection,
    claims: pd.DataFrame,
    run_id: str,
    at: datetime,
    attempt: str = "",
) -> Claim:
    """Mark records as being sent in one attempt, unless a newer version is already in the ledger.

    ``claims`` has company_id, partition_key, content_hash, update_time. In one transaction the
    rows whose ledger update_time is not newer become ``sending`` (attempts + 1) under one attempt
    id, kept in the ledger: ``attempt`` (a fresh id) for a new attempt, or the id of the attempt
    that was interrupted while sending exactly these versions (every claimed row still
    ``sending`` the same content under that one id), so that resending it reuses its
    Idempotency-Key and a batch the target applied before the interruption is not applied twice.
    A record the ledger knows in a newer version is never sent (no stale overwrite), and a run
    killed after this point leaves ``sending`` rows that the next run sends again.
    """
    if claims.empty:
        return Claim(set(), attempt)
    conn.register("_claims", claims)
    try:
        with transaction(conn):
            # excluded.status is the ``sending`` this claim writes: a held row still sending
            # the same version keeps its attempt id.
            claimed = conn.execute(
                "insert into load_ledger (company_id, partition_key, content_hash, update_time,"
                " status, attempts, last_error, loaded_at, run_id, attempt_id)"
                " select company_id, partition_key, content_hash, update_time, ?, 1,"
                " null, null, ?, ?"
                " from _claims"
                " on conflict (company_id) do update set"
                "  partition_key = excluded.partition_key, content_hash = excluded.content_hash,"
                "  update_time = excluded.update_time, status = excluded.status,"
                "  attempts = load_ledger.attempts + 1, run_id = excluded.run_id,"
                "  attempt_id = case when load_ledger.status = excluded.status"
                "   and load_ledger.content_hash = excluded.content_hash"
                "   and load_ledger.update_time = excluded.update_time"
                "   then coalesce(load_ledger.attempt_id, excluded.attempt_id)"
                "   else excluded.attempt_id end"
                " where load_ledger.update_time is null"
                "  or load_ledger.update_time <= excluded.update_time"
                " returning company_id, attempt_id",
                [LedgerStatus.SENDING.value, run_id, attempt],
            ).fetchall()
            ids = {int(r[0]) for r in claimed}
            attempts = {r[1] for r in claimed}
            if len(attempts) == 1:
                attempt = str(attempts.pop())
            elif attempts:  # parts of several interrupted attempts: this is a new one
                conn.execute(
                    "update load_ledger set attempt_id = ?"
                    " where company_id in (select unnest(?::bigint[]))",
                    [attempt, sorted(ids)],
                )
    finally:
        conn.unregister("_claims")
    return Claim(ids, attempt)


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
    claimed = claim_for_sending(conn, claims, run_id, at).ids
    outcomes = [(cid, LedgerStatus.LANDED.value, None) for cid in sorted(claimed)]
    record_outcomes(conn, outcomes, run_id, at)
    return len(claimed)


def ledger_status_counts(conn: duckdb.DuckDBPyConnection, partition_key: str) -> dict[str, int]:
    rows = conn.execute(
        "select status, count(*) from load_ledger where partition_key = ? group by status",
        [partition_key],
    ).fetchall()
    return {str(status): int(n) for status, n in rows}


# --- the learned OKKI rate ------------------------------------------------------------------


def learned_rate(
    conn: duckdb.DuckDBPyConnection, base_url: str, client_id: str
) -> tuple[float, float | None] | None:
    """(rate, ceiling) the last run learned for this OKKI account, or None."""
    row = conn.execute(
        "select rate, ceiling from okki_rate where base_url = ? and client_id = ?",
        [base_url, client_id],
    ).fetchone()
    return (float(row[0]), None if row[1] is None else float(row[1])) if row else None


def remember_rate(
    conn: duckdb.DuckDBPyConnection,
    base_url: str,
    client_id: str,
    rate: float,
    ceiling: float | None,
    at: datetime,
) -> None:
    """Keep what this run learned of the account's rate (keyed by OKKI URL and client id; the
    secret is no part of it), replacing the previous run's."""
    conn.execute(
        "insert or replace into okki_rate values (?, ?, ?, ?, ?)",
        [base_url, client_id, rate, ceiling, at],
    )


def unreconciled_rows(
    conn: duckdb.DuckDBPyConnection, partition_key: str, deletions: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Cleaned rows, and deletions (company_id, update_time: the partition's tombstones), whose
    version is neither acknowledged, landed nor superseded by a newer one."""
    upserts = conn.execute(
        "select c.company_id, l.status, l.last_error from cleaned_companies c"
        " left join load_ledger l using (company_id)"
        " where c.partition_key = ? and not coalesce(l.update_time > c.update_time"
        "  or (l.update_time = c.update_time"
        "      and l.status in (select unnest(?::varchar[]))), false)"
        " order by c.company_id",
        [partition_key, [status.value for status in UPSERT_DONE]],
    ).df()
    if deletions is None or deletions.empty:
        return upserts
    conn.register("_deletions", deletions[["company_id", "update_time"]])
    try:
        deletes = conn.execute(
            "select d.company_id, l.status, l.last_error from _deletions d"
            " left join load_ledger l using (company_id)"
            " where not coalesce(l.update_time > d.update_time"
            "  or (l.update_time = d.update_time"
            "      and l.status in (select unnest(?::varchar[]))), false)"
            " order by d.company_id",
            [[status.value for status in DELETE_DONE]],
        ).df()
    finally:
        conn.unregister("_deletions")
    if deletes.empty:
        return upserts
    both = pd.concat([upserts, deletes], ignore_index=True) if not upserts.empty else deletes
    return both.sort_values("company_id", kind="stable").reset_index(drop=True)


# --- the whole account (okki_reconcile) ----------------------------------------------------


def replace_account_list(
    conn: duckdb.DuckDBPyConnection, snapshot: pd.DataFrame, run_id: str, observed_at: datetime
) -> None:
    """Keep the account's list as one reconcile (or account check) saw it: company_id,
    update_time (OKKI's string) and removed, replacing the previous snapshot in one
    transaction."""
    conn.execute("begin transaction")
    try:
        conn.execute("delete from account_list")
        if not snapshot.empty:
            _insert_account_list(conn, snapshot, run_id, observed_at)
        conn.execute("commit")
    except BaseException:
        conn.execute("rollback")
        raise


def _insert_account_list(
    conn: duckdb.DuckDBPyConnection, snapshot: pd.DataFrame, run_id: str, observed_at: datetime
) -> None:
    conn.register("_account_list", snapshot[["company_id", "update_time", "removed"]])
    try:
        conn.execute(
            "insert into account_list select company_id::varchar, update_time::varchar,"
            " removed, ?, ? from _account_list",
            [observed_at, run_id],
        )
    finally:
        conn.unregister("_account_list")


def read_account_list(conn: duckdb.DuckDBPyConnection, run_id: str) -> pd.DataFrame | None:
    """The account list snapshot taken by run ``run_id``, or None when the last one is another
    run's (columns company_id, update_time, removed)."""
    frame = conn.execute(
        "select company_id, update_time, removed from account_list where run_id = ?",
        [run_id],
    ).df()
    return None if frame.empty else frame


def record_info_fetches(conn: duckdb.DuckDBPyConnection, partition_key: str, run_id: str) -> None:
    """Remember when each company's info was last read (the rolling refresh's clock), from the
    raw rows this run published with a freshly fetched payload."""
    conn.execute(
        "insert or replace into info_fetched select company_id, max(fetched_at)"
        " from raw_companies where partition_key = ? and run_id = ? and company_id is not null"
        " and info_json is not null and not info_reused group by company_id",
        [partition_key, run_id],
    )


def last_info_fetches(conn: duckdb.DuckDBPyConnection) -> dict[str, datetime]:
    """company_id -> when its info was last read, by a reconcile or by any stored window."""
    rows = conn.execute(
        "select company_id, max(fetched_at) from ("
        " select company_id, fetched_at from info_fetched"
        " union all select company_id, fetched_at from raw_companies"
        "  where company_id is not null and info_json is not null and not info_reused"
        ") group by company_id"
    ).fetchall()
    return {str(cid): at for cid, at in rows}


def known_bad_versions(conn: duckdb.DuckDBPyConnection) -> set[tuple[str, str]]:
    """(company_id, list update_time) of quarantined versions that stay bad however often they
    are read again: reasons about the data itself, not an info call that failed (``info_*``)
    nor a window's edge (``update_time_outside_window``)."""
    rows = conn.execute(
        "select distinct company_id, json_extract_string(list_json, '$.update_time')"
        " from quarantined_companies where company_id is not null and json_valid(list_json)"
        " and len(list_filter(reasons, lambda r: starts_with(r, 'info_')"
        "  or r = 'update_time_outside_window')) = 0"
    ).fetchall()
    return {(str(cid), str(ut)) for cid, ut in rows if ut is not None}


def yield_to_observation(
    conn: duckdb.DuckDBPyConnection, flips: pd.DataFrame, observed_at: datetime
) -> int:
    """Let an account observation win over the ledger where the two disagree on deleted or
    live: for each (company_id, update_time, deleted) in ``flips`` whose ledger row says the
    opposite, was acknowledged before ``observed_at`` and holds a newer update_time, the ledger
    row's update_time is lowered to the observed one. The load that follows (under the same
    load lock) then sends the observed state on the ordinary rule (not older than the ledger).
    Returns the rows changed."""
    if flips.empty:
        return 0
    conn.register("_flips", flips[["company_id", "update_time", "deleted"]])
    try:
        row = conn.execute(
            "update load_ledger l set update_time = f.update_time from _flips f"
            " where l.company_id = f.company_id and l.update_time > f.update_time"
            " and (l.loaded_at is null or l.loaded_at < ?)"
            " and (l.status = 'deleted') <> f.deleted",
            [observed_at],
        ).fetchone()
    finally:
        conn.unregister("_flips")
    return int(row[0]) if row else 0


def settle_account_copies(
    conn: duckdb.DuckDBPyConnection, partition_key: str, account_key: str
) -> int:
    """Keep each company in one cleaned copy only, between the account's and the windows':
    the partition just cleaned takes a company from the other side when it holds a newer or
    equal version, and gives it up when the other side holds a strictly newer one. The
    account's side is every other partition when ``partition_key`` is the account, else the
    account alone. Runs inside the clean's transaction. Returns the rows removed."""
    is_account = partition_key == account_key
    others = "o.partition_key <> ?" if is_account else "o.partition_key = ?"
    other_key = partition_key if is_account else account_key
    taken = conn.execute(
        f"delete from cleaned_companies o where {others} and exists ("  # noqa: S608 - constant
        " select 1 from cleaned_companies n where n.partition_key = ?"
        " and n.company_id = o.company_id and n.update_time >= o.update_time)",
        [other_key, partition_key],
    ).fetchone()
    given = conn.execute(
        "delete from cleaned_companies n where n.partition_key = ? and exists ("  # noqa: S608
        f" select 1 from cleaned_companies o where {others}"
        " and o.company_id = n.company_id and o.update_time > n.update_time)",
        [partition_key, other_key],
    ).fetchone()
    return sum(int(r[0]) for r in (taken, given) if r)


def ledger_ids_for_run(
    conn: duckdb.DuckDBPyConnection, run_id: str, statuses: Sequence[str]
) -> set[int]:
    """Companies this run wrote to the ledger with one of ``statuses``."""
    rows = conn.execute(
        "select company_id from load_ledger where run_id = ? and status in"
        " (select unnest(?::varchar[]))",
        [run_id, list(statuses)],
    ).fetchall()
    return {int(r[0]) for r in rows}
