"""OKKI's clock in one place: a time and a column of times parse alike.

Covers: both shapes OKKI writes (``YYYY-MM-DD HH:MM:SS`` and a bare date), surrounding blanks,
the 1970 sentinel (parsed; callers treat it as unset), and what is not a time (empty, None,
another format) as None / NaT; every parsed time is China time; formatting converts an aware
time to China time and round-trips.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest

from okki_assets.okki_time import (
    CHINA_TZ,
    UNSET_TIME,
    format_okki_time,
    parse_okki_time,
    parse_okki_times,
)

CASES = [
    ("2026-03-07 13:52:49", datetime(2026, 3, 7, 13, 52, 49, tzinfo=CHINA_TZ)),
    (" 2026-03-07 13:52:49\n", datetime(2026, 3, 7, 13, 52, 49, tzinfo=CHINA_TZ)),  # blanks
    ("2026-03-07", datetime(2026, 3, 7, tzinfo=CHINA_TZ)),  # a bare date
    (UNSET_TIME, datetime(1970, 1, 1, tzinfo=CHINA_TZ)),  # the sentinel parses
    ("2026-13-45 99:00:00", None),  # no such time
    ("2026/03/07 13:52:49", None),  # another format
    ("", None),
    (None, None),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_one_time_parses_as_china_time(text: str | None, expected: datetime | None) -> None:
    assert parse_okki_time(text) == expected


def test_a_column_parses_exactly_as_each_time_does() -> None:
    column = pd.Series([text for text, _ in CASES], dtype=object)
    parsed = parse_okki_times(column)
    assert str(parsed.dt.tz) == "Asia/Shanghai"
    for value, (_, expected) in zip(parsed, CASES, strict=True):
        if expected is None:
            assert pd.isna(value)
        else:
            assert value.to_pydatetime() == expected


def test_formatting_writes_china_time_and_round_trips() -> None:
    moment = datetime(2026, 3, 7, 5, 52, 49, tzinfo=UTC)
    assert format_okki_time(moment) == "2026-03-07 13:52:49"
    assert format_okki_time(datetime(2026, 3, 7, 13, 52, 49)) == "2026-03-07 13:52:49"
    assert parse_okki_time(format_okki_time(moment)) == moment
