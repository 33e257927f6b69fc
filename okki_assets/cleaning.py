"""Raw OKKI company rows -> a validated ``CleanedCompany`` frame plus a quarantine frame.

Pure pandas, no I/O. The OKKI quirks handled here (see ``okki-api.md``):
- ids arrive as numbers or numeric strings (``"55280038"``); anything else is quarantined;
- ``1970-01-01 00:00:00`` / ``1970-01-01`` mean "no value" and become ``NaT``; times carry no
  offset and are China Standard Time;
- ``user_id`` is a list in the detail and a (possibly comma-separated) string in the list record;
- contacts, e-mail, phone and country exist only in the detail (``info_json``), which may be
  absent; phones come as ``[area_code, number]`` pairs or as one string with ``+86``/``0086``;
- the detail (fetched after the list, so fresher) is authoritative when present; the list record
  fills the fields a detail lacks, a blank detail name, and every field when there is no detail.

Contract: ``len(cleaned) + len(quarantined) == len(raw)``. A record-level defect quarantines the row
with every reason that applies; a field-level defect nulls the field and sets its flag. Rows that
the pandera model still rejects are quarantined as ``schema:<column>:<check>`` and their failure
cases are returned, not just counted.

Design choices:
- Names are not truncated (no ``name_truncated`` flag): a long name is valid data and a target's
  length limit belongs to the mapping, not to cleaning.
- Speed (the stage must clean, validate and map well over 50,000 records per CPU second): each
  detail is decoded once by msgspec into a struct of just the fields read here (most of a
  detail is custom fields and owners that are skipped, not built), the list record is parsed
  with orjson only when needed, and every field is pulled out in one tight Python pass with
  ASCII fast paths (pandas' ``.str`` methods loop in Python too, and chaining them measured
  slower than one pass). Time parsing, the window check, duplicate detection and the flags are
  vectorised. The cyclic garbage collector is paused for the call: it otherwise re-walks the
  growing heap hundreds of times.
- Phones: the country code of a number written as ``+8613800138000`` is split with the ITU rule
  (1-digit codes 1 and 7, a fixed set of 2-digit codes, else 3 digits); national trunk zeros are
  kept (Italy needs them); with no country code anywhere the bare digits are kept rather than lost.
  The first usable number wins: the primary contact's ``tel_list`` in order, then the company tel.
- Duplicate company ids in one partition: the version with the latest ``update_time`` is kept,
  older ones are quarantined as ``company_id_duplicate``.
- A detail whose own ``company_id`` differs from the row's is quarantined
  (``info_company_id_mismatch``): the fan-out glued the wrong detail to the row.
- ``update_time`` for the window check is the detail's when usable, else the list record's
  (the raw ``update_time`` column first). A partition's list_json is not re-validated when the
  detail already carries every field; a shared field the detail has as null is taken from
  the list record, like one it lacks.
- Contacts that are not JSON objects are ignored, and ``customers`` that is not a list means no
  contacts: neither quarantines the row.
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache, partial
from itertools import chain
from typing import Any

import msgspec
import numpy as np
import orjson
import pandas as pd
import pandera.pandas as pa
from pandas.api.types import infer_dtype

from okki_assets.gc_pause import gc_paused
from okki_assets.schemas import (
    CLEANED_COLUMNS,
    EMAIL_RE,
    FLAG_COLUMNS,
    OKKI_TZ,
    QUARANTINE_COLUMNS,
    TIME_COLUMNS,
    exact_dtype_schema,
)

logger = logging.getLogger(__name__)

#: Columns the raw stage stores, one row per company version kept for a partition.
RAW_COLUMNS: tuple[str, ...] = (
    "partition_key",
    "company_id",
    "update_time",
    "list_json",
    "info_json",
)

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

#: A key the raw stage adds to a list record whose detail OKKI could not give; its value is the
#: quarantine reason (``info_not_found``: info answered code 404 for a company the list showed).
INFO_ERROR_KEY = "okki_assets_error"

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

_NO_VALUE = ("", "1970-01-01 00:00:00", "1970-01-01")
_TIME_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1

# Control characters: whitespace-like ones become a space (then collapse), the rest are deleted.
# Zero-width space and BOM are deleted too; ZWJ and bidi marks are kept (emoji, RTL text).
_CTRL_TABLE: dict[int, str | None] = {c: None for c in chain(range(0, 32), range(127, 160))}
_CTRL_TABLE.update({c: " " for c in (9, 10, 11, 12, 13, 0x1C, 0x1D, 0x1E, 0x1F, 0x85)})
_CTRL_TABLE.update({0x200B: None, 0xFEFF: None, 0x2028: " ", 0x2029: " "})

_PHONE_SEPARATORS = str.maketrans("", "", " -./()\t\u00a0\u3000")
# ITU-T E.164 country codes are prefix-free: 1 and 7 have one digit, these have two, all else three.
_CC2 = frozenset(
    f"{cc}"
    for cc in (20, 27, 30, 31, 32, 33, 34, 36, 39, 40, 41, 43, 44, 45, 46, 47, 48, 49)
    + (51, 52, 53, 54, 55, 56, 57, 58, 60, 61, 62, 63, 64, 65, 66, 81, 82, 84, 86)
    + (90, 91, 92, 93, 94, 95, 98)
)

_OK, _MISSING, _INVALID = 0, 1, 2
_VALIDATOR = exact_dtype_schema()  # CleanedCompany without coercion: the frame is built exact
_EMPTY: dict[str, Any] = {}


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


# --------------------------------------------------------------------------- scalar helpers


def _is_missing(v: object) -> bool:
    return v is None or (isinstance(v, float) and v != v)


def _norm_text(v: object) -> str:
    """NFKC, control characters removed, stripped, inner whitespace runs collapsed."""
    if type(v) is not str:
        if _is_missing(v):
            return ""
        v = str(v)
    if not v.isascii():
        v = unicodedata.normalize("NFKC", v)
    if not v.isprintable():
        v = v.translate(_CTRL_TABLE)
    return " ".join(v.split())


def _parse_id(v: object) -> tuple[int | None, str | None]:
    """A company_id as received -> (int, None) or (None, quarantine reason)."""
    if _is_missing(v):
        return None, "company_id_missing"
    if isinstance(v, bool):
        return None, "company_id_not_numeric"
    if isinstance(v, int):
        n = v
    elif isinstance(v, float):
        if not v.is_integer():
            return None, "company_id_not_numeric"
        n = int(v)
    elif isinstance(v, str):
        s = v.strip()
        if not s:
            return None, "company_id_missing"
        if not (s.isascii() and s.isdigit()):
            return None, "company_id_not_numeric"
        n = int(s)
    else:
        return None, "company_id_not_numeric"
    if not _INT64_MIN <= n <= _INT64_MAX:
        return None, "company_id_out_of_range"
    return n, None


def _raw_id_text(v: object) -> str | None:
    """The company_id exactly as received, as text (for the quarantine frame)."""
    if _is_missing(v):
        return None
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _opt_int(v: object) -> int | None:
    """archive_type and similar small codes: an int, a numeric string, or None."""
    if _is_missing(v) or isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v if _INT64_MIN <= v <= _INT64_MAX else None
    if isinstance(v, float):
        return int(v) if v.is_integer() else None
    s = str(v).strip()
    digits = s[1:] if s[:1] == "-" else s
    if digits.isascii() and digits.isdigit():
        n = int(s)
        return n if _INT64_MIN <= n <= _INT64_MAX else None
    return None


def _opt_text(v: object) -> str | None:
    if type(v) is str:
        return v.strip() or None
    if _is_missing(v):
        return None
    return str(v).strip() or None


def _owner_ids(v: object) -> list[str]:
    """user_id as a list (detail), a comma-separated string (list record), or a bare number."""
    if type(v) is list:
        out: list[str] = []
        for x in v:
            if type(x) is int:
                x = str(x)
            elif type(x) is not str or "," in x:
                return _owner_ids_slow(v)
            else:
                x = x.strip()
            if x and x not in out:
                out.append(x)
        return out
    if type(v) is str and "," not in v:
        s = v.strip()
        return [s] if s else []
    return _owner_ids_slow(v)


def _owner_ids_slow(v: object) -> list[str]:
    if _is_missing(v):
        return []
    items: Iterable[object] = v if isinstance(v, list | tuple) else (v,)
    out: list[str] = []
    for x in items:
        if _is_missing(x):
            continue
        if isinstance(x, float) and x.is_integer():
            x = int(x)
        for part in str(x).split(","):
            part = part.strip()
            if part and part not in out:
                out.append(part)
    return out


def _norm_email(v: object) -> tuple[str | None, int]:
    if type(v) is not str:
        if _is_missing(v):
            return None, _MISSING
        v = str(v)
    if not v.isascii():
        v = unicodedata.normalize("NFKC", v)
    if not v.isprintable():
        v = v.translate(_CTRL_TABLE)
    v = v.strip().lower()
    if not v:
        return None, _MISSING
    if EMAIL_RE.match(v):
        return v, _OK
    return None, _INVALID


def _phone_part(v: object) -> str:
    """Text with separators (spaces, dashes, dots, slashes, parentheses) removed."""
    if type(v) is not str:
        if _is_missing(v):
            return ""
        v = str(v)
    if not v.isascii():
        v = unicodedata.normalize("NFKC", v).translate(_CTRL_TABLE)
    v = v.replace(" ", "").replace("-", "")
    if v.isdigit() or (v[:1] == "+" and v[1:].isdigit()):
        return v
    return v.translate(_PHONE_SEPARATORS)


def _split_country_code(digits: str) -> tuple[str, str]:
    if digits[:1] in ("1", "7"):
        return digits[:1], digits[1:]
    if digits[:2] in _CC2:
        return digits[:2], digits[2:]
    return digits[:3], digits[3:]


@lru_cache(maxsize=1024)
def _area_country_code(area: str) -> str | None:
    """An area code field -> its country code digits ('' when blank), None when unusable."""
    cc = _phone_part(area).lstrip("+").lstrip("0")
    if cc and not (cc.isdigit() and cc.isascii() and len(cc) <= 4):
        return None
    return cc


def _norm_phone(area: object, number: object) -> tuple[str | None, bool]:
    """One ``[area_code, number]`` pair -> (normalised phone or None, whether a number was given).

    ``'+<cc> <digits>'``; a number that carries its own ``+cc``/``00cc`` wins over the area code;
    with no country code anywhere the bare national digits are returned.
    """
    if (
        type(number) is str
        and type(area) is str
        and number.isdigit()
        and number.isascii()
        and 5 <= len(number) <= 15
        and number[:2] != "00"
    ):  # the common shape: plain national digits beside an area code
        cc = _area_country_code(area)
        if cc is not None:
            return (f"+{cc} {number}" if cc else number), True
    n = number if type(number) is str else _phone_part(number)
    if not n:
        return None, False
    if not n.isascii():
        n = unicodedata.normalize("NFKC", n).translate(_CTRL_TABLE)
    n = n.replace(" ", "").replace("-", "")
    if not n.isdigit() and not (n[:1] == "+" and n[1:].isdigit()):
        n = n.translate(_PHONE_SEPARATORS)
        if not n:
            return None, False
    if n[0] == "+":
        cc, nat = _split_country_code(n[1:])
    elif n[:2] == "00":
        cc, nat = _split_country_code(n[2:])
    elif area:
        cc, nat = _phone_part(area).lstrip("+").lstrip("0"), n
    else:
        cc, nat = "", n
    if cc and not (cc.isdigit() and cc.isascii() and len(cc) <= 4 and cc[0] != "0"):
        return None, True
    if not (nat.isdigit() and nat.isascii() and 5 <= len(nat) <= 15):
        return None, True
    return (f"+{cc} {nat}" if cc else nat), True


def _tel_pairs(v: object) -> list[tuple[object, object]]:
    """``[area, number]``, a list of such pairs, a bare string, or a dict -> (area, number)s."""
    if _is_missing(v):
        return []
    if isinstance(v, str):
        return [("", v)]
    if isinstance(v, dict):
        area = v.get("area_code") or v.get("area") or ""
        return [(area, v.get("tel") or v.get("number") or v.get("phone") or "")]
    if not isinstance(v, list | tuple) or not v:
        return [("", v)] if isinstance(v, int | float) else []
    if all(not isinstance(x, list | tuple | dict) for x in v):
        return [(v[0], v[1])] if len(v) >= 2 else [("", v[0])]
    return [pair for x in v for pair in _tel_pairs(x)]


def _pick_phone(tel_list: object, tel: object) -> tuple[str | None, int]:
    """The first usable phone among the contact's tel_list, then the company tel."""
    seen = False
    if tel_list:
        if type(tel_list) is list:
            for p in tel_list:
                if type(p) is list and len(p) == 2:
                    value, present = _norm_phone(p[0], p[1])
                    if value is not None:
                        return value, _OK
                    seen = seen or present
                else:
                    for area, number in _tel_pairs(p):
                        value, present = _norm_phone(area, number)
                        if value is not None:
                            return value, _OK
                        seen = seen or present
        else:
            for area, number in _tel_pairs(tel_list):
                value, present = _norm_phone(area, number)
                if value is not None:
                    return value, _OK
                seen = seen or present
    if tel:
        pairs = (
            ((tel[0], tel[1]),)
            if type(tel) is list and len(tel) == 2 and type(tel[0]) is not list
            else _tel_pairs(tel)
        )
        for area, number in pairs:
            value, present = _norm_phone(area, number)
            if value is not None:
                return value, _OK
            seen = seen or present
    return None, (_INVALID if seen else _MISSING)


