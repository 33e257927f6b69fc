"""A company's identity: one rule (``parse_company_id``) for a value and for a column.

Covers: ASCII digits (as text, int or whole float) are an id; ``"²"`` (a digit to
``str.isdigit`` that ``int`` refuses), ``"٣"`` (a digit to ``\\d``), a sign, letters, a
fraction, an id past 64 bits, blanks and None are none; a deleted row with such an id is no
tombstone but quarantined as not numeric; an account listing one counts it malformed (it
used to stop the account's state with a ValueError).
"""

from __future__ import annotations

import duckdb
import pandas as pd
import pytest

from okki_assets import storage
from okki_assets.identity import ledger_id, ledger_ids
from okki_assets.loading import COMPANY_ID_NOT_NUMERIC, unusable_deletions
from okki_assets.stages.reconcile import state_of

NOT_IDS = ["²", "٣", "12²", "-5", "+5", "1e3", "12a", "", "  ", None, 1.5, True, "9" * 20]


@pytest.mark.parametrize(
    ("value", "expected"),
    [("55280038", 55280038), (" 42 ", 42), ("007", 7), (42, 42), (42.0, 42)],
)
def test_a_numeric_company_id_is_its_int(value: object, expected: int) -> None:
    assert ledger_id(value) == expected


@pytest.mark.parametrize("value", NOT_IDS)
def test_anything_else_is_no_company_id(value: object) -> None:
    assert ledger_id(value) is None


def test_the_column_helper_keeps_the_index_and_marks_no_id_as_missing() -> None:
    column = pd.Series(["12", "²", "٣", None, "7"], index=[10, 11, 12, 13, 14], dtype=object)
    ids = ledger_ids(column)
    assert ids.dtype == "Int64"
    assert list(ids.index) == [10, 11, 12, 13, 14]
    assert ids.tolist() == [12, pd.NA, pd.NA, pd.NA, 7]


def test_a_deletion_with_an_exotic_digit_is_quarantined_not_a_tombstone() -> None:
    deleted = pd.DataFrame(
        {
            "company_id": ["12", "²", "٣", "9" * 20],
            "update_time": ["2025-03-07 10:00:00"] * 4,
            "list_json": ["{}"] * 4,
        }
    )
    bad = unusable_deletions(deleted)
    assert sorted(bad["company_id"]) == sorted(["²", "٣", "9" * 20])
    assert all(COMPANY_ID_NOT_NUMERIC in r for r in bad["reasons"])


def test_an_account_listing_a_superscript_id_counts_it_malformed_instead_of_failing() -> None:
    t = "2026-01-05 10:00:00"
    snapshot = pd.DataFrame(
        {
            "company_id": ["1", "²", "٣"],
            "update_time": [t, t, t],
            "removed": [False, False, True],
        }
    )
    with duckdb.connect(":memory:") as conn:
        storage.ensure_schema(conn)
        state = state_of(conn, snapshot)
    assert state.missing == ["1"]
    assert state.malformed == 1
    assert (state.companies_in_okki, state.deleted_in_okki) == (2, 1)
