"""The audit of the target itself: read it back through the port and compare it with OKKI.

The load ledger says what the target acknowledged; after ``okki_reconcile`` has brought the
ledger in line with OKKI's whole account, the ledger's acknowledged versions are OKKI's state.
The target is read back (``Target.read_back``, paged) and compared, by id, with them:

- ``target_missing``: live in OKKI, but absent at the target or deleted there;
- ``target_different``: live in both, but the stored values hash differently (an edit by hand,
  a lost write);
- ``target_extra``: live at the target while OKKI deleted the company, or an id the ledger
  never acknowledged (counted, not touched: it may be the target's own).

Repairs: a row live at the target while OKKI deleted it gets its tombstone again, through the
port, at once. A row missing or different is demoted in the ledger (``failed``, with the
audit's reason): the reconcile that runs the audit first then counts it missing, reads its info
and sends OKKI's current version by the ordinary load. A target that cannot be read (land-only)
says "target not audited". Cost: one pass over the target, held as (id, hash, deleted) only,
never the values; no OKKI request beyond the reconcile's own for the repaired companies.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
import pandas as pd

from okki_assets import storage
from okki_assets.errors import TargetNotAuditable
from okki_assets.mapping import holds_tombstone, tombstone
from okki_assets.metadata import table_metadata
from okki_assets.stages.common import Connect
from okki_assets.storage import LedgerStatus
from okki_assets.targets import RecordResult, RecordVersion, Target, TargetSettings
from okki_assets.targets.http import new_attempt

log = logging.getLogger(__name__)

SAMPLE_IDS = 50
MISSING, DIFFERENT, EXTRA = "target_missing", "target_different", "target_extra"
REPAIRED_STATUSES = ("created", "updated", "deleted")


@dataclass
class AuditSummary:
    """What the audit found at the target and what it repaired."""

    audited: bool
    note: str = ""
    rows_read: int = 0
    counts: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys((MISSING, DIFFERENT, EXTRA), 0)
    )
    repaired: int = 0
    unrepaired: int = 0
    offenders: pd.DataFrame = field(default_factory=pd.DataFrame)
    seconds: float = 0.0

    def metadata(self) -> dict[str, Any]:
        if not self.audited:
            return {"target_audit": self.note}
        out: dict[str, Any] = {
            "target_audit": "audited",
            "target_rows_read": dg.MetadataValue.int(self.rows_read),
            **{k: dg.MetadataValue.int(v) for k, v in self.counts.items()},
            "target_repaired": dg.MetadataValue.int(self.repaired),
            "target_unrepaired": dg.MetadataValue.int(self.unrepaired),
        }
        if not self.offenders.empty:
            out["target_offending_ids"] = table_metadata(self.offenders, limit=SAMPLE_IDS)
        return out


def audit_target(
    target: Target,
    connect: Connect,
    load_lock: Callable[[], AbstractContextManager[None]],
    *,
    batch_size: int = TargetSettings.batch_size,
) -> AuditSummary:
    """Compare the target with the ledger's acknowledged versions and repair what differs
    (under the load lock: no load claims the demoted rows meanwhile)."""
    started = time.monotonic()
    try:
        found = read_target(target)
    except TargetNotAuditable as e:
        return AuditSummary(audited=False, note=f"target not audited: {str(e).split(' | ')[0]}")
    with load_lock():
        with connect() as conn:
            expected = storage.acknowledged_versions(conn)
        problems = classify(expected, found)
        summary = AuditSummary(audited=True, rows_read=len(found))
        for name in (MISSING, DIFFERENT, EXTRA):
            summary.counts[name] = int((problems["problem"] == name).sum())
        summary.offenders = problems[["company_id", "problem"]].head(SAMPLE_IDS)
        summary.repaired, summary.unrepaired = repair(
            target, connect, problems[problems["repairable"]], batch_size
        )
    summary.seconds = time.monotonic() - started
    log.info(
        "target audit: %d rows read; %s; %d repaired or queued, %d not",
        summary.rows_read,
        summary.counts,
        summary.repaired,
        summary.unrepaired,
    )
    return summary


def read_target(target: Target) -> pd.DataFrame:
    """The target's rows as (company_id, target_hash, target_deleted), values dropped."""
    ids: list[str] = []
    hashes: list[str | None] = []
    deleted: list[bool] = []
    for row in target.read_back():
        ids.append(row.id)
        hashes.append(row.content_hash)
        deleted.append(row.deleted)
    return pd.DataFrame(
        {"company_id": ids, "target_hash": hashes, "target_deleted": deleted},
    ).astype({"company_id": object, "target_hash": object, "target_deleted": bool})


def classify(expected: pd.DataFrame, found: pd.DataFrame) -> pd.DataFrame:
    """One row per offending id: company_id, problem, repairable, and the ledger's version
    (partition_key, content_hash, update_time, tomb)."""
    ledger = expected.assign(
        tomb=(expected["status"] == LedgerStatus.DELETED)
        | holds_tombstone(expected["company_id"], expected["content_hash"])
    )
    both = ledger.merge(found, on="company_id", how="outer", indicator=True)
    at_target = both["_merge"] != "left_only"
    in_ledger = both["_merge"] != "right_only"
    live_there = at_target & ~both["target_deleted"].eq(True)
    tomb = both["tomb"].eq(True)
    missing = in_ledger & ~tomb & ~live_there
    different = in_ledger & ~tomb & live_there & (both["target_hash"] != both["content_hash"])
    extra = live_there & (tomb | ~in_ledger)
    both["problem"] = None
    both.loc[missing, "problem"] = MISSING
    both.loc[different, "problem"] = DIFFERENT
    both.loc[extra, "problem"] = EXTRA
    both["repairable"] = in_ledger & both["problem"].notna()
    out = both[both["problem"].notna()].drop(columns="_merge")
    return out.sort_values("company_id", key=lambda s: s.astype(str)).reset_index(drop=True)


def repair(
    target: Target, connect: Connect, rows: pd.DataFrame, batch_size: int
) -> tuple[int, int]:
    """Tombstones sent again; live versions demoted in the ledger for the reconcile to resend.
    (repaired or queued, not repaired)."""
    if rows.empty:
        return 0, 0
    tombs = rows[rows["tomb"].eq(True)]
    live = rows[~rows["tomb"].eq(True)]
    with connect() as conn:
        queued = storage.demote_for_resend(
            conn,
            [
                (int(c), f"audit: {p}")
                for c, p in zip(live["company_id"], live["problem"], strict=True)
            ],
        )
    records = [tombstone(c) for c in tombs["company_id"]]
    versions = [
        _version(*v)
        for v in zip(
            tombs["update_time"],
            tombs["content_hash"],
            tombs["observed_at"],
            tombs["yielded_at"],
            strict=True,
        )
    ]
    sent = 0
    for start in range(0, len(records), batch_size):
        results: list[RecordResult] = target.write_batch(
            records[start : start + batch_size], new_attempt(), versions[start : start + batch_size]
        )
        sent += sum(r.status in REPAIRED_STATUSES for r in results)
    return queued + sent, len(rows) - queued - sent


def _version(update_time: Any, content: Any, observed_at: Any, yielded_at: Any) -> RecordVersion:
    when, seen, yielded = (
        None if pd.isna(t) else pd.Timestamp(t).to_pydatetime()
        for t in (update_time, observed_at, yielded_at)
    )
    return RecordVersion(when, str(content), seen, yielded)
