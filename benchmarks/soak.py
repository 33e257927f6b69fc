"""``benchmarks.soak``: days of syncing against faulty simulators, then a reconciliation.

The claim this command lets a user check for themselves: every OKKI company of the synced
windows reaches the target exactly once per version, in its newest version, and every bad record
is kept with its reason. It starts both simulators on loopback with a fault profile (``none``,
``moderate``, ``heavy``; see ``okki_assets.simulator.harness``), runs the real ``okki_sync`` job
the way a deployment would, with OKKI data changing between rounds:

1. a daily sync of every partition, oldest first (each window's first listing drifts; in every
   round OKKI also answers a few first pages empty while ``totalItem`` > 0, and throughout it
   serves pages smaller than the client asks for and caps ``totalItem`` below a day's
   companies: every page is short and the count is reached early);
2. churn: companies edited, moved to later windows, bumped with no real change, deleted;
3. a backfill: one ranged run over every partition (the UI's single-run backfill);
4. churn again, and a flap: a few companies deleted, restored and deleted again in one window,
   their partition synced after each step (the last tombstone repeats the first one's bytes and
   must still be applied);
5. newest partition first: a replay of ``loaded_companies`` alone (its cleaned copy still holds
   versions that a newer window already loaded: they must be skipped as stale), then a full run
   of the partition;
6. the whole account: a share of the companies was last updated a year or more before the first
   window (``SOAK_HISTORY_SHARE``); OKKI deletes companies keeping their old ``update_time``,
   restores the flapped ones with their old time and edits contacts without moving
   ``update_time``; today's window is synced, then ``okki_reconcile`` runs (info refreshed for
   every company, ``OKKI_INFO_REFRESH_DAYS=1``), OKKI answering one page in the middle of its
   account list empty;
7. the version order (``benchmarks.soak_versions``): restores after tombstones answered
   ``unchanged`` or refused, a window cleaned again after the reconcile's refresh, a replayed
   deletion day.

It then reconciles, from the simulators' truth and the target's read-back only (never the
pipeline's counters): ``reconcile`` compares every company OKKI holds (the whole account) with
the target's stored record (content built from the truth with the project's cleaning and mapping),
every malformed one with ``quarantined_companies``, and every applied write in the target's write
log with the others (the same content applied twice). The exit status is 1 when anything is lost,
doubled, stale or different.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

import dagster as dg
import duckdb
import pandas as pd

from benchmarks import command_main
from benchmarks.soak_versions import version_cases
from okki_assets.cleaning import clean_companies
from okki_assets.clients.okki import record_key
from okki_assets.definitions import build_defs
from okki_assets.mapping import TargetMapping, map_records
from okki_assets.okki_time import CHINA_TZ
from okki_assets.partitions import ACCOUNT_KEY, today_key, window_for_key
from okki_assets.resources import OkkiResource, TargetResource, WarehouseResource
from okki_assets.simulator.data import list_view, parse_time
from okki_assets.simulator.harness import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_TARGET_TOKEN,
    PROFILES,
    fault_profile,
    running_simulators,
)
from okki_assets.simulator.okki import OkkiSimulator
from okki_assets.simulator.target import APPLIED_STATUSES, TargetSimulator

SILENT = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
COMPANIES_PER_DAY = 150
#: Client settings of the soak: a read timeout below the heavy profile's latency spikes, retries
#: that start fast, small batches so that target faults hit many of them.
READ_TIMEOUT = 1.0
#: List glitches of the soak on top of the profile: page 1 answered empty while totalItem > 0
#: (retried), spread over the rounds; a small server page with a capped count: pages of 50
#: where the client asks for 100 and totalItem capped below a day's companies (only the list's
#: empty page may end a pass).
LIST_GLITCHES = {
    "empty_first_pages": 8,
    "empty_first_page_every": 12,
    "total_item_cap": COMPANIES_PER_DAY * 2 // 3,
    "max_page_size": COMPANIES_PER_DAY // 3,
}
#: Pages in the middle of the account list (okki_reconcile) answered empty, once each.
ACCOUNT_EMPTY_PAGES = 1
RETRY_BASE_DELAY = 0.1
RATE_LIMIT = 120.0
BATCH_SIZE = 20
FLAPS = 3  # companies deleted, restored and deleted again in one window
SOAK_HISTORY_SHARE = 0.3  # companies last updated a year or more before the first window
ACCOUNT_CHURN = 0.02  # share of the account deleted (old time kept) or edited silently
EVERYTHING = (datetime(1970, 1, 2, tzinfo=CHINA_TZ), datetime(2200, 1, 1, tzinfo=CHINA_TZ))


# --- reconciliation -----------------------------------------------------------------------


def truth_key(record: dict[str, Any]) -> str:
    """A truth record's identity: the pull's key (``record_key``) of the row OKKI lists
    for it, so a record without an id matches the quarantine row that keeps that list row."""
    return record_key(list_view(record))


def _quarantine_key(company_id: object, list_json: object) -> str:
    """A quarantine row's identity: the pull's key of the list row it keeps."""
    try:
        listed = json.loads(str(list_json))
    except ValueError:
        listed = None
    return record_key(listed if isinstance(listed, dict) else {"company_id": company_id})


def valid_records(truth: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The truth records the target must hold: those the project's cleaning keeps (a numeric
    id, a name that is not blank, a parseable update time); the others must be quarantined."""
    expected = expected_records(truth)
    return [r for r in truth if truth_key(r) in expected]


