"""load_ledger: where each record's last claimed version stands with the target. The ledger
statuses, claims for sending (one attempt id each), outcomes, and the rows not yet reconciled.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import duckdb
import pandas as pd

from okki_assets.okki_time import TIMEZONE
from okki_assets.storage.schema import transaction
from okki_assets.versions import sql_key, sql_yielded


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


def ledger_rows(conn: duckdb.DuckDBPyConnection, company_ids: Sequence[int]) -> pd.DataFrame:
    """Ledger rows of these companies (one per company, however often an id is given):
    company_id, content_hash, update_time, observed_at, yielded_at, status, attempts,
    partition_key."""
    ids = pd.DataFrame({"company_id": pd.Series(sorted(set(company_ids)), dtype="int64")})
    conn.register("_ledger_ids", ids)
    try:
        frame = conn.execute(
            "select l.company_id, l.content_hash, l.update_time, l.observed_at, l.yielded_at,"
            " l.status, l.attempts, l.partition_key"
            " from load_ledger l join _ledger_ids using (company_id)"
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
    attempt: str = "",
) -> Claim:
    """Mark records as being sent in one attempt, unless a newer version is already in the ledger.

    ``claims`` has company_id, partition_key, content_hash, update_time, observed_at. In one
    transaction the rows whose ledger version is not newer (versions.py, a yield included)
    become ``sending`` (attempts + 1) under one attempt id, kept in the ledger: ``attempt`` (a
    fresh id) for a new attempt, or the id of the attempt that was interrupted while sending
    exactly these versions (every claimed row still ``sending`` the same content under that one
    id), so that resending it reuses its Idempotency-Key and a batch the target applied before
    the interruption is not applied twice. A record the ledger knows in a newer version is never
    sent (no stale overwrite), and a run killed after this point leaves ``sending`` rows that
    the next run sends again.
    """
    if claims.empty:
        return Claim(set(), attempt)
    conn.register("_claims", _with_observation(claims))
    try:
        with transaction(conn):
            # excluded.status is the ``sending`` this claim writes: a held row still sending
            # the same version keeps its attempt id.
            claimed = conn.execute(
                "insert into load_ledger (company_id, partition_key, content_hash, update_time,"  # noqa: S608 - constant SQL
                " observed_at, status, attempts, last_error, loaded_at, run_id, attempt_id)"
                " select company_id, partition_key, content_hash, update_time, observed_at, ?,"
                " 1, null, null, ?, ?"
                " from _claims"
                " on conflict (company_id) do update set"
                "  partition_key = excluded.partition_key, content_hash = excluded.content_hash,"
                "  update_time = excluded.update_time, observed_at = excluded.observed_at,"
                "  status = excluded.status,"
                "  attempts = load_ledger.attempts + 1, run_id = excluded.run_id,"
                "  attempt_id = case when load_ledger.status = excluded.status"
                "   and load_ledger.content_hash = excluded.content_hash"
                "   and load_ledger.update_time = excluded.update_time"
                "   then coalesce(load_ledger.attempt_id, excluded.attempt_id)"
                "   else excluded.attempt_id end"
                f" where {_NOT_SUPERSEDED}"
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


def _not_superseded(ledger: str, new: str) -> str:
    """SQL: the ledger row ``ledger`` does not supersede the version ``new`` (versions.py)."""
    return (
        f"({ledger}.update_time is null or not ({sql_key(ledger)} > {sql_key(new)}"
        f" or {sql_yielded(new, ledger)}))"
    )


_NOT_SUPERSEDED = _not_superseded("load_ledger", "excluded")


def _with_observation(claims: pd.DataFrame) -> pd.DataFrame:
    frame = claims[[c for c in claims.columns if c != "record"]]
    if "observed_at" not in frame:
        frame = frame.assign(observed_at=pd.NaT)
    frame = frame.assign(observed_at=pd.to_datetime(frame["observed_at"], utc=True))
    return frame[["company_id", "partition_key", "content_hash", "update_time", "observed_at"]]


def advance_unchanged(conn: duckdb.DuckDBPyConnection, versions: pd.DataFrame) -> int:
    """Move acknowledged ledger rows up to newer versions of the very same content
    (company_id, update_time, observed_at, content_hash): the target holds them already.
    Returns the rows moved."""
    if versions.empty:
        return 0
    conn.register("_advance", _with_observation(versions.assign(partition_key="")))
    try:
        row = conn.execute(
            "update load_ledger set update_time = v.update_time, observed_at = v.observed_at"  # noqa: S608 - constant SQL
            " from _advance v where load_ledger.company_id = v.company_id"
            " and load_ledger.content_hash = v.content_hash"
            " and load_ledger.status in (select unnest(?::varchar[]))"
            f" and {_not_superseded('load_ledger', 'v')}",
            [[status.value for status in SENT_STATUSES]],
        ).fetchone()
    finally:
        conn.unregister("_advance")
    return int(row[0]) if row else 0


def record_outcomes(
    conn: duckdb.DuckDBPyConnection,
    outcomes: Sequence[tuple[int, str, str | None]],
    run_id: str,
    at: datetime,
    target_ids: Mapping[int, str] | None = None,
) -> None:
    """Write per-record outcomes (company_id, status, error) of this run's claimed rows, and
    the record's own id at the target (``target_ids`` by company_id, where the target gave
    one: Kingdee's FCUSTID). An outcome without a target id keeps the one the row holds."""
    if not outcomes:
        return
    frame = pd.DataFrame(outcomes, columns=["company_id", "status", "last_error"])
    ids = target_ids or {}
    frame["target_id"] = pd.Series(
        [ids.get(int(cid)) for cid in frame["company_id"]], index=frame.index, dtype=object
    )
    conn.register("_outcomes", frame)
    try:
        conn.execute(
            "update load_ledger l set status = o.status, last_error = o.last_error,"
            " target_id = coalesce(o.target_id::varchar, l.target_id),"
            " loaded_at = ? from _outcomes o where l.company_id = o.company_id and l.run_id = ?",
            [at, run_id],
        )
    finally:
        conn.unregister("_outcomes")