def _norm_country(v: object) -> tuple[str | None, int]:
    s = _opt_text(v)
    if s is None:
        return None, _MISSING
    if not s.isascii():
        s = unicodedata.normalize("NFKC", s).strip()
    if len(s) == 2 and s.isascii() and s.isalpha():
        return s.upper(), _OK
    return None, _INVALID


def _primary_contact(contacts: list[_Contact]) -> _Contact | None:
    """The contact with main_customer_flag == 1 (int or string), else the first one."""
    for c in contacts:
        flag = c.main_customer_flag
        if flag == 1 or (type(flag) is str and flag.strip() == "1"):
            return c
    return contacts[0] if contacts else None


def _slow_time(v: object) -> pd.Timestamp | None:
    """Fallback parse for a time the vectorised pass rejected: padding, date only, odd types."""
    if _is_missing(v):
        return None
    s = str(v).strip()
    if s in _NO_VALUE:
        return None
    for fmt in _TIME_FORMATS:
        try:
            return pd.Timestamp(datetime.strptime(s, fmt)).as_unit("ns")
        except (ValueError, OverflowError, pd.errors.OutOfBoundsDatetime):
            continue
    return pd.NaT  # present but unusable


# ------------------------------------------------------------------------------ row extraction

# Positions in the per-row tuple built by _extract_rows.
_F_ID, _F_SERIAL, _F_NAME, _F_SHORT, _F_OWNERS = 0, 1, 2, 3, 4
_F_COUNTRY, _F_COUNTRY_ST, _F_CONTACT, _F_EMAIL, _F_EMAIL_ST = 5, 6, 7, 8, 9
_F_PHONE, _F_PHONE_ST, _F_NO_CONTACT, _F_ARCHIVE_TYPE = 10, 11, 12, 13
_F_TIMES = 14  # raw values for TIME_COLUMNS, in order
_N_FIELDS = _F_TIMES + len(TIME_COLUMNS)


