"""One raw company row (list record + detail) -> a ``CleanRow`` of cleaned fields.

The detail (``/v1/company/info``, fetched after the list, so fresher) is authoritative when
present. The list record fills each shared field the detail lacks or has as null, a blank
detail name, and every field when there is no detail; it is read only then (a row whose
detail carries every shared field does not have its list record re-validated). Contacts,
e-mail, phone and country exist only in the detail.

A record-level defect adds a quarantine reason to ``CleanRow.reasons``; a field-level defect
nulls the field and adds its flag to ``CleanRow.flags``. Times stay as received here: the
frame parses them all at once (``cleaning.py``).
"""

from __future__ import annotations

from operator import attrgetter
from typing import Any

import msgspec
import orjson

from okki_assets.field_rules import (
    Issue,
    clean_country,
    clean_email,
    clean_optional_text,
    clean_owner_ids,
    clean_small_int,
    clean_text,
    is_missing,
    parse_company_id,
    pick_phone,
    primary_contact,
)

#: A key the raw stage adds to a list record whose detail OKKI could not give; its value is the
#: quarantine reason (``info_not_found``: info answered code 404 for a company the list showed).
INFO_ERROR_KEY = "okki_assets_error"


class CleanRow(msgspec.Struct, gc=False):
    """One raw row, cleaned: the ``CleanedCompany`` fields (times still as received), the
    flags of its field-level issues and the reasons to quarantine it (none for a good row).

    Built positionally in ``clean_row`` (keywords cost more than the rest of the struct).
    """

    company_id: int | None
    serial_id: str | None
    name: str
    short_name: str | None
    owner_ids: list[str]
    archive_type: int | None
    country: str | None
    contact_name: str | None
    email: str | None
    phone: str | None
    create_time: Any
    update_time: Any
    order_time: Any
    edit_time: Any
    archive_time: Any
    flags: list[str]
    reasons: list[str]


# ------------------------------------------------------------------------------- payloads


class _Contact(msgspec.Struct, gc=False):
    """The fields of a detail's contact (``customers[]``) that cleaning reads."""

    name: Any = None
    email: Any = None
    tel_list: Any = None
    main_customer_flag: Any = None


class _Detail(msgspec.Struct, gc=False):
    """The fields of a company detail that cleaning reads.

    Decoding into this struct skips every other field (custom field groups, owners, follow-up
    data) without building Python objects for them, which is most of a detail's size. Every
    scalar field is ``Any``: OKKI's types vary, so no value fails decoding. Absent and null
    both read as None.
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


_decode_detail = msgspec.json.Decoder(_Detail).decode
_decode_loose_detail = msgspec.json.Decoder(_LooseDetail).decode
_NO_DETAIL = _Detail()
_NO_CONTACT = _Contact()

# The fields a null or absent detail value is taken from the list record for (the name has its
# own rule: a blank one is replaced too).
_FROM_LIST_WHEN_NULL = (
    "short_name",
    "serial_id",
    "user_id",
    "archive_type",
    "create_time",
    "update_time",
    "order_time",
    "edit_time",
)


def _decode(payload: object) -> _Detail | None:
    """A detail from text or bytes, or None when it is malformed or not a JSON object.

    Contacts that are not objects are dropped (they carry nothing usable), and ``customers``
    that is not a list reads as no contacts.
    """
    try:
        try:
            return _decode_detail(payload)  # type: ignore[arg-type]
        except msgspec.ValidationError:  # customers of an odd shape, or not an object at all
            loose = _decode_loose_detail(payload)  # type: ignore[arg-type]
    except (msgspec.DecodeError, TypeError):
        return None
    customers = loose.customers
    if type(customers) is not list:
        return msgspec.structs.replace(loose, customers=None)
    contacts = [
        _Contact(c.get("name"), c.get("email"), c.get("tel_list"), c.get("main_customer_flag"))
        for c in customers
        if type(c) is dict
    ]
    return msgspec.structs.replace(loose, customers=contacts)


def _read_detail(payload: object, reasons: list[str]) -> _Detail:
    """The row's detail; an empty one when there is none or it is unreadable (noted)."""
    if is_missing(payload) or payload == "":
        return _NO_DETAIL
    detail = _decode(payload)
    if detail is None:
        reasons.append("info_json_invalid")
        return _NO_DETAIL
    return detail


