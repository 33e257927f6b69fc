"""clean_companies: raw OKKI rows -> cleaned rows, flags and quarantine, with every OKKI quirk.

Covers the payload quirks of docs/okki-api.md (ids as strings, the 1970 "no value" sentinel,
``user_id`` as a string or a list, contacts and phones only in the detail, phones in many
shapes), text normalisation (full-width, stray spaces, control characters, emoji, RTL), the
window edges at midnight, every quarantine reason (several on one row), the row-count contract
and schema failure cases that are kept, not just counted.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pandas as pd
import pytest

from okki_assets.cleaning import (
    FAILURE_CASE_COLUMNS,
    FIELD_ISSUES,
    INFO_ERROR_KEY,
    CleanResult,
    clean_companies,
)
from okki_assets.schemas import CLEANED_COLUMNS, FLAG_COLUMNS, QUARANTINE_COLUMNS

CST = ZoneInfo("Asia/Shanghai")
WINDOW_START = datetime(2026, 11, 20, tzinfo=CST)
WINDOW_END = WINDOW_START + timedelta(days=1)
UNSET = "1970-01-01 00:00:00"

_UNSET_ARG: Any = object()


# ------------------------------------------------------------------------------ factories


def list_record(company_id: object = 55280038, **over: Any) -> dict[str, Any]:
    """The twelve fields of a /v1/company/list record."""
    rec: dict[str, Any] = {
        "company_id": company_id,
        "user_id": "1001",
        "name": "Acme Trading Ltd",
        "short_name": "Acme",
        "serial_id": "C100001",
        "order_time": UNSET,
        "create_time": "2025-06-01 08:00:00",
        "update_time": "2026-11-20 09:15:00",
        "edit_time": "2026-11-20 09:15:00",
        "create_user": "1001",
        "last_edit_user": "1001",
        "archive_type": 1,
    }
    rec.update(over)
    return rec


def contact(**over: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "customer_id": 4100000001,
        "name": "Li Si",
        "email": "li.si@acme.example",
        "tel_list": [["86", "13800138000"]],
        "contact": [],
        "post": "Buyer",
        "main_customer_flag": 1,
        "external_field_data": {},
    }
    rec.update(over)
    return rec


def info_record(company_id: object = 55280038, **over: Any) -> dict[str, Any]:
    """The `data` of /v1/company/info: the list fields plus detail-only ones."""
    rec = list_record(company_id)
    rec.update(
        {
            "user_id": ["1001"],
            "archive_time": "2025-06-01 08:00:00",
            "country": "CN",
            "country_name": "中国",
            "tel": ["86", "075588881234"],
            "homepage": "https://acme.example",
            "customers": [contact()],
        }
    )
    rec.update(over)
    return rec


def raw_row(
    info: dict[str, Any] | None | object = _UNSET_ARG,
    lst: dict[str, Any] | None = None,
    *,
    company_id: object = _UNSET_ARG,
    update_time: object = _UNSET_ARG,
    info_json: object = _UNSET_ARG,
    list_json: object = _UNSET_ARG,
    partition_key: str = "2026-11-20",
) -> dict[str, Any]:
    """One raw-stage row; company_id/update_time default to the list record's, as stored."""
    lst = list_record() if lst is None else lst
    if info is _UNSET_ARG:
        info = info_record(lst.get("company_id", 55280038))
    return {
        "partition_key": partition_key,
        "company_id": (
            (None if lst.get("company_id") is None else str(lst["company_id"]))
            if company_id is _UNSET_ARG
            else company_id
        ),
        "update_time": lst.get("update_time") if update_time is _UNSET_ARG else update_time,
        "list_json": orjson.dumps(lst).decode() if list_json is _UNSET_ARG else list_json,
        "info_json": (
            (None if info is None else orjson.dumps(info).decode())
            if info_json is _UNSET_ARG
            else info_json
        ),
    }


