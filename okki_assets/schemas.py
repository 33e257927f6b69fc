"""Pandera models for the cleaned-companies frame and the quarantine frame.

``CleanedCompany`` is the contract between ``cleaning.clean_companies`` and everything downstream
(the DuckDB table, the mapping to target records, the asset checks). It is written for the OKKI
quirks listed in ``docs/okki-api.md``: ids that arrive as strings are already ints here, the
``1970-01-01 00:00:00`` "no value" sentinel is already ``NaT``, ``user_id`` (string in the list,
list in the detail) is already ``owner_ids: list[str]``, and every time is tz-aware China Standard
Time. The regular expressions the cleaner normalises towards live here, so the cleaner and the
model cannot drift apart.

Config choices:
- ``strict = True`` (not ``"filter"``): the frame is produced by our own cleaner, so an extra or
  missing column is a bug to surface, not something to drop silently.
- ``ordered = True``: the column order is part of the contract (it is the DuckDB table's order).
- ``coerce = True``: frames read back from storage (microsecond or UTC timestamps, dates as
  text) are brought to the contract's dtypes; a value that cannot be coerced becomes a failure
  case for its row instead of failing the whole frame. The cleaner, which builds the exact dtypes
  itself, validates with ``exact_dtype_schema()`` (the same model, coercion off) for speed.
- Shape checks (``name`` not empty, ISO-2 country, e-mail, phone) are custom checks reporting
  under the built-in names (``str_length``, ``str_matches('<pattern>')``), three times faster
  than pandas' ``.str`` methods; ``Text`` is pandera's ``str`` with C-level fast paths.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandas.api.types import infer_dtype
from pandera import dtypes
from pandera.engines import pandas_engine
from pandera.typing import Series

from okki_assets.okki_time import TIMEZONE

#: A sane e-mail: one ``@``, no whitespace or list/quote punctuation, a dot inside the domain,
#: no empty domain labels. Unicode letters are allowed (internationalised addresses).
EMAIL_PATTERN = r"^[^@\s,;<>()\[\]\"]+@[^@\s,;<>()\[\]\".]+(?:\.[^@\s,;<>()\[\]\".]+)+$"
EMAIL_RE = re.compile(EMAIL_PATTERN)

#: What the phone normaliser yields: ``+<country code> <national digits>``, or the bare national
#: digits when neither the area-code field nor the number carried a country code.
PHONE_PATTERN = r"^(?:\+[1-9]\d{0,3} )?\d{5,15}$"

#: ISO 3166-1 alpha-2 shape (upper case).
COUNTRY_PATTERN = r"^[A-Z]{2}$"

_PATTERNS = {
    "country": re.compile(COUNTRY_PATTERN),
    "email": EMAIL_RE,
    "phone": re.compile(PHONE_PATTERN),
}

#: The "待补充" (to be completed) markers: one boolean column per field-level issue.
FLAG_COLUMNS: tuple[str, ...] = (
    "email_missing",
    "email_invalid",
    "phone_missing",
    "phone_invalid",
    "contact_missing",
    "country_missing",
    "country_invalid",
    "short_name_missing",
)

#: Columns of a raw row that cleaning reads, one row per company version kept for a partition.
RAW_COLUMNS: tuple[str, ...] = (
    "partition_key",
    "company_id",
    "update_time",
    "list_json",
    "info_json",
)

TIME_COLUMNS: tuple[str, ...] = (
    "create_time",
    "update_time",
    "order_time",
    "edit_time",
    "archive_time",
)

# pandera's own DateTime type with the zone and unit of pd.DatetimeTZDtype("ns", TIMEZONE), so
# the model can tell ``pd.to_datetime`` not to build its cache (which materialises thousands of
# Timestamps per column and made coercion the slowest part of validation).
_TIME_KWARGS = {"unit": "ns", "tz": TIMEZONE, "to_datetime_kwargs": {"cache": False}}
ShanghaiTime = pandas_engine.DateTime


def _all_text(data: object) -> bool:
    return (
        isinstance(data, pd.Series)
        and data.dtype == object
        and infer_dtype(data, skipna=True) in ("string", "empty")
    )


@pandas_engine.Engine.register_dtype
@dtypes.immutable
class Text(pandas_engine.NpString):
    """pandera's ``str`` (object column of str or null), checked in C when already clean.

    The stock ``str`` type coerces with ``astype(str)`` plus ``where`` and checks each element
    with a Python lambda; on a column that ``infer_dtype`` already finds all-string both are
    no-ops, so this type skips them and falls back to the stock behaviour otherwise. It prints
    as ``str`` (also in Dagster's table schema).
    """

    def coerce(self, data_container: Any) -> Any:
        if _all_text(data_container):
            return data_container
        return super().coerce(data_container)

    def check(self, pandera_dtype: Any, data_container: Any = None) -> Any:
        if data_container is not None and _all_text(data_container):
            return True
        return super().check(pandera_dtype, data_container)


def _fullmatch(s: pd.Series, rx: re.Pattern[str]) -> pd.Series:
    """Whether each value fully matches ``rx`` (nulls pass: nullability is checked apart).

    Distinct values are matched once when they repeat (country codes)."""
    values = s.to_numpy(dtype=object)
    match = rx.fullmatch
    head = [v for v in values[:256].tolist() if not _is_null(v)]
    if all(type(v) is str for v in head) and len(set(head)) * 2 < len(head):
        distinct = pd.unique(values)
        good = [v for v in distinct if type(v) is str and match(v) is not None]
        return s.isin(good) | s.isna()
    return pd.Series(
        [(match(v) is not None) if type(v) is str else _is_null(v) for v in values],
        index=s.index,
        dtype=bool,
    )


def _is_null(v: object) -> bool:
    return v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and v != v)


class CleanedCompany(pa.DataFrameModel):
    """One cleaned OKKI company version per row, for one sync window (partition).

    Built by ``okki_assets.cleaning.clean_companies`` from the raw list record and the
    ``/v1/company/info`` detail (detail preferred, list as fallback). Record-level defects never
    reach this frame (they are quarantined); field-level defects are nulled and flagged in the
    boolean ``*_missing`` / ``*_invalid`` columns.
    """

    partition_key: Series[Text] = pa.Field(
        description="Key of the partition (sync window) the row was fetched for, e.g. "
        "'2026-11-20'. Its shape belongs to partitions.py and is not re-checked here.",
    )
    company_id: Series[int] = pa.Field(
        unique=True,
        gt=0,
        description="OKKI company_id as int64 (the API sends it as a number or a numeric string).",
    )
    serial_id: Series[Text] = pa.Field(
        nullable=True, description="OKKI serial number (客户编号) as text; null when absent."
    )
    name: Series[Text] = pa.Field(
        description="Company name: NFKC-normalised, control characters removed, whitespace "
        "collapsed. Never blank. Not truncated.",
    )
    short_name: Series[Text] = pa.Field(
        nullable=True,
        description="Short name, normalised like name; null (and short_name_missing) when blank.",
    )
    owner_ids: Series[object] = pa.Field(
        description="OKKI user ids of the owners as a list of strings (detail user_id list, or "
        "the list record's comma-separated user_id string); [] when none (public pool).",
    )
    archive_type: Series[pd.Int64Dtype] = pa.Field(
        nullable=True,
        description="How the company was created (1 manual, 2 automation, 3 automation "
        "suggestion, 4 客户通 sync, 6 file import, 7 card folder); null when absent.",
    )
    country: Series[Text] = pa.Field(
        nullable=True,
        description="ISO 3166-1 alpha-2 country code, upper case; null when missing or invalid.",
    )
    contact_name: Series[Text] = pa.Field(
        nullable=True,
        description="Name of the primary contact (main_customer_flag == 1, else the first).",
    )
    email: Series[Text] = pa.Field(
        nullable=True,
        description="Primary contact's e-mail, stripped and lower-cased; null when missing or "
        "invalid.",
    )
    phone: Series[Text] = pa.Field(
        nullable=True,
        description="First valid phone of the primary contact, else the company tel, as "
        "'+<country code> <digits>' (bare digits when no country code was given).",
    )
    create_time: Series[ShanghaiTime] = pa.Field(
        dtype_kwargs=_TIME_KWARGS,
        nullable=True,
        description="Creation time (Asia/Shanghai); NaT for the 1970 sentinel.",
    )
    update_time: Series[ShanghaiTime] = pa.Field(
        dtype_kwargs=_TIME_KWARGS,
        description="Last update time (Asia/Shanghai); inside the partition's window.",
    )
    order_time: Series[ShanghaiTime] = pa.Field(
        dtype_kwargs=_TIME_KWARGS,
        nullable=True,
        description="Last order time (Asia/Shanghai); NaT when unset.",
    )
    edit_time: Series[ShanghaiTime] = pa.Field(
        dtype_kwargs=_TIME_KWARGS,
        nullable=True,
        description="Last manual edit time (Asia/Shanghai); NaT when unset.",
    )
    archive_time: Series[ShanghaiTime] = pa.Field(
        dtype_kwargs=_TIME_KWARGS,
        nullable=True,
        description="Archive time, detail only (Asia/Shanghai); NaT when unset.",
    )
    email_missing: Series[bool] = pa.Field(description="待补充: no e-mail for the contact.")
    email_invalid: Series[bool] = pa.Field(description="E-mail present but malformed (nulled).")
    phone_missing: Series[bool] = pa.Field(description="待补充: no phone on contact or company.")
    phone_invalid: Series[bool] = pa.Field(description="Phone present but unusable (nulled).")
    contact_missing: Series[bool] = pa.Field(description="待补充: the company has no contact.")
    country_missing: Series[bool] = pa.Field(description="待补充: no country in the detail.")
    country_invalid: Series[bool] = pa.Field(description="Country not an ISO-2 code (nulled).")
    short_name_missing: Series[bool] = pa.Field(description="待补充: blank short name.")

    # The shape checks are custom rather than Field(str_matches=...) for speed only: pandas'
    # ``.str.match`` costs about three times a plain loop over ``re.fullmatch``, and country
    # codes repeat so much that matching the distinct values suffices. They report under the
    # names the built-in checks would use.
    # ignore_na=False: the functions let nulls pass themselves, which spares pandera a dropna
    # copy of the column; nullability is the separate not_nullable check.
    @pa.check("name", name="str_length", error="str_length(1, None)", ignore_na=False)
    def _name_not_empty(cls, s: pd.Series) -> pd.Series:
        return pd.Series(np.not_equal(s.to_numpy(dtype=object), ""), index=s.index)

    @pa.check(
        "country",
        name="str_matches",
        error=f"str_matches('{COUNTRY_PATTERN}')",
        ignore_na=False,
    )
    def _country_shape(cls, s: pd.Series) -> pd.Series:
        return _fullmatch(s, _PATTERNS["country"])

    @pa.check("email", name="str_matches", error=f"str_matches('{EMAIL_PATTERN}')", ignore_na=False)
    def _email_shape(cls, s: pd.Series) -> pd.Series:
        return _fullmatch(s, _PATTERNS["email"])

    @pa.check("phone", name="str_matches", error=f"str_matches('{PHONE_PATTERN}')", ignore_na=False)
    def _phone_shape(cls, s: pd.Series) -> pd.Series:
        return _fullmatch(s, _PATTERNS["phone"])

    class Config:
        strict = True
        ordered = True
        coerce = True
        name = "CleanedCompanies"


class QuarantinedCompany(pa.DataFrameModel):
    """One raw row per record-level defect set: kept with every reason, never dropped."""

    partition_key: Series[Text] = pa.Field(description="Partition the raw row belongs to.")
    company_id: Series[Text] = pa.Field(
        nullable=True, description="company_id exactly as received (as text); null if absent."
    )
    reasons: Series[object] = pa.Field(
        description="Every record-level reason that applies, e.g. ['company_id_not_numeric', "
        "'name_blank'], or 'schema:<column>:<check>' for rows the model rejected."
    )
    list_json: Series[Text] = pa.Field(nullable=True, description="The raw list record JSON.")
    info_json: Series[Text] = pa.Field(nullable=True, description="The raw detail JSON, if any.")

    class Config:
        strict = True
        ordered = True
        coerce = True
        name = "QuarantinedCompanies"


CLEANED_COLUMNS: tuple[str, ...] = tuple(CleanedCompany.to_schema().columns)
QUARANTINE_COLUMNS: tuple[str, ...] = tuple(QuarantinedCompany.to_schema().columns)


def exact_dtype_schema() -> pa.DataFrameSchema:
    """``CleanedCompany`` with coercion off, for frames built with the exact dtypes already.

    The cleaner validates its own output with this: the same columns, checks and failure
    cases, minus coercion, which on such a frame changes nothing and costs about half of a
    validation call (per-column schema copies, ``to_datetime`` on every time column). A wrong
    dtype is then a failure case instead of being silently repaired. Frames from elsewhere (read
    back from DuckDB) go through ``CleanedCompany`` itself, which coerces.
    """
    schema = copy.deepcopy(CleanedCompany.to_schema())  # to_schema() is cached: never mutate it
    schema.coerce = False
    return schema
