"""The whole account against the target: what ``okki_reconcile`` reads, compares and sends.

One pass over OKKI's full list (``removed=0``, no time filter) and its full deleted list
(``removed=1``) is compared with the load ledger, the target's acknowledged state:

- ``missing``: live, not known bad, and no acknowledged live row in the ledger;
- ``stale``: the ledger's version is older than the list's ``update_time``;
- ``restored``: live, but the ledger's last word is a tombstone (applied or not);
- ``deleted_but_present``: in the deleted list, but the ledger's last word is a live record;
- ``moved_back``: the list's time is older than the ledger's, not read since: OKKI may have
  moved it back with a change (or its list lags info); only an info read tells;
- ``different``: read since the list, it maps to other content than the ledger's version;
- ``due``: at the target and in sync, but due for the rolling info refresh (contacts can change
  without moving ``update_time``);
- ``purged``: the ledger says live, neither list shows it and info answers 404 (purged.py): it
  gets a tombstone.

Only those are fetched (info), stored under the partition ``account`` of the stage tables,
cleaned and loaded by the very functions a daily window uses, the lists under a window's guard
(``pull.list_everything``). Cost: two passes or more of ``ceil(N / page size) + 1`` and
``ceil(D / page size) + 1`` list requests, one info call per missing, stale, restored, moved
back or due company. A version already quarantined for its data (not for a failed info call)
is known bad: it is not counted missing, and it is cleaned again from its stored payload (no
info call) so that the account's quarantine, replaced on every run, keeps it.

Tombstones against upserts: a deletion, restore or edit that keeps or lowers ``update_time``
would lose on the version order (versions.py), so where the account list (read after the
ledger's version) says otherwise, the ledger row yields to it under the load lock, before the
account's clean (see ``storage.yield_ledger_to_observation``), and the ordinary rule sends the
observed state; a version read before the observation (a replayed deletion day) stays superseded.

The rolling refresh: a company is due when ``crc32(company_id) mod refresh_days`` equals the
China day number mod ``refresh_days`` (an even slice per day), or when its info was last read
more than ``refresh_days`` days ago (or never); ``refresh_days = 1`` reads every company.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from okki_assets import storage
from okki_assets.account_state import (
    AccountState,
    compare,
    due_for_refresh,
)
from okki_assets.clients.okki import OkkiClient, is_raw_key
from okki_assets.identity import ledger_ids
from okki_assets.mapping import (
    TargetMapping,
    content_hash,
    holds_tombstone,
    map_records,
    tombstone_hash,
)
from okki_assets.okki_time import parse_okki_times
from okki_assets.partitions import ACCOUNT_KEY
from okki_assets.stages.audit import AuditSummary, audit_target
from okki_assets.stages.clean import CleanSummary, clean_partition
from okki_assets.stages.common import Connect
from okki_assets.stages.load import LoadSummary, load_partition
from okki_assets.stages.pull import InfoReport, ListedRecords, fetch_infos, list_everything
from okki_assets.stages.purged import Purged, confirm_purged
from okki_assets.stages.staging import RawStager
from okki_assets.storage import UPSERT_DONE, LedgerStatus
from okki_assets.targets import Target, TargetSettings

log = logging.getLogger(__name__)

DEFAULT_REFRESH_DAYS = 7


def refresh_days_problem(days: int) -> str | None:
    """What is wrong with a number of refresh days (OKKI_INFO_REFRESH_DAYS), if anything."""
    return None if days >= 1 else f"OKKI_INFO_REFRESH_DAYS must be at least 1, got {days}"


@dataclass
class ReconcileSummary:
    before: AccountState
    after: AccountState | None = None
    refreshed: int = 0
    contacts_changed_by_refresh: int = 0
    list_requests: int = 0
    info_requests: int = 0
    info_reused: int = 0
    ledger_yielded: int = 0
    purged: int = 0  # live at the target, listed nowhere in OKKI, info 404: tombstoned
    unlisted_still_answered: list[str] = field(default_factory=list)  # listed nowhere, info ok
    clean: CleanSummary | None = None
    load: LoadSummary | None = None
    audit: AuditSummary | None = None
    seconds: float = 0.0

    def metadata(self) -> dict[str, Any]:
        after = self.after or self.before
        found = self.before.counts()
        out: dict[str, Any] = {
            **after.counts(),
            "found_missing": found["missing"],
            "found_stale": found["stale"],
            "restored": found["restored_pending"],
            "found_deleted_but_present": found["deleted_but_present"],
            "refreshed": self.refreshed,
            "contacts_changed_by_refresh": self.contacts_changed_by_refresh,
            "list_requests": self.list_requests,
            "info_requests": self.info_requests,
            "info_reused": self.info_reused,
            "ledger_yielded": self.ledger_yielded,
            "purged_in_okki": self.purged,
            "unlisted_still_answered": len(self.unlisted_still_answered),
            "duration_seconds": round(self.seconds, 2),
        }
        if self.clean is not None:
            out["cleaned"], out["quarantined_now"] = self.clean.cleaned, self.clean.quarantined
        if self.load is not None:
            out["sent"], out["tombstones_sent"] = (
                self.load.sent,
                self.load.statuses[LedgerStatus.DELETED],
            )
            out["failed"] = self.load.failed
        if self.audit is not None:
            out.update(self.audit.metadata())
        return out


def list_account(client: OkkiClient, removed: int) -> ListedRecords:
    """The whole (live or deleted) list, under the guard of a window's list (``pull``): passes
    until two consecutive ones agree, each ending only at an empty page."""
    records, report = list_everything(client, removed=removed)
    log.info("account list (removed=%d): %d passes, %d pages", removed, report.passes, report.pages)
    return records


def snapshot_frame(live: ListedRecords, deleted: ListedRecords) -> pd.DataFrame:
    """The run's view of the account; a row without a company_id keeps its ``raw:`` key and is
    counted (as malformed) with the companies."""
    rows = [(k, live.update_time(k), False) for k in live]
    rows += [(k, deleted.update_time(k), True) for k in deleted if not is_raw_key(k)]
    return pd.DataFrame(rows, columns=["company_id", "update_time", "removed"]).astype(
        {"company_id": object, "update_time": object, "removed": bool}
    )


def observe(
    client: OkkiClient, connect: Connect, run_id: str
) -> tuple[ListedRecords, ListedRecords, AccountState]:
    """The account list (live and deleted), kept as the run's snapshot, against the ledger."""
    observed_at = datetime.now(tz=UTC)
    live = list_account(client, removed=0)
    deleted = list_account(client, removed=1)
    snapshot = snapshot_frame(live, deleted)
    with connect() as conn:
        storage.replace_account_list(conn, snapshot, run_id, observed_at)
        state = state_of(conn, snapshot, observed_at)
    log.info("account: %d live, %d deleted listed", len(live), len(deleted))
    return live, deleted, state


