"""Raw OKKI company rows -> a validated ``CleanedCompany`` frame plus a quarantine frame.

Pure pandas, no I/O. The OKKI quirks handled (see ``docs/okki-api.md``):
- ids arrive as numbers or numeric strings (``"55280038"``); anything else is quarantined;
- ``1970-01-01 00:00:00`` / ``1970-01-01`` mean "no value" and become ``NaT``; times carry no
  offset and are China Standard Time;
- ``user_id`` is a list in the detail and a (possibly comma-separated) string in the list record;
- contacts, e-mail, phone and country exist only in the detail (``info_json``), which may be
  absent; phones come as ``[area_code, number]`` pairs or as one string with ``+86``/``0086``;
- the detail (fetched after the list, so fresher) is authoritative when present; the list record
  fills the fields a detail lacks, a blank detail name, and every field when there is no detail.

Where each rule lives: ``company_row.clean_row`` cleans one raw row (which payload a field comes
from, record-level reasons, field flags), with one function per field rule in
``field_rules.py``; this module does what needs the whole partition: the times (parsed
vectorised), the window, duplicate ids, the pandera validation and the two frames.

Contract: ``len(cleaned) + len(quarantined) == len(raw)``. A record-level defect quarantines the row
with every reason that applies; a field-level defect nulls the field and sets its flag. Rows that
the pandera model still rejects are quarantined as ``schema:<column>:<check>`` and their failure
cases are returned, not just counted.

Design choices:
- Names are not truncated (no ``name_truncated`` flag): a long name is valid data and a target's
  length limit belongs to the mapping, not to cleaning.
- Duplicate company ids in one partition: the version with the latest ``update_time`` is kept,
  older ones are quarantined as ``company_id_duplicate``.
- A detail whose own ``company_id`` differs from the row's is quarantined
  (``info_company_id_mismatch``): the fan-out glued the wrong detail to the row.
- ``update_time`` for the window check is the detail's when usable, else the list record's
  (the raw ``update_time`` column first). A detail time that is present but unusable falls back
  to the list record's. A row whose list time (the raw column) lies in the window stays in it
  even when the detail, read afterwards, is newer than the window.
- Contacts that are not JSON objects are ignored, and ``customers`` that is not a list means no
  contacts: neither quarantines the row.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from itertools import chain
from operator import attrgetter
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandas.api.types import infer_dtype

from okki_assets.company_row import INFO_ERROR_KEY, CleanRow, clean_row, load_object
from okki_assets.field_rules import is_missing, raw_id_text
from okki_assets.gc_pause import gc_paused
from okki_assets.okki_time import (
    OKKI_DATE_FORMAT,
    OKKI_TIME_FORMAT,
    TIMEZONE,
    UNSET_DATE,
    UNSET_TIME,
    parse_okki_time,
)
from okki_assets.schemas import (
    CLEANED_COLUMNS,
    FLAG_COLUMNS,
    QUARANTINE_COLUMNS,
    RAW_COLUMNS,
    TIME_COLUMNS,
    exact_dtype_schema,
)

__all__ = [
    "FAILURE_CASE_COLUMNS",
    "FIELD_ISSUES",
    "INFO_ERROR_KEY",
    "QUARANTINE_REASONS",
    "CleanResult",
    "clean_companies",
]

logger = logging.getLogger(__name__)

#: pandera's failure_cases columns, plus the company id of the failing row where known.
FAILURE_CASE_COLUMNS: tuple[str, ...] = (
    "schema_context",
    "column",
    "check",
    "check_number",
    "failure_case",
    "index",
    "company_id",
)

#: Every reason a row can be quarantined for (besides ``schema:<column>:<check>``).
QUARANTINE_REASONS: tuple[str, ...] = (
    "company_id_missing",
    "company_id_not_numeric",
    "company_id_out_of_range",
    "company_id_duplicate",
    "info_company_id_mismatch",
    "list_json_invalid",
    "info_json_invalid",
    "info_not_found",
    "name_blank",
    "update_time_unparseable",
    "update_time_outside_window",
)

#: Keys of ``CleanResult.field_issue_counts``: the flags, then times that were present but unusable.
FIELD_ISSUES: tuple[str, ...] = FLAG_COLUMNS + tuple(
    f"{t}_unparseable" for t in TIME_COLUMNS if t != "update_time"
)

_NO_VALUE = ("", UNSET_TIME, UNSET_DATE)
# CleanRow fields that become object columns of the cleaned frame as they are.
_OBJECT_COLUMNS = (
    "serial_id",
    "name",
    "short_name",
    "owner_ids",
    "country",
    "contact_name",
    "email",
    "phone",
)
_VALIDATOR = exact_dtype_schema()  # CleanedCompany without coercion: the frame is built exact


@dataclass
class CleanResult:
    """The output of ``clean_companies``.

    ``cleaned`` is validated by ``CleanedCompany``; ``quarantined`` has the columns of
    ``QuarantinedCompany``; ``failure_cases`` holds pandera's failure cases (plus ``company_id``)
    for rows the model rejected, empty with the same columns when there were none;
    ``field_issue_counts`` counts each ``FIELD_ISSUES`` key over the cleaned rows.
    """

    cleaned: pd.DataFrame
    quarantined: pd.DataFrame
    failure_cases: pd.DataFrame
    field_issue_counts: dict[str, int] = field(default_factory=dict)


def clean_companies(raw: pd.DataFrame, window_start: datetime, window_end: datetime) -> CleanResult:
    """Clean one partition's raw company rows; the window is tz-aware ``[start, end)``.

    Every raw row ends up in exactly one of ``cleaned`` and ``quarantined``.
    """
    # Parsing and reshaping allocate hundreds of thousands of short-lived containers, none of
    # them cyclic; with the cyclic collector running, its passes over the growing heap cost
    # more than the cleaning itself.
    with gc_paused():
        return _clean(raw, window_start, window_end)


def _clean(raw: pd.DataFrame, window_start: datetime, window_end: datetime) -> CleanResult:
    missing_cols = [c for c in RAW_COLUMNS if c not in raw.columns]
    if missing_cols:
        raise ValueError(f"raw frame lacks columns: {', '.join(missing_cols)}")
    start, end = _check_window(window_start, window_end)

    n = len(raw)
    pks = raw["partition_key"].tolist()
    if infer_dtype(pks, skipna=False) not in ("string", "empty"):  # e.g. dates from a DATE column
        pks = [None if is_missing(k) else str(k) for k in pks]
    raw_ids = raw["company_id"].tolist()
    list_jsons = raw["list_json"].tolist()
    info_jsons = raw["info_json"].tolist()
    rows = list(map(clean_row, raw_ids, list_jsons, info_jsons))

    raw_update_times = raw["update_time"].tolist()  # the list's times, as the raw stage filed them
    times, given = _parse_row_times(rows, raw_update_times, list_jsons)
    _quarantine_by_update_time(rows, times["update_time"], raw_update_times, start, end)
    _quarantine_superseded(rows, times["update_time"])

    candidates = np.array([i for i, row in enumerate(rows) if not row.reasons], dtype=np.int64)
    cleaned, failure_cases = _validate(_cleaned_frame(pks, rows, times, candidates), rows)
    kept = cleaned.index.to_numpy()
    cleaned.index = pd.RangeIndex(len(cleaned))  # a frame built here: no copy needed

    quarantined = _quarantine_frame(rows, pks, raw_ids, list_jsons, info_jsons)
    counts = _field_issue_counts(cleaned, times, given, kept)

    if len(cleaned) + len(quarantined) != n:  # the contract; cannot happen by construction
        raise AssertionError(f"cleaning lost rows: {len(cleaned)}+{len(quarantined)}!={n}")
    logger.info(
        "cleaned %d of %d raw rows, quarantined %d, schema failure cases %d",
        len(cleaned),
        n,
        len(quarantined),
        len(failure_cases),
    )
    return CleanResult(
        cleaned=cleaned,
        quarantined=quarantined,
        failure_cases=failure_cases,
        field_issue_counts=counts,
    )


def _check_window(
    window_start: datetime, window_end: datetime
) -> tuple[pd.Timestamp, pd.Timestamp]:
    start, end = pd.Timestamp(window_start), pd.Timestamp(window_end)
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("window_start and window_end must be timezone-aware")
    if end <= start:
        raise ValueError(f"empty window: start={start.isoformat()} end={end.isoformat()}")
    return start.tz_convert(TIMEZONE), end.tz_convert(TIMEZONE)


def _objects(values: Sequence[object]) -> pd.Series:
    """An object Series without pandas' per-element type inference (nested lists stay cells)."""
    return pd.Series(np.fromiter(values, dtype=object, count=len(values)), copy=False)


