"""SQL targets through SQLAlchemy 2 Core: PostgreSQL, MariaDB/MySQL and SQLite.

The table (``TARGET_TABLE``, default ``okki_companies``, may be ``schema.table``) is created when
missing. Each key of the mapped record is a column of exactly that name (a nested object or a
list is a JSON column, ``jsonb`` on PostgreSQL); ``id`` is the text primary key. Bookkeeping
columns: ``_okki_update_time``, ``_okki_observed_at`` and ``_content_hash`` (the version
written: versions.py), ``_okki_yielded_at`` (the last yield of the ledger that sent it, kept
when a later version carries none; a table made before these two existed gains them),
``_deleted_at``
(deletions are soft: set when OKKI deletes the company, cleared when it is restored) and
``_synced_at`` (set only when the row is written). Times are naive UTC.

Writes:

- Each batch is one transaction. The batch's rows are read and locked first (``SELECT ... FOR
  UPDATE``; SQLite takes the database's write lock at ``BEGIN IMMEDIATE``), so a concurrent run
  waits, and the version is compared with what the lock returned (the row as last committed).
- A record whose stored values hash the same as it (and whose liveness is the same) is
  ``unchanged`` and not written, so ``_synced_at`` stays; the hash is computed from the stored
  values, not read from ``_content_hash``, so a row edited by hand is written again. When its
  version is newer than the row's, the version columns alone move on to it (one cheap UPDATE),
  so that a version read before it no longer lands over the row.
- A record the stored version is newer than (``older_than_stored``: ``versions.supersedes``)
  is ``unchanged`` with the reason, and not written: a concurrent or late run never overwrites
  a newer version. A yield (OKKI moved a live company's update time back with a change, and
  the ledger yielded) comes first: a version observed since the later of the record's and the
  row's yield replaces one observed before it, whatever the times, and never the other way.
  Then, without a flip, the version order (update time, observation, content); a deletion
  over a live row or a restore over a deleted one (which may keep an old time) goes to the
  later observation.
- One bad row (a value too long for its column, a NULL in a NOT NULL column) is that row's
  ``rejected`` with the database's message: the batch is retried row by row, each in its own
  savepoint. Lost connections and deadlocks retry the whole transaction (``MAX_TRIES``).

Schema drift: a key new to the table adds a nullable column (logged); a value of another type
than its column, or a column the mapping no longer gives, fails the run naming the column
(``TargetSchemaError``); columns are never dropped.

A password in ``TARGET_URL`` is shown as ``***`` everywhere (``render_as_string(
hide_password=True)``), and driver messages are scrubbed of it before they reach an error.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import mysql, postgresql
from sqlalchemy.engine import URL, Connection, Engine, make_url

from okki_assets.clients.http import CallStats
from okki_assets.errors import (
    ConfigError,
    TargetAuthError,
    TargetPermanentError,
    TargetRetriesExhausted,
    TargetSchemaError,
    TargetUnreachable,
)
from okki_assets.mapping import content_hash
from okki_assets.targets.port import RecordResult, RecordVersion, TargetRow, TargetSettings
from okki_assets.targets.sql_write import (
    DELETED_AT,
    HASH,
    ID,
    OBSERVED_AT,
    SYNCED_AT,
    UPDATE_TIME,
    YIELDED_AT,
    BatchWriter,
    is_tombstone,
)

log = logging.getLogger(__name__)

KIND = "sql"
BOOKKEEPING = (UPDATE_TIME, OBSERVED_AT, YIELDED_AT, HASH, DELETED_AT, SYNCED_AT)
DRIVERS = {
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
    "mariadb": "mariadb+pymysql",
}
READ_PAGE = 1000
MAX_TRIES = 3
_MAX_MESSAGE = 300
_AUTH_WORDS = ("password", "authentication", "access denied", "auth")


def open_target(url: str, settings: TargetSettings) -> SqlTarget:
    """The SQL adapter for ``url`` (checked here; nothing connects until ``check`` or a write)."""
    try:
        parsed = make_url(url)
    except (sa.exc.ArgumentError, ValueError):
        raise ConfigError(
            "TARGET_URL is not a database URL: expected scheme://user:password@host:port/database"
            " or sqlite:///path"
        ) from None
    parsed = parsed.set(drivername=DRIVERS.get(parsed.drivername, parsed.drivername))
    if parsed.get_backend_name() in ("mysql", "mariadb") and "charset" not in parsed.query:
        parsed = parsed.update_query_dict({"charset": "utf8mb4"})  # all of Unicode, emoji too
    return SqlTarget(parsed, settings.table)


def value_kind(value: Any) -> str | None:
    """The column kind a value needs (None for a null, which fits any column)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, dict | list):
        return "json"
    return "text"


