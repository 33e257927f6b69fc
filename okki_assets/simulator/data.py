"""Seeded, deterministic OKKI company records for the simulator, the demo and the benchmark.

``generate_companies`` builds full records shaped like ``data`` of ``GET /v1/company/info``, with
the quirks of real export-trade CRM data that the pipeline must survive: Chinese, English,
full-width and Arabic company names with stray spaces; missing and malformed e-mails; phones in
many shapes; companies without contacts and contacts without a primary flag; integers sent as
strings; ``user_id`` as a string or a list; ``1970-01-01 00:00:00`` for unset times; update times
exactly at midnight and at 23:59:59, and ties. ``malformed_rate`` adds record-level invalid
records (no id, a non-numeric id, a blank name, an unparseable ``update_time``) and, at the same
rate, valid but nasty ones (600-character names, control characters, emoji, right-to-left text).

A record whose ``update_time`` cannot be parsed keeps its true update time in ``edit_time``:
the simulator files it under that time (see ``effective_update_time``), so it is listed in the
window it was generated for.

``list_view`` projects a full record to the twelve fields of ``GET /v1/company/list``, with the
list's own representation (``user_id`` a string).

Everything is drawn from ``random.Random(seed)``: the same arguments give the same records.
This module decides which records are drawn, when each was last updated, and which are made
invalid or nasty; one record is drawn by ``generator.CompanyGenerator`` from the word pools of
``pools``.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Mapping, Sequence
from typing import Any

from okki_assets.gc_pause import gc_paused
from okki_assets.simulator.clock import parse_text
from okki_assets.simulator.generator import DAY, EPOCH, CompanyGenerator

LIST_FIELDS: tuple[str, ...] = (
    "company_id",
    "user_id",
    "name",
    "short_name",
    "serial_id",
    "order_time",
    "create_time",
    "update_time",
    "edit_time",
    "create_user",
    "last_edit_user",
    "archive_type",
)

# Record-level invalid shapes (the pipeline must quarantine these) and valid-but-nasty ones.
MALFORMED_KINDS: tuple[str, ...] = (
    "missing_company_id",
    "non_numeric_company_id",
    "blank_name",
    "bad_update_time",
)
NASTY_KINDS: tuple[str, ...] = ("long_name", "control_chars", "emoji", "rtl")
BAD_UPDATE_TIME = "2024-13-45 99:00:00"

_COMPANY_ID_BASE = 3_000_000_000_000


def _secs(day: dt.date) -> int:
    return (day - EPOCH.date()).days * DAY


def parse_time(value: object) -> dt.datetime | None:
    """A record time ('YYYY-MM-DD HH:MM:SS' or 'YYYY-MM-DD', China time) as a naive datetime.

    ``None`` for anything unparseable. The 1970 sentinel parses (to 1970-01-01): callers that
    care treat it as unset. Stricter than the client's parser: the server takes no padding."""
    if not isinstance(value, str) or len(value) not in (10, 19) or value != value.strip():
        return None
    return parse_text(value)


def effective_update_time(record: Mapping[str, Any]) -> dt.datetime:
    """The time a record is filed under: ``update_time``, or when that cannot be parsed,
    ``edit_time``, then ``create_time``, then 1970-01-01."""
    for field in ("update_time", "edit_time", "create_time"):
        parsed = parse_time(record.get(field))
        if parsed is not None:
            return parsed
    return EPOCH


def owner_ids(record: Mapping[str, Any]) -> list[str]:
    """The owners' user ids of a record, whatever shape ``user_id`` has (list, string, int)."""
    raw = record.get("user_id")
    if raw is None or raw == "":
        return []
    if isinstance(raw, list):
        return [str(x) for x in raw if str(x) != ""]
    return [part.strip() for part in str(raw).split(",") if part.strip()]


def list_view(record: Mapping[str, Any]) -> dict[str, Any]:
    """Project a full record to the twelve fields of the list endpoint.

    The list sends ``user_id`` as a string (owner ids joined by commas, ``""`` for none). A
    field the record lacks (only the malformed ``missing_company_id`` case) stays absent."""
    view = {name: record[name] for name in LIST_FIELDS if name in record}
    view["user_id"] = ",".join(owner_ids(record))
    return view


