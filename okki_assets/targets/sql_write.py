"""Writing one batch to a SQL target inside its transaction (see sql.py): lock the batch's rows,
decide per record, write in bulk, and fall back to one savepoint per row when the bulk statement
fails, so one bad row is that row's ``rejected``."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from okki_assets.mapping import content_hash
from okki_assets.targets.port import RecordResult, RecordVersion
from okki_assets.versions import NEVER_OBSERVED, Version, last_yield, supersedes

if TYPE_CHECKING:
    from okki_assets.targets.sql import SqlTarget

ID = "id"
UPDATE_TIME, OBSERVED_AT, YIELDED_AT, HASH, DELETED_AT, SYNCED_AT = (
    "_okki_update_time",
    "_okki_observed_at",
    "_okki_yielded_at",
    "_content_hash",
    "_deleted_at",
    "_synced_at",
)


NEVER = NEVER_OBSERVED.to_pydatetime()
#: The columns that hold the version written (moved on alone for an unchanged record).
VERSION_COLUMNS = (UPDATE_TIME, OBSERVED_AT, YIELDED_AT, HASH)


def now_utc() -> datetime:
    return datetime.now(tz=UTC).replace(tzinfo=None)


def naive_utc(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is None:
        return value
    return value.astimezone(UTC).replace(tzinfo=None)


def aware_utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def with_stored_yield(incoming: RecordVersion, row: Any) -> RecordVersion:
    """``incoming`` carrying the later of its yield and the stored row's (``_okki_yielded_at``):
    the yield the guard applies, and the one written with it, so the table keeps the last yield
    it heard of (a version observed before it stays superseded, whoever sends it)."""
    stored = None if row is None else aware_utc(row[YIELDED_AT])
    last = last_yield(aware_utc(incoming.yielded_at), stored)
    return (
        incoming if last == aware_utc(incoming.yielded_at) else replace(incoming, yielded_at=last)
    )


def older_than_stored(incoming: RecordVersion, row: Any, *, flip: bool) -> bool:
    """The target's guard: the stored row (``_okki_update_time``, ``_okki_observed_at``,
    ``_content_hash``) holds a version that ``incoming`` does not supersede (versions.py: a
    yield, of either side, first; then the version order; for a ``flip``, the later
    observation).

    A side without a version is not guarded (a record sent without one, a row written without
    one). A record sent without its observation (``observed_at`` None) is ordered by its time
    alone and its flips are the sender's call, as before observations reached the target; a
    row written before they did counts as never observed."""
    when, stored_when = aware_utc(incoming.update_time), aware_utc(row[UPDATE_TIME])
    if when is None or stored_when is None:
        return False
    if incoming.observed_at is None:
        return not flip and when < stored_when
    new = Version(when, aware_utc(incoming.observed_at) or NEVER, incoming.content_hash)
    old = Version(stored_when, aware_utc(row[OBSERVED_AT]) or NEVER, row[HASH] or "")
    yielded_at = last_yield(aware_utc(incoming.yielded_at), aware_utc(row[YIELDED_AT]))
    return not supersedes(new, old, flip=flip, yielded_at=yielded_at)


def _version_params(version: RecordVersion) -> dict[str, Any]:
    """The version columns' values for ``version`` (naive UTC times)."""
    return {
        UPDATE_TIME: naive_utc(version.update_time),
        OBSERVED_AT: naive_utc(version.observed_at),
        YIELDED_AT: naive_utc(version.yielded_at),
        HASH: version.content_hash,
    }


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
        versions = [with_stored_yield(v, stored.get(i)) for v, i in zip(versions, ids, strict=True)]
        results: list[RecordResult | None] = [None] * len(records)
        work: dict[str, list[int]] = {"insert": [], "update": [], "bump": []}
        for i, (record, version) in enumerate(zip(records, versions, strict=True)):
            verdict = self._decide(record, version, stored.get(ids[i]))
            if isinstance(verdict, RecordResult):
                results[i] = verdict
            else:
                work[verdict].append(i)
        self._run(work["insert"], records, versions, results, insert=True)
        self._run(work["update"], records, versions, results, insert=False)
        self._bump(work["bump"], records, versions, results)
        assert all(r is not None for r in results)
        return [r for r in results if r is not None]

    def _decide(self, record: dict[str, Any], version: RecordVersion, row: Any) -> Any:
        rid = str(record[ID])
        if row is None:
            return RecordResult(rid, "unchanged") if is_tombstone(record) else "insert"
        flip = is_tombstone(record) != (row[DELETED_AT] is not None)
        if older_than_stored(version, row, flip=flip):
            return RecordResult(rid, "unchanged", "the target holds a newer version")
        deleted = row[DELETED_AT] is not None
        if is_tombstone(record):
            return self._unchanged(rid, version, row) if deleted else "update"
        if not deleted and self.target.row_of(row).content_hash == content_hash(record):
            return self._unchanged(rid, version, row)
        return "update"

    @staticmethod
    def _unchanged(rid: str, version: RecordVersion, row: Any) -> Any:
        """The same content (or deletion) as the row: ``unchanged``, and ``bump`` when the
        version is a newer one (not older: the guard passed it) the row's version columns
        should move on to, so a version read before it no longer lands over the row."""
        given = _version_params(version)
        if version.update_time is None or version.observed_at is None:
            return RecordResult(rid, "unchanged")  # no version to move on to
        if all(given[c] == row[c] for c in VERSION_COLUMNS):
            return RecordResult(rid, "unchanged")
        return "bump"

    def _bump(
        self,
        indexes: list[int],
        records: list[dict[str, Any]],
        versions: list[RecordVersion],
        results: list[RecordResult | None],
    ) -> None:
        """Move the version columns of unchanged rows on; ``_synced_at`` and the values stay
        (a settled re-run sends the same versions, so it moves nothing)."""
        if not indexes:
            return
        t = self.table
        names = {c: f"v{n}" for n, c in enumerate(VERSION_COLUMNS)}
        stmt = (
            sa.update(t)
            .where(t.c[ID] == sa.bindparam("b_id"))
            .values({c: sa.bindparam(name) for c, name in names.items()})
        )
        ids = {i: str(records[i][ID]) for i in indexes}
        params = [
            {"b_id": ids[i], **{names[c]: v for c, v in _version_params(versions[i]).items()}}
            for i in indexes
        ]
        self.conn.execute(stmt, params)
        for i in indexes:
            results[i] = RecordResult(ids[i], "unchanged")

    def _params(self, record: dict[str, Any], version: RecordVersion) -> dict[str, Any]:
        common = {**_version_params(version), SYNCED_AT: self.now}
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
        versions[i] = with_stored_yield(versions[i], row)
        verdict = self._decide(records[i], versions[i], row)
        if isinstance(verdict, RecordResult):
            results[i] = verdict
        elif verdict == "bump":
            self._bump([i], records, versions, results)
        else:
            self._run([i], records, versions, results, insert=False)