def expected_records(
    truth: Sequence[dict[str, Any]], mapping: TargetMapping | None = None
) -> dict[str, dict[str, Any]]:
    """The target record each truth company should end as: its info payload run through the
    project's cleaning and mapping, as the pipeline's newest pull would produce it."""
    by_window: dict[str, list[dict[str, Any]]] = {}
    for record in truth:
        when = parse_time(record.get("update_time"))
        if when is not None:
            by_window.setdefault(when.date().isoformat(), []).append(record)
    out: dict[str, dict[str, Any]] = {}
    for key, records in by_window.items():
        start, end = window_for_key(key)
        raw = pd.DataFrame(
            {
                "partition_key": key,
                "company_id": [str(r.get("company_id")) for r in records],
                "update_time": [r.get("update_time") for r in records],
                "list_json": [json.dumps(list_view(r), ensure_ascii=False) for r in records],
                "info_json": [json.dumps(r, ensure_ascii=False) for r in records],
            }
        )
        cleaned = clean_companies(raw, start, end).cleaned
        for record in map_records(cleaned, mapping):
            # What the target stores is what JSON carried: compare in that form.
            out[str(record["id"])] = json.loads(json.dumps(record, ensure_ascii=False))
    return out


def _updated_at(record: dict[str, Any] | None) -> datetime | None:
    value = (record or {}).get("updatedAt")
    try:
        return datetime.fromisoformat(str(value)).astimezone(CHINA_TZ)
    except ValueError:
        return None


def _truth_time(record: dict[str, Any]) -> datetime | None:
    when = parse_time(record.get("update_time"))
    return when.replace(tzinfo=CHINA_TZ) if when is not None else None


@dataclass
class Reconciliation:
    """What the target and DuckDB hold against what OKKI holds, for the synced windows."""

    partitions: list[str]
    whole_account: bool = False  # the truth is every company OKKI holds, not only the windows'
    history: int = 0  # of the truth, companies last updated before the first window
    expected: int = 0  # valid OKKI companies of the windows: the target must hold each
    current: int = 0  # of those, held by the target in their newest version, content equal
    malformed: int = 0  # invalid OKKI records of the windows: each must be quarantined
    lost: list[str] = field(default_factory=list)
    quarantined_valid: list[str] = field(default_factory=list)  # lost to a wrong quarantine
    malformed_unquarantined: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    deleted_at_target: list[str] = field(default_factory=list)
    different: list[str] = field(default_factory=list)
    doubled: list[str] = field(default_factory=list)
    rejected: dict[str, str] = field(default_factory=dict)  # id -> the target's reason
    rejected_unrecorded: list[str] = field(default_factory=list)
    quarantined_by_reason: Counter[str] = field(default_factory=Counter)
    quarantined_rows: int = 0
    applied_writes: int = 0

    @property
    def lost_total(self) -> int:
        return (
            len(self.lost)
            + len(self.quarantined_valid)
            + len(self.malformed_unquarantined)
            + len(self.rejected_unrecorded)
        )

    @property
    def stale_total(self) -> int:
        return len(self.stale) + len(self.deleted_at_target)

    @property
    def ok(self) -> bool:
        return not (self.lost_total or self.stale_total or self.doubled or self.different)

    def figures(self) -> dict[str, int]:
        return {
            "expected": self.expected,
            "current": self.current,
            "lost": self.lost_total,
            "doubled": len(self.doubled),
            "stale": self.stale_total,
            "different": len(self.different),
            "rejected": len(self.rejected),
            "malformed": self.malformed,
            "quarantined": self.quarantined_rows,
        }


