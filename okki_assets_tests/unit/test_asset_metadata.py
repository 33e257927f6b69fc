"""The metadata helpers the assets share (assets/common.py): what the UI is given to show.

Covers: counts as a markdown table, largest first, and ``_none_`` when empty; a frame's first
rows as markdown, cells on one line, pipes escaped, long cells cut; a frame as a table with
text values, missing values blank, long values cut, at most ``limit`` rows.
"""

from __future__ import annotations

import math

import pandas as pd

from okki_assets.assets.common import counts_markdown, markdown_rows, table_metadata


def test_counts_are_a_table_largest_first() -> None:
    text = counts_markdown({"name_blank": 2, "info_not_found": 5}).value
    assert text.splitlines() == [
        "| reason | rows |",
        "|---|---|",
        "| info_not_found | 5 |",
        "| name_blank | 2 |",
    ]
    assert counts_markdown({}).value == "_none_"


def test_markdown_rows_keep_each_cell_on_one_line() -> None:
    frame = pd.DataFrame({"name": ["A | B\nC", "x" * 50, "third"]})
    lines = markdown_rows(frame, limit=2, width=10).value.splitlines()
    assert lines == ["| name |", "|---|", "| A \\| B C |", "| xxxxxxxxx… |"]


def test_table_metadata_is_text_with_blanks_for_missing_values() -> None:
    frame = pd.DataFrame({"company_id": [1, 2, 3], "error": [None, math.nan, "e" * 250]})
    table = table_metadata(frame, limit=2)
    assert [c.name for c in table.schema.columns] == ["company_id", "error"]
    assert [r.data for r in table.records] == [
        {"company_id": "1", "error": ""},
        {"company_id": "2", "error": ""},
    ]
    long = table_metadata(frame.iloc[2:]).records[0].data["error"]
    assert len(long) == 200 and long.endswith("...")
