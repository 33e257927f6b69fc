"""The whole account, for okki_reconcile and the account check: the account list snapshot
(``account_list``), when each company's info was last read (``info_fetched``), the quarantined
versions known to stay bad, the ledger yielding to an account observation, and the one cleaned
copy kept per company between the account's partition and the windows'.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import duckdb
import pandas as pd

from okki_assets.okki_time import TIMEZONE
from okki_assets.versions import sql_copy_key, sql_observed


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
    run's (columns company_id, update_time, removed, observed_at)."""
    frame = conn.execute(
        "select company_id, update_time, removed, observed_at from account_list where run_id = ?",
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


def unlisted_ledger_rows(
    conn: duckdb.DuckDBPyConnection, run_id: str, statuses: Sequence[str]
) -> pd.DataFrame:
    """Ledger rows with one of ``statuses`` whose company is in neither list (live nor deleted)
    of the account list snapshot taken by run ``run_id``: company_id, content_hash,
    update_time (Asia/Shanghai), status."""
    frame = conn.execute(
        "select l.company_id, l.content_hash, l.update_time, l.status from load_ledger l"
        " where l.status in (select unnest(?::varchar[])) and not exists ("
        "  select 1 from account_list a where a.run_id = ?"
        "  and a.company_id = l.company_id::varchar)"
        " order by l.company_id",
        [list(statuses), run_id],
    ).df()
    frame["update_time"] = pd.to_datetime(frame["update_time"], utc=True).dt.tz_convert(TIMEZONE)
    return frame


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


def yield_ledger_to_observation(
    conn: duckdb.DuckDBPyConnection, disagreements: pd.DataFrame, observed_at: datetime
) -> int:
    """Let an account observation win over the ledger where the two disagree on deleted or
    live, or where OKKI moved a live company's time back: for each (company_id, update_time,
    deleted, moved_back, tombstone_hash) in ``disagreements`` whose ledger row holds the opposite
    word (a tombstone's content or not, whatever its status: applied, answered ``unchanged``,
    refused, failed, still ``sending`` or landed; any word when ``moved_back``), observed
    before ``observed_at`` and with a newer update_time, the ledger row yields (versions.py):
    its update_time is lowered to the observed one and ``yielded_at`` becomes ``observed_at``,
    so that the load that follows sends the observed state on the ordinary rule, and no
    version read before the observation (a replayed window's tombstone, a window cleaned
    again) outranks it again. Returns the rows changed."""
    if disagreements.empty:
        return 0
    columns = ["company_id", "update_time", "deleted", "moved_back", "tombstone_hash"]
    conn.register("_disagreements", disagreements[columns])
    try:
        row = conn.execute(
            "update load_ledger l set update_time = f.update_time, yielded_at = ?"  # noqa: S608 - constant SQL
            " from _disagreements f where l.company_id = f.company_id"
            " and l.update_time > f.update_time"
            f" and {sql_observed('l')} < ?"
            " and (f.moved_back or (coalesce(l.content_hash, '') = f.tombstone_hash)"
            "  <> f.deleted)",
            [observed_at, observed_at],
        ).fetchone()
    finally:
        conn.unregister("_disagreements")
    return int(row[0]) if row else 0


def settle_account_copies(
    conn: duckdb.DuckDBPyConnection, partition_key: str, account_key: str
) -> int:
    """Keep each company in one cleaned copy only, between the account's and the windows':
    the partition just cleaned takes a company from the other side when it holds a newer or the
    same version (versions.py: a read since the ledger's last yield first, then update_time,
    then when it was observed), and gives it up when
    the other side holds a strictly newer one. So a window cleaned again from its older payload
    never takes a company back from a later observation with the same update_time. The
    account's side is every other partition when ``partition_key`` is the account, else the
    account alone. Runs inside the clean's transaction. Returns the rows removed."""
    is_account = partition_key == account_key
    others = "o.partition_key <> ?" if is_account else "o.partition_key = ?"
    other_key = partition_key if is_account else account_key
    new, old = sql_copy_key("n", "l"), sql_copy_key("o", "l")
    taken = conn.execute(
        f"delete from cleaned_companies o where {others} and exists ("  # noqa: S608 - constant
        " select 1 from cleaned_companies n left join load_ledger l using (company_id)"
        f" where n.partition_key = ? and n.company_id = o.company_id and {new} >= {old})",
        [other_key, partition_key],
    ).fetchone()
    given = conn.execute(
        "delete from cleaned_companies n where n.partition_key = ? and exists ("  # noqa: S608
        f" select 1 from cleaned_companies o left join load_ledger l using (company_id)"
        f" where {others} and o.company_id = n.company_id and {old} > {new})",
        [partition_key, other_key],
    ).fetchone()
    return sum(int(r[0]) for r in (taken, given) if r)