def _update_seconds(gen: CompanyGenerator, index: int, first: int, days: int) -> int:
    """When record ``index`` was last updated: business hours mostly, edges on purpose."""
    if index == 0:
        return first  # the window's very first second
    if index == 1:
        return first + days * DAY - 1  # its very last second
    day = first + gen.below(days) * DAY
    roll = gen.rnd()
    if roll < 0.015:
        return day  # exactly midnight
    if roll < 0.03:
        return day + DAY - 1  # 23:59:59
    if roll < 0.78:
        return day + gen.between(8 * 3600, 20 * 3600)
    return day + gen.below(DAY)


HISTORY_YEARS = 5


def _history_seconds(n: int, share: float, before: dt.date, seed: int) -> dict[int, int]:
    """record index -> update second of the history records: between HISTORY_YEARS years and
    one year before ``before``."""
    count = round((n - 2) * share) if n > 2 else 0
    if not count:
        return {}
    rng = random.Random(seed * 104_729 + 3)
    latest = _secs(before) - 365 * DAY
    earliest = _secs(before) - HISTORY_YEARS * 365 * DAY
    chosen = rng.sample(range(2, n), count)
    return {index: rng.randrange(earliest, latest) for index in chosen}


def _make_invalid(record: dict[str, Any], kind: str, index: int) -> None:
    if kind == "missing_company_id":
        del record["company_id"]
    elif kind == "non_numeric_company_id":
        record["company_id"] = f"abc{index}"
    elif kind == "blank_name":
        record["name"] = "   "
    else:  # bad_update_time: the true time stays in edit_time (see effective_update_time)
        record["edit_time"] = record["update_time"]
        record["update_time"] = BAD_UPDATE_TIME


def _make_nasty(record: dict[str, Any], kind: str) -> None:
    if kind == "long_name":
        record["name"] = (record["name"].strip() + " International Holdings Group ") * 40
        record["name"] = record["name"][:600]
    elif kind == "control_chars":
        record["name"] = f"ACME\x00 Trading\x07\u200b {record['name']}"
        record["remark"] = "line1\r\nline2\x1b[31m red\x1b[0m\ttab"
    elif kind == "emoji":
        record["name"] = f"🚀 {record['name']} 🌍"
        record["remark"] = "好客户 👍🏽🔥 follow up"
    else:  # rtl
        record["name"] = f"\u202eشركة {record['name']} חברת סחר"
        record["remark"] = "عميل مهم \u200f(VIP)"


def generate_companies(
    n: int,
    start: dt.date,
    end: dt.date,
    *,
    seed: int = 7,
    malformed_rate: float = 0.0,
    history_share: float = 0.0,
    history_before: dt.date | None = None,
) -> list[dict[str, Any]]:
    """``n`` full company records whose ``update_time`` lies in [start 00:00:00, end 23:59:59]
    China time. Deterministic for given arguments; the records drawn for a seed do not depend on
    ``malformed_rate`` except for the records it selects.

    ``history_share`` of them (chosen by their own seeded draw; the two edge records never) are
    history instead: last updated a year or more before ``history_before`` (default ``start``),
    up to ``HISTORY_YEARS`` years before it, the quiet customers no daily window lists."""
    if end < start:
        raise ValueError(f"end {end} is before start {start}")
    if not 0.0 <= malformed_rate <= 0.5:
        raise ValueError("malformed_rate must lie in [0, 0.5]")
    if not 0.0 <= history_share <= 1.0:
        raise ValueError("history_share must lie in [0, 1]")
    history = _history_seconds(n, history_share, history_before or start, seed)
    gen = CompanyGenerator(seed)
    first = _secs(start)
    days = (end - start).days + 1
    ids = gen.rng.sample(range(_COMPANY_ID_BASE, _COMPANY_ID_BASE + 10**12), n)
    records: list[dict[str, Any]] = []
    update = first
    with gc_paused():
        for index in range(n):
            if index < 2 or gen.rnd() >= 0.03:
                update = _update_seconds(gen, index, first, days)
            # else: the same second as the previous record (a bulk edit by automation)
            records.append(gen.company(index, ids[index], history.get(index, update)))

    bad = round(n * malformed_rate)
    if bad:
        picker = random.Random(seed * 7919 + 1)
        chosen: Sequence[int] = picker.sample(range(n), min(n, 2 * bad))
        for k, index in enumerate(chosen[:bad]):
            _make_invalid(records[index], MALFORMED_KINDS[k % len(MALFORMED_KINDS)], index)
        for k, index in enumerate(chosen[bad:]):
            _make_nasty(records[index], NASTY_KINDS[k % len(NASTY_KINDS)])
    return records
