"""The SQL target adapter against real databases: PostgreSQL and MariaDB servers started for the
session (dbservers.py) and an SQLite file, through SQLAlchemy 2 Core.

Covered: created / unchanged / updated / deleted / restored verdicts and what the table holds
(soft deletes, ``_synced_at`` set only on a write); an older version never lands over a newer
one, also from a concurrent writer; a change sent after a yield replaces the version read
before it, which never comes back; a bad row (too long, NULL into NOT NULL) is that row's
``rejected`` with the database's message while the batch lands; schema drift (a new key adds a
column, a type conflict or a dropped key fails naming the column); a wrong password fails in
one line that never shows it; the read-back.
"""

from __future__ import annotations

import io
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from okki_assets.cli.demo_sql import print_table
from okki_assets.errors import TargetAuthError, TargetSchemaError, TargetUnreachable
from okki_assets.mapping import content_hash
from okki_assets.targets import RecordVersion, TargetSettings, open_target
from okki_assets.targets.sql import SqlTarget
from okki_assets_tests.dbservers import PASSWORD, DbServer


def rec(cid: int, name: str = "Acme", **extra: Any) -> dict[str, Any]:
    return {
        "id": str(cid),
        "fullName": name,
        "contactInfo": {"emailAddress": f"{cid}@example.com"},
        "ownerIds": [1, cid],
        **extra,
    }


def ver(
    day: int, record: dict[str, Any], seen: int | None = None, yielded: int | None = None
) -> RecordVersion:
    """Updated on March ``day``; observed on March ``seen``, its ledger row's last yield on
    March ``yielded`` (when given)."""
    observed, yield_at = (
        None if d is None else datetime(2026, 3, d, 9, tzinfo=UTC) for d in (seen, yielded)
    )
    when = datetime(2026, 3, day, 8, tzinfo=UTC)
    return RecordVersion(when, content_hash(record), observed, yield_at)


def target(url: str, table: str = "okki_companies") -> SqlTarget:
    t = open_target(url, TargetSettings(table=table))
    assert isinstance(t, SqlTarget)
    return t


def rows(url: str, table: str = "okki_companies") -> dict[str, dict[str, Any]]:
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://").replace(
        "mariadb://", "mariadb+pymysql://"))  # fmt: skip
    with engine.connect() as conn:
        got = conn.execute(sa.select(sa.Table(table, sa.MetaData(), autoload_with=conn)))
        got = got.mappings().all()
    engine.dispose()
    return {str(r["id"]): dict(r) for r in got}


def write(t: SqlTarget, *pairs: tuple[dict[str, Any], RecordVersion]) -> list[str]:
    results = t.write_batch([r for r, _ in pairs], "attempt", [v for _, v in pairs])
    return [r.status for r in results]


def test_verdicts_soft_deletes_and_synced_at(sql_url: str) -> None:
    t = target(sql_url)
    a, b = rec(1), rec(2, "Beta")
    assert write(t, (a, ver(1, a)), (b, ver(1, b))) == ["created", "created"]
    first = rows(sql_url)
    assert write(t, (a, ver(1, a)), (b, ver(1, b))) == ["unchanged", "unchanged"]
    assert rows(sql_url) == first  # nothing rewritten: _synced_at as it was
    a2, gone = rec(1, "Acme Ltd"), {"id": "2", "deleted": True}
    assert write(t, (a2, ver(2, a2)), (gone, ver(2, gone))) == ["updated", "deleted"]
    after = rows(sql_url)
    assert after["1"]["fullName"] == "Acme Ltd" and after["1"]["_deleted_at"] is None
    assert after["2"]["_deleted_at"] is not None and after["2"]["fullName"] == "Beta"
    assert after["2"]["_synced_at"] > first["2"]["_synced_at"]
    assert write(t, (gone, ver(2, gone))) == ["unchanged"]  # already deleted
    assert write(t, (b, ver(1, b))) == ["updated"]  # restored, keeping its old time
    assert rows(sql_url)["2"]["_deleted_at"] is None
    back = {r.id: r for r in t.read_back()}
    assert back["1"].content_hash == content_hash(a2) and not back["2"].deleted
    assert back["2"].values is not None and back["2"].values["contactInfo"] == b["contactInfo"]
    t.close()