class _Contact(msgspec.Struct, gc=False):
    """The fields of a detail's contact (``customers[]``) that cleaning reads."""

    name: Any = None
    email: Any = None
    tel_list: Any = None
    main_customer_flag: Any = None


class _Detail(msgspec.Struct, gc=False):
    """The fields of a company detail (``/v1/company/info``) that cleaning reads.

    Decoding into this struct skips every other field (custom field groups, owners, follow-up
    data) without building Python objects for them, which is most of a detail's size. Every
    scalar field is ``Any``: OKKI's types vary (see the module docstring), so no value fails
    decoding. Absent and null both read as None; the list record then supplies the shared
    fields. ``customers`` is a list of contacts; a detail whose ``customers`` has another shape
    is decoded by ``_LooseDetail`` instead.
    """

    company_id: Any = None
    serial_id: Any = None
    name: Any = None
    short_name: Any = None
    user_id: Any = None
    archive_type: Any = None
    create_time: Any = None
    update_time: Any = None
    order_time: Any = None
    edit_time: Any = None
    archive_time: Any = None
    country: Any = None
    tel: Any = None
    customers: list[_Contact] | None = None


class _LooseDetail(_Detail, gc=False):
    """``_Detail`` with ``customers`` of any shape (an object, a string, non-object entries)."""

    customers: Any = None


