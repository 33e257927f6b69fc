"""``benchmarks.bench_sql``: rows per second into PostgreSQL, and the target audit's cost.

Writes ``--rows`` mapped records (the built-in mapping's shape) through the SQL adapter in
batches of ``--batch`` (500, the default batch size) into a fresh table, as new rows, then once
more unchanged (each row read, hashed and left alone), reporting rows per second and the
process's resident memory after each quarter (flat memory: the quarters stay level). Then the
audit's read-back and comparison (okki_assets/stages/audit.py: ``read_target`` + ``classify``)
over the whole table, with its time and the memory it added.

The server is a throwaway PostgreSQL started like the tests' (okki_assets_tests/dbservers.py),
or ``--url`` for one of yours (a fresh table ``bench_sql_<n>`` is created and dropped).

    python -m benchmarks.bench_sql --rows 200000
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import psutil
import sqlalchemy as sa

from okki_assets.mapping import content_hash
from okki_assets.stages.audit import classify, read_target
from okki_assets.targets import RecordVersion, TargetSettings, open_target
from okki_assets.targets.sql import SqlTarget

GOAL_ROWS_PER_SECOND = 5_000
START = datetime(2026, 1, 1, tzinfo=UTC)


def record(i: int) -> dict[str, Any]:
    return {
        "id": str(10_000_000 + i),
        "fullName": f"Company {i} Trading Co., Ltd.",
        "shortName": f"C{i}",
        "serialNumber": f"SN{i:08d}",
        "contactInfo": {
            "contactName": f"Contact {i}",
            "emailAddress": f"buyer{i}@example.com",
            "phoneNumber": f"+86 21 5{i:07d}",
        },
        "country": "CN",
        "ownerIds": [1001, 1002 + i % 7],
        "createdAt": "2025-03-01T09:15:00+08:00",
        "updatedAt": "2026-01-01T09:15:00+08:00",
        "source": "okki",
    }


def batches(rows: int, size: int) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, rows, size):
        yield [record(i) for i in range(start, min(start + size, rows))]


def rss_mb() -> float:
    return psutil.Process().memory_info().rss / 1e6


def write_all(target: SqlTarget, rows: int, size: int, label: str) -> None:
    started, written, marks = time.perf_counter(), 0, []
    statuses: dict[str, int] = {}
    for batch in batches(rows, size):
        versions = [
            RecordVersion(START + timedelta(seconds=int(r["id"]) % 86_400), content_hash(r))
            for r in batch
        ]
        for result in target.write_batch(batch, "bench", versions):
            statuses[result.status] = statuses.get(result.status, 0) + 1
        written += len(batch)
        if written % max(rows // 4, 1) < size:
            marks.append(f"{rss_mb():.0f}")
    seconds = time.perf_counter() - started
    rate = rows / seconds
    verdict = "meets" if rate >= GOAL_ROWS_PER_SECOND else "MISSES"
    print(
        f"{label}: {rows:,} rows in {seconds:.1f}s = {rate:,.0f} rows/s ({verdict} the goal of"
        f" {GOAL_ROWS_PER_SECOND:,}); {statuses}; RSS MB after each quarter: {', '.join(marks)}"
    )


def audit(target: SqlTarget, rows: int) -> None:
    before = rss_mb()
    started = time.perf_counter()
    found = read_target(target)
    ids = [str(10_000_000 + i) for i in range(rows)]
    expected = pd.DataFrame(
        {
            "company_id": ids,
            "content_hash": [content_hash(record(i)) for i in range(rows)],
            "update_time": pd.Timestamp(START),
            "status": "created",
        }
    )
    problems = classify(expected, found)
    seconds = time.perf_counter() - started
    print(
        f"audit: {len(found):,} rows read back and compared in {seconds:.1f}s"
        f" ({len(found) / seconds:,.0f} rows/s); {len(problems)} offending;"
        f" RSS {before:.0f} -> {rss_mb():.0f} MB"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--url", default="", help="a PostgreSQL URL (default: a throwaway one)")
    args = parser.parse_args(argv)
    server = None
    url = args.url
    if not url:
        from okki_assets_tests import dbservers

        server = dbservers.start_postgres()
        url = server.new_database()
    table = f"bench_sql_{uuid.uuid4().hex[:8]}"
    target = open_target(url, TargetSettings(table=table))
    assert isinstance(target, SqlTarget)
    try:
        print(f"PostgreSQL at {target.url_shown}, table {table}, batches of {args.batch}")
        write_all(target, args.rows, args.batch, "new rows")
        write_all(target, args.rows, args.batch, "unchanged rows")
        audit(target, args.rows)
    finally:
        engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
        with engine.begin() as conn:
            sa.Table(table, sa.MetaData()).drop(conn, checkfirst=True)
        engine.dispose()
        target.close()
        if server is not None:
            from okki_assets_tests import dbservers

            dbservers.stop_postgres(server)
    return 0


if __name__ == "__main__":
    sys.exit(main())
