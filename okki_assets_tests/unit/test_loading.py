"""plan_load, the ID check, as pure pandas: what is sent, skipped or turned into a tombstone.

Covers: with no ledger every cleaned row and usable deletion is sent; a version the target
acknowledged with the same content is skipped as unchanged, one that only failed or landed is
sent again; a newer ledger version makes the row stale; a deleted company with a non-numeric
id or an unparseable delete time is no tombstone but counted; a company both cleaned and
deleted goes once, the newest word winning and the tombstone on a tie.
"""

from __future__ import annotations

import json

import pandas as pd

from okki_assets.cleaning import clean_companies
from okki_assets.loading import plan_load
from okki_assets.mapping import load_mapping
from okki_assets.partitions import window_for_key
from okki_assets_tests.factories import okki_info_record, okki_list_record

DAY = "2025-03-07"
MAPPING = load_mapping(None)
# A window's pull: the infos, then the deleted list (read later, so a later observation).
PULLED = pd.Timestamp("2025-03-08 01:00:00", tz="UTC")
DELETED_LIST_READ = pd.Timestamp("2025-03-08 01:05:00", tz="UTC")


def cleaned(*company_ids: int) -> pd.DataFrame:
    """Cleaned rows updated at 10:00:00, 10:00:01, ... of DAY."""
    rows = []
    for n, cid in enumerate(company_ids):
        when = f"{DAY} 10:00:{n:02d}"
        rows.append(
            {
                "partition_key": DAY,
                "company_id": str(cid),
                "update_time": when,
                "list_json": json.dumps(okki_list_record(cid, update_time=when)),
                "info_json": json.dumps(okki_info_record(cid, update_time=when)),
            }
        )
    result = clean_companies(pd.DataFrame(rows), *window_for_key(DAY))
    assert result.quarantined.empty
    return result.cleaned.assign(observed_at=PULLED)


def deleted(*rows: tuple[str, str]) -> pd.DataFrame:
    """(company_id, delete time) -> the partition's deleted list."""
    return pd.DataFrame(
        {
            "company_id": [r[0] for r in rows],
            "update_time": [r[1] for r in rows],
            "list_json": [json.dumps({"company_id": r[0]}) for r in rows],
            "observed_at": DELETED_LIST_READ,
        }
    )


NO_DELETIONS = deleted()
NO_LEDGER = pd.DataFrame(columns=["company_id", "content_hash", "update_time", "status"])


def ledger(*rows: tuple[int, str, str, str]) -> pd.DataFrame:
    """(company_id, content_hash, update_time, status) -> ledger rows as storage reads them."""
    return pd.DataFrame(
        {
            "company_id": pd.Series([r[0] for r in rows], dtype="int64"),
            "content_hash": [r[1] for r in rows],
            "update_time": [pd.Timestamp(r[2], tz="Asia/Shanghai") for r in rows],
            "status": [r[3] for r in rows],
        }
    )


def test_with_no_ledger_everything_usable_is_sent() -> None:
    gone = deleted(("7", f"{DAY} 11:00:00"), ("x9", f"{DAY} 11:00:00"), ("8", "not a time"))
    plan = plan_load(cleaned(1, 2), gone, NO_LEDGER, MAPPING, DAY)
    assert list(plan.to_send["company_id"]) == [1, 2, 7]
    assert [r.get("deleted", False) for r in plan.to_send["record"]] == [False, False, True]
    assert (plan.tombstones, plan.tombstones_quarantined) == (1, 2)
    assert (plan.skipped_unchanged, plan.skipped_stale) == (0, 0)


def test_the_ledger_decides_unchanged_stale_and_resend() -> None:
    first = plan_load(cleaned(1, 2, 3, 4), NO_DELETIONS, NO_LEDGER, MAPPING, DAY)
    hashes = dict(zip(first.to_send["company_id"], first.to_send["content_hash"], strict=True))
    held = ledger(
        (1, hashes[1], f"{DAY} 10:00:00", "created"),  # acknowledged, same content: skipped
        (2, hashes[2], f"{DAY} 10:00:01", "failed"),  # same content, never acknowledged: sent
        (3, "other", f"{DAY} 12:00:00", "updated"),  # a newer version is loaded: stale
        (4, hashes[4], f"{DAY} 10:00:03", "landed"),  # only landed: sent
    )
    plan = plan_load(cleaned(1, 2, 3, 4), NO_DELETIONS, held, MAPPING, DAY)
    assert list(plan.to_send["company_id"]) == [2, 4]
    assert (plan.skipped_unchanged, plan.skipped_stale) == (1, 1)


def test_an_unchanged_version_newer_than_the_ledger_moves_the_ledger_up() -> None:
    first = plan_load(cleaned(1, 2), NO_DELETIONS, NO_LEDGER, MAPPING, DAY)
    hashes = dict(zip(first.to_send["company_id"], first.to_send["content_hash"], strict=True))
    held = ledger(
        (1, hashes[1], f"{DAY} 09:00:00", "created"),  # an older time, the same content
        (2, hashes[2], f"{DAY} 10:00:01", "created"),  # this very version
    ).assign(observed_at=PULLED)
    plan = plan_load(cleaned(1, 2), NO_DELETIONS, held, MAPPING, DAY)
    assert plan.to_send.empty and plan.skipped_unchanged == 2
    assert list(plan.advance["company_id"]) == [1]


def test_a_company_cleaned_and_deleted_goes_once_as_its_newest_word() -> None:
    rows = cleaned(1, 2)  # updated 10:00:00 and 10:00:01
    gone = deleted(("1", f"{DAY} 09:00:00"), ("2", f"{DAY} 10:00:01"))  # older; a tie
    plan = plan_load(rows, gone, NO_LEDGER, MAPPING, DAY)
    sent = dict(zip(plan.to_send["company_id"], plan.to_send["record"], strict=True))
    assert sorted(sent) == [1, 2]
    assert "deleted" not in sent[1]  # the row is newer than the deletion
    assert sent[2].get("deleted") is True  # a tie: the tombstone, read later, wins
    assert plan.superseded == 2
