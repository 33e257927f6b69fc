"""The sync windows: one daily partition per China Standard Time day.

A partition key ``2026-11-20`` is the window [2026-11-20 00:00, 2026-11-21 00:00) Asia/Shanghai.
Today's partition exists (``end_offset=1``): it is the window in progress, synced intraday.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import dagster as dg

from okki_assets.okki_time import CHINA_TZ, TIMEZONE

DEFAULT_SYNC_START = "2026-01-01"
# The whole account's copy (okki_reconcile): its own partition_key in the stage tables, and a
# window that holds every real update_time (the unset 1970-01-01 00:00:00 stays outside).
ACCOUNT_KEY = "account"
ACCOUNT_WINDOW = (
    datetime(1970, 1, 2, tzinfo=CHINA_TZ),
    datetime(2200, 1, 1, tzinfo=CHINA_TZ),
)


def build_sync_partitions(start_date: str = DEFAULT_SYNC_START) -> dg.DailyPartitionsDefinition:
    """Daily windows in China time from ``start_date`` (YYYY-MM-DD) up to and including today."""
    try:
        date.fromisoformat(start_date)
    except ValueError as e:
        raise ValueError(f"OKKI_SYNC_START must be a date YYYY-MM-DD, got {start_date!r}") from e
    return dg.DailyPartitionsDefinition(start_date=start_date, timezone=TIMEZONE, end_offset=1)


def window_for_key(partition_key: str) -> tuple[datetime, datetime]:
    """The tz-aware [start, end) of a partition key's window (the account's: every time)."""
    if partition_key == ACCOUNT_KEY:
        return ACCOUNT_WINDOW
    day = date.fromisoformat(partition_key)
    start = datetime(day.year, day.month, day.day, tzinfo=CHINA_TZ)
    return start, start + timedelta(days=1)


def today_key(now: datetime | None = None) -> str:
    """The key of the window in progress, in China time."""
    now = now or datetime.now(tz=CHINA_TZ)
    return now.astimezone(CHINA_TZ).date().isoformat()