def test_an_older_version_never_lands_over_a_newer_one(sql_url: str) -> None:
    t = target(sql_url)
    new, old = rec(1, "New"), rec(1, "Old")
    assert write(t, (new, ver(5, new))) == ["created"]
    result = t.write_batch([old], "attempt", [ver(4, old)])
    assert result[0].status == "unchanged" and result[0].error
    assert rows(sql_url)["1"]["fullName"] == "New"
    t.close()


def test_a_deletion_or_restore_goes_to_the_later_observation(sql_url: str) -> None:
    """OKKI deletes and restores keeping an old update time: over a row of the other liveness
    the later observation wins, so a late run's deletion never hides a restore seen since."""
    t = target(sql_url)
    live, gone = rec(1), {"id": "1", "deleted": True}
    assert write(t, (live, ver(1, live, seen=2))) == ["created"]
    assert write(t, (gone, ver(3, gone, seen=4))) == ["deleted"]
    assert write(t, (live, ver(1, live, seen=6))) == ["updated"]  # restored, its old time
    late = t.write_batch([gone], "attempt", [ver(3, gone, seen=4)])  # a late run's deletion
    assert late[0].status == "unchanged" and late[0].error
    row = rows(sql_url)["1"]
    assert row["_deleted_at"] is None and row["_okki_update_time"] == datetime(2026, 3, 1, 8)
    assert write(t, (gone, ver(3, gone, seen=7))) == ["deleted"]  # deleted again, seen later
    assert write(t, (live, ver(1, live, seen=5))) == ["unchanged"]  # a restore seen before
    assert rows(sql_url)["1"]["_deleted_at"] is not None
    t.close()


def test_on_equal_times_the_later_observation_wins(sql_url: str) -> None:
    """A silent edit (OKKI keeps the update time) read later is not overwritten by the older
    content read earlier by a slower run."""
    t = target(sql_url)
    before, after = rec(1, "Before"), rec(1, "After")
    assert write(t, (before, ver(1, before, seen=2))) == ["created"]
    assert write(t, (after, ver(1, after, seen=5))) == ["updated"]
    assert write(t, (before, ver(1, before, seen=3))) == ["unchanged"]
    row = rows(sql_url)["1"]
    assert row["fullName"] == "After" and row["_okki_observed_at"] == datetime(2026, 3, 5, 9)
    t.close()


def test_a_change_sent_after_a_yield_replaces_the_version_read_before_it(sql_url: str) -> None:
    """OKKI moved a live company's update time back with a change: the ledger yielded (March 7)
    and sends the change with the earlier time. A late run's version read before the yield does
    not come back over it, even after a later version that carries no yield (another ledger's)."""
    t = target(sql_url)
    before, after, later = rec(1, "Before"), rec(1, "After"), rec(1, "Later")
    assert write(t, (before, ver(5, before, seen=6))) == ["created"]
    assert write(t, (after, ver(2, after, seen=8, yielded=7))) == ["updated"]
    late = t.write_batch([before], "attempt", [ver(5, before, seen=6)])
    assert late[0].status == "unchanged" and late[0].error
    assert rows(sql_url)["1"]["fullName"] == "After"
    assert write(t, (later, ver(3, later, seen=9))) == ["updated"]
    assert write(t, (before, ver(5, before, seen=6))) == ["unchanged"]
    row = rows(sql_url)["1"]
    assert row["fullName"] == "Later" and row["_okki_yielded_at"] == datetime(2026, 3, 7, 9)
    t.close()