def clean(*rows: dict[str, Any]) -> CleanResult:
    raw = pd.DataFrame(list(rows), columns=list(rows[0]) if rows else None)
    result = clean_companies(raw, WINDOW_START, WINDOW_END)
    assert len(result.cleaned) + len(result.quarantined) == len(raw)
    return result


def one(info: dict[str, Any] | None | object = _UNSET_ARG, **kw: Any) -> dict[str, Any]:
    """Clean a single row that must pass, and return it as a dict."""
    result = clean(raw_row(info, **kw))
    assert result.quarantined.empty, result.quarantined["reasons"].tolist()
    return result.cleaned.iloc[0].to_dict()


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz=CST)


# ------------------------------------------------------------------------------ the whole row


def test_a_complete_record_comes_out_typed_and_in_column_order() -> None:
    result = clean(raw_row())
    frame = result.cleaned
    assert tuple(frame.columns) == CLEANED_COLUMNS
    assert str(frame["company_id"].dtype) == "int64"
    assert str(frame["archive_type"].dtype) == "Int64"
    assert str(frame["update_time"].dtype) == "datetime64[ns, Asia/Shanghai]"
    assert all(str(frame[f].dtype) == "bool" for f in FLAG_COLUMNS)
    row = frame.iloc[0].to_dict()
    assert {k: row[k] for k in CLEANED_COLUMNS[:11]} == {
        "partition_key": "2026-11-20",
        "company_id": 55280038,
        "serial_id": "C100001",
        "name": "Acme Trading Ltd",
        "short_name": "Acme",
        "owner_ids": ["1001"],
        "archive_type": 1,
        "country": "CN",
        "contact_name": "Li Si",
        "email": "li.si@acme.example",
        "phone": "+86 13800138000",
    }
    assert row["create_time"] == ts("2025-06-01 08:00:00")
    assert row["update_time"] == ts("2026-11-20 09:15:00")
    assert pd.isna(row["order_time"])
    assert row["edit_time"] == ts("2026-11-20 09:15:00")
    assert row["archive_time"] == ts("2025-06-01 08:00:00")
    assert not any(row[f] for f in FLAG_COLUMNS)
    assert result.failure_cases.empty
    assert tuple(result.failure_cases.columns) == FAILURE_CASE_COLUMNS
    assert result.field_issue_counts == dict.fromkeys(FIELD_ISSUES, 0)
    assert tuple(result.quarantined.columns) == QUARANTINE_COLUMNS


def test_an_empty_raw_frame_gives_empty_typed_frames() -> None:
    raw = pd.DataFrame(
        columns=["partition_key", "company_id", "update_time", "list_json", "info_json"]
    )
    result = clean_companies(raw, WINDOW_START, WINDOW_END)
    assert result.cleaned.empty and result.quarantined.empty
    assert tuple(result.cleaned.columns) == CLEANED_COLUMNS
    assert str(result.cleaned["update_time"].dtype) == "datetime64[ns, Asia/Shanghai]"


def test_a_partition_key_read_back_as_a_date_becomes_text() -> None:
    raw = pd.DataFrame([raw_row()])
    raw["partition_key"] = [date(2026, 11, 20)]
    result = clean_companies(raw, WINDOW_START, WINDOW_END)
    assert result.cleaned["partition_key"].tolist() == ["2026-11-20"]


def test_a_naive_window_is_refused() -> None:
    raw = pd.DataFrame([raw_row()])
    with pytest.raises(ValueError, match="timezone-aware"):
        clean_companies(raw, datetime(2026, 11, 20), datetime(2026, 11, 21))