def doubled_ids(writes: Iterable[tuple[str, str, str]]) -> list[str]:
    """Ids the target applied twice with the same content (a write log of id, status, hash).

    A tombstone carries no time, so a company deleted, restored and deleted again sends the
    same tombstone twice as two real deletions: a delete counts as doubled only when nothing
    else was applied to the id since the same delete. Likewise a company restored with its old
    update_time comes back with the content it had: an upsert right after a delete is a real
    re-creation, not a resend."""
    seen: set[tuple[str, str]] = set()
    last: dict[str, tuple[str, str]] = {}  # id -> (status, fingerprint) of the last applied
    doubled: set[str] = set()
    for record_id, status, fingerprint in writes:
        if status not in APPLIED_STATUSES:
            continue
        again = (record_id, fingerprint) in seen
        previous_status, previous = last.get(record_id, ("", ""))
        if again and (
            previous == fingerprint or (status != "deleted" and previous_status != "deleted")
        ):
            doubled.add(record_id)
        seen.add((record_id, fingerprint))
        last[record_id] = (status, fingerprint)
    return sorted(doubled)


def reconcile(
    okki: OkkiSimulator,
    target: TargetSimulator,
    database: str | Path,
    partitions: Sequence[str],
    mapping: TargetMapping | None = None,
    *,
    whole_account: bool = False,
) -> Reconciliation:
    """Compare the simulators' truth for ``partitions`` (or the whole account, the history
    before them included) with the target and DuckDB."""
    rec = Reconciliation(sorted(partitions), whole_account=whole_account)
    truth: list[dict[str, Any]] = []
    first, last = window_for_key(rec.partitions[0])[0], window_for_key(rec.partitions[-1])[1]
    if whole_account:
        truth = okki.companies_in_window(*EVERYTHING)
        history_start, first, last = first, *EVERYTHING
    else:
        for key in rec.partitions:
            truth += okki.companies_in_window(*window_for_key(key))
    records = target.records
    writes = target.writes
    rejected_at_target = {rid for rid, status, _ in writes if status == "rejected"}
    scope = [*rec.partitions, ACCOUNT_KEY] if whole_account else rec.partitions
    quarantine, ledger = _read_duckdb(database, scope)
    rec.quarantined_rows = len(quarantine)
    for reasons in quarantine.values():
        rec.quarantined_by_reason.update(reasons)
    rejected_in_ledger = {
        cid: error for cid, (status, error) in ledger.items() if status == "rejected" and error
    }

    expected = expected_records(truth, mapping)
    rec.expected, rec.malformed = len(expected), len(truth) - len(expected)
    if whole_account:
        rec.history = sum(
            1
            for r in truth
            if record_key(r) in expected and (t := _truth_time(r)) and t < history_start
        )
    for record in truth:
        key = truth_key(record)
        if key not in expected:
            if key not in quarantine:
                rec.malformed_unquarantined.append(key)
            continue
        held = records.get(key)
        if held is None:
            if key in rejected_in_ledger and key in rejected_at_target:
                rec.rejected[key] = rejected_in_ledger[key]
            elif key in rejected_at_target:
                rec.rejected_unrecorded.append(key)
            elif key in quarantine:
                rec.quarantined_valid.append(key)
            else:
                rec.lost.append(key)
            continue
        held_at, truth_at = _updated_at(held), _truth_time(record)
        if held_at is None or truth_at is None or held_at < truth_at:
            rec.stale.append(key)
        elif held != expected.get(key):
            rec.different.append(key)
        else:
            rec.current += 1

    # Companies deleted in OKKI inside the synced windows must be gone from the target.
    for record_id in records:
        company = okki.get_company(record_id)
        if company is None or not okki.is_removed(record_id):
            continue
        deleted_at = _truth_time(company)
        if deleted_at is not None and first <= deleted_at < last:
            rec.deleted_at_target.append(record_id)

    rec.doubled = doubled_ids(writes)
    rec.applied_writes = sum(1 for _, status, _ in writes if status in APPLIED_STATUSES)
    return rec