def state_of(
    conn: Any,
    snapshot: pd.DataFrame,
    observed_at: datetime | None = None,
    mapping: TargetMapping | None = None,
) -> AccountState:
    """The snapshot (read at ``observed_at``) against the ledger and, with a ``mapping``, the
    content of the account's copies read since: what the target should hold."""
    ids = [int(c) for c in ledger_ids(snapshot["company_id"]).dropna()]
    fresh = None
    if observed_at is not None and mapping is not None:
        rows = storage.read_cleaned(conn, ACCOUNT_KEY, observed_since=observed_at)
        fresh = pd.DataFrame(
            {
                "company_id": rows["company_id"].astype("int64").astype(str),
                "update_time": rows["update_time"],
                "content_hash": [content_hash(r) for r in map_records(rows, mapping)],
            }
        )
    return compare(
        snapshot,
        storage.ledger_rows(conn, ids),
        storage.known_bad_versions(conn),
        observed_at=observed_at,
        fresh=fresh,
    )


def reconcile_account(
    okki: OkkiClient,
    target: Target,
    connect: Connect,
    load_lock: Callable[[], AbstractContextManager[None]],
    run_id: str,
    mapping: TargetMapping,
    *,
    refresh_days: int = DEFAULT_REFRESH_DAYS,
    batch_size: int = TargetSettings.batch_size,
) -> ReconcileSummary:
    """Bring the whole account to the target (see the module docstring); re-running is safe:
    the account partition is replaced, and the ledger skips what the target already has."""
    started = time.monotonic()
    before_stats = okki.stats.as_metadata()
    observed_at = datetime.now(tz=UTC)
    audit = audit_target(target, connect, load_lock, batch_size=batch_size)  # before observing
    live, deleted, state = observe(okki, connect, run_id)
    summary = ReconcileSummary(state, audit=audit)

    with connect() as conn:
        last_fetch = storage.last_info_fetches(conn)
    due = set(due_for_refresh(state.at_target, last_fetch, refresh_days, observed_at))
    # Everything not at the target (missing, stale, restored, malformed or known bad, the last
    # two for quarantine: a known bad version is re-cleaned from its stored payload, no info
    # call, so that the account's quarantine keeps it), plus the refresh slice.
    at_target = set(state.at_target)
    work = {k for k in live if k not in at_target and k not in deleted} | due
    summary.refreshed = len(due)

    to_pull = ListedRecords()
    for key in sorted(work):
        to_pull.add(key, live[key])
    summary.info_reused, summary.info_requests = _pull(okki, connect, to_pull, due, run_id)
    purged = _purged(okki, connect, run_id)
    summary.purged, summary.unlisted_still_answered = len(purged.rows), purged.still_answered
    summary.info_requests += purged.info_requests
    summary.ledger_yielded = _yield_and_keep_deletions(
        connect, load_lock, (live, deleted, state), observed_at, (purged.rows, run_id)
    )
    summary.clean = clean_partition(connect, ACCOUNT_KEY, run_id)

    with load_lock():
        with connect() as conn:
            held = held_contents(conn, due)
        summary.load = load_partition(
            target, connect, ACCOUNT_KEY, run_id, mapping, batch_size=batch_size
        )
    with connect() as conn:
        summary.contacts_changed_by_refresh = changed_by_refresh(conn, run_id, held)
        summary.after = state_of(conn, snapshot_frame(live, deleted), observed_at, mapping)
    after_stats = okki.stats.as_metadata()
    summary.list_requests = int(after_stats["requests_list"] - before_stats["requests_list"])
    summary.seconds = time.monotonic() - started
    return summary