# ------------------------------------------------------------------------------ names


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("ＡＢＣ　Ｔｒａｄｉｎｇ", "ABC Trading"),  # full-width letters and ideographic space (IME)
        ("  Acme \t Trading\n\nLtd  ", "Acme Trading Ltd"),  # stray and inner whitespace runs
        (
            "ACME\x00 Trading\x07\u200b Co",
            "ACME Trading Co",
        ),  # control chars and a zero-width space
        ("深圳市 华盛 科技有限公司", "深圳市 华盛 科技有限公司"),  # Chinese kept as is
        ("🚀 Rocket Exports 🌍", "🚀 Rocket Exports 🌍"),  # emoji are valid
        ("\u202eشركة النور חברת סחר", "\u202eشركة النور חברת סחר"),  # right-to-left text is valid
        ("㈱ＡＢＣ", "(株)ABC"),  # NFKC also unfolds compatibility characters
    ],
)
def test_names_are_normalised(given: str, expected: str) -> None:
    row = one(info_record(name=given, short_name=given))
    assert row["name"] == expected
    assert row["short_name"] == expected


def test_a_very_long_name_is_kept_whole() -> None:
    long_name = ("Global Pacific International Holdings Group " * 20).strip()
    assert len(long_name) > 600
    assert one(info_record(name=long_name))["name"] == long_name


@pytest.mark.parametrize(
    "short_name",
    [
        "",  # empty
        "   ",  # blank
        None,  # null
    ],
)
def test_a_blank_short_name_is_null_and_flagged(short_name: str | None) -> None:
    row = one(info_record(short_name=short_name), lst=list_record(short_name=""))
    assert row["short_name"] is None
    assert row["short_name_missing"]


def test_a_blank_detail_name_falls_back_to_the_list_name() -> None:
    row = one(info_record(name="  "), lst=list_record(name="Acme From List"))
    assert row["name"] == "Acme From List"


def test_null_or_absent_detail_fields_are_filled_from_the_list_record() -> None:
    info = info_record(short_name=None, serial_id=None, order_time=None)
    del info["archive_type"]
    row = one(
        info,
        lst=list_record(short_name="Acme", serial_id="C9", archive_type=2, order_time=UNSET),
    )
    assert (row["short_name"], row["serial_id"], row["archive_type"]) == ("Acme", "C9", 2)
    assert pd.isna(row["order_time"])


def test_a_detail_is_read_whatever_else_it_carries() -> None:
    """Fields cleaning does not read (custom field groups, owners, nested objects of any shape)
    do not disturb the ones it does."""
    info = info_record(
        company=[{"group_id": 1, "fields": [{"id": "1101", "value": {"deep": [1, [2, {}]]}}]}],
        owner=[{"user_id": 1001, "nickname": "Tom"}],
        trail_status={"status_id": 1105},
        remark="VIP客户👍",
        score=1.5e300,
    )
    row = one(info)
    assert (row["name"], row["country"], row["email"]) == (
        "Acme Trading Ltd",
        "CN",
        "li.si@acme.example",
    )


# ------------------------------------------------------------------------------ ids and codes


@pytest.mark.parametrize(
    "company_id",
    [
        "55280038",  # an integer sent as a string
        55280038,  # a real integer
        " 55280038 ",  # padded
        55280038.0,  # a float from a lossy upstream
    ],
)
def test_company_ids_are_int64(company_id: object) -> None:
    row = one(company_id=company_id)
    assert row["company_id"] == 55280038


def test_the_detail_may_send_its_id_as_a_string() -> None:
    assert one(info_record(company_id="55280038"))["company_id"] == 55280038


def test_archive_type_as_a_string_is_an_int_and_garbage_is_null() -> None:
    assert one(info_record(archive_type="2"))["archive_type"] == 2
    row = one(info_record(archive_type="manual"))
    assert pd.isna(row["archive_type"])


def test_serial_id_is_text() -> None:
    assert one(info_record(serial_id=100001))["serial_id"] == "100001"


# ------------------------------------------------------------------------------ owners


@pytest.mark.parametrize(
    ("info_user_id", "list_user_id", "expected"),
    [
        (["1001", "1002"], "1001,1002", ["1001", "1002"]),  # detail: a list of strings
        ([1001, 1002], "1001,1002", ["1001", "1002"]),  # detail: a list of integers
        ([], "", []),  # public pool: nobody owns it
        (" 1001 , 1002 ,", "x", ["1001", "1002"]),  # detail sends the list's string shape
        (["1001", "1001"], "1001", ["1001"]),  # duplicates collapse
    ],
)
def test_owner_ids_from_the_detail_are_a_list_of_strings(
    info_user_id: object, list_user_id: str, expected: list[str]
) -> None:
    row = one(info_record(user_id=info_user_id), lst=list_record(user_id=list_user_id))
    assert row["owner_ids"] == expected


