"""A company's identity as the ledger keys it: one rule, ``field_rules.parse_company_id``.

``ledger_id`` answers "which company is this" for one value and ``ledger_ids`` for a column;
every "is this a numeric id" in the package asks one of them, so ``"²"`` (a digit to
``str.isdigit`` that ``int`` refuses) or ``"٣"`` (a digit to ``\\d``) is no id anywhere.
"""

from __future__ import annotations

import pandas as pd

from okki_assets.field_rules import parse_company_id


def ledger_id(value: object) -> int | None:
    """The company's id as an int, or None when ``value`` is no usable company_id."""
    company_id, _ = parse_company_id(value)
    return company_id


def ledger_ids(values: pd.Series) -> pd.Series:
    """``ledger_id`` of each value, as a nullable ``Int64`` column on the same index."""
    return pd.Series([ledger_id(v) for v in values], index=values.index, dtype="Int64")