def _yield_and_keep_deletions(
    connect: Connect,
    load_lock: Callable[[], AbstractContextManager[None]],
    observed: tuple[ListedRecords, ListedRecords, AccountState],
    observed_at: datetime,
    purged_and_run: tuple[list[tuple[str, str | None, str]], str],
) -> int:
    """The ledger yields to the observation (before the clean: the copies read now then win
    the settling too); the companies deleted but present, and those purged, become the
    account's deleted list."""
    live, deleted, state = observed
    with load_lock(), connect() as conn:
        yielded = storage.yield_ledger_to_observation(
            conn, _ledger_disagreements(live, deleted, state), observed_at
        )
    purged, run_id = purged_and_run
    _keep_deletions(connect, deleted, state.deleted_but_present, purged, run_id)
    return yielded


def held_contents(conn: Any, ids: set[str]) -> dict[str, str | None]:
    """company_id -> the content hash the ledger holds for it (None: no ledger row)."""
    rows = storage.ledger_rows(conn, [int(c) for c in ids])
    held: dict[str, str | None] = dict.fromkeys(ids)
    held.update(zip(rows["company_id"].astype(str), rows["content_hash"], strict=True))
    return held


def changed_by_refresh(conn: Any, run_id: str, held: dict[str, str | None]) -> int:
    """How many of the refreshed companies (``held``: their content hashes before the load)
    this run sent or landed with other content. Land-only mode lands every refreshed company
    again (nothing is acknowledged there), so the ledger's status alone would count them all."""
    written = storage.ledger_ids_for_run(
        conn, run_id, (LedgerStatus.CREATED, LedgerStatus.UPDATED, LedgerStatus.LANDED)
    )
    now_held = held_contents(conn, {c for c in held if int(c) in written})
    return sum(1 for cid, content in now_held.items() if content != held[cid])