@pytest.mark.parametrize(
    ("list_user_id", "expected"),
    [
        ("1001,1002", ["1001", "1002"]),  # comma separated
        ("1001", ["1001"]),  # a single id
        (1001, ["1001"]),  # a bare number
        ("", []),  # nobody
    ],
)
def test_owner_ids_from_the_list_record_when_there_is_no_detail(
    list_user_id: object, expected: list[str]
) -> None:
    row = one(None, lst=list_record(user_id=list_user_id))
    assert row["owner_ids"] == expected


# ------------------------------------------------------------------------------ times


def test_1970_sentinels_and_empty_times_are_nat() -> None:
    row = one(
        info_record(
            order_time=UNSET,  # the documented unset time
            archive_time="1970-01-01",  # the documented unset date
            edit_time="",  # empty
            create_time=None,  # null
        ),
        lst=list_record(create_time=UNSET),
    )
    for column in ("order_time", "archive_time", "edit_time", "create_time"):
        assert pd.isna(row[column]), column
    assert row["update_time"] == ts("2026-11-20 09:15:00")


def test_times_are_china_time_and_date_only_values_are_midnight() -> None:
    row = one(info_record(create_time="2025-03-04", archive_time="2025-03-05 23:59:59"))
    assert row["create_time"] == ts("2025-03-04 00:00:00")
    assert row["archive_time"].isoformat() == "2025-03-05T23:59:59+08:00"


def test_an_unparseable_optional_time_is_nat_and_counted() -> None:
    result = clean(raw_row(info_record(create_time="yesterday"), list_record(create_time=UNSET)))
    assert pd.isna(result.cleaned.loc[0, "create_time"])
    assert result.field_issue_counts["create_time_unparseable"] == 1


def test_a_garbage_detail_time_falls_back_to_the_list_record() -> None:
    row = one(
        info_record(order_time="not a time"),
        lst=list_record(order_time="2026-10-01 12:00:00"),
    )
    assert row["order_time"] == ts("2026-10-01 12:00:00")


def test_a_missing_detail_update_time_falls_back_to_the_raw_column() -> None:
    row = one(info_record(update_time=UNSET), update_time="2026-11-20 10:00:00")
    assert row["update_time"] == ts("2026-11-20 10:00:00")


@pytest.mark.parametrize(
    ("update_time", "inside"),
    [
        ("2026-11-20 00:00:00", True),  # the window's first second (midnight, inclusive)
        ("2026-11-20 23:59:59", True),  # its last second
        ("2026-11-21 00:00:00", False),  # next midnight belongs to the next window
        ("2026-11-19 23:59:59", False),  # the second before the window
    ],
)
def test_midnight_edges_of_the_window(update_time: str, inside: bool) -> None:
    lst = list_record(update_time=update_time)
    result = clean(raw_row(info_record(update_time=update_time), lst))
    if inside:
        assert result.cleaned.loc[0, "update_time"] == ts(update_time)
    else:
        assert result.cleaned.empty
        assert result.quarantined.loc[0, "reasons"] == ["update_time_outside_window"]


def test_info_time_past_the_window_keeps_a_row_the_list_filed_here() -> None:
    """The list's time chose the partition; info, read afterwards, is newer (the rule of
    stages/pull.py): the row is cleaned here with the newer time as its version, not
    quarantined."""
    lst = list_record(update_time="2026-11-20 23:00:00")
    result = clean(raw_row(info_record(update_time="2026-11-22 08:00:00"), lst))
    assert result.quarantined.empty
    assert result.cleaned.loc[0, "update_time"] == ts("2026-11-22 08:00:00")