def test_an_unchanged_record_moves_the_stored_version_on(sql_url: str) -> None:
    """A newer version of the same content (another deployment's read) is not written, but the
    row's version columns move on to it: a version read between the two, with other content,
    no longer lands over it. ``_synced_at`` stays as it was."""
    t = target(sql_url)
    same, between = rec(1, "Same"), rec(1, "Between")
    assert write(t, (same, ver(1, same, seen=2))) == ["created"]
    first = rows(sql_url)["1"]
    assert write(t, (same, ver(5, same, seen=6, yielded=4))) == ["unchanged"]
    late = t.write_batch([between], "attempt", [ver(3, between, seen=4)])
    assert late[0].status == "unchanged" and late[0].error
    row = rows(sql_url)["1"]
    assert row["fullName"] == "Same" and row["_synced_at"] == first["_synced_at"]
    assert (row["_okki_update_time"], row["_okki_observed_at"], row["_okki_yielded_at"]) == (
        datetime(2026, 3, 5, 8),
        datetime(2026, 3, 6, 9),
        datetime(2026, 3, 4, 9),
    )
    gone = {"id": "1", "deleted": True}
    assert write(t, (gone, ver(7, gone, seen=8))) == ["deleted"]
    assert write(t, (gone, ver(7, gone, seen=10))) == ["unchanged"]  # read again, later
    assert write(t, (same, ver(5, same, seen=9))) == ["unchanged"]  # a restore read before it
    assert rows(sql_url)["1"]["_deleted_at"] is not None
    t.close()


def test_a_table_from_before_observations_gains_the_columns(sql_url: str) -> None:
    t = target(sql_url)
    a = rec(1, "Old")
    write(t, (a, ver(1, a)))
    t.close()
    engine = sa.create_engine(t._engine.url)
    with engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE okki_companies DROP COLUMN _okki_observed_at")
        conn.exec_driver_sql("ALTER TABLE okki_companies DROP COLUMN _okki_yielded_at")
    engine.dispose()
    t = target(sql_url)
    assert [r.id for r in t.read_back()] == ["1"]  # read as it is
    b = rec(1, "New")
    assert write(t, (b, ver(1, b, seen=2))) == ["updated"]  # observed: newer than never
    row = rows(sql_url)["1"]
    assert row["fullName"] == "New" and row["_okki_observed_at"] == datetime(2026, 3, 2, 9)
    assert row["_okki_yielded_at"] is None
    t.close()


@pytest.mark.parametrize("scheme", ["mysql", "mysql+pymysql"])
def test_a_mysql_url_works_against_mariadb(mariadb_server: DbServer, scheme: str) -> None:
    """Debian has no MySQL server: MySQL URLs are tested against MariaDB."""
    url = mariadb_server.new_database().replace("mariadb://", f"{scheme}://", 1)
    t = target(url)
    t.check()
    a = rec(1, "上海贸易 🚀")
    assert write(t, (a, ver(1, a, seen=1))) == ["created"]
    assert write(t, (a, ver(1, a, seen=1))) == ["unchanged"]
    (row,) = t.read_back()
    assert row.content_hash == content_hash(a) and not row.deleted
    t.close()


def test_concurrent_writers_leave_the_newest_version(sql_url: str) -> None:
    """Two writers race over the same 200 ids, one with day-1 and one with day-9 versions:
    whatever the interleaving, every row ends at day 9."""
    setup = target(sql_url)
    write(setup, (rec(0), ver(1, rec(0))))  # the table exists before the race
    setup.close()
    errors: list[BaseException] = []

    def run(day: int, name: str) -> None:
        t = target(sql_url)
        try:
            for start in range(1, 201, 50):
                batch = [rec(i, name) for i in range(start, start + 50)]
                t.write_batch(batch, "a", [ver(day, r) for r in batch])
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)
        finally:
            t.close()

    threads = [threading.Thread(target=run, args=a) for a in ((1, "old"), (9, "new"))]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    got = rows(sql_url)
    assert {got[str(i)]["fullName"] for i in range(1, 201)} == {"new"}


