"""okki-assets: OKKI CRM companies synced window by window into DuckDB and a target platform."""

from __future__ import annotations

__version__ = "0.1.0"