def _text_or_none(v: object) -> object:
    return None if is_missing(v) else v


# ------------------------------------------------------------------------------------ times


def _parse_row_times(
    rows: list[CleanRow], raw_update_times: list[object], list_jsons: list[object]
) -> tuple[dict[str, pd.arrays.DatetimeArray], dict[str, np.ndarray]]:
    """Each time column of the rows, parsed: (China-time values, whether a value was given).

    A value given but unusable falls back to the list record's; an ``update_time`` that is
    also absent falls back to the raw column (which the raw stage filled from the list
    record), then to the list record's.
    """

    def from_list(pos: int, name: str) -> list[object]:
        listed = load_object(list_jsons[pos])
        return [] if listed is None else [listed.get(name)]

    times: dict[str, pd.arrays.DatetimeArray] = {}
    given: dict[str, np.ndarray] = {}
    for name in TIME_COLUMNS:
        values = list(map(attrgetter(name), rows))
        if name == "update_time":
            times[name], given[name] = _parse_times(
                values,
                lambda pos: [raw_update_times[pos], *from_list(pos, "update_time")],
                retry_absent=True,
            )
        else:
            times[name], given[name] = _parse_times(values, partial(from_list, name=name))
    return times, given


def _parse_times(
    values: Sequence[object],
    fallbacks: Callable[[int], Iterable[object]],
    retry_absent: bool = False,
) -> tuple[pd.arrays.DatetimeArray, np.ndarray]:
    """Raw time values -> (tz-aware Asia/Shanghai values, whether a real value was present).

    Vectorised: one strict 'YYYY-MM-DD HH:MM:SS' pass, then a 'YYYY-MM-DD' pass over what it
    rejected; the 1970 sentinels (whatever their shape) parse to the epoch and become NaT.
    What is still rejected (padding, garbage) and, with ``retry_absent``, absent values are
    retried one by one, then replaced by the first usable value of ``fallbacks(pos)``.
    """
    arr = np.fromiter(values, dtype=object, count=len(values))
    ns = _to_datetime(arr, OKKI_TIME_FORMAT)
    unparsed = np.isnat(ns)
    present = ~unparsed
    missed = np.flatnonzero(unparsed)
    given = missed[[v is not None and v != "" for v in arr[missed].tolist()]]
    if len(given):  # empty, date only or garbage: look at these few values only
        present[given] = True
        ns[given] = _to_datetime(arr[given], OKKI_DATE_FORMAT)
        unparsed[given] = np.isnat(ns[given])
    sentinel = ns.view(np.int64) == 0
    ns[sentinel] = np.datetime64("NaT")
    present &= ~sentinel
    unparsed |= sentinel
    for pos in np.flatnonzero(unparsed if retry_absent else unparsed & present).tolist():
        ts, present[pos] = _first_usable_time(chain((values[pos],), fallbacks(pos)))
        ns[pos] = np.datetime64("NaT") if ts is None else ts.to_datetime64()
    local = pd.DatetimeIndex(ns).tz_localize(TIMEZONE, ambiguous="NaT", nonexistent="NaT")
    return local.array, present


