"""CleanedCompany: the contract of the cleaned frame, and the failure cases it reports.

The model must accept what the cleaner produces, coerce what can be coerced, and name the
column and check of every value it rejects (those failure cases become check metadata).
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import pandera.pandas as pa
import pytest

from okki_assets.schemas import (
    CLEANED_COLUMNS,
    FLAG_COLUMNS,
    QUARANTINE_COLUMNS,
    CleanedCompany,
    QuarantinedCompany,
    exact_dtype_schema,
)


def cleaned_frame(rows: int = 2, **columns: Any) -> pd.DataFrame:
    """A valid cleaned frame with ``rows`` rows; keyword arguments replace whole columns."""
    t = pd.Timestamp("2026-11-20 09:15:00", tz="Asia/Shanghai")
    data: dict[str, Any] = {
        "partition_key": ["2026-11-20"] * rows,
        "company_id": list(range(55280038, 55280038 + rows)),
        "serial_id": ["C1"] * rows,
        "name": ["Acme"] * rows,
        "short_name": [None] * rows,
        "owner_ids": [["1001"] for _ in range(rows)],
        "archive_type": pd.array([1] * rows, dtype="Int64"),
        "country": ["CN"] * rows,
        "contact_name": ["Li Si"] * rows,
        "email": ["li@acme.example"] * rows,
        "phone": ["+86 13800138000"] * rows,
        "create_time": [t] * rows,
        "update_time": [t] * rows,
        "order_time": [pd.NaT] * rows,
        "edit_time": [t] * rows,
        "archive_time": [pd.NaT] * rows,
        **{flag: [False] * rows for flag in FLAG_COLUMNS},
    }
    data.update(columns)
    frame = pd.DataFrame(data)
    for col in ("order_time", "archive_time"):
        frame[col] = pd.to_datetime(frame[col]).dt.tz_localize("Asia/Shanghai")
    return frame


def failures(frame: pd.DataFrame) -> list[tuple[str, str, Any, int]]:
    with pytest.raises(pa.errors.SchemaErrors) as info:
        CleanedCompany.validate(frame, lazy=True)
    fc = info.value.failure_cases
    return [
        (c, k, v, int(i))
        for c, k, v, i in zip(
            fc["column"], fc["check"], fc["failure_case"], fc["index"], strict=True
        )
    ]


def test_a_clean_frame_validates_and_keeps_its_dtypes() -> None:
    out = CleanedCompany.validate(cleaned_frame(), lazy=True)
    assert tuple(out.columns) == CLEANED_COLUMNS
    assert str(out["company_id"].dtype) == "int64"
    assert str(out["create_time"].dtype) == "datetime64[ns, Asia/Shanghai]"
    assert out["owner_ids"].tolist() == [["1001"], ["1001"]]


def test_every_field_is_described_and_the_model_is_named() -> None:
    schema = CleanedCompany.to_schema()
    assert schema.name == "CleanedCompanies"
    assert schema.strict is True and schema.coerce is True and schema.ordered is True
    undocumented = [name for name, col in schema.columns.items() if not col.description]
    assert undocumented == []
    assert CleanedCompany.__doc__
    assert tuple(QuarantinedCompany.to_schema().columns) == QUARANTINE_COLUMNS


def test_the_cleaners_exact_dtype_schema_leaves_the_model_coercing() -> None:
    exact = exact_dtype_schema()
    assert exact.coerce is False and CleanedCompany.to_schema().coerce is True
    frame = cleaned_frame(serial_id=pd.Series([100001, None], dtype=object))
    with pytest.raises(pa.errors.SchemaErrors) as info:
        exact.validate(frame, lazy=True)
    fc = info.value.failure_cases
    assert fc[["column", "failure_case", "index"]].to_dict("records") == [
        {"column": "serial_id", "failure_case": 100001, "index": 0}
    ]


def test_text_columns_are_coerced_from_numbers() -> None:
    serials = pd.Series([100001, None], dtype=object)
    out = CleanedCompany.validate(cleaned_frame(serial_id=serials), lazy=True)
    assert out["serial_id"].tolist() == ["100001", None]


def test_naive_times_are_coerced_to_china_time() -> None:
    naive = [pd.Timestamp("2026-11-20 09:15:00")] * 2
    out = CleanedCompany.validate(cleaned_frame(update_time=naive), lazy=True)
    assert out["update_time"].iloc[0].isoformat() == "2026-11-20T09:15:00+08:00"


@pytest.mark.parametrize(
    ("column", "bad", "check"),
    [
        ("country", "CHN", "str_matches('^[A-Z]{2}$')"),  # not ISO-2
        ("country", "cn", "str_matches('^[A-Z]{2}$')"),  # not upper case
        ("email", "li@acme", "str_matches"),  # no dot in the domain
        ("email", "li @acme.example", "str_matches"),  # a space
        ("phone", "+86-138", "str_matches"),  # not the normalised shape
        ("phone", "+86 1234", "str_matches"),  # too short
        ("name", "", "str_length(1, None)"),  # empty name
    ],
)
def test_bad_values_are_reported_with_column_and_check(column: str, bad: str, check: str) -> None:
    values = ["CN" if column == "country" else None, bad]
    if column == "name":
        values = ["Acme", bad]
    found = failures(cleaned_frame(**{column: values}))
    assert len(found) == 1
    col, name, value, index = found[0]
    assert (col, value, index) == (column, bad, 1)
    assert name.startswith(check)


def test_duplicate_ids_nulls_and_extra_columns_are_rejected() -> None:
    frame = cleaned_frame(3, company_id=[7, 7, 8], update_time=[pd.NaT] * 3)
    frame["update_time"] = pd.to_datetime(frame["update_time"]).dt.tz_localize("Asia/Shanghai")
    found = failures(frame)
    checks = {(c, k) for c, k, _, _ in found}
    assert ("company_id", "field_uniqueness") in checks
    assert ("update_time", "not_nullable") in checks
    with pytest.raises(pa.errors.SchemaErrors, match="extra"):
        CleanedCompany.validate(cleaned_frame().assign(extra=1), lazy=True)


def test_a_non_positive_id_is_rejected() -> None:
    assert failures(cleaned_frame(company_id=[1, 0])) == [("company_id", "greater_than(0)", 0, 1)]
