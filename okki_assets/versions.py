"""The order of a company's versions: the one rule every stage uses to tell which is newer.

A version is what one payload says of one company: OKKI's ``update_time``, the moment it was
observed (``observed_at``: when the pull that read it ran; stamped on its raw, cleaned and
deleted rows and carried into the ledger) and its content (the target record's hash). Of two
versions the newer is the one with the later ``update_time``; on equal times the one observed
later; on equal observations the greater content hash (arbitrary, but the same everywhere).

One exception is explicit, not hidden in times: a **yield**. OKKI's deletions and restores may
keep an old ``update_time``, so where an account observation says the opposite of the ledger
(deleted or live), the ledger yields: its ``update_time`` is lowered to the observed one and the
observation's moment is kept (``yielded_at``). From then on a version observed before that
moment is superseded whatever its ``update_time``: a replayed window cannot resend a word the
account has since seen overturned.

Pure: pandas for frames, SQL text for storage (the columns and table aliases are constants).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import pandas as pd

#: A version's parts, in the order they decide.
VERSION_COLUMNS = ("update_time", "observed_at", "content_hash")
#: The observation of a row written before observations were kept: older than any other.
NEVER_OBSERVED = pd.Timestamp("1970-01-01", tz="UTC")


@dataclass(frozen=True, order=True)
class Version:
    """One version of a company; ``<`` and ``>`` are the version order."""

    update_time: datetime
    observed_at: datetime = NEVER_OBSERVED.to_pydatetime()
    content_hash: str = ""

    def superseded_by_yield(self, yielded_at: datetime | None) -> bool:
        """Observed before an account observation the ledger yielded to."""
        return yielded_at is not None and self.observed_at < yielded_at


def last_yield(*yields: datetime | None) -> datetime | None:
    """The latest of the yields known (None: none)."""
    return max((y for y in yields if y is not None), default=None)


def supersedes(
    incoming: Version, stored: Version, *, flip: bool, yielded_at: datetime | None = None
) -> bool:
    """Whether ``incoming`` may replace ``stored`` at a target (the guard against a concurrent
    or late run). The same version supersedes itself: a resend (the audit's repair of a row
    edited by hand) is written again.

    - A yield first (``yielded_at``: the latest one either side knows of, ``last_yield``): of
      a version observed before it and one observed since, the one observed since wins
      whatever the times (``Version.superseded_by_yield``, the ledger's rule). OKKI moved a
      live company's update_time back with a change; the ledger yielded and sends the change
      with the earlier time, which replaces the version stored before the yield, and a late
      run's version read before the yield does not come back over it.
    - Without a ``flip`` (a live version over a live one, a deletion over a deletion): the
      version order, ``incoming >= stored``.
    - A ``flip`` (a deletion over a live version, a live version over a deletion) is the yield's
      case: OKKI deletes and restores keeping an old ``update_time``, so the times cannot tell;
      the later observation wins (then the order's other parts). A restore observed after the
      deletion applies whatever its time; a deletion observed before the stored restore does
      not, and neither does a restore observed before the stored deletion.
    """
    if incoming.superseded_by_yield(yielded_at) != stored.superseded_by_yield(yielded_at):
        return stored.superseded_by_yield(yielded_at)
    if flip:
        return (incoming.observed_at, incoming.update_time, incoming.content_hash) >= (
            stored.observed_at,
            stored.update_time,
            stored.content_hash,
        )
    return incoming >= stored


def _parts(frame: pd.DataFrame, prefix: str) -> tuple[pd.Series, pd.Series, pd.Series]:
    times = pd.to_datetime(frame[f"{prefix}update_time"], utc=True)
    seen = pd.to_datetime(frame[f"{prefix}observed_at"], utc=True).fillna(NEVER_OBSERVED)
    hashes = (
        frame[f"{prefix}content_hash"]
        .astype(object)
        .where(frame[f"{prefix}content_hash"].notna(), "")
    )
    return times, seen, hashes.astype(str)


def newer(frame: pd.DataFrame, prefix: str, than: str, *, equal: bool = False) -> pd.Series:
    """Per row: whether the version in the ``prefix`` columns is newer than the one in the
    ``than`` columns (or the same, with ``equal``). A row whose ``than`` version is absent (no
    update_time) counts as newer; one whose own version is absent, as not."""
    t1, o1, h1 = _parts(frame, prefix)
    t2, o2, h2 = _parts(frame, than)
    after = (t1 > t2) | (
        (t1 == t2) & ((o1 > o2) | ((o1 == o2) & ((h1 > h2) | ((h1 == h2) & equal))))
    )
    return (after | (t2.isna() & t1.notna())).fillna(False).astype(bool)


def yielded(frame: pd.DataFrame, prefix: str, ledger: str) -> pd.Series:
    """Per row: the ``prefix`` version was observed before the ledger's yield (see module)."""
    seen = pd.to_datetime(frame[f"{prefix}observed_at"], utc=True).fillna(NEVER_OBSERVED)
    at = pd.to_datetime(frame[f"{ledger}yielded_at"], utc=True)
    return (at.notna() & (seen < at)).astype(bool)


def newest_per_company(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per company_id, its newest version (the frame's other columns come along)."""
    if not frame["company_id"].duplicated().any():
        return frame
    key = frame.assign(
        _t=pd.to_datetime(frame["update_time"], utc=True),
        _o=pd.to_datetime(frame["observed_at"], utc=True).fillna(NEVER_OBSERVED),
        _h=frame["content_hash"].fillna("").astype(str),
    )
    order = key.sort_values(["company_id", "_t", "_o", "_h"], kind="stable")
    keep = order.drop_duplicates("company_id", keep="last").index
    return frame[frame.index.isin(keep)].reset_index(drop=True)


def sql_observed(alias: str) -> str:
    """SQL: when the alias's version was observed (never, for rows stored before it was kept)."""
    return f"coalesce({alias}.observed_at, '{NEVER_OBSERVED.isoformat()}'::timestamptz)"


def sql_key(alias: str, *, content: bool = True) -> str:
    """A table alias's version as a DuckDB row value (compare two with ``>``, ``>=``, ``=``);
    ``content=False`` for copies without a content hash (cleaned rows). DuckDB orders a NULL
    inside a row value as a value: callers make sure ``update_time`` is there."""
    parts = [f"{alias}.update_time", sql_observed(alias)]
    if content:
        parts.append(f"coalesce({alias}.content_hash, '')")
    return f"({', '.join(parts)})"


def sql_yielded(alias: str, ledger: str) -> str:
    """SQL: ``alias``'s version was observed before the ledger row's yield."""
    return f"coalesce({sql_observed(alias)} < {ledger}.yielded_at, false)"


def sql_copy_key(alias: str, ledger: str) -> str:
    """A cleaned copy's version as a DuckDB row value, read since the company's last yield
    first (the ledger row ``ledger``, joined on company_id): the account's read after a yield
    outranks a window's older read whatever its time."""
    return f"(not {sql_yielded(alias, ledger)}, {alias}.update_time, {sql_observed(alias)})"