def test_one_bad_row_is_rejected_and_the_batch_lands(sql_url: str) -> None:
    t = target(sql_url)
    a = rec(1)
    write(t, (a, ver(1, a)))
    engine = sa.create_engine(t._engine.url)
    with engine.begin() as conn:  # the user's own constraint on the table
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql("DROP TABLE okki_companies")
            conn.exec_driver_sql(
                'CREATE TABLE okki_companies (id VARCHAR(255) PRIMARY KEY, "fullName" TEXT NOT'
                ' NULL, "contactInfo" JSON, "ownerIds" JSON, _okki_update_time DATETIME,'
                " _content_hash VARCHAR(64), _deleted_at DATETIME, _synced_at DATETIME)"
            )
        elif engine.dialect.name == "postgresql":
            conn.exec_driver_sql('ALTER TABLE okki_companies ALTER "fullName" TYPE varchar(10)')
            conn.exec_driver_sql('ALTER TABLE okki_companies ALTER "fullName" SET NOT NULL')
        else:
            conn.exec_driver_sql("ALTER TABLE okki_companies MODIFY fullName varchar(10) NOT NULL")
    engine.dispose()
    t.close()
    t = target(sql_url)
    good, null = rec(2, "Fine"), rec(3, None)  # type: ignore[arg-type]
    batch = [good, null]
    if t.dialect != "sqlite":
        batch.append(rec(4, "A name far too long for ten"))
    results = t.write_batch(batch, "a", [ver(2, r) for r in batch])
    assert [r.status for r in results] == ["created"] + ["rejected"] * (len(batch) - 1)
    assert all(r.error and PASSWORD not in r.error for r in results[1:])
    assert set(rows(sql_url)) >= {"2"} and "3" not in rows(sql_url)
    t.close()


def test_schema_drift(sql_url: str) -> None:
    t = target(sql_url, table="drift")
    a = rec(1)
    write(t, (a, ver(1, a)))
    wider = rec(2, segment="SMB")  # the mapping gained a key: a nullable column
    assert write(t, (wider, ver(1, wider))) == ["created"]
    got = rows(sql_url, "drift")
    assert got["2"]["segment"] == "SMB" and got["1"]["segment"] is None
    clash = rec(3, segment=7)
    with pytest.raises(TargetSchemaError, match="segment"):
        write(t, (clash, ver(1, clash)))
    narrower = {k: v for k, v in rec(4).items()}  # the mapping dropped "segment"
    with pytest.raises(TargetSchemaError, match="segment"):
        write(t, (narrower, ver(1, narrower)))
    assert "segment" in rows(sql_url, "drift")["1"]  # columns are never dropped
    t.close()


@pytest.mark.parametrize("sql_url", ["postgresql", "mariadb"], indirect=True)  # SQLite: none
def test_a_wrong_password_fails_in_one_line_without_showing_it(sql_url: str) -> None:
    bad = sql_url.replace(PASSWORD, "wrong-pw-Zx9")
    t = target(bad)
    with pytest.raises((TargetAuthError, TargetUnreachable)) as info:
        t.check()
    text = str(info.value)
    assert "\n" not in text and "wrong-pw-Zx9" not in text and "***" in text
    t.close()


def test_any_unicode_round_trips_even_on_a_latin1_server(sql_url: str) -> None:
    """The MariaDB server of the tests defaults to latin1 (as a bare install does): the table is
    created utf8mb4 and the connection speaks utf8mb4, so Chinese names and emoji land."""
    t = target(sql_url)
    a = rec(1, "上海贸易有限公司 🚀", contactInfo={"contactName": "王小明"})
    assert write(t, (a, ver(1, a))) == ["created"]
    (row,) = t.read_back()
    assert row.content_hash == content_hash(a)
    t.close()


def test_the_demo_prints_what_the_table_holds(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'demo.sqlite'}"
    t = target(url)
    a, gone = rec(1, "Acme"), {"id": "2", "deleted": True}
    write(t, (a, ver(1, a)), (rec(2), ver(1, rec(2))))
    write(t, (gone, ver(2, gone)))
    t.close()
    out = io.StringIO()
    print_table(url, out)
    text = out.getvalue()
    assert "1 live rows, 1 soft-deleted" in text and "Acme" in text and "_synced_at" in text


def test_the_sql_bench_runs_small(
    postgresql_server: DbServer, capsys: pytest.CaptureFixture[str]
) -> None:
    from benchmarks.bench_sql import main

    assert main(["--rows", "1500", "--url", postgresql_server.new_database()]) == 0
    out = capsys.readouterr().out
    assert "new rows: 1,500 rows" in out and "{'created': 1500}" in out
    assert "{'unchanged': 1500}" in out and "audit: 1,500 rows read back" in out
    assert PASSWORD not in out
