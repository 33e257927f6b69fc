"""Companies purged from OKKI: live at the target, but in neither the live nor the deleted list.

OKKI's recycle bin can be emptied: a company deleted there for good is no longer listed under
``removed=1`` either, so the account list alone never says it is gone and a reconcile would
keep reporting it at the target. Each company the ledger holds live that the run's account
list does not show is asked for with ``/v1/company/info``: a 404 confirms it is gone and it
gets a tombstone; one that info still details (a list that missed it, say) or answers with
another code is left alone and counted.

The tombstone carries the ledger's own ``update_time``: it is not older than what the target
holds (so it is sent), and a company that ever came back with a newer time would still win.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

import pandas as pd

from okki_assets.clients.okki import OkkiClient
from okki_assets.okki_time import format_okki_time

log = logging.getLogger(__name__)


@dataclass
class Purged:
    """What the purge step found: tombstone rows for ``deleted_companies`` (company_id,
    update_time, list_json), the companies info still answered for, and the info calls."""

    rows: list[tuple[str, str | None, str]] = field(default_factory=list)
    still_answered: list[str] = field(default_factory=list)
    info_requests: int = 0


def confirm_purged(okki: OkkiClient, unlisted: pd.DataFrame) -> Purged:
    """Ask info for each unlisted ledger row (company_id, update_time); a 404 confirms it."""
    found = Purged()
    times = {
        str(cid): format_okki_time(when.to_pydatetime())
        for cid, when in zip(unlisted["company_id"], unlisted["update_time"], strict=True)
        if not pd.isna(when)
    }
    found.info_requests = len(times)
    for result in okki.company_infos(sorted(times)):
        cid = str(result.company_id)
        if result.data is None and result.code is None and result.unusable is None:
            record = {"company_id": cid, "update_time": times[cid], "purged": True}
            found.rows.append((cid, times[cid], json.dumps(record)))
        else:
            found.still_answered.append(cid)
    found.rows.sort()
    found.still_answered.sort()
    if times:
        log.info(
            "%d companies at the target are listed nowhere in OKKI: %d confirmed purged",
            len(times),
            len(found.rows),
        )
    return found