def _read_duckdb(
    database: str | Path, partitions: Sequence[str]
) -> tuple[dict[str, list[str]], dict[str, tuple[str, str | None]]]:
    """Quarantine rows (key -> reasons) of the partitions and the whole load ledger."""
    if not Path(database).exists():
        return {}, {}
    with duckdb.connect(str(database), read_only=True) as conn:
        tables = {r[0] for r in conn.execute("select table_name from duckdb_tables()").fetchall()}
        quarantine: dict[str, list[str]] = {}
        if "quarantined_companies" in tables:
            rows = conn.execute(
                "select company_id, list_json, reasons from quarantined_companies"
                " where partition_key in (select unnest(?::varchar[]))",
                [list(partitions)],
            ).fetchall()
            for company_id, list_json, reasons in rows:
                quarantine.setdefault(_quarantine_key(company_id, list_json), []).extend(reasons)
        ledger: dict[str, tuple[str, str | None]] = {}
        if "load_ledger" in tables:
            for company_id, status, error in conn.execute(
                "select company_id, status, last_error from load_ledger"
            ).fetchall():
                ledger[str(company_id)] = (status, error)
    return quarantine, ledger


# --- the soak -----------------------------------------------------------------------------


@dataclass(frozen=True)
class SoakSettings:
    days: int = 7
    faults: str = "heavy"
    companies: int | None = None  # default: COMPANIES_PER_DAY per day
    seed: int = 7
    malformed_rate: float = 0.02
    churn: float = 0.05
    batch_size: int = BATCH_SIZE
    workdir: Path | None = None


@dataclass
class SoakRun:
    label: str
    partitions: str
    success: bool
    failed_checks: list[str]
    error: str
    seconds: float
    rejected: int = 0  # records the target rejected in this run's loads
    failed_records: int = 0  # records whose batch failed for good

    @property
    def why(self) -> str:
        """The failure in one line: the failed checks, or the step's error message."""
        if self.failed_checks and (not self.error or "AssetCheckFailedError" in self.error):
            checks = ", ".join(self.failed_checks)
            if (
                self.failed_checks == ["load_reconciled"]
                and self.rejected
                and not self.failed_records
            ):
                return f"check {checks}: {self.rejected} record(s) rejected by the target"
            return f"check {checks} failed"
        return self.error or "failed"


@dataclass
class SoakResult:
    settings: SoakSettings
    reconciliation: Reconciliation
    runs: list[SoakRun]
    retries: Counter[str]
    okki_faults: dict[str, int]
    target_faults: dict[str, int]
    churned: Counter[str]
    seconds: float


def _failure_message(result: dg.ExecuteInProcessResult) -> str:
    for event in result.all_events:
        if event.event_type_value == "STEP_FAILURE":
            error = getattr(event.event_specific_data, "error", None)
            text = error.message if error is not None else event.message or ""
            return text.strip().splitlines()[0] if text.strip() else ""
    return ""


def _load_count(result: dg.ExecuteInProcessResult, name: str) -> int:
    """A number of the run's loaded_companies metadata, summed over its partitions."""
    total = 0
    for event in result.get_asset_materialization_events():
        mat = event.event_specific_data.materialization  # type: ignore[union-attr]
        if mat.asset_key == dg.AssetKey("loaded_companies") and name in mat.metadata:
            total += int(getattr(mat.metadata[name], "value", 0) or 0)
    return total


