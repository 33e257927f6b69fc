"""The version order (versions.py) on its own: update_time, then the observation, then the
content; a row absent on one side; one row per company; a yield; what may replace what at a
target (``supersedes``), a yield included."""

from __future__ import annotations

import pandas as pd

from okki_assets.versions import (
    NEVER_OBSERVED,
    Version,
    last_yield,
    newer,
    newest_per_company,
    supersedes,
    yielded,
)

T1 = pd.Timestamp("2026-03-01 10:00:00", tz="Asia/Shanghai")
T2 = T1 + pd.Timedelta(seconds=1)
SEEN1 = pd.Timestamp("2026-03-02 01:00:00", tz="UTC")
SEEN2 = SEEN1 + pd.Timedelta(minutes=5)


def test_the_order_is_update_time_then_observation_then_content() -> None:
    assert Version(T2, SEEN1, "a") > Version(T1, SEEN2, "z")
    assert Version(T1, SEEN2, "a") > Version(T1, SEEN1, "z")
    assert Version(T1, SEEN1, "b") > Version(T1, SEEN1, "a")
    assert Version(T1, SEEN1, "b").superseded_by_yield(SEEN2.to_pydatetime())


def test_newer_compares_rows_of_a_frame_and_an_absent_version_is_oldest() -> None:
    frame = pd.DataFrame(
        {
            "update_time": [T2, T1, T1, T1, T1],
            "observed_at": [SEEN1, SEEN2, SEEN1, SEEN1, None],
            "content_hash": ["a", "a", "b", "a", "a"],
            "l_update_time": [T1, T1, T1, T1, None],
            "l_observed_at": [SEEN2, SEEN1, SEEN1, SEEN1, None],
            "l_content_hash": ["z", "z", "a", "a", None],
        }
    )
    assert list(newer(frame, "", "l_")) == [True, True, True, False, True]
    assert list(newer(frame, "", "l_", equal=True)) == [True, True, True, True, True]
    assert list(newer(frame, "l_", "")) == [False, False, False, False, False]


def test_one_row_per_company_keeps_the_newest_version() -> None:
    frame = pd.DataFrame(
        {
            "company_id": [1, 1, 2, 2],
            "update_time": [T1, T1, T2, T1],
            "observed_at": [SEEN2, SEEN1, SEEN1, SEEN2],
            "content_hash": ["old", "new", "x", "y"],
        }
    )
    kept = newest_per_company(frame)
    assert list(zip(kept["company_id"], kept["content_hash"], strict=True)) == [
        (1, "old"),
        (2, "x"),
    ]


def test_a_version_observed_before_a_yield_is_superseded() -> None:
    frame = pd.DataFrame(
        {"observed_at": [SEEN1, SEEN2, SEEN1], "l_yielded_at": [SEEN2, SEEN2, None]}
    )
    assert list(yielded(frame, "", "l_")) == [True, False, False]


def test_without_a_flip_a_target_takes_the_version_order() -> None:
    stored = Version(T1, SEEN2, "b")
    assert supersedes(Version(T2, SEEN1, "a"), stored, flip=False)  # a later update_time
    assert not supersedes(Version(T1, SEEN1, "z"), stored, flip=False)  # observed before
    assert supersedes(Version(T1, SEEN2 + pd.Timedelta(seconds=1), "a"), stored, flip=False)
    assert not supersedes(Version(T1, SEEN2, "a"), stored, flip=False)  # the smaller hash
    assert supersedes(Version(T1, SEEN2, "b"), stored, flip=False)  # itself: a resend


def test_a_flip_goes_to_the_later_observation_whatever_the_times() -> None:
    deleted = Version(T2, SEEN1, "tomb")  # deleted at T2, observed at SEEN1
    restored = Version(T1, SEEN2, "live")  # restored keeping its old T1, observed later
    assert supersedes(restored, deleted, flip=True)
    assert not supersedes(deleted, restored, flip=True)  # a late run's older deletion
    # A restore observed before the deletion it would overturn does not apply either.
    assert not supersedes(Version(T1, SEEN1 - pd.Timedelta(minutes=1), "live"), deleted, flip=True)
    # A row stored before observations were kept is older than any observed flip.
    assert supersedes(deleted, Version(T2, NEVER_OBSERVED, "live"), flip=True)
    assert supersedes(deleted, deleted, flip=True)  # the same word resent


def test_a_yield_lets_the_version_observed_since_replace_one_observed_before() -> None:
    """OKKI moved a live company's update_time back with a change: the ledger yielded (at
    ``yield_at``) and sends the change with the earlier time."""
    stored = Version(T2, SEEN1, "before")
    moved_back = Version(T1, SEEN2, "after")
    yield_at = (SEEN1 + pd.Timedelta(minutes=1)).to_pydatetime()
    assert not supersedes(moved_back, stored, flip=False)  # no yield known: the times decide
    assert supersedes(moved_back, stored, flip=False, yielded_at=yield_at)
    # A late run's version read before the yield does not come back over it.
    assert not supersedes(stored, moved_back, flip=False, yielded_at=yield_at)
    # Both read since the yield: the version order again.
    assert supersedes(Version(T2, SEEN2, "next"), moved_back, flip=False, yielded_at=yield_at)
    assert not supersedes(Version(T1, SEEN2, "a"), moved_back, flip=False, yielded_at=yield_at)
    # A deletion read before the yield does not hide the change either.
    assert not supersedes(Version(T2, SEEN1, "tomb"), moved_back, flip=True, yielded_at=yield_at)
    assert last_yield(None, yield_at, SEEN1.to_pydatetime()) == yield_at
    assert last_yield(None, None) is None