def test_a_window_given_in_utc_is_the_same_window() -> None:
    utc = ZoneInfo("UTC")
    raw = pd.DataFrame([raw_row(info_record(update_time="2026-11-20 07:59:59"))])
    result = clean_companies(
        raw, datetime(2026, 11, 19, 16, tzinfo=utc), datetime(2026, 11, 20, tzinfo=utc)
    )
    assert len(result.cleaned) == 1


# ------------------------------------------------------------------------------ country


@pytest.mark.parametrize(
    ("country", "expected", "flag"),
    [
        ("CN", "CN", None),  # ISO-2
        ("us", "US", None),  # lower case
        (" de ", "DE", None),  # padded
        ("ＣＮ", "CN", None),  # full-width
        ("", None, "country_missing"),  # empty
        (None, None, "country_missing"),  # null
        ("CHN", None, "country_invalid"),  # ISO-3
        ("C1", None, "country_invalid"),  # not letters
        ("China", None, "country_invalid"),  # a name
    ],
)
def test_country(country: object, expected: str | None, flag: str | None) -> None:
    row = one(info_record(country=country))
    assert row["country"] == expected
    assert row["country_missing"] == (flag == "country_missing")
    assert row["country_invalid"] == (flag == "country_invalid")


# ------------------------------------------------------------------------------ contacts


def test_no_contacts_flags_contact_and_email_and_falls_back_to_the_company_tel() -> None:
    row = one(info_record(customers=[]))
    assert row["contact_missing"] and row["email_missing"]
    assert row["contact_name"] is None and row["email"] is None
    assert row["phone"] == "+86 075588881234"
    assert not row["phone_missing"]


@pytest.mark.parametrize(
    "customers",
    [
        {"name": "Li Si"},  # an object instead of a list
        "Li Si",  # a string
        [None, 5, "Li Si", ["Li Si"]],  # entries that are not objects
    ],
)
def test_contacts_of_another_shape_read_as_no_contact(customers: object) -> None:
    row = one(info_record(customers=customers, country="DE"))
    assert row["contact_missing"] and row["contact_name"] is None
    assert (row["name"], row["country"], row["phone"]) == (
        "Acme Trading Ltd",
        "DE",
        "+86 075588881234",
    )


def test_objects_among_odd_contact_entries_are_still_read() -> None:
    customers = ["junk", contact(name="Wang Wu", main_customer_flag=0), 7]
    row = one(info_record(customers=customers))
    assert row["contact_name"] == "Wang Wu" and row["email"] == "li.si@acme.example"


def test_no_detail_at_all_flags_every_detail_field() -> None:
    row = one(None)
    assert row["name"] == "Acme Trading Ltd"
    assert row["owner_ids"] == ["1001"]
    assert pd.isna(row["archive_time"])
    for flag in ("contact_missing", "email_missing", "phone_missing", "country_missing"):
        assert row[flag], flag


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ((0, 1, 0), "Second"),  # main_customer_flag == 1 picks the primary contact
        ((0, "1", 0), "Second"),  # the flag sent as a string
        ((0, 0, 0), "First"),  # no primary: the first contact
        ((None, None, 1), "Third"),  # flags missing on the others
    ],
)
def test_the_primary_contact_is_chosen(flags: tuple[object, ...], expected: str) -> None:
    names = ("First", "Second", "Third")
    customers = [
        contact(name=n, main_customer_flag=f, email=f"{n.lower()}@acme.example")
        for n, f in zip(names, flags, strict=True)
    ]
    row = one(info_record(customers=customers))
    assert row["contact_name"] == expected
    assert row["email"] == f"{expected.lower()}@acme.example"


