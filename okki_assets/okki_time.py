"""OKKI's clock: China Standard Time, and the text OKKI writes a time as.

OKKI writes every time as ``YYYY-MM-DD HH:MM:SS`` (a few as a bare ``YYYY-MM-DD``) in China
time, with no zone, and ``1970-01-01 00:00:00`` for a time never set. The sync windows are
China-time days too (partitions.py). Everything in the sync that speaks of OKKI's zone or
time text imports it from here; the simulator keeps its own copy (simulator/clock.py), so that a
bug here is caught by it rather than shared with it.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pandas as pd

#: The zone's name, for Dagster, pandas and DuckDB (UTC+8 all year).
TIMEZONE = "Asia/Shanghai"
CHINA_TZ = ZoneInfo(TIMEZONE)

OKKI_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
OKKI_DATE_FORMAT = "%Y-%m-%d"
#: The shapes a time may come in, the usual one first.
OKKI_TIME_FORMATS = (OKKI_TIME_FORMAT, OKKI_DATE_FORMAT)
#: OKKI's "never set", in either shape.
UNSET_TIME = "1970-01-01 00:00:00"
UNSET_DATE = "1970-01-01"


def parse_okki_time(value: object) -> datetime | None:
    """An OKKI time string (surrounding blanks allowed) as a tz-aware China time, or None when
    absent or unparseable. The 1970 sentinel parses: callers that care treat it as unset."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    for fmt in OKKI_TIME_FORMATS:
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=CHINA_TZ)
        except ValueError:
            continue
    return None


def parse_okki_times(values: pd.Series) -> pd.Series:
    """``parse_okki_time`` over a column: tz-aware China times, NaT where a value is absent or
    unparseable (the 1970 sentinel parses, as above)."""
    text = values.astype("string").str.strip()
    times = pd.to_datetime(text, errors="coerce", format=OKKI_TIME_FORMAT)
    times = times.fillna(pd.to_datetime(text, errors="coerce", format=OKKI_DATE_FORMAT))
    return times.dt.tz_localize(TIMEZONE)


def format_okki_time(moment: datetime) -> str:
    """``YYYY-MM-DD HH:MM:SS`` in China time; an aware datetime is converted, a naive one is
    taken to be China time already."""
    if moment.utcoffset() is not None:
        moment = moment.astimezone(CHINA_TZ)
    return moment.strftime(OKKI_TIME_FORMAT)
