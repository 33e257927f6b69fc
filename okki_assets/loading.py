"""Deciding what to send to the target: the ID check, as pure pandas.

A cleaned row becomes a target record (mapping.py) with a content hash. Against the load
ledger it is then

- ``stale``: the ledger holds a newer update time for the company (loaded from a later
  window): never sent, so re-running an old partition cannot overwrite newer data;
- ``unchanged``: the ledger's hash is the same and the target acknowledged it: not sent;
- otherwise sent (new, changed, previously rejected, failed, interrupted or only landed).

Deleted companies become tombstones, under the same rules. A deleted company whose id is not
numeric or whose delete time cannot be parsed cannot be claimed in the ledger: it becomes no
tombstone, is counted, and the clean stage quarantines it with its reason
(``unusable_deletions``).

One version per company per batch: a company deleted while its window was pulled (its info
came, then the ``removed=1`` pass listed it) is both a cleaned row and a tombstone, and the
target refuses a batch that names an id twice. The newest word wins: the later of the row's
update time and the tombstone's delete time; on a tie the tombstone wins, because OKKI's
deleted list is read after the company's info, so it is the later word.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from okki_assets.mapping import TargetMapping, content_hash, map_records, tombstone
from okki_assets.okki_time import parse_okki_times
from okki_assets.storage import SENT_STATUSES

DELETE_TIME_UNPARSEABLE = "delete_time_unparseable"
COMPANY_ID_NOT_NUMERIC = "company_id_not_numeric"


@dataclass
class LoadPlan:
    to_send: pd.DataFrame  # company_id, partition_key, update_time, content_hash, record
    skipped_unchanged: int
    skipped_stale: int
    tombstones: int
    deletions: pd.DataFrame  # company_id, update_time of every usable tombstone
    tombstones_quarantined: int = 0  # deleted companies that cannot become a tombstone
    superseded: int = 0  # versions dropped because a newer word for the company came too


def _decide(candidates: pd.DataFrame, ledger: pd.DataFrame) -> tuple[pd.DataFrame, int, int]:
    if ledger.empty:
        return candidates, 0, 0
    merged = candidates.merge(
        ledger[["company_id", "content_hash", "update_time", "status"]].rename(
            columns={"content_hash": "l_hash", "update_time": "l_time", "status": "l_status"}
        ),
        on="company_id",
        how="left",
    )
    stale = merged["l_time"].notna() & (merged["l_time"] > merged["update_time"])
    unchanged = (
        ~stale
        & (merged["l_hash"] == merged["content_hash"])
        & merged["l_status"].isin(SENT_STATUSES)
    )
    keep = merged.loc[~stale & ~unchanged, candidates.columns]
    return keep.reset_index(drop=True), int(unchanged.sum()), int(stale.sum())


def plan_load(
    cleaned: pd.DataFrame,
    deleted: pd.DataFrame,
    ledger: pd.DataFrame,
    mapping: TargetMapping,
    partition_key: str,
) -> LoadPlan:
    """What to send for one partition, given its cleaned rows, deleted ids and ledger rows."""
    records = map_records(cleaned, mapping) if not cleaned.empty else []
    frame = pd.DataFrame(
        {
            "company_id": cleaned["company_id"].astype("int64") if not cleaned.empty else [],
            "partition_key": partition_key,
            "update_time": cleaned["update_time"] if not cleaned.empty else [],
            "content_hash": [content_hash(r) for r in records],
            "record": records,
        }
    )
    tombstones = _tombstones(deleted, partition_key)
    if not tombstones.empty:
        frame = pd.concat([frame, tombstones], ignore_index=True) if not frame.empty else tombstones
    frame, superseded = _newest_word(frame)
    to_send, unchanged, stale = _decide(frame, ledger)
    return LoadPlan(
        to_send,
        unchanged,
        stale,
        len(tombstones),
        tombstones[["company_id", "update_time"]],
        tombstones_quarantined=len(deleted) - len(tombstones),
        superseded=superseded,
    )


def _newest_word(frame: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """One row per company: the newest update time, a tombstone on a tie (see the module)."""
    if not frame["company_id"].duplicated().any():
        return frame, 0
    deleted = [r.get("deleted") is True for r in frame["record"]]
    newest = (
        frame.assign(_deleted=deleted)
        .sort_values(["company_id", "update_time", "_deleted"], kind="stable")
        .drop_duplicates("company_id", keep="last")
    )
    kept = frame[frame.index.isin(newest.index)].reset_index(drop=True)
    return kept, len(frame) - len(kept)


def _delete_reasons(deleted: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Each deleted row's delete time (NaT when unparseable) and its reasons (empty: usable)."""
    times = parse_okki_times(deleted["update_time"])
    numeric = deleted["company_id"].astype("string").str.fullmatch(r"\d+").fillna(False)
    reasons = [
        [COMPANY_ID_NOT_NUMERIC] * (not ok) + [DELETE_TIME_UNPARSEABLE] * bool(pd.isna(when))
        for ok, when in zip(numeric, times, strict=True)
    ]
    return times, pd.Series(reasons, index=deleted.index, dtype=object)


def unusable_deletions(deleted: pd.DataFrame) -> pd.DataFrame:
    """Deleted rows that cannot become a tombstone, with their reasons (the quarantine's
    columns: company_id, reasons, list_json)."""
    if deleted.empty:
        return pd.DataFrame(columns=["company_id", "reasons", "list_json"])
    _, reasons = _delete_reasons(deleted)
    bad = deleted[reasons.map(bool)]
    return pd.DataFrame(
        {
            "company_id": bad["company_id"],
            "reasons": reasons[bad.index],
            "list_json": bad.get("list_json"),
        }
    ).reset_index(drop=True)


def _tombstones(deleted: pd.DataFrame, partition_key: str) -> pd.DataFrame:
    if deleted.empty:
        return pd.DataFrame(
            columns=["company_id", "partition_key", "update_time", "content_hash", "record"]
        )
    times, reasons = _delete_reasons(deleted)
    usable = ~reasons.map(bool)
    ids = deleted.loc[usable, "company_id"].astype("int64").reset_index(drop=True)
    records = [tombstone(int(cid)) for cid in ids]
    return pd.DataFrame(
        {
            "company_id": ids,
            "partition_key": partition_key,
            "update_time": times[usable].reset_index(drop=True),
            "content_hash": [content_hash(r) for r in records],
            "record": records,
        }
    )