_decode_strict = msgspec.json.Decoder(_Detail).decode
_decode_loose = msgspec.json.Decoder(_LooseDetail).decode
_NO_DETAIL = _Detail()
# Shared fields a null or absent detail value is taken from the list record for (the name has
# its own rule: a blank one is replaced too), in the order _extract_rows unpacks them.
_FILLED_FROM_LIST = (
    "short_name",
    "serial_id",
    "user_id",
    "archive_type",
    "create_time",
    "update_time",
    "order_time",
    "edit_time",
)


def _load_detail(payload: object) -> _Detail | None:
    """A detail from text or bytes, or None when it is malformed or not a JSON object.

    Contacts that are not objects are dropped (they carry nothing usable), and ``customers``
    that is not a list reads as no contacts.
    """
    try:
        try:
            return _decode_strict(payload)  # type: ignore[arg-type]
        except msgspec.ValidationError:  # customers of an odd shape, or not an object at all
            loose = _decode_loose(payload)  # type: ignore[arg-type]
    except (msgspec.DecodeError, TypeError):
        return None
    customers = loose.customers
    contacts = (
        [
            _Contact(c.get("name"), c.get("email"), c.get("tel_list"), c.get("main_customer_flag"))
            for c in customers
            if type(c) is dict
        ]
        if type(customers) is list
        else None
    )
    return msgspec.structs.replace(loose, customers=contacts)


