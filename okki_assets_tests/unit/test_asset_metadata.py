"""The metadata helpers the assets share (metadata.py): what the UI is given to show.

Covers: counts as a markdown table, largest first, and ``_none_`` when empty; a frame's first
rows as markdown, cells on one line, pipes escaped, long cells cut; a frame as a table with
text values, missing values blank, long values cut, at most ``limit`` rows; raw_complete's
description, which explains OKKI's total when it counts rows of the neighbour days.
"""

from __future__ import annotations

import math

import pandas as pd

from okki_assets.assets.raw import raw_complete
from okki_assets.metadata import counts_markdown, markdown_rows, table_metadata
from okki_assets.resources import shown_url
from okki_assets.stages.window_pull import PullSummary


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


def test_raw_complete_explains_okki_total_by_the_neighbour_days_rows() -> None:
    # OKKI's totalItem counts the rows on the window's widened edges; they belong to the
    # neighbour days, so "144 listed" beside "reported 152" needs its reason in the check.
    summary = PullSummary(
        "2026-11-20",
        total_item=152,
        distinct=144,
        stored_in_duckdb=144,
        distinct_in_duckdb=144,
        edge_rows_left_to_neighbour=8,
    )
    outcome = raw_complete(summary)
    assert outcome.passed
    assert outcome.description == (
        "144 listed, 144 in DuckDB; OKKI's total of 152 also counts 8 rows of the neighbour"
        " days (on the window's edges, synced with their own day)"
    )
    # with no such rows there is nothing to explain
    plain = PullSummary("2026-11-20", total_item=5, distinct=5, stored_in_duckdb=5)
    assert raw_complete(plain).description == "5 listed, 5 in DuckDB"


def test_a_url_is_shown_without_user_password_query_or_fragment() -> None:
    shown = shown_url("https://ops:pa55word@erp.example.com:8443/api/v1/?token=t0ken#x")
    assert shown == "https://erp.example.com:8443/api/v1"
    assert shown_url("http://127.0.0.1:8802") == "http://127.0.0.1:8802"
    assert shown_url("not a url") == ""
