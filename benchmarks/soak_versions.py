"""The soak's version-order cases (okki_assets/versions.py): the word read last decides.

After the whole-account round, in one compact round:

- restores after tombstones that did not apply: a company the target never held (its
  tombstone answered ``unchanged``) and one whose tombstone the target refused, both deleted
  today (time moves) and restored by OKKI with their old time;
- a window cleaned and loaded again after the reconcile's refresh sent contacts edited without
  moving ``update_time``;
- a replay of the deletion day's load after OKKI restored a company deleted that day.

The soak's reconciliation then compares the whole account with the target as always.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import dagster as dg

from okki_assets.okki_time import CHINA_TZ
from okki_assets.partitions import window_for_key
from okki_assets.simulator.okki import OkkiSimulator
from okki_assets.simulator.target import TargetSimulator

Execute = Callable[..., None]
CLEANED_AND_LOADED = [dg.AssetKey("cleaned_companies"), dg.AssetKey("loaded_companies")]
LOADED_ONLY = [dg.AssetKey("loaded_companies")]


def _today_moment(key: str) -> datetime:
    start, end = window_for_key(key)
    when = datetime.now(CHINA_TZ) - timedelta(minutes=1)
    return min(max(when, start + timedelta(seconds=1)), end - timedelta(seconds=1))


def _never_at_target(okki: OkkiSimulator, history: dict[str, Any]) -> str:
    """A copy of a history company under a new id: no window lists it, the target never held
    it."""
    everything = okki.companies_in_window(*_EVERYTHING)
    ids = [int(r["company_id"]) for r in everything if str(r.get("company_id")).isdigit()]
    new_id = max(ids) + 1000
    okki.add_company({**history, "company_id": new_id, "serial_id": f"V{new_id}"})
    return str(new_id)


_EVERYTHING = (datetime(1970, 1, 2, tzinfo=CHINA_TZ), datetime(2200, 1, 1, tzinfo=CHINA_TZ))


def version_cases(
    execute: Execute,
    reconcile_job: dg.JobDefinition,
    okki: OkkiSimulator,
    target: TargetSimulator,
    keys: Sequence[str],
    valid: Sequence[dict[str, Any]],
    rng: random.Random,
) -> Counter[str]:
    """Run the round (see the module); ``valid``: the valid companies OKKI holds now."""
    today = keys[-1]
    held = [r for r in valid if str(r["company_id"]) in target.records]
    first, last = window_for_key(keys[0])[0], window_for_key(keys[-2])[1]
    windowed = [r for r in held if first <= _time(r) < last]
    history = [r for r in held if _time(r) < first]
    chosen = rng.sample(windowed, 3)
    refused, replayed, recleaned = (str(r["company_id"]) for r in chosen)
    window = next(k for k in keys if _time(chosen[2]) < window_for_key(k)[1])
    unknown = _never_at_target(okki, rng.choice(history))

    deleted = (unknown, refused, replayed)
    for cid in deleted:
        okki.delete_company(cid, delete_time=_today_moment(today))
    target.config.reject_delete_rule = lambda r: (
        "this record is protected" if r.get("id") == refused else None
    )
    execute("versions: deletions", today)  # the refused tombstone fails its check
    target.config.reject_delete_rule = None
    for cid in deleted:
        okki.restore_company(cid)  # back with the old time, older than the tombstone's
    okki.edit_contact(recleaned, email=f"v{rng.randint(0, 99999)}@example.com")
    execute("versions: reconcile", None, job=reconcile_job)
    execute("versions: re-clean", window, asset_selection=CLEANED_AND_LOADED)
    execute("versions: replay day", today, asset_selection=LOADED_ONLY)
    return Counter(
        {
            "restored after an unchanged tombstone": 1,
            "restored after a refused tombstone": 1,
            "window cleaned again after a refresh": 1,
            "deletion day replayed after a restore": 1,
        }
    )


def _time(record: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(str(record["update_time"])).replace(tzinfo=CHINA_TZ)
