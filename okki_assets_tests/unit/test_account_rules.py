"""The reconcile's rules, on an in-memory DuckDB and plain frames (no sockets).

- One cleaned copy per company between the account's and the windows': the partition just
  cleaned takes a company from the other side when it holds a newer or equal version, and
  gives it up when the other side holds a strictly newer one (``settle_account_copies``).
- The ledger yields to an account observation that says the opposite of its last word (a
  restore or deletion that kept an old update_time), only when acknowledged before it.
- ``compare`` classifies the account list against the ledger; the rolling refresh slices the
  account evenly and catches whatever was read too long ago.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import duckdb
import pandas as pd
import pytest

from okki_assets import storage
from okki_assets.account_state import compare, due_for_refresh, refresh_slice
from okki_assets.mapping import content_hash, tombstone
from okki_assets.partitions import ACCOUNT_KEY

AT = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
DAY = "2026-11-30"


@pytest.fixture
def conn() -> Iterator[duckdb.DuckDBPyConnection]:
    with duckdb.connect(":memory:") as connection:
        storage.ensure_schema(connection)
        yield connection


def add_cleaned(conn: duckdb.DuckDBPyConnection, key: str, cid: int, hour: int) -> None:
    conn.execute(
        "insert into cleaned_companies (partition_key, company_id, name, owner_ids, update_time,"
        " email_missing, email_invalid, phone_missing, phone_invalid, contact_missing,"
        " country_missing, country_invalid, short_name_missing, run_id)"
        " values (?, ?, 'n', [], ?, false, false, false, false, false, false, false, false, 'r')",
        [key, cid, datetime(2026, 11, 30, hour, tzinfo=UTC)],
    )


def holders(conn: duckdb.DuckDBPyConnection) -> dict[int, set[str]]:
    out: dict[int, set[str]] = {}
    for key, cid in conn.execute(
        "select partition_key, company_id from cleaned_companies"
    ).fetchall():
        out.setdefault(int(cid), set()).add(key)
    return out


@pytest.mark.parametrize(
    ("cleaned", "window_hour", "account_hour", "holder"),
    [
        (ACCOUNT_KEY, 5, 5, ACCOUNT_KEY),  # equal versions: the one just cleaned keeps it
        (DAY, 5, 5, DAY),
        (ACCOUNT_KEY, 4, 5, ACCOUNT_KEY),  # the newer version keeps it, whoever cleaned
        (DAY, 4, 5, ACCOUNT_KEY),
        (ACCOUNT_KEY, 6, 5, DAY),
        (DAY, 6, 5, DAY),
    ],
)
def test_one_cleaned_copy_between_account_and_windows(
    conn: duckdb.DuckDBPyConnection, cleaned: str, window_hour: int, account_hour: int, holder: str
) -> None:
    add_cleaned(conn, DAY, 1, window_hour)
    add_cleaned(conn, ACCOUNT_KEY, 1, account_hour)
    add_cleaned(conn, DAY, 2, 3)  # only in the window: untouched
    add_cleaned(conn, ACCOUNT_KEY, 3, 3)  # only in the account: untouched
    storage.settle_account_copies(conn, cleaned, ACCOUNT_KEY)
    assert holders(conn) == {1: {holder}, 2: {DAY}, 3: {ACCOUNT_KEY}}


def test_two_windows_are_not_settled_against_each_other(conn: duckdb.DuckDBPyConnection) -> None:
    add_cleaned(conn, DAY, 1, 5)
    add_cleaned(conn, "2026-11-29", 1, 4)
    storage.settle_account_copies(conn, DAY, ACCOUNT_KEY)
    assert holders(conn) == {1: {DAY, "2026-11-29"}}


def ledger_row(
    conn: duckdb.DuckDBPyConnection, cid: int, status: str, hour: int, observed: datetime
) -> None:
    """A ledger row holding a tombstone (status deleted, or ``tomb:<status>``) or a live
    record, version ``hour`` o'clock, observed at ``observed``."""
    tomb = status == "deleted" or status.startswith("tomb:")
    conn.execute(
        "insert into load_ledger (company_id, partition_key, content_hash, update_time, status,"
        " observed_at) values (?, 'k', ?, ?, ?, ?)",
        [
            cid,
            content_hash(tombstone(cid)) if tomb else "h",
            datetime(2026, 11, 30, hour, tzinfo=UTC),
            status.removeprefix("tomb:"),
            observed,
        ],
    )