@pytest.mark.parametrize(
    ("email", "expected", "flag"),
    [
        ("li.si@acme.example", "li.si@acme.example", None),  # plain
        (" Li.Si@Acme.EXAMPLE ", "li.si@acme.example", None),  # padded, mixed case
        ("ｌｉ＠ａｃｍｅ．ｃｎ", "li@acme.cn", None),  # full-width (IME)
        ("张三@例子.中国", "张三@例子.中国", None),  # internationalised address
        ("", None, "email_missing"),  # empty
        ("   ", None, "email_missing"),  # blank
        (None, None, "email_missing"),  # null
        ("li.si.acme.example", None, "email_invalid"),  # no @
        ("li@acme", None, "email_invalid"),  # no dot in the domain
        ("li si@acme.example", None, "email_invalid"),  # a space inside
        ("li@@acme.example", None, "email_invalid"),  # two @
        ("a@acme.example; b@acme.example", None, "email_invalid"),  # two addresses
        ("li@acme..example", None, "email_invalid"),  # empty domain label
        ("li@acme.example.", None, "email_invalid"),  # trailing dot
    ],
)
def test_email(email: object, expected: str | None, flag: str | None) -> None:
    row = one(info_record(customers=[contact(email=email)]))
    assert row["email"] == expected
    assert row["email_missing"] == (flag == "email_missing")
    assert row["email_invalid"] == (flag == "email_invalid")


@pytest.mark.parametrize(
    ("pair", "expected"),
    [
        (["86", "13800138000"], "+86 13800138000"),  # [area, number]
        (["+86", "138-0013-8000"], "+86 13800138000"),  # plus sign and dashes
        (["0086", "(0755) 8888 1234"], "+86 075588881234"),  # 00 prefix, parentheses kept out
        (["086", "13800138000"], "+86 13800138000"),  # leading zero in the area code
        (["", "+86 138 0013 8000"], "+86 13800138000"),  # the whole number in one string
        (["", "0086-755-12345678"], "+86 75512345678"),  # 00 international prefix in one string
        (["", "+8613800138000"], "+86 13800138000"),  # no separator: ITU split of the code
        (["", "+1 (415) 555-0134"], "+1 4155550134"),  # one-digit code
        (["", "+852 2345 6789"], "+852 23456789"),  # three-digit code
        (["44", "+49 30 1234567"], "+49 301234567"),  # the number's own code wins
        (["", "13800138000"], "13800138000"),  # no country code anywhere: digits kept
        (["８６", "１３８００１３８０００"], "+86 13800138000"),  # full-width digits
        ([86, 13800138000], "+86 13800138000"),  # numbers instead of strings
        (["86", "12345"], "+86 12345"),  # five digits is the minimum
        (["86", "123456789012345"], "+86 123456789012345"),  # fifteen is the maximum
    ],
)
def test_phone_shapes(pair: list[object], expected: str) -> None:
    row = one(info_record(customers=[contact(tel_list=[pair])], tel=[]))
    assert row["phone"] == expected
    assert not row["phone_invalid"] and not row["phone_missing"]


@pytest.mark.parametrize(
    "pair",
    [
        ["86", "1234"],  # four digits
        ["86", "1234567890123456"],  # sixteen digits
        ["86", "138 0013 ext. 12"],  # an extension
        ["China", "13800138000"],  # a word as area code
        ["", "+0 13800138000"],  # no country code starts with 0
    ],
)
def test_unusable_phones_are_null_and_flagged_invalid(pair: list[str]) -> None:
    row = one(info_record(customers=[contact(tel_list=[pair])], tel=["", ""]))
    assert row["phone"] is None
    assert row["phone_invalid"] and not row["phone_missing"]


def test_no_phone_anywhere_is_flagged_missing() -> None:
    row = one(info_record(customers=[contact(tel_list=[["", ""]])], tel=["", ""]))
    assert row["phone"] is None
    assert row["phone_missing"] and not row["phone_invalid"]


def test_the_first_usable_phone_wins_contact_before_company() -> None:
    customers = [contact(tel_list=[["86", "123"], ["", "+44 20 7946 0958"]])]
    assert one(info_record(customers=customers))["phone"] == "+44 2079460958"
    customers = [contact(tel_list=[["86", "123"]])]
    assert one(info_record(customers=customers))["phone"] == "+86 075588881234"


