"""One function per field rule: an OKKI value as received -> the cleaned value.

Pure functions on single values, no pandas. A rule for a field that may be unusable returns
``(value, issue)``: the value or None, and None, ``"missing"`` or ``"invalid"`` (the cleaned
frame's ``<field>_missing`` / ``<field>_invalid`` flags). The OKKI shapes each rule accepts are
those of ``docs/okki-api.md``; what each rule does with them is in its docstring.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator, Sequence
from itertools import chain
from typing import Literal, Protocol, TypeVar

from okki_assets.schemas import EMAIL_RE

#: What is wrong with a field that cleaning nulled.
Issue = Literal["missing", "invalid"]

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1

# Control characters: whitespace-like ones become a space (then collapse), the rest are deleted.
# Zero-width space and BOM are deleted too; ZWJ and bidi marks are kept (emoji, RTL text).
_CTRL_TABLE: dict[int, str | None] = {c: None for c in chain(range(0, 32), range(127, 160))}
_CTRL_TABLE.update({c: " " for c in (9, 10, 11, 12, 13, 0x1C, 0x1D, 0x1E, 0x1F, 0x85)})
_CTRL_TABLE.update({0x200B: None, 0xFEFF: None, 0x2028: " ", 0x2029: " "})

# Built once: ``isinstance(v, list | tuple)`` would build the union on every call.
_SEQUENCE = (list, tuple)
_CONTAINER = (list, tuple, dict)
_NUMBER = (int, float)

_PHONE_SEPARATORS = str.maketrans("", "", " -./()\t\u00a0\u3000")
# ITU-T E.164 country codes are prefix-free: 1 and 7 have one digit, these have two, all else three.
_CC2 = frozenset(
    f"{cc}"
    for cc in (20, 27, 30, 31, 32, 33, 34, 36, 39, 40, 41, 43, 44, 45, 46, 47, 48, 49)
    + (51, 52, 53, 54, 55, 56, 57, 58, 60, 61, 62, 63, 64, 65, 66, 81, 82, 84, 86)
    + (90, 91, 92, 93, 94, 95, 98)
)


def is_missing(v: object) -> bool:
    """None or NaN (what pandas gives for an absent cell)."""
    return v is None or (isinstance(v, float) and v != v)


def _text(v: object) -> str:
    """A value as text: itself when it is text, "" when missing, else its ``str()``."""
    if type(v) is str:
        return v
    return "" if is_missing(v) else str(v)


# ------------------------------------------------------------------------------------- text


def _nfkc(text: str) -> str:
    """NFKC with control characters removed (full-width letters and digits become ASCII)."""
    if not text.isascii():  # NFKC leaves ASCII as it is
        text = unicodedata.normalize("NFKC", text)
    if not text.isprintable():
        text = text.translate(_CTRL_TABLE)
    return text


def clean_text(v: object) -> str:
    """Names, short names, contact names: NFKC, control characters removed, stripped, inner
    whitespace runs collapsed; "" for a missing or empty value (None, NaN, "", 0, []). Long
    names are kept whole (a target's length limit belongs to the mapping)."""
    if not v:
        return ""
    return " ".join(_nfkc(_text(v)).split())


def clean_optional_text(v: object) -> str | None:
    """``serial_id``: text as received, stripped; None when blank or missing."""
    return _text(v).strip() or None


# -------------------------------------------------------------------------------- numbers


def parse_company_id(v: object) -> tuple[int | None, str | None]:
    """A company_id as received -> (int, None) or (None, quarantine reason).

    OKKI sends ids as numbers or as numeric strings (``"55280038"``); no sign, no letters, and
    the value must fit a signed 64-bit integer.
    """
    if isinstance(v, str):
        text = v.strip()
        if not text:
            return None, "company_id_missing"
        if not (text.isascii() and text.isdigit()):
            return None, "company_id_not_numeric"
        n = int(text)
    elif is_missing(v):
        return None, "company_id_missing"
    elif isinstance(v, bool):
        return None, "company_id_not_numeric"
    elif isinstance(v, int):
        n = v
    elif isinstance(v, float):
        if not v.is_integer():
            return None, "company_id_not_numeric"
        n = int(v)
    else:
        return None, "company_id_not_numeric"
    if not _INT64_MIN <= n <= _INT64_MAX:
        return None, "company_id_out_of_range"
    return n, None


def raw_id_text(v: object) -> str | None:
    """The company_id exactly as received, as text (for the quarantine frame)."""
    if is_missing(v):
        return None
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def clean_small_int(v: object) -> int | None:
    """``archive_type`` and similar codes: an int or a (signed) numeric string; else None."""
    if is_missing(v) or isinstance(v, bool):
        return None
    if isinstance(v, float):
        return int(v) if v.is_integer() else None
    if isinstance(v, int):
        n = v
    else:
        text = str(v).strip()
        digits = text[1:] if text[:1] == "-" else text
        if not (digits.isascii() and digits.isdigit()):
            return None
        n = int(text)
    return n if _INT64_MIN <= n <= _INT64_MAX else None


def clean_owner_ids(v: object) -> list[str]:
    """``user_id``: a list in the detail, a (possibly comma-separated) string in the list record,
    or a bare number -> the owner ids as text, in order, without blanks or repeats."""
    if is_missing(v):
        return []
    items: Sequence[object] = v if isinstance(v, _SEQUENCE) else (v,)
    out: list[str] = []
    for item in items:
        if is_missing(item):
            continue
        if isinstance(item, float) and item.is_integer():
            item = int(item)
        for part in str(item).split(","):
            part = part.strip()
            if part and part not in out:
                out.append(part)
    return out


# ------------------------------------------------------------------------ country and e-mail


def clean_country(v: object) -> tuple[str | None, Issue | None]:
    """ISO 3166-1 alpha-2, upper case (full-width letters and padding allowed)."""
    text = clean_optional_text(v)
    if text is None:
        return None, "missing"
    if not text.isascii():  # full-width letters
        text = unicodedata.normalize("NFKC", text).strip()
    if len(text) == 2 and text.isascii() and text.isalpha():
        return text.upper(), None
    return None, "invalid"


def clean_email(v: object) -> tuple[str | None, Issue | None]:
    """One address, lower case, NFKC (full-width input), matching ``schemas.EMAIL_RE``."""
    text = _nfkc(_text(v)).strip().lower()
    if not text:
        return None, "missing"
    if EMAIL_RE.match(text):
        return text, None
    return None, "invalid"


# -------------------------------------------------------------------------------- contacts


class Contact(Protocol):
    """What the contact rules read of a detail's contact (``customers[]``)."""

    @property
    def main_customer_flag(self) -> object: ...


C = TypeVar("C", bound=Contact)


def primary_contact(contacts: Sequence[C]) -> C | None:
    """The contact with ``main_customer_flag`` 1 (int or string), else the first one."""
    for c in contacts:
        flag = c.main_customer_flag
        if flag == 1 or (type(flag) is str and flag.strip() == "1"):
            return c
    return contacts[0] if contacts else None


# ---------------------------------------------------------------------------------- phones


def _phone_text(v: object) -> str:
    """Phone text with the separators (spaces, dashes, dots, slashes, parentheses) removed;
    text beyond ASCII is NFKC-normalised first (full-width digits); "" for a missing value."""
    text = _text(v)
    if text.isdigit() and text.isascii():  # nothing to remove
        return text
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text).translate(_CTRL_TABLE)
    return text.translate(_PHONE_SEPARATORS)


