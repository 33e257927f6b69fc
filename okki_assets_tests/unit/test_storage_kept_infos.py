"""Kept info payloads (``storage.kept_infos``) against a DuckDB file in a temp folder.

Covers: a kept payload outlives the connection that wrote it and is found only for the list
version it was fetched for; pruning drops a partition's superseded payloads and everything past
the age bound (other partitions' young ones stay); a staged row resumed from a kept payload
publishes with that payload, and publishing drops the partition's kept payloads; a resumed row
whose kept payload vanished takes the published copy of the same version instead.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from okki_assets import storage
from okki_assets_tests.factories import okki_list_record

DAY = "2026-11-20"
OTHER_DAY = "2026-11-19"
NOW = datetime(2026, 11, 21, 3, 0, tzinfo=UTC)
T1 = "2026-11-20 09:00:00"
T2 = "2026-11-20 15:30:00"


@pytest.fixture
def database(tmp_path: Path) -> Path:
    return tmp_path / "okki.duckdb"


@contextmanager
def connect(database: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """A fresh connection each time, as the pipeline opens one per unit of work."""
    conn = duckdb.connect(str(database))
    try:
        storage.ensure_schema(conn)
        yield conn
    finally:
        conn.close()


def info(company_id: str, name: str) -> str:
    return json.dumps({"company_id": company_id, "name": name})


def kept(
    company_id: str, list_time: str, name: str, update_time: str | None = None
) -> storage.KeptInfo:
    return storage.KeptInfo(company_id, list_time, update_time or list_time, info(company_id, name))


def raw_row(
    company_id: str,
    list_time: str,
    *,
    info_json: str | None = None,
    resumed_from: str | None = None,
) -> storage.RawRow:
    list_json = json.dumps(okki_list_record(company_id, update_time=list_time))
    return storage.RawRow(
        DAY, company_id, list_time, list_json, info_json, resumed_from=resumed_from
    )


def published(database: Path, partition_key: str = DAY) -> dict[str, tuple[str, str | None]]:
    with connect(database) as conn:
        rows = conn.execute(
            "select company_id, update_time, info_json from raw_companies where partition_key = ?",
            [partition_key],
        ).fetchall()
    return {cid: (ut, json.loads(ij)["name"] if ij else None) for cid, ut, ij in rows}


def kept_rows(database: Path) -> list[tuple[str, str, str]]:
    with connect(database) as conn:
        return conn.execute(
            "select partition_key, company_id, list_update_time from kept_infos order by all"
        ).fetchall()


def test_a_kept_payload_is_found_only_for_the_version_it_was_fetched_for(database: Path) -> None:
    with connect(database) as conn:
        storage.keep_infos(conn, DAY, "run-1", [kept("1", T1, "a"), kept("2", T1, "b")], NOW)
        storage.keep_infos(conn, DAY, "run-1", [kept("3", T1, "c", update_time=T2)], NOW)
    # The writing connection is gone (as after a SIGKILL): what it kept is still there.
    with connect(database) as conn:
        found = storage.kept_info_times(conn, {"1": T1, "2": T2, "3": T1, "4": T1})
    # 2 changed since its info was fetched; 4 never had one; 3's info was newer than its row.
    assert found == {"1": T1, "3": T2}


def test_pruning_drops_superseded_and_old_payloads_only(database: Path) -> None:
    old = NOW - timedelta(days=4)
    with connect(database) as conn:
        storage.keep_infos(conn, DAY, "run-1", [kept("1", T1, "a"), kept("2", T1, "b")], NOW)
        storage.keep_infos(conn, DAY, "run-0", [kept("5", T1, "e")], old)
        storage.keep_infos(conn, OTHER_DAY, "run-2", [kept("6", T1, "f")], NOW)
        storage.keep_infos(conn, OTHER_DAY, "run-0", [kept("7", T1, "g")], old)
        storage.stage_raw(conn, "run-0", [raw_row("8", T1)], old)  # a killed run's leftovers
        storage.stage_raw(conn, "run-3", [raw_row("9", T1)], NOW)
        # The window now lists 1 unchanged, 2 in a newer version, 5 unchanged but old.
        dropped = storage.prune_kept_infos(
            conn, DAY, {"1": T1, "2": T2, "5": T1}, NOW - timedelta(days=3)
        )
        staged = conn.execute("select run_id from raw_staging").fetchall()
    assert dropped == 3
    assert kept_rows(database) == [(OTHER_DAY, "6", T1), (DAY, "1", T1)]
    assert staged == [("run-3",)]


def test_resumed_rows_publish_their_kept_payload_and_publishing_drops_the_kept_ones(
    database: Path,
) -> None:
    with connect(database) as conn:
        storage.keep_infos(conn, DAY, "killed", [kept("1", T1, "a", update_time=T2)], NOW)
        storage.keep_infos(conn, DAY, "killed", [kept("2", T1, "old b")], NOW)
        storage.keep_infos(conn, OTHER_DAY, "other", [kept("6", T1, "f")], NOW)
    with connect(database) as conn:
        storage.stage_raw(
            conn,
            "resumed",
            [
                raw_row("1", T2, resumed_from=T1),
                raw_row("2", T2, info_json=info("2", "new b")),  # fetched again: it changed
            ],
            NOW,
        )
        assert kept_rows(database) != []
        assert storage.publish_raw(conn, "resumed", [DAY]) == 2
    assert published(database) == {"1": (T2, "a"), "2": (T2, "new b")}
    assert kept_rows(database) == [(OTHER_DAY, "6", T1)]


def test_a_resumed_row_whose_kept_payload_vanished_takes_the_published_copy(
    database: Path,
) -> None:
    """Another pull of the window published the same version (and dropped the kept payload)
    between this pull's look-up and its staging."""
    with connect(database) as conn:
        storage.keep_infos(conn, DAY, "killed", [kept("1", T1, "a")], NOW)
        storage.stage_raw(conn, "other", [raw_row("1", T1, info_json=info("1", "a"))], NOW)
        storage.publish_raw(conn, "other", [DAY])
        assert kept_rows(database) == []
        storage.stage_raw(conn, "late", [raw_row("1", T1, resumed_from=T1)], NOW)
        storage.publish_raw(conn, "late", [DAY])
    assert published(database) == {"1": (T1, "a")}