def _retries(result: dg.ExecuteInProcessResult, into: Counter[str]) -> None:
    for event in result.get_asset_materialization_events():
        mat = event.event_specific_data.materialization  # type: ignore[union-attr]
        side = "okki" if mat.asset_key.to_user_string() == "raw_companies" else "target"
        for name, value in mat.metadata.items():
            number = getattr(value, "value", value)
            if name.startswith("retries_") and name != "retries_total" and number:
                into[f"{side} {name[len('retries_') :]}"] += int(str(number))


def churn(
    okki: OkkiSimulator, partitions: Sequence[str], share: float, rng: random.Random
) -> Counter[str]:
    """Change ``share`` of the windows' valid companies the way OKKI users and automation do:
    edits within the day, moves to a later window, bumps with no real change, deletes. Every
    new time stays inside the synced windows."""
    first, _ = window_for_key(min(partitions))
    _, end = window_for_key(max(partitions))
    companies = valid_records(okki.companies_in_window(first, end))
    done: Counter[str] = Counter()
    for record in rng.sample(companies, round(share * len(companies))):
        current = _truth_time(record)
        if current is None:
            continue
        room = int((end - current).total_seconds()) - 2
        if room < 1:
            continue
        same_day = (window_for_key(current.date().isoformat())[1] - current).total_seconds() - 2
        roll = rng.random()
        cid = record["company_id"]
        if roll < 0.35:
            when = current + timedelta(seconds=rng.randint(1, room))
            okki.update_company(cid, {"name": f"{record['name']} (moved)"}, update_time=when)
            done["moved or renamed"] += 1
        elif roll < 0.65:
            when = current + timedelta(seconds=rng.randint(1, room))
            okki.update_company(cid, {}, update_time=when)
            done["bumped, no real change"] += 1
        elif roll < 0.9 and same_day >= 1:
            when = current + timedelta(seconds=rng.randint(1, int(same_day)))
            okki.update_company(cid, {"short_name": f"SN{rng.randint(0, 9999)}"}, update_time=when)
            done["edited the same day"] += 1
        else:
            when = current + timedelta(seconds=rng.randint(1, room))
            okki.delete_company(cid, delete_time=when)
            done["deleted"] += 1
    return done


def soak_keys(days: int, today: str | None = None) -> list[str]:
    last = date.fromisoformat(today or today_key())
    return [(last - timedelta(days=i)).isoformat() for i in range(days - 1, -1, -1)]