def _pull(
    okki: OkkiClient, connect: Connect, to_pull: ListedRecords, due: set[str], run_id: str
) -> tuple[int, int]:
    """Fetch info for the work set (reusing a stored payload of the same version unless the
    company is due for refresh) and publish it as the account's raw partition."""
    ids = [k for k in to_pull if not is_raw_key(k)]
    with connect() as conn:
        stored = storage.stored_update_times(conn, ids)

    def reusable(company_id: str, update_time: object) -> bool:
        return (
            update_time is not None
            and company_id not in due
            and stored.get(company_id) == update_time
        )

    report = InfoReport()
    stager = RawStager(connect, run_id)
    with stager.discarding_on_failure():
        for c in fetch_infos(okki, to_pull, reusable=reusable, report=report):
            info = json.dumps(c.info, ensure_ascii=False) if c.info is not None else None
            list_json = json.dumps(c.list_record, ensure_ascii=False)
            stager.add(
                storage.RawRow(
                    ACCOUNT_KEY, c.company_id, c.update_time, list_json, info, c.info_reused
                )
            )
        with connect() as conn:
            stager.publish(conn, [ACCOUNT_KEY])
            storage.record_info_fetches(conn, ACCOUNT_KEY, run_id)
    return report.reused, report.requested


def _keep_deletions(
    connect: Connect,
    deleted: ListedRecords,
    present: list[str],
    purged: list[tuple[str, str | None, str]],
    run_id: str,
) -> None:
    """The account's deleted companies to tombstone: those deleted in OKKI but present at the
    target, and those purged from OKKI."""
    rows = [
        (k, _text(deleted.update_time(k)), json.dumps(deleted[k], ensure_ascii=False))
        for k in present
    ]
    with connect() as conn:
        storage.replace_deleted(conn, ACCOUNT_KEY, rows + purged, run_id, datetime.now(tz=UTC))


def _purged(okki: OkkiClient, connect: Connect, run_id: str) -> Purged:
    """Companies the ledger holds live (not as a tombstone) that the run's account list shows
    nowhere, confirmed gone by info (see purged.py)."""
    with connect() as conn:
        unlisted = storage.unlisted_ledger_rows(conn, run_id, UPSERT_DONE)
    if not unlisted.empty:
        unlisted = unlisted[~holds_tombstone(unlisted["company_id"], unlisted["content_hash"])]
    return confirm_purged(okki, unlisted)


def _ledger_disagreements(
    live: ListedRecords, deleted: ListedRecords, state: AccountState
) -> pd.DataFrame:
    """The observed state of every company whose ledger says the opposite, or a newer time
    (see the module): company_id, update_time, deleted, moved_back, and the tombstone's hash."""
    rows = [(cid, live.update_time(cid), False, False) for cid in state.restored]
    rows += [(cid, live.update_time(cid), False, True) for cid in state.moved_back]
    rows += [(cid, deleted.update_time(cid), True, False) for cid in state.deleted_but_present]
    frame = pd.DataFrame(rows, columns=["company_id", "update_time", "deleted", "moved_back"])
    frame["update_time"] = parse_okki_times(frame["update_time"].astype(object))
    frame = frame[frame["update_time"].notna()]
    frame = frame.assign(company_id=frame["company_id"].astype("int64"))
    return frame.assign(tombstone_hash=[tombstone_hash(int(c)) for c in frame["company_id"]])


def _text(value: object) -> str | None:
    return None if value is None else str(value)