@pytest.mark.parametrize(
    ("tel", "expected"),
    [
        ("+86 755 8888 1234", "+86 75588881234"),  # one string with its country code
        ({"area_code": "86", "tel": "13800138000"}, "+86 13800138000"),  # an object
        (8613800138000, "8613800138000"),  # a bare number: no country code is guessed
        ([["86", "123"], ["", "+44 20 7946 0958"]], "+44 2079460958"),  # a list of pairs
    ],
)
def test_company_tel_shapes(tel: object, expected: str) -> None:
    row = one(info_record(customers=[contact(tel_list=[])], tel=tel))
    assert row["phone"] == expected
    assert not row["phone_invalid"] and not row["phone_missing"]


def test_the_contact_name_is_normalised_like_company_names() -> None:
    assert one(info_record(customers=[contact(name="  王　五 ")]))["contact_name"] == "王 五"


# ------------------------------------------------------------------------------ quarantine


@pytest.mark.parametrize(
    ("row_kwargs", "reason"),
    [
        ({"company_id": None}, "company_id_missing"),  # no id at all
        ({"company_id": ""}, "company_id_missing"),  # an empty id
        ({"company_id": "abc12"}, "company_id_not_numeric"),  # letters
        ({"company_id": "-5"}, "company_id_not_numeric"),  # a sign
        ({"company_id": "99999999999999999999"}, "company_id_out_of_range"),  # over int64
        ({"info_json": "{not json"}, "info_json_invalid"),  # a broken detail
        ({"info_json": "[1, 2]"}, "info_json_invalid"),  # a detail that is not an object
    ],
)
def test_record_level_defects_are_quarantined(row_kwargs: dict[str, Any], reason: str) -> None:
    result = clean(raw_row(**row_kwargs))
    assert result.cleaned.empty
    assert reason in result.quarantined.loc[0, "reasons"]


def test_a_blank_name_everywhere_is_quarantined() -> None:
    result = clean(raw_row(info_record(name=" \t "), list_record(name="")))
    assert result.quarantined.loc[0, "reasons"] == ["name_blank"]


def test_an_unparseable_update_time_is_quarantined() -> None:
    bad = "2024-13-45 99:00:00"
    result = clean(raw_row(info_record(update_time=bad), list_record(update_time=bad)))
    assert result.quarantined.loc[0, "reasons"] == ["update_time_unparseable"]


def test_a_detail_for_another_company_is_quarantined() -> None:
    result = clean(raw_row(info_record(company_id=11111111)))
    assert result.quarantined.loc[0, "reasons"] == ["info_company_id_mismatch"]


@pytest.mark.parametrize(
    "detail_id",
    [
        55280038,  # the same id
        "55280038",  # the same id as a string
        55280038.0,  # the same id as a float
        None,  # no id in the detail: taken as the row's
        "",  # an empty id: taken as the row's
    ],
)
def test_a_detail_with_the_rows_id_or_none_belongs_to_the_row(detail_id: object) -> None:
    assert one(info_record(company_id=detail_id))["company_id"] == 55280038


def test_a_detail_naming_another_company_as_a_string_is_quarantined() -> None:
    result = clean(raw_row(info_record(company_id="11111111")))
    assert result.quarantined.loc[0, "reasons"] == ["info_company_id_mismatch"]


def test_a_complete_detail_does_not_need_its_list_record() -> None:
    row = one(info_record(), list_json="{oops")
    assert (row["name"], row["short_name"]) == ("Acme Trading Ltd", "Acme")


def test_a_blank_detail_name_with_a_broken_list_record_names_both() -> None:
    result = clean(raw_row(info_record(name=" "), list_json="{oops"))
    assert result.quarantined.loc[0, "reasons"] == ["list_json_invalid", "name_blank"]