def column_type(kind: str) -> sa.types.TypeEngine[Any]:
    types: dict[str, sa.types.TypeEngine[Any]] = {
        "bool": sa.Boolean(),
        "int": sa.BigInteger(),
        "float": sa.Double(),
        "json": sa.JSON().with_variant(postgresql.JSONB(), "postgresql"),
        "text": sa.Text(),
    }
    return types.get(kind, sa.Text())


def stored_kind(col_type: Any, is_json: bool) -> str:
    """The kind of a column as the database reports it."""
    if is_json or isinstance(col_type, sa.JSON):
        return "json"
    if isinstance(col_type, sa.Boolean) or (
        isinstance(col_type, mysql.TINYINT) and col_type.display_width == 1
    ):
        return "bool"
    if isinstance(col_type, sa.Integer):
        return "int"
    if isinstance(col_type, sa.Float | sa.Numeric):
        return "float"
    if isinstance(col_type, sa.String):
        return "text"
    return "other"


def fits(stored: str, kind: str) -> bool:
    return (
        stored == kind
        or (stored == "float" and kind == "int")
        or (stored == "int" and kind == "bool")
        or (stored == "other" and kind == "text")
    )


class SqlTarget:
    """A table in a SQL database as the target (see the module docstring)."""

    kind = KIND

    def __init__(self, url: URL, table: str) -> None:
        self.url_shown = url.render_as_string(hide_password=True)
        self._password = url.password or ""
        schema, _, name = table.rpartition(".")
        if not name:
            raise ConfigError(f"TARGET_TABLE {table!r} is not a table name")
        self.schema, self.name = schema or None, name
        self.stats = CallStats(endpoints=("batch", "read"), causes=("transient",))
        self._engine = self._create_engine(url)
        self._columns: dict[str, str] = {}  # value column -> kind, once known
        self._table: sa.Table | None = None

    @staticmethod
    def _create_engine(url: URL) -> Engine:
        if url.get_backend_name() != "sqlite":
            return sa.create_engine(url, pool_pre_ping=True, hide_parameters=True)
        engine = sa.create_engine(url, hide_parameters=True, connect_args={"timeout": 60})

        @event.listens_for(engine, "connect")
        def _no_pysqlite_begin(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # SQLAlchemy's recipe: we emit BEGIN ourselves

        @event.listens_for(engine, "begin")
        def _begin_immediate(conn: Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")  # the write lock before the rows are read

        return engine

    @property
    def dialect(self) -> str:
        return self._engine.dialect.name

    @property
    def value_columns(self) -> tuple[str, ...]:
        """The table's columns that hold mapped values (all but ``id`` and the bookkeeping)."""
        return tuple(self._columns)

    @property
    def table_shown(self) -> str:
        return f"{self.schema}.{self.name}" if self.schema else self.name

    # -- errors ------------------------------------------------------------------------------

    def scrub(self, error: BaseException) -> str:
        """The database's own message, first line, without the password."""
        orig = getattr(error, "orig", None) or error
        text = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
        if self._password:
            text = text.replace(self._password, "***")
        return text[:_MAX_MESSAGE]

    def _failure(self, error: sa.exc.SQLAlchemyError, contacted: bool) -> Exception:
        said = self.scrub(error)
        if isinstance(error, sa.exc.OperationalError) and not contacted:
            where = f"the SQL target {self.url_shown}"
            if any(w in said.lower() for w in _AUTH_WORDS):
                return TargetAuthError(f"{where} refused the login: {said}")
            return TargetUnreachable(f"cannot connect to {where}: {said}")
        if isinstance(error, sa.exc.OperationalError):
            return TargetRetriesExhausted(f"the SQL target {self.url_shown} failed: {said}")
        return TargetPermanentError(f"the SQL target {self.url_shown} refused: {said}")

    def check(self) -> None:
        """Connect once (a wrong host, user or password fails here in one line)."""
        try:
            with self._engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
        except sa.exc.SQLAlchemyError as e:
            raise self._failure(e, contacted=False) from None

    def close(self) -> None:
        self._engine.dispose()

    # -- schema ------------------------------------------------------------------------------

    def _batch_kinds(self, records: Sequence[dict[str, Any]]) -> dict[str, set[str]]:
        kinds: dict[str, set[str]] = {}
        for record in records:
            if is_tombstone(record):
                continue
            for key, value in record.items():
                if key == ID:
                    continue
                seen = kinds.setdefault(key, set())
                kind = value_kind(value)
                if kind:
                    seen.add(kind)
        return kinds

    def _sync_schema(self, records: Sequence[dict[str, Any]]) -> sa.Table:
        kinds = self._batch_kinds(records)
        settled = self._table is not None and all(
            key in self._columns and all(fits(self._columns[key], k) for k in ks)
            for key, ks in kinds.items()
        )
        if settled and (not kinds or set(kinds) == set(self._columns)):
            assert self._table is not None
            return self._table
        with self._engine.begin() as conn:
            existing = self._reflect(conn)
            if existing is None:
                self._create(conn, kinds)
            else:
                self._columns = existing
                self._add_bookkeeping(conn)
                self._evolve(conn, kinds)
        self._table = self._build_table()
        return self._table

    def _reflect(self, conn: Connection) -> dict[str, str] | None:
        inspector = sa.inspect(conn)
        if not inspector.has_table(self.name, schema=self.schema):
            return None
        json_cols = self._mariadb_json_columns(conn)
        columns = {
            c["name"]: stored_kind(c["type"], c["name"] in json_cols)
            for c in inspector.get_columns(self.name, schema=self.schema)
        }
        if ID not in columns:
            raise TargetSchemaError(f"table {self.table_shown} has no column {ID!r}")
        return {k: v for k, v in columns.items() if k != ID and k not in BOOKKEEPING}

    def _mariadb_json_columns(self, conn: Connection) -> set[str]:
        """MariaDB keeps JSON as LONGTEXT with a json_valid check: read it from the DDL."""
        if self.dialect not in ("mysql", "mariadb"):
            return set()
        quoted = self._engine.dialect.identifier_preparer.format_table(self._shell())
        ddl = str(conn.exec_driver_sql(f"SHOW CREATE TABLE {quoted}").one()[1])
        return set(re.findall(r"json_valid\(`([^`]+)`\)", ddl))

    def _shell(self) -> sa.Table:
        return sa.Table(self.name, sa.MetaData(), schema=self.schema)

    def _create(self, conn: Connection, kinds: dict[str, set[str]]) -> None:
        self._columns = {key: _one_kind(key, ks) for key, ks in kinds.items()}
        table = self._build_table()
        table.create(conn, checkfirst=True)
        log.info("created table %s with columns %s", self.table_shown, ", ".join(self._columns))

    def _evolve(self, conn: Connection, kinds: dict[str, set[str]]) -> None:
        for key, ks in kinds.items():
            if key in self._columns:
                bad = sorted(k for k in ks if not fits(self._columns[key], k))
                if bad:
                    raise TargetSchemaError(
                        f"column {key!r} of {self.table_shown} holds {self._columns[key]}, the"
                        f" mapping gives {'/'.join(bad)} values: change the column or the mapping"
                    )
        if kinds:
            dropped = sorted(set(self._columns) - set(kinds))
            if dropped:
                raise TargetSchemaError(
                    f"the mapping no longer gives the column(s) {', '.join(map(repr, dropped))}"
                    f" of {self.table_shown}: columns are never dropped; put the key back in"
                    " the mapping, or drop the column by hand"
                )
        prep = self._engine.dialect.identifier_preparer
        for key in [k for k in kinds if k not in self._columns]:
            kind = _one_kind(key, kinds[key])
            column = sa.Column(key, column_type(kind), nullable=True)
            spec = sa.schema.CreateColumn(column).compile(dialect=self._engine.dialect)
            conn.exec_driver_sql(
                f"ALTER TABLE {prep.format_table(self._shell())} ADD COLUMN {spec}"
            )
            self._columns[key] = kind
            log.info("added the column %r (%s) to %s", key, kind, self.table_shown)

    def _add_bookkeeping(self, conn: Connection) -> None:
        """A table made before a bookkeeping column existed (``_okki_observed_at``,
        ``_okki_yielded_at``) gains it, nullable: its rows count as never observed and never
        yielded (versions.py)."""
        have = {c["name"] for c in sa.inspect(conn).get_columns(self.name, schema=self.schema)}
        prep = self._engine.dialect.identifier_preparer
        for column in self._build_table().columns:
            if column.name in BOOKKEEPING and column.name not in have:
                spec = sa.schema.CreateColumn(column).compile(dialect=self._engine.dialect)
                conn.exec_driver_sql(
                    f"ALTER TABLE {prep.format_table(self._shell())} ADD COLUMN {spec}"
                )
                log.info("added the bookkeeping column %r to %s", column.name, self.table_shown)

    def _build_table(self) -> sa.Table:
        time_type = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
        return sa.Table(
            self.name,
            sa.MetaData(),
            sa.Column(ID, sa.String(255), primary_key=True),
            *(sa.Column(k, column_type(kind), nullable=True) for k, kind in self._columns.items()),
            sa.Column(UPDATE_TIME, time_type, nullable=True),
            sa.Column(OBSERVED_AT, time_type, nullable=True),
            sa.Column(YIELDED_AT, time_type, nullable=True),
            sa.Column(HASH, sa.String(64), nullable=True),
            sa.Column(DELETED_AT, time_type, nullable=True),
            sa.Column(SYNCED_AT, time_type, nullable=True),
            schema=self.schema,
            mysql_charset="utf8mb4",  # a server whose default is latin1 still takes any name
            mariadb_charset="utf8mb4",
        )

    # -- writes ------------------------------------------------------------------------------

    def write_batch(
        self,
        records: list[dict[str, Any]],
        attempt: str,
        versions: Sequence[RecordVersion] | None = None,
    ) -> list[RecordResult]:
        """Write one batch in one transaction; one result per record, in order."""
        if not records:
            return []
        if versions is None:
            versions = [RecordVersion(None, content_hash(r)) for r in records]
        contacted = False
        for tries in range(1, MAX_TRIES + 1):
            self.stats.count_request("batch")
            try:
                table = self._sync_schema(records)
                contacted = True
                with self._engine.begin() as conn:
                    return BatchWriter(self, conn, table).write(records, list(versions))
            except sa.exc.OperationalError as e:
                if not contacted or tries == MAX_TRIES:
                    raise self._failure(e, contacted) from None
                self.stats.count_retry("transient")
                log.info("SQL batch retried after: %s", self.scrub(e))
                time.sleep(0.2 * tries)
            except sa.exc.SQLAlchemyError as e:
                raise self._failure(e, contacted=True) from None
        raise AssertionError("unreachable")

    # -- reads -------------------------------------------------------------------------------

    def read_back(self) -> Iterator[TargetRow]:
        """Every row, by id in pages of ``READ_PAGE`` (each page its own short query); only
        the columns a ``TargetRow`` needs (the next write adds missing bookkeeping columns)."""
        contacted = False
        try:
            with self._engine.connect() as conn:
                existing = self._reflect(conn)
            contacted = True
            if existing is None:
                return
            self._columns = existing
            table = self._build_table()
            shown = [table.c[c] for c in (ID, *self._columns, DELETED_AT)]
            after: str | None = None
            while True:
                query = sa.select(*shown).order_by(table.c[ID]).limit(READ_PAGE)
                if after is not None:
                    query = query.where(table.c[ID] > after)
                self.stats.count_request("read")
                with self._engine.connect() as conn:
                    rows = conn.execute(query).mappings().all()
                yield from (self.row_of(r) for r in rows)
                if len(rows) < READ_PAGE:
                    return
                after = str(rows[-1][ID])
        except sa.exc.SQLAlchemyError as e:
            raise self._failure(e, contacted=contacted) from None

    def row_of(self, row: Any) -> TargetRow:
        values = {ID: row[ID], **{k: row[k] for k in self._columns}}
        if row[DELETED_AT] is not None:
            return TargetRow(str(row[ID]), values, None, deleted=True)
        return TargetRow(str(row[ID]), values, content_hash(values), deleted=False)


def _one_kind(key: str, kinds: set[str]) -> str:
    if len(kinds) > 1 and kinds != {"int", "float"}:
        raise TargetSchemaError(f"the mapping gives {key!r} values of several types: {kinds}")
    return "float" if "float" in kinds else next(iter(kinds), "text")
