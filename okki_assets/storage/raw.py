"""raw_companies and what feeds it: a run's staged pull (``raw_staging``), published per
partition in one transaction; the info payloads kept while a pull is in progress
(``kept_infos``); and each partition's deleted companies (``deleted_companies``).

OKKI's own strings are kept untouched in these tables.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import duckdb
import pandas as pd

from okki_assets.schemas import RAW_COLUMNS
from okki_assets.storage.schema import chunks_by_id, transaction


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
    """A partition's deleted list, with when it was read (``observed_at``)."""
    return conn.execute(
        "select company_id, update_time, list_json, fetched_at as observed_at"
        " from deleted_companies"
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
    yield from chunks_by_id(conn, "raw_companies", columns, partition_key, chunk_rows)
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