def _load_object(text: object) -> dict[str, Any] | None:
    """A JSON object, or None when the text is missing, malformed or not an object."""
    try:
        obj = orjson.loads(text)  # type: ignore[arg-type]
    except (orjson.JSONDecodeError, TypeError):
        return None
    return obj if type(obj) is dict else None


def _extract_rows(
    cid_raw: Sequence[object], list_jsons: Sequence[object], info_jsons: Sequence[object]
) -> tuple[list[tuple[Any, ...]], dict[int, list[str]]]:
    """Parse each JSON once and pull every field out in one pass.

    The detail is authoritative when present; the list record is parsed only when the detail
    is absent, lacks (or has null) one of the shared fields, or has a blank name. Returns one
    tuple per row (positions ``_F_*``; times still raw text) and the record-level reasons by
    row position.
    """
    decode, odd_shape = _decode_strict, msgspec.DecodeError
    norm_text, norm_email, pick_phone = _norm_text, _norm_email, _pick_phone
    no_detail = _NO_DETAIL
    rows: list[tuple[Any, ...]] = []
    append = rows.append
    reasons: dict[int, list[str]] = {}

    for pos, (cr, lj, ij) in enumerate(zip(cid_raw, list_jsons, info_jsons, strict=True)):
        info = no_detail
        if type(ij) is str and ij:
            try:
                info = decode(ij)
            except odd_shape:  # malformed, not an object, or contacts of another shape
                loaded = _load_detail(ij)
                if loaded is None:
                    reasons.setdefault(pos, []).append("info_json_invalid")
                else:
                    info = loaded
        elif not _is_missing(ij) and ij != "":
            loaded = _load_detail(ij)
            if loaded is None:
                reasons.setdefault(pos, []).append("info_json_invalid")
            else:
                info = loaded
        name_v, short_v, serial_v = info.name, info.short_name, info.serial_id
        owners_v, archive_v = info.user_id, info.archive_type
        ct, ut, ot, et = info.create_time, info.update_time, info.order_time, info.edit_time
        lst: dict[str, Any] | None = None
        if info is no_detail or None in (
            name_v,
            short_v,
            serial_v,
            owners_v,
            archive_v,
            ct,
            ut,
            ot,
            et,
        ):
            lst = _load_object(lj)
            if lst is None:
                reasons.setdefault(pos, []).append("list_json_invalid")
                lst = _EMPTY
            elif INFO_ERROR_KEY in lst:
                reasons.setdefault(pos, []).append(str(lst[INFO_ERROR_KEY]))
            lg = lst.get
            short_v, serial_v, owners_v, archive_v, ct, ut, ot, et = (
                lg(key) if v is None else v
                for key, v in zip(
                    _FILLED_FROM_LIST,
                    (short_v, serial_v, owners_v, archive_v, ct, ut, ot, et),
                    strict=True,
                )
            )

        if type(cr) is str and cr.isdigit() and cr.isascii() and len(cr) < 19:
            cid: int | None = int(cr)
        else:
            cid, why = _parse_id(cr)
            if why is not None:
                reasons.setdefault(pos, []).append(why)
        if cid is not None:
            icid = info.company_id
            if (
                icid is not None
                and icid != cid
                and icid != ""
                and (type(icid) is int or _parse_id(icid)[0] != cid)
            ):
                reasons.setdefault(pos, []).append("info_company_id_mismatch")

        name = norm_text(name_v) if name_v else ""
        if not name:
            if lst is None:
                lst = _load_object(lj) or _EMPTY
            v = lst.get("name")
            name = norm_text(v) if v else ""
            if not name:
                reasons.setdefault(pos, []).append("name_blank")
        short = (norm_text(short_v) or None) if short_v else None
        serial = (serial_v.strip() or None) if type(serial_v) is str else _opt_text(serial_v)
        owners = _owner_ids(owners_v)
        archive_type = (
            archive_v if type(archive_v) is int and 0 <= archive_v < 2**31 else _opt_int(archive_v)
        )

        v = info.country
        if type(v) is str and len(v) == 2 and v.isascii() and v.isalpha():
            country: str | None = v.upper()
            country_st = _OK
        else:
            country, country_st = _norm_country(v)

        v = info.customers
        contact = _primary_contact(v) if v else None
        if contact is None:
            contact_name = None
            email: str | None = None
            email_st = _MISSING
            phone, phone_st = pick_phone(None, info.tel)
        else:
            v = contact.name
            contact_name = (norm_text(v) or None) if v else None
            email, email_st = norm_email(contact.email)
            phone, phone_st = pick_phone(contact.tel_list, info.tel)

        append(
            (
                cid,
                serial,
                name,
                short,
                owners,
                country,
                country_st,
                contact_name,
                email,
                email_st,
                phone,
                phone_st,
                contact is None,
                archive_type,
                ct,
                ut,
                ot,
                et,
                info.archive_time,
            )
        )
    return rows, reasons


