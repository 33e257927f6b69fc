"""How frames and counts show in the Dagster UI: the metadata values of the assets and the audit.

Cells are text, missing values blank, long values cut, so that a table stays readable.
"""

from __future__ import annotations

from collections.abc import Mapping

import dagster as dg
import pandas as pd


def table_metadata(frame: pd.DataFrame, limit: int = 20) -> dg.TableMetadataValue:
    """A small frame as a table in the UI (values as text, at most ``limit`` rows)."""
    head = frame.head(limit)
    columns = [dg.TableColumn(str(c), "string") for c in head.columns]
    records = [
        dg.TableRecord({str(k): _text(v) for k, v in row.items()})
        for row in head.to_dict(orient="records")
    ]
    return dg.MetadataValue.table(records=records, schema=dg.TableSchema(columns=columns))


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and pd.isna(value):
        return ""
    text = str(value)
    return text if len(text) <= 200 else text[:197] + "..."


def markdown_rows(frame: pd.DataFrame, limit: int = 5, width: int = 40) -> dg.MarkdownMetadataValue:
    """The first rows of a frame as a markdown table: cells on one line, cut at ``width``."""

    def cell(value: object) -> str:
        text = " ".join(_text(value).split()).replace("|", "\\|")
        return text if len(text) <= width else text[: width - 1] + "…"

    head = frame.head(limit)
    lines = ["| " + " | ".join(cell(c) for c in head.columns) + " |"]
    lines.append("|" + "---|" * len(head.columns))
    for row in head.itertuples(index=False):
        lines.append("| " + " | ".join(cell(v) for v in row) + " |")
    return dg.MetadataValue.md("\n".join(lines))


def counts_markdown(counts: Mapping[str, int]) -> dg.MarkdownMetadataValue:
    if not counts:
        return dg.MetadataValue.md("_none_")
    lines = ["| reason | rows |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])]
    return dg.MetadataValue.md("\n".join(lines))