def load_object(payload: object) -> dict[str, Any] | None:
    """A JSON object, or None when the text is missing, malformed or not an object."""
    try:
        obj = orjson.loads(payload)  # type: ignore[arg-type]
    except (orjson.JSONDecodeError, TypeError):
        return None
    return obj if type(obj) is dict else None


def _read_list_record(payload: object, reasons: list[str]) -> dict[str, Any]:
    """The row's list record (empty when unreadable, noted); a reason the raw stage marked it
    with (``INFO_ERROR_KEY``) is noted as it is."""
    record = load_object(payload)
    if record is None:
        reasons.append("list_json_invalid")
        return {}
    if INFO_ERROR_KEY in record:
        reasons.append(str(record[INFO_ERROR_KEY]))
    return record


_values_from_list_when_null = attrgetter(*_FROM_LIST_WHEN_NULL)


def _needs_list_record(detail: _Detail, name: str) -> bool:
    """Whether the detail (empty when there is none) lacks its name or a shared field."""
    return not name or None in _values_from_list_when_null(detail)


def _fill_from_list(detail: _Detail, listed: dict[str, Any]) -> _Detail:
    """The detail with the list record's value for each shared field it has as null."""
    gaps = {f: listed.get(f) for f in _FROM_LIST_WHEN_NULL if getattr(detail, f) is None}
    return msgspec.structs.replace(detail, **gaps) if gaps else detail


# ------------------------------------------------------------------------------------ row


def _is_another_company(detail_id: object, company_id: int) -> bool:
    """Whether the detail names a different company than the row (the fan-out glued the wrong
    detail to it); a detail without an id is taken as the row's."""
    if detail_id is None or detail_id == "" or detail_id == company_id:
        return False
    return parse_company_id(detail_id)[0] != company_id


def _note(flags: list[str], field: str, issue: Issue | None) -> None:
    if issue is not None:
        flags.append(f"{field}_{issue}")


def clean_row(raw_id: object, list_json: object, info_json: object) -> CleanRow:
    """Clean one raw row: the raw stage's ``company_id`` and the two payloads as stored."""
    reasons: list[str] = []
    flags: list[str] = []

    detail = _read_detail(info_json, reasons)
    name = clean_text(detail.name)
    if _needs_list_record(detail, name):
        listed = _read_list_record(list_json, reasons)
        detail = _fill_from_list(detail, listed)
        name = name or clean_text(listed.get("name"))

    company_id, why = parse_company_id(raw_id)
    if why is not None:
        reasons.append(why)
    if company_id is not None and _is_another_company(detail.company_id, company_id):
        reasons.append("info_company_id_mismatch")
    if not name:
        reasons.append("name_blank")

    short_name = clean_text(detail.short_name) or None
    if short_name is None:
        flags.append("short_name_missing")
    country, issue = clean_country(detail.country)
    _note(flags, "country", issue)

    contact = primary_contact(detail.customers or [])
    if contact is None:
        flags.append("contact_missing")
        contact = _NO_CONTACT
    contact_name = clean_text(contact.name) or None
    email, issue = clean_email(contact.email)
    _note(flags, "email", issue)
    phone, issue = pick_phone(contact.tel_list, detail.tel)
    _note(flags, "phone", issue)

    return CleanRow(
        company_id,
        clean_optional_text(detail.serial_id),
        name,
        short_name,
        clean_owner_ids(detail.user_id),
        clean_small_int(detail.archive_type),
        country,
        contact_name,
        email,
        phone,
        detail.create_time,
        detail.update_time,
        detail.order_time,
        detail.edit_time,
        detail.archive_time,
        flags,
        reasons,
    )