# --------------------------------------------------------------------------- vector helpers


def _objects(values: Sequence[object]) -> pd.Series:
    """An object Series without pandas' per-element type inference (nested lists stay cells)."""
    return pd.Series(np.fromiter(values, dtype=object, count=len(values)), copy=False)


def _parse_times(
    values: Sequence[object],
    fallbacks: Callable[[int], Iterable[object]],
    retry_absent: bool = False,
) -> tuple[pd.Series, np.ndarray]:
    """Raw time values -> (tz-aware Asia/Shanghai series, whether a real value was present).

    Vectorised: one strict 'YYYY-MM-DD HH:MM:SS' pass, then a 'YYYY-MM-DD' pass over what it
    rejected; the 1970 sentinels (whatever their shape) parse to the epoch and become NaT.
    What is still rejected (padding, garbage) and, with ``retry_absent``, absent values are
    retried one by one, then replaced by the first usable value of ``fallbacks(pos)``.
    """
    arr = np.fromiter(values, dtype=object, count=len(values))
    parsed = pd.to_datetime(
        pd.Series(arr, copy=False), format=_TIME_FORMATS[0], errors="coerce", cache=False
    )
    ns = parsed.to_numpy(dtype="datetime64[ns]")
    nat = np.isnat(ns)
    present = ~nat
    missed = np.flatnonzero(nat)
    if len(missed):  # absent, empty, date only or garbage: look at these few values only
        given = missed[[v is not None and v != "" for v in arr[missed].tolist()]]
        present[given] = True
        if len(given):
            dates = pd.to_datetime(
                pd.Series(arr[given]), format=_TIME_FORMATS[1], errors="coerce", cache=False
            ).to_numpy(dtype="datetime64[ns]")
            ns[given] = dates
            nat[given] = np.isnat(dates)
    sentinel = ns.view(np.int64) == 0
    ns[sentinel] = np.datetime64("NaT")
    present &= ~sentinel
    nat |= sentinel
    retry = np.flatnonzero(nat if retry_absent else nat & present)
    for pos in retry:
        seen = False
        ts: pd.Timestamp = pd.NaT
        for v in chain((values[int(pos)],), fallbacks(int(pos))):
            t = _slow_time(v)
            if t is None:
                continue
            seen = True
            if t is not pd.NaT:
                ts = t
                break
        ns[pos] = ts.to_datetime64() if ts is not pd.NaT else np.datetime64("NaT")
        present[pos] = seen
    out = pd.Series(ns, copy=False).dt.tz_localize(OKKI_TZ, ambiguous="NaT", nonexistent="NaT")
    return out, present


