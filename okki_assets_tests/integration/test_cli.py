"""The okki-assets command against the real pipeline.

- ``okki-assets replay --partition D`` against a DuckDB file that holds nothing cleaned for D (an
  empty file, or the default file) says so in one line naming ``OKKI_ASSETS_DUCKDB`` and exits 2,
  instead of reporting "sent 0 ... ok".
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from okki_assets.cli import main
from okki_assets_tests.conftest import day_keys

ENVIRONMENT = (
    "OKKI_BASE_URL",
    "OKKI_CLIENT_ID",
    "OKKI_CLIENT_SECRET",
    "TARGET_URL",
    "TARGET_TOKEN",
    "OKKI_ASSETS_DUCKDB",
    "OKKI_SYNC_START",
    "DAGSTER_HOME",
)

# --- replay with nothing to replay ------------------------------------------------------------


@pytest.mark.parametrize(
    "database",
    [
        "empty.duckdb",  # OKKI_ASSETS_DUCKDB names a file that holds no partition
        None,  # OKKI_ASSETS_DUCKDB unset: the default file, never synced here
    ],
)
def test_replay_of_a_partition_with_nothing_cleaned_says_so(
    database: str | None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name in ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OKKI_SYNC_START", "2026-01-01")
    shown = "data/okki_assets.duckdb"
    if database is not None:
        duckdb.connect(str(tmp_path / database)).close()
        monkeypatch.setenv("OKKI_ASSETS_DUCKDB", database)
        shown = database
    key = day_keys(2)[0]

    code = main(["replay", "--partition", key])

    captured = capsys.readouterr()
    assert code == 2, captured
    assert captured.err == (
        f"replay: partition {key} has nothing cleaned in {shown} (OKKI_ASSETS_DUCKDB):"
        " sync it first, or point OKKI_ASSETS_DUCKDB at the file that holds it\n"
    )
    assert "sent" not in captured.out
