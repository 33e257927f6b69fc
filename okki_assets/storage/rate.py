"""okki_rate: the OKKI rate (and ceiling) the last run learned, per OKKI URL and client id."""

from __future__ import annotations

from datetime import datetime

import duckdb


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
