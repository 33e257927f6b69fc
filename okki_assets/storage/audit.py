"""What the target audit reads from and writes to DuckDB: the ledger's acknowledged versions,
and the demotion of the ones the target no longer holds, so that the reconcile sends them
again."""

from __future__ import annotations

from collections.abc import Sequence

import duckdb
import pandas as pd

from okki_assets.storage.ledger import SENT_STATUSES, LedgerStatus


def acknowledged_versions(conn: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Every ledger row the target acknowledged: company_id (text), content_hash,
    update_time, observed_at, yielded_at, status."""
    frame = conn.execute(
        "select cast(company_id as varchar) as company_id, content_hash, update_time,"
        " observed_at, yielded_at, status"
        " from load_ledger where status in (select unnest(?)) order by company_id",
        [[str(s) for s in SENT_STATUSES]],
    ).df()
    frame["update_time"] = pd.to_datetime(frame["update_time"], utc=True)
    frame["observed_at"] = pd.to_datetime(frame["observed_at"], utc=True)
    frame["yielded_at"] = pd.to_datetime(frame["yielded_at"], utc=True)
    return frame


def demote_for_resend(conn: duckdb.DuckDBPyConnection, reasons: Sequence[tuple[int, str]]) -> int:
    """Mark these acknowledged rows ``failed`` with the audit's reason (company_id, reason):
    the reconcile then counts them missing and sends them again."""
    if not reasons:
        return 0
    frame = pd.DataFrame(reasons, columns=["company_id", "last_error"])
    conn.register("_demoted", frame)
    try:
        conn.execute(
            "update load_ledger l set status = ?, last_error = d.last_error from _demoted d"
            " where l.company_id = d.company_id",
            [LedgerStatus.FAILED.value],
        )
    finally:
        conn.unregister("_demoted")
    return len(frame)