def _to_datetime(values: np.ndarray, fmt: str) -> np.ndarray:
    """datetime64[ns] of the values in exactly this format, NaT where they are not."""
    parsed = pd.to_datetime(pd.Series(values, copy=False), format=fmt, errors="coerce", cache=False)
    ns: np.ndarray = parsed.to_numpy(dtype="datetime64[ns]")
    return ns


def _first_usable_time(candidates: Iterable[object]) -> tuple[pd.Timestamp | None, bool]:
    """(the first candidate that parses, or None; whether any candidate was given at all)."""
    given = False
    for v in candidates:
        ts = _slow_time(v)
        if ts is None:
            continue
        given = True
        if ts is not pd.NaT:
            return ts, True
    return None, given


def _slow_time(v: object) -> pd.Timestamp | None:
    """One time the vectorised pass rejected (padding, date only, odd types): None when absent,
    NaT when present but unusable."""
    if is_missing(v):
        return None
    text = str(v).strip()
    if text in _NO_VALUE:
        return None
    parsed = parse_okki_time(text)
    if parsed is None:
        return pd.NaT
    try:
        return pd.Timestamp(parsed.replace(tzinfo=None)).as_unit("ns")
    except (OverflowError, pd.errors.OutOfBoundsDatetime):
        return pd.NaT