def _split_country_code(digits: str) -> tuple[str, str]:
    """'8613800138000' -> ('86', '13800138000') by the ITU prefix rule."""
    if digits[:1] in ("1", "7"):
        return digits[:1], digits[1:]
    if digits[:2] in _CC2:
        return digits[:2], digits[2:]
    return digits[:3], digits[3:]


def clean_phone(area: object, number: object) -> tuple[str | None, bool]:
    """One ``[area_code, number]`` pair -> (``'+<cc> <digits>'`` or None, whether a number was
    given at all).

    A number that carries its own ``+cc``/``00cc`` wins over the area code, whose ``+`` and
    leading zeros are dropped; national trunk zeros are kept (Italy needs them); with no country
    code anywhere the bare national digits are returned. Unusable: a country code that is not
    1 to 4 digits, a national number that is not 5 to 15 digits.
    """
    text = _phone_text(number)
    if not text:
        return None, False
    if text[0] == "+":
        cc, national = _split_country_code(text[1:])
    elif text[:2] == "00":
        cc, national = _split_country_code(text[2:])
    else:
        cc, national = _phone_text(area).lstrip("+").lstrip("0"), text
    if cc and not (cc.isdigit() and cc.isascii() and len(cc) <= 4 and cc[0] != "0"):
        return None, True
    if not (national.isdigit() and national.isascii() and 5 <= len(national) <= 15):
        return None, True
    return (f"+{cc} {national}" if cc else national), True


def _tel_pairs(v: object) -> list[tuple[object, object]]:
    """``[area, number]``, a list of such pairs, a bare string or number, or an object with
    ``area_code``/``tel`` -> the (area, number) pairs it holds."""
    if isinstance(v, _SEQUENCE):
        if any(isinstance(x, _CONTAINER) for x in v):  # a list of entries
            return [pair for x in v for pair in _tel_pairs(x)]
        if len(v) >= 2:
            return [(v[0], v[1])]
        return [("", v[0])] if v else []
    if isinstance(v, dict):
        area = v.get("area_code") or v.get("area") or ""
        return [(area, v.get("tel") or v.get("number") or v.get("phone") or "")]
    if isinstance(v, str) or (isinstance(v, _NUMBER) and not is_missing(v)):
        return [("", v)]
    return []


def _phone_candidates(tel_list: object, tel: object) -> Iterator[tuple[object, object]]:
    """The (area, number) pairs to try, in order: each entry of the contact's ``tel_list`` (a
    list of entries; any other shape is one entry), then the company's ``tel``."""
    if type(tel_list) is list:
        for entry in tel_list:
            yield from _tel_pairs(entry)
    elif tel_list:
        yield from _tel_pairs(tel_list)
    if tel:
        yield from _tel_pairs(tel)


def pick_phone(tel_list: object, tel: object) -> tuple[str | None, Issue | None]:
    """The first usable phone among the contact's ``tel_list`` in order, then the company's
    ``tel``. ``"invalid"`` when numbers were given but none is usable, ``"missing"`` when none
    was given."""
    given = False
    for area, number in _phone_candidates(tel_list, tel):
        phone, present = clean_phone(area, number)
        if phone is not None:
            return phone, None
        given = given or present
    return None, "invalid" if given else "missing"
