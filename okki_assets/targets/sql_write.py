"""Writing one batch to a SQL target inside its transaction (see sql.py): lock the batch's rows,
decide per record, write in bulk, and fall back to one savepoint per row when the bulk statement
fails, so one bad row is that row's ``rejected``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from okki_assets.mapping import content_hash
from okki_assets.targets.port import RecordResult, RecordVersion

if TYPE_CHECKING:
    from okki_assets.targets.sql import SqlTarget

ID = "id"
UPDATE_TIME, HASH, DELETED_AT, SYNCED_AT = (
    "_okki_update_time",
    "_content_hash",
    "_deleted_at",
    "_synced_at",
)


def now_utc() -> datetime:
    return datetime.now(tz=UTC).replace(tzinfo=None)


def naive_utc(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is None:
        return value
    return value.astimezone(UTC).replace(tzinfo=None)


def older_than_stored(
    incoming: RecordVersion, stored_time: datetime | None, *, flip: bool = False
) -> bool:
    """The version order at the target: a record is older when its update time (a tombstone's
    delete time) is before the stored one; equal times are not older (the newer word wins).

    A ``flip`` (a tombstone over a live row, a live record over a soft-deleted one) is the
    ledger's call, not the times': OKKI deletes and restores companies keeping their old update
    time, and the reconcile sends the state it observed (see stages/reconcile.py, "the ledger
    yields"), so a restore may carry a time before the tombstone's."""
    new = naive_utc(incoming.update_time)
    return not flip and new is not None and stored_time is not None and new < stored_time


def is_tombstone(record: dict[str, Any]) -> bool:
    return record.get("deleted") is True and set(record) == {ID, "deleted"}


class BatchWriter:
    """One batch inside its transaction: lock, decide, write, and a verdict per record."""

    def __init__(self, target: SqlTarget, conn: Connection, table: sa.Table) -> None:
        self.target, self.conn, self.table = target, conn, table
        self.now = now_utc()

    def _locked(self, ids: list[str]) -> dict[str, Any]:
        t = self.table
        query = sa.select(t).where(t.c[ID].in_(ids))
        if self.target.dialect != "sqlite":
            query = query.with_for_update()
        return {str(r[ID]): r for r in self.conn.execute(query).mappings()}

    def write(
        self, records: list[dict[str, Any]], versions: list[RecordVersion]
    ) -> list[RecordResult]:
        ids = [str(r[ID]) for r in records]
        stored = self._locked(ids)
        results: list[RecordResult | None] = [None] * len(records)
        inserts: list[int] = []
        updates: list[int] = []
        for i, (record, version) in enumerate(zip(records, versions, strict=True)):
            verdict = self._decide(record, version, stored.get(ids[i]))
            if isinstance(verdict, RecordResult):
                results[i] = verdict
            else:
                (inserts if verdict == "insert" else updates).append(i)
        self._run(inserts, records, versions, results, insert=True)
        self._run(updates, records, versions, results, insert=False)
        assert all(r is not None for r in results)
        return [r for r in results if r is not None]

    def _decide(self, record: dict[str, Any], version: RecordVersion, row: Any) -> Any:
        rid = str(record[ID])
        if row is None:
            return RecordResult(rid, "unchanged") if is_tombstone(record) else "insert"
        flip = is_tombstone(record) != (row[DELETED_AT] is not None)
        if older_than_stored(version, row[UPDATE_TIME], flip=flip):
            return RecordResult(rid, "unchanged", "the target holds a newer version")
        deleted = row[DELETED_AT] is not None
        if is_tombstone(record):
            return RecordResult(rid, "unchanged") if deleted else "update"
        if not deleted and self.target.row_of(row).content_hash == content_hash(record):
            return RecordResult(rid, "unchanged")
        return "update"

    def _params(self, record: dict[str, Any], version: RecordVersion) -> dict[str, Any]:
        common = {
            UPDATE_TIME: naive_utc(version.update_time),
            HASH: version.content_hash,
            SYNCED_AT: self.now,
        }
        if is_tombstone(record):
            return {ID: str(record[ID]), **common, DELETED_AT: self.now}
        values = {k: record.get(k) for k in self.target.value_columns}
        return {ID: str(record[ID]), **values, **common, DELETED_AT: None}

    def _statement(self, keys: tuple[str, ...], insert: bool) -> Any:
        t = self.table
        if insert:
            return sa.insert(t)
        values: dict[str, Any] = {k: sa.bindparam(f"b{n}") for n, k in enumerate(keys) if k != ID}
        return sa.update(t).where(t.c[ID] == sa.bindparam("b_id")).values(values)

    def _run(
        self,
        indexes: list[int],
        records: list[dict[str, Any]],
        versions: list[RecordVersion],
        results: list[RecordResult | None],
        *,
        insert: bool,
    ) -> None:
        groups: dict[tuple[str, ...], list[tuple[int, dict[str, Any]]]] = {}
        for i in indexes:
            params = self._params(records[i], versions[i])
            groups.setdefault(tuple(params), []).append((i, params))
        for keys, rows in groups.items():
            stmt = self._statement(keys, insert)
            bound = [p if insert else self._bound(keys, p) for _, p in rows]
            try:
                with self.conn.begin_nested():
                    self.conn.execute(stmt, bound)
            except (sa.exc.IntegrityError, sa.exc.DataError):
                self._one_by_one(stmt, rows, bound, records, versions, results, insert=insert)
                continue
            for i, p in rows:
                results[i] = self._verdict(records[i], p, insert)

    @staticmethod
    def _bound(keys: tuple[str, ...], params: dict[str, Any]) -> dict[str, Any]:
        out = {f"b{n}": params[k] for n, k in enumerate(keys) if k != ID}
        return {**out, "b_id": params[ID]}

    @staticmethod
    def _verdict(record: dict[str, Any], params: dict[str, Any], insert: bool) -> RecordResult:
        status = "created" if insert else "deleted" if is_tombstone(record) else "updated"
        return RecordResult(str(params[ID]), status)

    def _one_by_one(
        self,
        stmt: Any,
        rows: list[tuple[int, dict[str, Any]]],
        bound: list[dict[str, Any]],
        records: list[dict[str, Any]],
        versions: list[RecordVersion],
        results: list[RecordResult | None],
        *,
        insert: bool,
    ) -> None:
        """The batch's statement failed: each row alone, in its own savepoint; a row that fails
        is rejected with the database's message, and a row another run inserted meanwhile is
        decided again against it."""
        for (i, params), one in zip(rows, bound, strict=True):
            try:
                with self.conn.begin_nested():
                    self.conn.execute(stmt, [one])
                results[i] = self._verdict(records[i], params, insert)
            except (sa.exc.IntegrityError, sa.exc.DataError) as e:
                row = self._locked([str(params[ID])]).get(str(params[ID])) if insert else None
                if row is not None:
                    self._again(i, records, versions, results, row)
                else:
                    results[i] = RecordResult(str(params[ID]), "rejected", self.target.scrub(e))

    def _again(
        self,
        i: int,
        records: list[dict[str, Any]],
        versions: list[RecordVersion],
        results: list[RecordResult | None],
        row: Any,
    ) -> None:
        verdict = self._decide(records[i], versions[i], row)
        if isinstance(verdict, RecordResult):
            results[i] = verdict
        else:
            self._run([i], records, versions, results, insert=False)
