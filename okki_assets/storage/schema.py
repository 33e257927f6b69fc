"""The DuckDB tables: their DDL, ``ensure_schema``, the transaction every replacing write runs
in, and the read of a partition in company_id-range chunks that the raw and cleaned tables share.

Table and column names are constants of the storage package; values always travel as parameters.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress

import duckdb
import pandas as pd

from okki_assets.okki_time import TIMEZONE
from okki_assets.schemas import CleanedCompany

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
    # The version order (versions.py): when the held version was observed, and the moment of
    # the account observation the row last yielded to. Files made before them read as never.
    "alter table load_ledger add column if not exists observed_at timestamptz",
    "alter table load_ledger add column if not exists yielded_at timestamptz",
    # The record's own id at the target (Kingdee's FCUSTID); files made before it read as
    # unknown until the record is written again.
    "alter table load_ledger add column if not exists target_id varchar",
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

# The DuckDB type each pandera dtype of ``CleanedCompany`` is stored as.
_SQL_TYPES = {
    "str": "varchar",
    "int64": "bigint",
    "Int64": "bigint",
    "bool": "boolean",
    "object": "varchar[]",  # owner_ids, a list of user ids
    f"datetime64[ns, {TIMEZONE}]": "timestamptz",
}


def _cleaned_table_ddl() -> str:
    """cleaned_companies, derived from the model it stores: ``CleanedCompany``'s columns in
    their order, typed and nullable as the model says, then the run that wrote the row and
    when its payload was observed (the version order's second part, see versions.py)."""
    columns = [
        f"{name} {_SQL_TYPES[str(column.dtype)]}{'' if column.nullable else ' not null'}"
        for name, column in CleanedCompany.to_schema().columns.items()
    ]
    body = ",\n        ".join([*columns, "run_id varchar not null", "observed_at timestamptz"])
    return f"create table if not exists cleaned_companies (\n        {body}\n    )"


_CLEANED_TABLE_DDL = _cleaned_table_ddl()
# Files made before cleaned rows kept their observation.
_CLEANED_OBSERVED = "alter table cleaned_companies add column if not exists observed_at timestamptz"


def ensure_schema(conn: duckdb.DuckDBPyConnection) -> None:
    """Create every table this project uses (idempotent; cheap when they exist)."""
    for ddl in (*_DDL, _CLEANED_TABLE_DDL, _CLEANED_OBSERVED):
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


def chunks_by_id(
    conn: duckdb.DuckDBPyConnection,
    table: str,
    columns: str,
    partition_key: str,
    chunk_rows: int,
) -> Iterator[pd.DataFrame]:
    """A partition's rows with a company_id, in chunks of company_id ranges (id order).

    ``table`` and ``columns`` are constants of the storage package, never user input."""
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