@pytest.mark.parametrize(
    "reason",
    [
        "info_not_found",  # info answered code 404 for a company the list showed
        "info_code_403",  # any other reason the raw stage marks passes through as it is
    ],
)
def test_a_list_record_marked_by_the_raw_stage_is_quarantined_with_its_reason(
    reason: str,
) -> None:
    result = clean(raw_row(None, list_record(**{INFO_ERROR_KEY: reason})))
    assert result.quarantined.loc[0, "reasons"] == [reason]
    assert orjson.loads(result.quarantined.loc[0, "list_json"])[INFO_ERROR_KEY] == reason


def test_a_broken_list_record_without_a_detail_is_quarantined() -> None:
    result = clean(raw_row(None, list_json="{oops", company_id="55280038"))
    assert "list_json_invalid" in result.quarantined.loc[0, "reasons"]


def test_every_reason_of_a_row_is_kept_not_just_the_first() -> None:
    lst = list_record(company_id="abc12", name="", update_time="2024-13-45 99:00:00")
    result = clean(raw_row(info_record(company_id="abc12", name="", update_time="garbage"), lst))
    assert result.cleaned.empty
    row = result.quarantined.iloc[0].to_dict()
    assert row["reasons"] == ["company_id_not_numeric", "name_blank", "update_time_unparseable"]
    assert row["company_id"] == "abc12"
    assert orjson.loads(row["list_json"])["company_id"] == "abc12"
    assert orjson.loads(row["info_json"])["update_time"] == "garbage"


def test_the_older_version_of_a_duplicated_company_is_quarantined() -> None:
    older = raw_row(info_record(update_time="2026-11-20 08:00:00", name="Old"))
    newer = raw_row(info_record(update_time="2026-11-20 18:00:00", name="New"))
    result = clean(newer, older)
    assert result.cleaned["name"].tolist() == ["New"]
    assert result.quarantined["reasons"].tolist() == [["company_id_duplicate"]]
    assert orjson.loads(result.quarantined.loc[0, "info_json"])["name"] == "Old"


def test_nothing_is_dropped_silently_in_a_mixed_partition() -> None:
    rows = [raw_row(info_record(i, name=f"Company {i}"), list_record(i)) for i in range(1, 41)]
    rows[3] = raw_row(company_id=None)
    rows[7] = raw_row(info_record(8, name="  "), list_record(8, name=""))
    late = "2026-11-25 10:00:00"  # the list filed it there too: outside this window
    rows[9] = raw_row(info_record(10, update_time=late), list_record(10, update_time=late))
    rows[11] = raw_row(info_record(12, customers=[contact(email="bad@")]), list_record(12))
    rows[12] = raw_row(None, list_record(13))
    result = clean(*rows)
    assert len(result.cleaned) == 37
    assert len(result.quarantined) == 3
    assert sorted(map(tuple, result.quarantined["reasons"])) == [
        ("company_id_missing",),
        ("name_blank",),
        ("update_time_outside_window",),
    ]
    assert set(result.cleaned["company_id"]) == set(range(1, 41)) - {4, 8, 10}
    counts = result.field_issue_counts
    assert counts["email_invalid"] == 1
    assert counts["contact_missing"] == 1  # the row without a detail
    assert counts["email_missing"] == 1
    assert counts["country_missing"] == 1
    assert counts["phone_missing"] == 1


def test_rows_the_model_rejects_are_quarantined_with_their_failure_cases() -> None:
    good = raw_row(info_record(55280039), list_record(55280039))
    zero = raw_row(info_record(0), list_record(0))  # numeric, so cleaning lets it through
    result = clean(good, zero)
    assert result.cleaned["company_id"].tolist() == [55280039]
    assert result.quarantined["reasons"].tolist() == [["schema:company_id:greater_than(0)"]]
    assert result.quarantined.loc[0, "company_id"] == "0"
    fc = result.failure_cases
    assert tuple(fc.columns) == FAILURE_CASE_COLUMNS
    assert fc[["column", "check", "failure_case", "index", "company_id"]].to_dict("records") == [
        {
            "column": "company_id",
            "check": "greater_than(0)",
            "failure_case": 0,
            "index": 1,
            "company_id": 0,
        }
    ]