def _empty_failure_cases() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in FAILURE_CASE_COLUMNS})


def _check_window(
    window_start: datetime, window_end: datetime
) -> tuple[pd.Timestamp, pd.Timestamp]:
    start, end = pd.Timestamp(window_start), pd.Timestamp(window_end)
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("window_start and window_end must be timezone-aware")
    if end <= start:
        raise ValueError(f"empty window: start={start.isoformat()} end={end.isoformat()}")
    return start.tz_convert(OKKI_TZ), end.tz_convert(OKKI_TZ)


def _add_reason(reasons: dict[int, list[str]], positions: Iterable[int], reason: str) -> None:
    for pos in positions:
        reasons.setdefault(int(pos), []).append(reason)


# ------------------------------------------------------------------------------------ public


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
        pks = [None if _is_missing(k) else str(k) for k in pks]
    cid_raw = raw["company_id"].tolist()
    list_jsons = raw["list_json"].tolist()
    info_jsons = raw["info_json"].tolist()
    rows, reasons = _extract_rows(cid_raw, list_jsons, info_jsons)
    cols: list[tuple[Any, ...]] = list(zip(*rows, strict=True)) if rows else [()] * _N_FIELDS
    del rows

    # Times: vectorised; a rejected detail value falls back to the list record's (and, for
    # update_time, to the raw column the raw stage filled from the list record).
    raw_ut = raw["update_time"].tolist()

    def list_value(pos: int, key: str) -> list[object]:
        lst = _load_object(list_jsons[pos])
        return [] if lst is None else [lst.get(key)]

    times: dict[str, pd.Series] = {}
    present: dict[str, np.ndarray] = {}

    def update_time_fallbacks(pos: int) -> list[object]:
        return [raw_ut[pos], *list_value(pos, "update_time")]

    for k, name in enumerate(TIME_COLUMNS):
        if name == "update_time":
            times[name], present[name] = _parse_times(
                cols[_F_TIMES + k], update_time_fallbacks, retry_absent=True
            )
        else:
            times[name], present[name] = _parse_times(
                cols[_F_TIMES + k], partial(list_value, key=name)
            )

    ut = times["update_time"]
    _add_reason(reasons, np.flatnonzero(ut.isna().to_numpy()), "update_time_unparseable")
    outside = (ut.notna() & ((ut < start) | (ut >= end))).to_numpy()
    for pos in np.flatnonzero(outside):
        # The list's time (the raw column) files a row under its window; info read afterwards
        # may be newer, even past the window: the row still belongs here (see pull.py).
        filed = _slow_time(raw_ut[pos])
        if filed is not None and not pd.isna(filed):
            outside[pos] = not start <= filed.tz_localize(OKKI_TZ) < end
    _add_reason(reasons, np.flatnonzero(outside), "update_time_outside_window")

    # Older versions of a company seen twice in the partition are superseded.
    ids = _objects(cols[_F_ID])
    dup = (ids.notna() & ids.duplicated(keep=False)).to_numpy()
    if dup.any():
        sub = pd.DataFrame({"id": ids[dup], "ut": ut[dup], "pos": np.flatnonzero(dup)})
        sub = sub.sort_values(["ut", "pos"], na_position="first")
        _add_reason(
            reasons, sub.loc[sub.duplicated("id", keep="last"), "pos"], "company_id_duplicate"
        )

    email_st = np.array(cols[_F_EMAIL_ST], dtype=np.int8)
    phone_st = np.array(cols[_F_PHONE_ST], dtype=np.int8)
    country_st = np.array(cols[_F_COUNTRY_ST], dtype=np.int8)
    short = _objects(cols[_F_SHORT])
    flags = {
        "email_missing": email_st == _MISSING,
        "email_invalid": email_st == _INVALID,
        "phone_missing": phone_st == _MISSING,
        "phone_invalid": phone_st == _INVALID,
        "contact_missing": np.array(cols[_F_NO_CONTACT], dtype=bool),
        "country_missing": country_st == _MISSING,
        "country_invalid": country_st == _INVALID,
        "short_name_missing": short.isna().to_numpy(),
    }
    # With quarantined rows some ids may be missing: int64 once those rows are dropped.
    # Otherwise (the common case) int64 now, so that the frame is not copied later.
    id_column = ids if reasons else pd.Series(np.array(cols[_F_ID], dtype=np.int64), copy=False)
    full = pd.DataFrame(
        {
            "partition_key": _objects(pks),
            "company_id": id_column,
            "serial_id": _objects(cols[_F_SERIAL]),
            "name": _objects(cols[_F_NAME]),
            "short_name": short,
            "owner_ids": _objects(cols[_F_OWNERS]),
            "archive_type": pd.Series(pd.array(cols[_F_ARCHIVE_TYPE], dtype="Int64")),
            "country": _objects(cols[_F_COUNTRY]),
            "contact_name": _objects(cols[_F_CONTACT]),
            "email": _objects(cols[_F_EMAIL]),
            "phone": _objects(cols[_F_PHONE]),
            **times,
            **{flag: pd.Series(flags[flag], dtype=bool) for flag in FLAG_COLUMNS},
        },
        columns=list(CLEANED_COLUMNS),
    )
    candidate = full
    if reasons:
        ok = np.ones(n, dtype=bool)
        ok[list(reasons)] = False
        candidate = full.loc[ok]
        candidate = candidate.assign(company_id=candidate["company_id"].astype("int64"))

    failure_cases = _empty_failure_cases()
    try:
        cleaned = _VALIDATOR.validate(candidate, lazy=True)
    except pa.errors.SchemaErrors as exc:
        fc = exc.failure_cases
        if fc["index"].isna().any():
            raise  # a frame-level failure is a bug in this module, not a bad row
        for pos, group in fc.groupby("index", sort=True):
            checks = dict.fromkeys(
                f"schema:{c}:{k}" for c, k in zip(group["column"], group["check"], strict=True)
            )
            reasons.setdefault(int(pos), []).extend(checks)
        bad_positions = fc["index"].astype(int).unique()
        fc = fc.reset_index(drop=True)
        fc["company_id"] = [cols[_F_ID][int(p)] for p in fc["index"]]
        failure_cases = fc.reindex(columns=list(FAILURE_CASE_COLUMNS))
        cleaned = _VALIDATOR.validate(candidate.drop(index=bad_positions), lazy=True)
        logger.warning(
            "%d row(s) rejected by the CleanedCompany model (%d failure cases)",
            len(bad_positions),
            len(failure_cases),
        )

    kept = cleaned.index.to_numpy()
    cleaned.index = pd.RangeIndex(len(cleaned))  # a frame built here: no copy needed
    q_pos = sorted(reasons)
    quarantined = pd.DataFrame(
        {
            "partition_key": pd.Series([pks[i] for i in q_pos], dtype=object),
            "company_id": pd.Series([_raw_id_text(cid_raw[i]) for i in q_pos], dtype=object),
            "reasons": _objects([reasons[i] for i in q_pos]),
            "list_json": pd.Series(
                [None if _is_missing(list_jsons[i]) else list_jsons[i] for i in q_pos],
                dtype=object,
            ),
            "info_json": pd.Series(
                [None if _is_missing(info_jsons[i]) else info_jsons[i] for i in q_pos],
                dtype=object,
            ),
        },
        columns=list(QUARANTINE_COLUMNS),
    )

    counts = {flag: int(cleaned[flag].sum()) for flag in FLAG_COLUMNS}
    for name in TIME_COLUMNS:
        if name != "update_time":
            unusable = present[name] & times[name].isna().to_numpy()
            counts[f"{name}_unparseable"] = int(unusable[kept].sum())

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
