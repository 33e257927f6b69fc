"""Deciding what to send to the target: the ID check, as pure pandas.

A cleaned row becomes a target record (mapping.py) with a content hash. Each candidate is a
version (versions.py: update_time, then when it was observed, then its content); against the
load ledger it is then

- ``stale``: the ledger holds a newer version, or one the account observed after this version
  was read (a yield): never sent, so re-running an old partition cannot overwrite newer data;
- ``unchanged``: the ledger's hash is the same and the target acknowledged it: not sent, and
  the ledger's version moves up to this one when it is newer (a new update_time that changed
  nothing the mapping sends is still the version the target holds);
- otherwise sent (new, changed, previously rejected, failed, interrupted or only landed).

Deleted companies become tombstones, under the same rules. A deleted company whose id is not
numeric or whose delete time cannot be parsed cannot be claimed in the ledger: it becomes no
tombstone, is counted, and the clean stage quarantines it with its reason
(``unusable_deletions``).

One version per company per batch: a company deleted while its window was pulled (its info
came, then the ``removed=1`` pass listed it) is both a cleaned row and a tombstone, and the
target refuses a batch that names an id twice. The newer version wins; on equal times the
tombstone, because OKKI's deleted list is read (observed) after the company's info.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from okki_assets.identity import ledger_ids
from okki_assets.mapping import TargetMapping, content_hash, map_records, tombstone
from okki_assets.okki_time import parse_okki_times
from okki_assets.storage import SENT_STATUSES
from okki_assets.versions import newer, newest_per_company, yielded

DELETE_TIME_UNPARSEABLE = "delete_time_unparseable"
COMPANY_ID_NOT_NUMERIC = "company_id_not_numeric"


@dataclass
class LoadPlan:
    to_send: pd.DataFrame  # company_id, partition_key, update_time, observed_at, content_hash,
    # record, yielded_at (the ledger row's last yield, sent along with the version)
    skipped_unchanged: int
    skipped_stale: int
    tombstones: int
    deletions: pd.DataFrame  # company_id, update_time, observed_at of every usable tombstone
    tombstones_quarantined: int = 0  # deleted companies that cannot become a tombstone
    superseded: int = 0  # versions dropped because a newer word for the company came too
    #: Unchanged versions newer than the ledger's (company_id, update_time, observed_at,
    #: content_hash): the ledger moves up to them without sending.
    advance: pd.DataFrame = field(default_factory=pd.DataFrame)


_LEDGER = {
    "content_hash": "l_content_hash",
    "update_time": "l_update_time",
    "observed_at": "l_observed_at",
    "yielded_at": "l_yielded_at",
    "status": "l_status",
}


def _decide(
    candidates: pd.DataFrame, ledger: pd.DataFrame
) -> tuple[pd.DataFrame, int, int, pd.DataFrame]:
    """(to send, with the ledger's yielded_at; unchanged, stale, unchanged versions newer than
    the ledger's)."""
    if ledger.empty:
        return candidates.assign(yielded_at=pd.NaT), 0, 0, candidates.iloc[0:0]
    held = ledger.reindex(columns=["company_id", *_LEDGER]).rename(columns=_LEDGER)
    merged = candidates.merge(held, on="company_id", how="left")
    stale = newer(merged, "l_", "") | yielded(merged, "", "l_")
    unchanged = (
        ~stale
        & (merged["l_content_hash"] == merged["content_hash"])
        & merged["l_status"].isin(SENT_STATUSES)
    )
    advance = merged.loc[unchanged & newer(merged, "", "l_"), candidates.columns]
    keep = merged.loc[~stale & ~unchanged, [*candidates.columns, "l_yielded_at"]]
    keep = keep.rename(columns={"l_yielded_at": "yielded_at"}).reset_index(drop=True)
    return keep, int(unchanged.sum()), int(stale.sum()), advance


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
            "observed_at": _observed(cleaned),
            "content_hash": [content_hash(r) for r in records],
            "record": records,
        }
    )
    tombstones = _tombstones(deleted, partition_key)
    if not tombstones.empty:
        frame = pd.concat([frame, tombstones], ignore_index=True) if not frame.empty else tombstones
    frame, superseded = _newest_word(frame)
    to_send, unchanged, stale, advance = _decide(frame, ledger)
    return LoadPlan(
        to_send,
        unchanged,
        stale,
        len(tombstones),
        tombstones[["company_id", "update_time", "observed_at"]],
        tombstones_quarantined=len(deleted) - len(tombstones),
        superseded=superseded,
        advance=advance,
    )


def _observed(rows: pd.DataFrame) -> pd.Series:
    """When each row's payload was observed (never, for rows stored before it was kept)."""
    if "observed_at" not in rows or rows.empty:
        return pd.Series(pd.NaT, index=rows.index, dtype="datetime64[ns, UTC]")
    return pd.to_datetime(rows["observed_at"], utc=True)


def _newest_word(frame: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """One row per company: its newest version (see the module)."""
    kept = newest_per_company(frame)
    return kept, len(frame) - len(kept)


def _delete_reasons(deleted: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Each deleted row's delete time (NaT when unparseable) and its reasons (empty: usable)."""
    times = parse_okki_times(deleted["update_time"])
    numeric = ledger_ids(deleted["company_id"]).notna()
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
            columns=[
                "company_id",
                "partition_key",
                "update_time",
                "observed_at",
                "content_hash",
                "record",
            ]
        )
    times, reasons = _delete_reasons(deleted)
    usable = ~reasons.map(bool)
    ids = ledger_ids(deleted.loc[usable, "company_id"]).astype("int64").reset_index(drop=True)
    records = [tombstone(int(cid)) for cid in ids]
    return pd.DataFrame(
        {
            "company_id": ids,
            "partition_key": partition_key,
            "update_time": times[usable].reset_index(drop=True),
            "observed_at": _observed(deleted)[usable].reset_index(drop=True),
            "content_hash": [content_hash(r) for r in records],
            "record": records,
        }
    )