class _Runner:
    """Executes the sync job in process, one run at a time, and keeps what each run showed."""

    def __init__(
        self, job: dg.JobDefinition, instance: dg.DagsterInstance, keys: list[str], out: TextIO
    ) -> None:
        self.job, self.instance, self.keys, self.out = job, instance, keys, out
        self.runs: list[SoakRun] = []
        self.retries: Counter[str] = Counter()
        self.flapped: list[Any] = []

    def execute(
        self, label: str, key: str | None, job: dg.JobDefinition | None = None, **kwargs: Any
    ) -> None:
        t0 = time.monotonic()
        result = (job or self.job).execute_in_process(
            partition_key=key,
            instance=self.instance,
            raise_on_error=False,
            run_config=SILENT,
            **kwargs,
        )
        failed = sorted(  # checks that fail a run (a WARN, like the quarantine ratio, does not)
            {
                e.check_name
                for e in result.get_asset_check_evaluations()
                if not e.passed and e.severity == dg.AssetCheckSeverity.ERROR
            }
        )
        run = SoakRun(
            label,
            key or f"{self.keys[0]}..{self.keys[-1]}",
            result.success,
            failed,
            "" if result.success else _failure_message(result),
            time.monotonic() - t0,
            rejected=_load_count(result, "status_rejected"),
            failed_records=_load_count(result, "status_failed"),
        )
        self.runs.append(run)
        _retries(result, self.retries)
        status = "ok" if run.success else f"FAILED: {run.why}"
        self.out.write(f"  {label:<20} {run.partitions:<24} {status} ({run.seconds:.1f}s)\n")
        self.out.flush()

    def rounds(self, okki: OkkiSimulator, churn_share: float, rng: random.Random) -> Counter[str]:
        keys, churned = self.keys, Counter[str]()
        self.out.write("round 1: daily sync, oldest partition first\n")
        for key in keys:
            self.execute("daily sync", key)
        churned += churn(okki, keys, churn_share, rng)
        self.out.write("round 2: after churn, one backfill run over every partition\n")
        self.execute(
            "backfill (one run)",
            None,
            tags={
                "dagster/asset_partition_range_start": keys[0],
                "dagster/asset_partition_range_end": keys[-1],
            },
        )
        churned += churn(okki, keys, churn_share, rng)
        churned += self.flap(okki, rng)
        self.out.write("round 3: after churn, newest first: replay the load alone, then re-sync\n")
        for key in reversed(keys):
            self.execute(
                "replay loaded only", key, asset_selection=[dg.AssetKey("loaded_companies")]
            )
            self.execute("re-sync", key)
        return churned

    def flap(self, okki: OkkiSimulator, rng: random.Random) -> Counter[str]:
        """A few companies of one window deleted, restored and deleted again, the window synced
        before and after each step: the last tombstone batch repeats the first one's bytes."""
        key = rng.choice(self.keys)
        start, end = window_for_key(key)
        in_window = okki.companies_in_window(start, end)
        valid = expected_records(in_window)
        room = [
            (r["company_id"], when)
            for r in in_window
            if truth_key(r) in valid
            and (when := _truth_time(r))
            and when + timedelta(seconds=3) < end
        ]
        chosen = rng.sample(room, min(FLAPS, len(room)))
        self.out.write("flap: deleted, restored and deleted again in one window\n")
        self.execute("flap: settle", key)
        for step, what in enumerate(("deleted", "restored", "deleted again"), start=1):
            for cid, when in chosen:
                at = when + timedelta(seconds=step)
                if what == "restored":
                    okki.restore_company(cid, restore_time=at)
                else:
                    okki.delete_company(cid, delete_time=at)
            self.execute(f"flap: {what}", key)
        self.flapped = [cid for cid, _ in chosen]
        return Counter({"deleted, restored and deleted again": len(chosen)})


def account_churn(
    okki: OkkiSimulator, keys: Sequence[str], restore: Sequence[Any], rng: random.Random
) -> Counter[str]:
    """What no daily window lists: deletions keeping the old update_time (history and windows
    alike), restores with the old time (``restore``: deleted companies), contact e-mails and
    phones edited without moving update_time."""
    companies = valid_records(okki.companies_in_window(*EVERYTHING))
    done: Counter[str] = Counter()
    for record in rng.sample(companies, round(ACCOUNT_CHURN * len(companies))):
        cid = record["company_id"]
        if rng.random() < 0.5:
            okki.delete_company(cid)
            done["deleted, old update_time kept"] += 1
        else:
            okki.edit_contact(
                cid, email=f"c{rng.randint(0, 99999)}@example.com", phone="13800000000"
            )
            done["contact edited, update_time unchanged"] += 1
    for cid in restore:
        if okki.is_removed(cid):
            okki.restore_company(cid)
            done["restored with the old update_time"] += 1
    return done


def _resources(
    okki_url: str, target_url: str, database: Path, batch_size: int
) -> tuple[OkkiResource, TargetResource, WarehouseResource]:
    return (
        OkkiResource(
            base_url=okki_url,
            client_id=DEMO_CLIENT_ID,
            client_secret=DEMO_CLIENT_SECRET,
            rate_limit=RATE_LIMIT,
            concurrency=8,
            read_timeout=READ_TIMEOUT,
            retry_base_delay=RETRY_BASE_DELAY,
        ),
        TargetResource(
            url=target_url,
            token=DEMO_TARGET_TOKEN,
            batch_size=batch_size,
            read_timeout=5 * READ_TIMEOUT,
            retry_base_delay=RETRY_BASE_DELAY,
        ),
        WarehouseResource(database=str(database)),
    )


