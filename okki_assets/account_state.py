"""The whole account against the ledger: which companies are missing, stale, restored, deleted
but present, moved back or different, and which are due for the rolling info refresh.

Pure rules over frames (no I/O): ``stages/reconcile.py`` runs them on the account list it read
and the ledger, and the check ``account_in_sync`` runs them again after the load.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import pandas as pd

from okki_assets.identity import ledger_ids
from okki_assets.mapping import holds_tombstone
from okki_assets.okki_time import CHINA_TZ, parse_okki_times
from okki_assets.storage import UPSERT_DONE

SAMPLE_IDS = 50


@dataclass
class AccountState:
    """The account list against the ledger: ids per class, plus the counts."""

    companies_in_okki: int = 0
    deleted_in_okki: int = 0
    malformed: int = 0
    known_bad: list[str] = field(default_factory=list)
    at_target: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    restored: list[str] = field(default_factory=list)
    deleted_but_present: list[str] = field(default_factory=list)
    moved_back: list[str] = field(default_factory=list)
    different: list[str] = field(default_factory=list)

    @property
    def in_sync(self) -> bool:
        wrong = (self.missing, self.stale, self.restored, self.deleted_but_present)
        return not any((*wrong, self.moved_back, self.different))

    def counts(self) -> dict[str, int]:
        return {
            "companies_in_okki": self.companies_in_okki,
            "deleted_in_okki": self.deleted_in_okki,
            "at_target": len(self.at_target),
            "missing": len(self.missing),
            "stale": len(self.stale),
            "restored_pending": len(self.restored),
            "deleted_but_present": len(self.deleted_but_present),
            "moved_back": len(self.moved_back),
            "different": len(self.different),
            "quarantined": len(self.known_bad) + self.malformed,
        }

    def offenders(self) -> pd.DataFrame:
        """The first offending ids, with what is wrong with each (for the check's table)."""
        rows = [
            (cid, problem)
            for problem, ids in (
                ("missing", self.missing),
                ("stale", self.stale),
                ("restored, not at the target", self.restored),
                ("deleted in OKKI, present at the target", self.deleted_but_present),
                ("update_time moved back in OKKI, not read since", self.moved_back),
                ("the target holds other content than OKKI", self.different),
            )
            for cid in ids[:SAMPLE_IDS]
        ]
        return pd.DataFrame(rows[:SAMPLE_IDS], columns=["company_id", "problem"])


def compare(
    snapshot: pd.DataFrame,
    ledger: pd.DataFrame,
    known_bad: set[tuple[str, str]],
    *,
    observed_at: datetime | None = None,
    fresh: pd.DataFrame | None = None,
) -> AccountState:
    """Classify the account list (company_id, update_time, removed), read at ``observed_at``,
    against the ledger rows and ``fresh`` (company_id, update_time, content_hash: read since).

    A company in both lists (deleted while the pass ran) counts as deleted: the deleted list is
    read after the live one."""
    state = AccountState()
    removed = snapshot[snapshot["removed"]]
    deleted_ids = set(removed["company_id"])
    live = snapshot[~snapshot["removed"] & ~snapshot["company_id"].isin(deleted_ids)].copy()
    state.companies_in_okki, state.deleted_in_okki = len(live), len(removed)
    live["when"] = parse_okki_times(live["update_time"])
    numeric = ledger_ids(live["company_id"]).notna()
    good = numeric & live["when"].notna()
    state.malformed = int((~good).sum())
    live = live[good]
    bad = [
        (c, t) in known_bad for c, t in zip(live["company_id"], live["update_time"], strict=True)
    ]
    state.known_bad = sorted(live.loc[bad, "company_id"])
    live = live[[not b for b in bad]]

    ledger_words = _ledger_words(ledger, observed_at, fresh)
    merged = live.merge(ledger_words, on="company_id", how="left")
    ledger_deleted = merged["ledger_tombstone"].astype("boolean").fillna(False).astype(bool)
    ledger_live = merged["status"].isin(UPSERT_DONE) & ~ledger_deleted
    stale = ledger_live & (merged["l_time"].isna() | (merged["l_time"] < merged["when"]))
    # OKKI's list says an older time than the ledger: the list may lag info, or OKKI moved
    # the company back with a change. Only a read since the list (the reconcile's) tells.
    read_since = merged["read_since"].astype("boolean").fillna(False).astype(bool)
    back = ledger_live & (merged["l_time"] > merged["when"]) & ~read_since
    other = (merged["fresh_time"] == merged["l_time"]) & (merged["fresh_hash"] != merged["hash"])
    different = ledger_live & other  # read since the list: the ledger's version, other content
    state.missing = sorted(merged.loc[~ledger_live & ~ledger_deleted, "company_id"])
    state.restored = sorted(merged.loc[ledger_deleted, "company_id"])
    state.stale = sorted(merged.loc[stale, "company_id"])
    state.moved_back = sorted(merged.loc[back, "company_id"])
    state.different = sorted(merged.loc[different & ~stale & ~back, "company_id"])
    state.at_target = sorted(merged.loc[ledger_live & ~stale & ~back & ~different, "company_id"])
    in_ledger_live = ~ledger_words["ledger_tombstone"].astype(bool)
    present = ledger_words[ledger_words["company_id"].isin(deleted_ids) & in_ledger_live]
    state.deleted_but_present = sorted(present["company_id"])
    return state


def _ledger_words(
    ledger: pd.DataFrame, observed_at: datetime | None, fresh: pd.DataFrame | None
) -> pd.DataFrame:
    """The ledger's word per company (a tombstone? read since ``observed_at``?) and the fresh
    version read."""
    seen = pd.to_datetime(ledger.get("observed_at", pd.Series(dtype=object)), utc=True)
    words = pd.DataFrame(
        {
            "company_id": ledger["company_id"].astype("int64").astype(str),
            "status": ledger["status"],
            "l_time": ledger["update_time"],
            "hash": ledger["content_hash"],
            "ledger_tombstone": holds_tombstone(ledger["company_id"], ledger["content_hash"]),
            "read_since": (seen >= observed_at).fillna(False) if observed_at else False,
        }
    )
    if fresh is None:
        fresh = pd.DataFrame(columns=["company_id", "update_time", "content_hash"])
    fresh = fresh.rename(columns={"content_hash": "fresh_hash", "update_time": "fresh_time"})
    words = words.merge(fresh.astype({"company_id": str}), on="company_id", how="left")
    return words.assign(read_since=words["read_since"].astype(bool))


def refresh_slice(company_id: str, refresh_days: int, day: date) -> bool:
    """Whether today's slice of the rolling refresh holds this company (stable across runs)."""
    return zlib.crc32(company_id.encode()) % refresh_days == day.toordinal() % refresh_days


def due_for_refresh(
    ids: list[str],
    last_fetch: dict[str, datetime],
    refresh_days: int,
    now: datetime,
) -> list[str]:
    """Companies whose info is due: today's slice, plus any read longer ago than the period."""
    day = now.astimezone(CHINA_TZ).date()
    oldest = now - timedelta(days=refresh_days)
    return [
        cid
        for cid in ids
        if refresh_slice(cid, refresh_days, day)
        or (when := last_fetch.get(cid)) is None
        or when < oldest
    ]