def record_landed(
    conn: duckdb.DuckDBPyConnection, claims: pd.DataFrame, run_id: str, at: datetime
) -> int:
    """Land-only mode: record each record as ``landed`` (nothing was sent); newer rows win."""
    claimed = claim_for_sending(conn, claims, run_id).ids
    outcomes = [(cid, LedgerStatus.LANDED.value, None) for cid in sorted(claimed)]
    record_outcomes(conn, outcomes, run_id, at)
    return len(claimed)


def ledger_status_counts(conn: duckdb.DuckDBPyConnection, partition_key: str) -> dict[str, int]:
    rows = conn.execute(
        "select status, count(*) from load_ledger where partition_key = ? group by status",
        [partition_key],
    ).fetchall()
    return {str(status): int(n) for status, n in rows}


def unreconciled_rows(
    conn: duckdb.DuckDBPyConnection, partition_key: str, deletions: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Cleaned rows, and deletions (company_id, update_time, observed_at: the partition's
    tombstones), whose version is neither acknowledged, landed nor superseded by a newer one."""
    upserts = conn.execute(
        "select c.company_id, l.status, l.last_error from cleaned_companies c"  # noqa: S608 - constant SQL
        " left join load_ledger l using (company_id)"
        f" where c.partition_key = ? and not {_held('c')}"
        " order by c.company_id",
        [partition_key, [status.value for status in UPSERT_DONE]],
    ).df()
    if deletions is None or deletions.empty:
        return upserts
    frame = deletions.assign(observed_at=_observed(deletions))
    conn.register("_deletions", frame[["company_id", "update_time", "observed_at"]])
    try:
        deletes = conn.execute(
            "select d.company_id, l.status, l.last_error from _deletions d"  # noqa: S608 - constant SQL
            " left join load_ledger l using (company_id)"
            f" where not {_held('d')}"
            " order by d.company_id",
            [[status.value for status in DELETE_DONE]],
        ).df()
    finally:
        conn.unregister("_deletions")
    if deletes.empty:
        return upserts
    both = pd.concat([upserts, deletes], ignore_index=True) if not upserts.empty else deletes
    return both.sort_values("company_id", kind="stable").reset_index(drop=True)


def _held(row: str) -> str:
    """SQL: the ledger (``l``) holds the version of ``row`` with a done status (the one
    parameter), or supersedes it. Cleaned rows carry no content hash: their version is
    (update_time, observed_at)."""
    held, version = sql_key("l", content=False), sql_key(row, content=False)
    return (
        f"(l.update_time is not null and ({held} > {version} or {sql_yielded(row, 'l')}"
        f" or ({held} = {version} and l.status in (select unnest(?::varchar[])))))"
    )


def _observed(rows: pd.DataFrame) -> pd.Series:
    if "observed_at" not in rows:
        return pd.Series(pd.NaT, index=rows.index, dtype="datetime64[ns, UTC]")
    return pd.to_datetime(rows["observed_at"], utc=True)


def rejected_records(conn: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Every record the target rejected as the ledger holds it: company_id, partition_key,
    last_error (the target's reason)."""
    return conn.execute(
        "select company_id, partition_key, last_error from load_ledger where status = ?"
        " order by company_id",
        [LedgerStatus.REJECTED.value],
    ).df()


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