def run_soak(settings: SoakSettings, out: TextIO) -> SoakResult:
    """Run the rounds described in the module docstring and reconcile."""
    profile = fault_profile(settings.faults)
    keys = soak_keys(settings.days)
    companies = settings.companies or COMPANIES_PER_DAY * settings.days
    started = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix="okki-soak-") as scratch,
        running_simulators(
            companies=companies,
            days=settings.days,
            profile=profile,
            seed=settings.seed,
            okki_overrides={
                "malformed_rate": settings.malformed_rate,
                "history_share": SOAK_HISTORY_SHARE,
                "history_before": date.fromisoformat(keys[0]),
                **LIST_GLITCHES,
            },
        ) as sims,
    ):
        workdir = settings.workdir or Path(scratch)
        workdir.mkdir(parents=True, exist_ok=True)
        database = workdir / "soak.duckdb"
        for old in (database, database.with_name(database.name + ".wal")):
            old.unlink(missing_ok=True)
        out.write(
            f"benchmarks.soak: {companies} companies over {settings.days} days,"
            f" fault profile '{profile.name}', seed {settings.seed}\n"
            f"  OKKI simulator {sims.okki_url}, target simulator {sims.target_url}\n"
            f"  DuckDB file    {database}\n\n"
        )
        okki, target, warehouse = _resources(
            sims.okki_url, sims.target_url, database, settings.batch_size
        )
        defs = build_defs(
            okki=okki,
            target=target,
            warehouse=warehouse,
            sync_start=keys[0],
            info_refresh_days=1,
        )
        with dg.DagsterInstance.ephemeral() as instance:
            runner = _Runner(defs.resolve_job_def("okki_sync"), instance, keys, out)
            rng = random.Random(settings.seed)
            churned = runner.rounds(sims.okki, settings.churn, rng)
            out.write("round 4: the whole account: history, old-time deletions and restores\n")
            churned += account_churn(sims.okki, keys, runner.flapped, rng)
            runner.execute("daily sync", keys[-1])
            sims.okki.config.empty_middle_pages += ACCOUNT_EMPTY_PAGES
            runner.execute("okki_reconcile", None, job=defs.resolve_job_def("okki_reconcile"))
            out.write("round 5: the version order: restores, a re-clean, a replayed day\n")
            churned += version_cases(
                runner.execute,
                defs.resolve_job_def("okki_reconcile"),
                sims.okki,
                sims.target,
                keys,
                valid_records(sims.okki.companies_in_window(*EVERYTHING)),
                rng,
            )
        reconciliation = reconcile(sims.okki, sims.target, database, keys, whole_account=True)
        okki_stats, target_stats = sims.okki.stats, sims.target.stats()
    okki_faults = {f"OKKI fault {k}": v for k, v in sorted(okki_stats.faults.items())}
    okki_faults.update({f"OKKI throttled {k}": v for k, v in sorted(okki_stats.throttled.items())})
    okki_faults["OKKI token refused (revoked)"] = okki_stats.denied
    target_faults = {
        "target throttled (429)": target_stats["throttled"],
        "target server errors (5xx)": target_stats["errors"],
        "target replies dropped after commit": target_stats["dropped_replies"],
        "target replays served": target_stats["replays"],
        "target records rejected": target_stats["status_counts"].get("rejected", 0),
    }
    return SoakResult(
        settings,
        reconciliation,
        runner.runs,
        runner.retries,
        okki_faults,
        target_faults,
        churned,
        time.monotonic() - started,
    )


def _sample(ids: Sequence[str], limit: int = 5) -> str:
    return "" if not ids else "   e.g. " + ", ".join(list(ids)[:limit])


def _line(label: str, value: object, width: int = 44) -> str:
    return f"  {label:<{width}}{value}"