def test_the_ledger_yields_only_to_a_later_observation_of_the_opposite(
    conn: duckdb.DuckDBPyConnection,
) -> None:
    before, after = AT - timedelta(hours=1), AT + timedelta(hours=1)
    ledger_row(conn, 1, "deleted", 9, before)  # restored with an older time: yields
    ledger_row(conn, 2, "created", 9, before)  # deleted keeping an older time: yields
    ledger_row(conn, 3, "deleted", 9, after)  # observed after the account: stands
    ledger_row(conn, 4, "created", 9, before)  # observed live (no flip): stands
    # Tombstones that did not apply are the ledger's last word all the same: they yield.
    ledger_row(conn, 5, "tomb:unchanged", 9, before)
    ledger_row(conn, 6, "tomb:rejected", 9, before)
    ledger_row(conn, 7, "tomb:sending", 9, before)
    ledger_row(conn, 8, "created", 9, before)  # live, OKKI moved its time back: yields
    ids = [1, 2, 3, 4, 5, 6, 7, 8]
    disagreements = pd.DataFrame(
        {
            "company_id": pd.Series(ids, dtype="int64"),
            "update_time": [datetime(2026, 11, 30, 2, tzinfo=UTC)] * len(ids),
            "deleted": [False, True, False, False, False, False, False, False],
            "moved_back": [False] * 7 + [True],
            "tombstone_hash": [content_hash(tombstone(c)) for c in ids],
        }
    )
    assert storage.yield_ledger_to_observation(conn, disagreements, AT) == 6
    hours = dict(
        conn.execute(
            "select company_id, hour(update_time at time zone 'UTC') from load_ledger"
        ).fetchall()
    )
    assert hours == {1: 2, 2: 2, 3: 9, 4: 9, 5: 2, 6: 2, 7: 2, 8: 2}
    # The yield keeps the observation's moment: a version read before it is superseded.
    yielded = conn.execute(
        "select company_id from load_ledger where yielded_at = ? order by company_id", [AT]
    ).fetchall()
    assert [c for (c,) in yielded] == [1, 2, 5, 6, 7, 8]


def test_compare_classifies_the_account_against_the_ledger() -> None:
    t = "2026-01-05 10:00:00"
    snapshot = pd.DataFrame(
        {
            "company_id": ["1", "2", "3", "4", "5", "6", "7", "8", "abc"],
            "update_time": [t, t, t, t, t, t, "2020-01-01 00:00:00", t, t],
            "removed": [False, False, False, False, False, True, True, False, False],
        }
    )
    when = pd.Timestamp(t, tz="Asia/Shanghai")
    ledger = pd.DataFrame(
        {
            "company_id": pd.Series([2, 3, 4, 6, 7], dtype="int64"),
            "content_hash": ["x", "x", content_hash(tombstone(4)), "x", content_hash(tombstone(7))],
            "update_time": [when, when - pd.Timedelta(seconds=1), when, when, when],
            "status": ["updated", "created", "unchanged", "created", "deleted"],
        }
    )
    state = compare(snapshot, ledger, known_bad={("8", t)})
    assert state.at_target == ["2"]
    assert state.missing == ["1", "5"]
    assert state.stale == ["3"]
    assert state.restored == ["4"]  # its tombstone acknowledged as unchanged
    assert state.deleted_but_present == ["6"]  # 7's tombstone is there, whatever its time
    assert state.known_bad == ["8"] and state.malformed == 1
    assert (state.companies_in_okki, state.deleted_in_okki) == (7, 2)
    assert not state.in_sync


def test_compare_tells_a_time_moved_back_and_other_content_apart_from_in_sync() -> None:
    t = "2026-01-05 10:00:00"
    when = pd.Timestamp(t, tz="Asia/Shanghai")
    listed = pd.DataFrame(
        {"company_id": ["1", "2", "3", "4"], "update_time": [t] * 4, "removed": [False] * 4}
    )
    seen = pd.Timestamp(AT)
    ledger = pd.DataFrame(
        {
            "company_id": pd.Series([1, 2, 3, 4], dtype="int64"),
            "content_hash": ["x", "x", "x", "x"],
            # 1, 2: the ledger is newer than the list; 1 was read before it, 2 since.
            "update_time": [when + pd.Timedelta(hours=1)] * 2 + [when] * 2,
            "observed_at": [seen - pd.Timedelta(hours=1), seen, seen, seen],
            "status": ["updated"] * 4,
        }
    )
    fresh = pd.DataFrame(
        {"company_id": ["3", "4"], "update_time": [when] * 2, "content_hash": ["x", "y"]}
    )
    state = compare(listed, ledger, set(), observed_at=AT, fresh=fresh)
    assert state.moved_back == ["1"]  # only a read since the list tells
    assert state.different == ["4"]  # read since: OKKI holds other content than the target
    assert state.at_target == ["2", "3"]
    assert not state.in_sync


def test_the_refresh_slices_the_account_evenly_and_catches_the_overdue() -> None:
    ids = [str(3_000_000_000_000 + 7919 * i) for i in range(7000)]
    now = datetime(2026, 12, 2, 4, 0, tzinfo=UTC)
    fresh = dict.fromkeys(ids, now - timedelta(days=1))
    week = [set(due_for_refresh(ids, fresh, 7, now + timedelta(days=d))) for d in range(7)]
    assert set().union(*week) == set(ids)  # everyone once a week
    assert sum(len(s) for s in week) == len(ids)  # and only once
    assert all(700 <= len(s) <= 1300 for s in week)  # about a seventh each day
    overdue = {**fresh, ids[0]: now - timedelta(days=8)}
    slice_ = set(due_for_refresh(ids, fresh, 7, now))
    assert set(due_for_refresh(ids, overdue, 7, now)) == slice_ | {ids[0]}
    assert set(due_for_refresh(ids, {}, 7, now)) == set(ids)  # never read: all due
    assert due_for_refresh(ids, fresh, 1, now) == ids
    day = date(2026, 12, 2)
    assert refresh_slice(ids[5], 7, day) == (zlib.crc32(ids[5].encode()) % 7 == day.toordinal() % 7)
