"""The simulated OKKI's own clock and time text, written from the OKKI page alone.

OKKI writes every time as ``YYYY-MM-DD HH:MM:SS`` (a few as a bare ``YYYY-MM-DD``) in China
Standard Time (UTC+8, no daylight saving), with ``1970-01-01 00:00:00`` for a time never set
(docs/okki-api.md). The simulator keeps its own copy of that rule, on purpose: it is the oracle
the client is tested against, so a time-format bug in the client must not be shared by the fake.
Nothing here is imported from the code it checks.
"""

from __future__ import annotations

import datetime as dt
import re

#: China Standard Time: a fixed UTC+8 offset (the production code uses the IANA zone).
CHINA = dt.timezone(dt.timedelta(hours=8), "CST")
UNSET_TIME = "1970-01-01 00:00:00"
UNSET_DATE = "1970-01-01"

_TIME = re.compile(r"(\d{4})-(\d{2})-(\d{2})(?: (\d{2}):(\d{2}):(\d{2}))?")


def china_now() -> dt.datetime:
    """Now, as a naive China wall-clock time to the second."""
    return dt.datetime.now(CHINA).replace(tzinfo=None, microsecond=0)


def to_china(moment: dt.datetime) -> dt.datetime:
    """An aware moment as naive China wall-clock time; a naive one is China time already."""
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(CHINA).replace(tzinfo=None)


def okki_text(moment: dt.datetime) -> str:
    """``YYYY-MM-DD HH:MM:SS`` in China time, as OKKI writes it."""
    m = to_china(moment)
    return f"{m.year:04d}-{m.month:02d}-{m.day:02d} {m.hour:02d}:{m.minute:02d}:{m.second:02d}"


def parse_text(value: str) -> dt.datetime | None:
    """An exact OKKI time or date (no padding) as a naive China time, or None."""
    found = _TIME.fullmatch(value)
    if found is None:
        return None
    year, month, day, hour, minute, second = (int(p) for p in found.groups(default="0"))
    try:
        return dt.datetime(year, month, day, hour, minute, second)
    except ValueError:
        return None