def format_report(result: SoakResult) -> str:
    """The reconciliation report the command prints."""
    rec = result.reconciliation
    failed_runs = [r for r in result.runs if not r.success]
    lines = [
        "",
        "Reconciliation against the simulators' truth"
        + (
            f" (the whole account; windows {rec.partitions[0]} .. {rec.partitions[-1]})"
            if rec.whole_account
            else f" ({rec.partitions[0]} .. {rec.partitions[-1]}, {len(rec.partitions)} partitions)"
        ),
        _line("expected companies (valid in OKKI)", rec.expected),
        *([_line("  last updated before the first window", rec.history)] * rec.whole_account),
        _line("at the target, newest version", rec.current),
        _line("rejected by the target, with reason", len(rec.rejected)),
        _line("lost", rec.lost_total)
        + _sample(rec.lost + rec.quarantined_valid + rec.malformed_unquarantined),
        _line("applied twice with the same content", len(rec.doubled)) + _sample(rec.doubled),
        _line("stale (older version, or deleted)", rec.stale_total)
        + _sample(rec.stale + rec.deleted_at_target),
        _line("content different from OKKI", len(rec.different)) + _sample(rec.different),
        _line("malformed in OKKI", rec.malformed),
        _line("quarantined (rows, by reason)", rec.quarantined_rows),
    ]
    by_count = sorted(rec.quarantined_by_reason.items(), key=lambda kv: (-kv[1], kv[0]))
    lines += [_line(f"  {reason}", count) for reason, count in by_count]
    if rec.rejected:
        lines.append("  rejected by the target, by reason")
        reasons = Counter(rec.rejected.values()).most_common()
        lines += [_line(f"  {reason}", count) for reason, count in reasons]
    lines.append(_line("writes applied at the target", rec.applied_writes))
    lines.append("Retries by cause (the clients' metadata)")
    lines += [_line(cause, n) for cause, n in sorted(result.retries.items())] or ["  none"]
    lines.append("Faults injected (the simulators' counters)")
    lines += [_line(name, n) for name, n in {**result.okki_faults, **result.target_faults}.items()]
    lines.append("OKKI data changed between rounds")
    lines += [_line(k, v) for k, v in sorted(result.churned.items())] or ["  nothing"]
    why = "; ".join(sorted({re.sub(r"\d+ record", "n record", r.why) for r in failed_runs}))
    lines.append(
        f"Runs: {len(result.runs)}, {len(result.runs) - len(failed_runs)} succeeded,"
        f" {len(failed_runs)} failed" + (f" ({why})" if why else "")
    )
    lines.append(f"Time: {result.seconds:.0f}s")
    lines.append(
        f"{'PASS' if rec.ok else 'FAIL'}: lost {rec.lost_total}, doubled {len(rec.doubled)},"
        f" stale {rec.stale_total}, different {len(rec.different)}"
    )
    return "\n".join(lines) + "\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--days", type=int, default=7, help="partitions (days) to sync")
    parser.add_argument("--faults", choices=tuple(PROFILES), default="heavy", help="fault profile")
    parser.add_argument(
        "--companies",
        type=int,
        default=None,
        help=f"companies in the data set (default {COMPANIES_PER_DAY} per day)",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--malformed-rate", type=float, default=0.02, help="share of malformed OKKI records"
    )
    parser.add_argument(
        "--churn", type=float, default=0.05, help="share of companies changed between rounds"
    )
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE, help="records per batch")
    parser.add_argument(
        "--workdir", default=None, help="keep the DuckDB file here (default: a temporary folder)"
    )


def run(args: argparse.Namespace) -> int:
    if args.days < 1:
        sys.stderr.write("--days must be at least 1\n")
        return 2
    settings = SoakSettings(
        days=args.days,
        faults=args.faults,
        companies=args.companies,
        seed=args.seed,
        malformed_rate=args.malformed_rate,
        churn=args.churn,
        batch_size=args.batch_size,
        workdir=Path(args.workdir).resolve() if args.workdir else None,
    )
    result = run_soak(settings, out=sys.stdout)
    sys.stdout.write(format_report(result))
    return 0 if result.reconciliation.ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    description = "sync days against faulty simulators, then reconcile: lost, doubled, stale"
    return command_main("soak", description, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