# -------------------------------------------------------------------- partition-level rules


def _quarantine_by_update_time(
    rows: list[CleanRow],
    update_time: pd.arrays.DatetimeArray,
    raw_update_times: list[object],
    start: pd.Timestamp,
    end: pd.Timestamp,
) -> None:
    """A row needs a usable ``update_time`` inside the window ``[start, end)``, or filed under
    it: the raw column holds the list's time, which chose the partition; info, read
    afterwards, may be newer, even past the window, and the row still belongs here (see
    stages/pull.py)."""
    for pos in np.flatnonzero(update_time.isna()).tolist():
        rows[pos].reasons.append("update_time_unparseable")
    outside = (update_time < start) | (update_time >= end)  # False for NaT
    for pos in np.flatnonzero(outside).tolist():
        if not _filed_in_window(raw_update_times[pos], start, end):
            rows[pos].reasons.append("update_time_outside_window")


def _filed_in_window(raw_update_time: object, start: pd.Timestamp, end: pd.Timestamp) -> bool:
    filed = _slow_time(raw_update_time)
    if filed is None or filed is pd.NaT:
        return False
    return bool(start <= filed.tz_localize(TIMEZONE) < end)


def _quarantine_superseded(rows: list[CleanRow], update_time: pd.arrays.DatetimeArray) -> None:
    """Of a company seen more than once, every version but the latest is superseded."""
    ids = pd.Series([row.company_id for row in rows], dtype=object)
    seen_twice = (ids.notna() & ids.duplicated(keep=False)).to_numpy()
    if not seen_twice.any():
        return
    positions = np.flatnonzero(seen_twice)
    versions = pd.DataFrame(
        {"id": ids[seen_twice], "ut": update_time[positions], "pos": positions}
    ).sort_values(["ut", "pos"], na_position="first")
    for pos in versions.loc[versions.duplicated("id", keep="last"), "pos"].tolist():
        rows[pos].reasons.append("company_id_duplicate")


# -------------------------------------------------------------------------------- the frame


