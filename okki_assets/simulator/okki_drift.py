"""Drift, the 漏单 trap of the OKKI simulator.

On the first pass over a window, companies change while the client pages: one leaves the
window (a served page's rows shift up, a row is skipped), one enters it from before (every row
shifts down, a row repeats), one not yet served jumps to its front (it is skipped, a row
repeats). ``Drifter`` plans, per window, how many mutations fall before which page
(``OkkiSimConfig.drift_rate`` of the window's companies, from its seeded RNG), applies them
through the ``okki_store.CompanyStore`` and logs each one; once a page is asked for again the
first pass is over and the window holds still.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import random
from bisect import bisect_left
from dataclasses import dataclass, field
from typing import Any

from okki_assets.simulator.data import parse_time
from okki_assets.simulator.okki_config import OkkiSimConfig
from okki_assets.simulator.okki_store import SECOND, CompanyStore, Entry, ListQuery

log = logging.getLogger(__name__)

DriftEntry = tuple[str, Any, str, str]  # (kind, company_id, old_update_time, new_update_time)


@dataclass(eq=False)
class _DriftPlan:
    schedule: dict[int, list[str]]  # page number -> mutations to apply before serving it
    served: set[int] = field(default_factory=set)
    over: bool = False


def _driftable(entry: Entry) -> bool:
    """Drift moves only well-formed companies (a numeric id, a parseable update_time)."""
    return entry.keys[0][1] >= 0 and parse_time(entry.record.get("update_time")) is not None


class Drifter:
    """The drift plans per window, their RNG and the log of every mutation applied."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.plans: dict[tuple[Any, ...], _DriftPlan] = {}
        self.log: list[DriftEntry] = []

    def drift(self, q: ListQuery, store: CompanyStore, cfg: OkkiSimConfig) -> None:
        """Before page ``q.page`` of a live update-time window is served: apply what is due."""
        key = (q.removed, q.time_type, q.lo, q.hi)
        plan = self.plans.get(key)
        if plan is None:
            total = len(store.window(False, 1, q.lo, q.hi, q.pool, q.group))
            pages = math.ceil(total / q.count)
            planned = max(1, round(cfg.drift_rate * total)) if pages > 1 else 0
            kinds = cfg.drift_kinds
            turn = self.rng.randrange(len(kinds)) if kinds else 0
            schedule: dict[int, list[str]] = {}
            for i in range(planned if kinds else 0):
                page = self.rng.randint(2, pages)
                schedule.setdefault(page, []).append(kinds[(turn + i) % len(kinds)])
            plan = self.plans[key] = _DriftPlan(schedule)
        if plan.over:
            return
        if q.page in plan.served:  # a re-read: the first pass is over, the window holds still
            plan.over = True
            return
        plan.served.add(q.page)
        due = plan.schedule.pop(q.page, [])
        if due:
            # One snapshot per page: the window as the client's next page would have seen it.
            entries = store.window(False, 1, q.lo, q.hi, q.pool, q.group)
            moved: set[int] = set()
            for kind in due:
                self._drift_one(kind, q, store, entries, (q.page - 1) * q.count, moved)

    def _drift_one(
        self,
        kind: str,
        q: ListQuery,
        store: CompanyStore,
        entries: list[Entry],
        served: int,
        moved: set[int],
    ) -> None:
        """Apply one mutation to the window ``entries`` (newest first; the first ``served``
        rows were already sent). ``moved`` holds the entries this page already drifted."""
        rng = self.rng
        if not entries:
            return
        newest = max([entries[0].keys[0][0], *(store.entries[seq].keys[0][0] for seq in moved)])
        front = newest + SECOND if q.hi is None else min(q.hi, newest + SECOND)

        def sample(
            pool: list[Entry], first: int, last: int, before: dt.datetime | None = None
        ) -> Entry | None:
            """A random well-formed entry of pool[first:last] (updated before ``before``):
            a few random probes instead of a scan, so huge windows drift cheaply."""
            for _ in range(64 if last > first else 0):
                entry = pool[rng.randrange(first, last)]
                if (
                    entry.seq not in moved
                    and _driftable(entry)
                    and (before is None or entry.keys[0][0] < before)
                ):
                    return entry
            return None

        chosen: Entry | None = None
        new_time = front
        if kind == "leave" and q.hi is not None:
            # from a page already served: the rows behind it shift up, one is skipped
            chosen = sample(entries, 0, served) or sample(entries, 0, len(entries))
            new_time = q.hi + dt.timedelta(seconds=rng.randint(1, 3600))
        elif kind == "enter" and q.lo is not None:
            # from before the window to its front: every row shifts down, one repeats
            keys = store.index[(False, 1)]
            below = bisect_left(keys, (q.lo,))
            earlier = [store.entries[k[2]] for k in keys[max(0, below - 200) : below]]
            chosen = sample(earlier, 0, len(earlier))
        if chosen is None:
            # bump: a company not yet served jumps to the front: it is skipped, a row repeats
            kind, new_time = "bump", front
            chosen = sample(entries, served, len(entries), front) or sample(
                entries, 0, len(entries), front
            )
            if chosen is None:
                return
        old = chosen.record.get("update_time", "")
        store.move(chosen, update_time=new_time)
        moved.add(chosen.seq)
        self.log.append((kind, chosen.record.get("company_id"), old, chosen.record["update_time"]))
        log.debug(
            "drift %s %s: %s -> %s",
            kind,
            chosen.record.get("company_id"),
            old,
            chosen.record["update_time"],
        )