def _cleaned_frame(
    pks: list[Any],
    rows: list[CleanRow],
    times: dict[str, pd.arrays.DatetimeArray],
    positions: np.ndarray,
) -> pd.DataFrame:
    """The rows at ``positions`` as a ``CleanedCompany`` frame indexed by raw row position."""
    kept = [rows[i] for i in positions.tolist()]
    index = pd.Index(positions)

    def column(values: Iterable[object], dtype: Any = object) -> pd.Series:
        return pd.Series(np.fromiter(values, dtype=dtype, count=len(kept)), index=index)

    data: dict[str, Any] = {
        "partition_key": column(pks[i] for i in positions.tolist()),
        "company_id": column((row.company_id for row in kept), np.int64),
        "archive_type": pd.Series(
            pd.array([row.archive_type for row in kept], dtype="Int64"), index=index
        ),
    }
    for name in _OBJECT_COLUMNS:
        data[name] = column(map(attrgetter(name), kept))
    for name in TIME_COLUMNS:
        data[name] = pd.Series(times[name][positions], index=index)
    flags = {flag: np.zeros(len(kept), dtype=bool) for flag in FLAG_COLUMNS}
    for i, row in enumerate(kept):
        for flag in row.flags:
            flags[flag][i] = True
    for flag in FLAG_COLUMNS:
        data[flag] = pd.Series(flags[flag], index=index)
    return pd.DataFrame(data, columns=list(CLEANED_COLUMNS))


def _validate(frame: pd.DataFrame, rows: list[CleanRow]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the rows ``CleanedCompany`` accepts, pandera's failure cases for the others).

    A rejected row is quarantined as ``schema:<column>:<check>`` for each check it failed.
    """
    try:
        return _VALIDATOR.validate(frame, lazy=True), _empty_failure_cases()
    except pa.errors.SchemaErrors as exc:
        if exc.failure_cases["index"].isna().any():
            raise  # a frame-level failure is a bug in this module, not a bad row
        fc = exc.failure_cases
    for pos, group in fc.groupby("index", sort=True):
        checks = dict.fromkeys(
            f"schema:{c}:{k}" for c, k in zip(group["column"], group["check"], strict=True)
        )
        rows[int(pos)].reasons.extend(checks)
    rejected = fc["index"].astype(int).unique()
    fc = fc.reset_index(drop=True)
    fc["company_id"] = [rows[int(p)].company_id for p in fc["index"]]
    logger.warning(
        "%d row(s) rejected by the CleanedCompany model (%d failure cases)",
        len(rejected),
        len(fc),
    )
    cleaned = _VALIDATOR.validate(frame.drop(index=rejected), lazy=True)
    return cleaned, fc.reindex(columns=list(FAILURE_CASE_COLUMNS))


def _quarantine_frame(
    rows: list[CleanRow],
    pks: list[Any],
    raw_ids: list[object],
    list_jsons: list[object],
    info_jsons: list[object],
) -> pd.DataFrame:
    """The rows with a reason, as received plus their reasons (``QuarantinedCompany``)."""
    q_pos = [i for i, row in enumerate(rows) if row.reasons]
    return pd.DataFrame(
        {
            "partition_key": pd.Series([pks[i] for i in q_pos], dtype=object),
            "company_id": pd.Series([raw_id_text(raw_ids[i]) for i in q_pos], dtype=object),
            "reasons": _objects([rows[i].reasons for i in q_pos]),
            "list_json": pd.Series([_text_or_none(list_jsons[i]) for i in q_pos], dtype=object),
            "info_json": pd.Series([_text_or_none(info_jsons[i]) for i in q_pos], dtype=object),
        },
        columns=list(QUARANTINE_COLUMNS),
    )


def _field_issue_counts(
    cleaned: pd.DataFrame,
    times: dict[str, pd.arrays.DatetimeArray],
    given: dict[str, np.ndarray],
    kept: np.ndarray,
) -> dict[str, int]:
    """Each ``FIELD_ISSUES`` key counted over the cleaned rows (raw positions ``kept``)."""
    counts = {flag: int(cleaned[flag].sum()) for flag in FLAG_COLUMNS}
    for name in TIME_COLUMNS:
        if name != "update_time":
            unusable = given[name] & times[name].isna()
            counts[f"{name}_unparseable"] = int(unusable[kept].sum())
    return counts


def _empty_failure_cases() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in FAILURE_CASE_COLUMNS})
