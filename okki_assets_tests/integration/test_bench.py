"""``benchmarks.bench`` end to end on a small window, and the throughput hooks it relies on.

Covers: the bench command runs (a) the pipeline through Dagster in its own process against
simulators in another, (b) the sequential baseline, the unchanged re-sync and the memory run,
prints every figure of its table and exits 1 exactly when a target is missed (the figures
themselves are not asserted: they depend on the machine); a list pass fetched with ``prefetch``
gives the same pages as the sequential one, concurrently and without a wasted request; staged
raw rows survive the frame-based insert unchanged, missing values included.
"""

from __future__ import annotations

import re
import threading
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from benchmarks.bench import Row, exit_code, main
from okki_assets import storage
from okki_assets.clients.okki import OkkiClient
from okki_assets.okki_time import CHINA_TZ
from okki_assets.simulator.data import generate_companies
from okki_assets.simulator.http import SimRequest, SimResponse, mock_transport
from okki_assets.simulator.okki import LIST_PATH, OkkiSimConfig, OkkiSimulator

METRICS = (
    "companies synced",
    "OKKI requests (list + info)",
    "request rate / quota",
    "throttled answers",
    "wall time (s)",
    "companies per second",
    "target POSTs",
    "clean+validate+map CPU s / 10k",
    "clean+validate+map records / CPU s",
    "peak memory, pipeline process (MB)",
    "unchanged re-sync: info calls",
    "unchanged re-sync: target writes",
    "memory run: 120 companies synced",
    "memory run: peak memory, pipeline process (MB)",
)


def _table_line(output: str, metric: str) -> str:
    lines = [line for line in output.splitlines() if line.startswith(metric)]
    assert lines, f"no row for {metric!r} in:\n{output}"
    return lines[0]


def test_the_bench_runs_end_to_end_on_a_small_window(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    small = (
        "--companies 60 --latency 0.005 --quota 200 --concurrency 4"
        " --cpu-records 300 --cpu-seconds 0.05 --memory-window 120 --memory-quota 400"
    )
    code = main([*small.split(), "--workdir", str(tmp_path)])
    output = capsys.readouterr().out
    for metric in METRICS:
        line = _table_line(output, metric)
        assert re.search(r"\d", line[len(metric) :]), line
    # What the table says matches what the simulators saw: both sides synced every company,
    # the unchanged re-sync asked for no info and wrote nothing.
    assert "yes" in _table_line(output, "sync run succeeded")
    assert "yes" in _table_line(output, "unchanged re-sync: succeeded")
    assert _table_line(output, "companies synced").split()[2:4] == ["60", "60"]
    assert _table_line(output, "unchanged re-sync: info calls").split()[4] == "0"
    assert "0 batches, 0 records" in _table_line(output, "unchanged re-sync: target writes")
    assert "120" in _table_line(output, "memory run: 120 companies synced").split("synced")[1]
    failed = [line for line in output.splitlines() if line.rstrip().endswith("FAIL")]
    assert code == (1 if failed else 0)
    assert ("MISSED:" in output) == bool(failed)
    assert ("all targets met" in output) == (not failed)


def test_cpu_only_times_a_sample_without_simulators(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["--cpu-only", "--cpu-records", "300", "--cpu-seconds", "0.05", "--workdir", str(tmp_path)]
    )
    output = capsys.readouterr().out
    figure = _table_line(output, "clean+validate+map records / CPU s (300 sample)")
    per_second = float(figure.split("sample)")[1].split()[0].replace(",", ""))
    assert per_second > 0
    assert ">= 25,000" in figure  # the floor of the cleanup issue
    assert (code == 0) == (per_second >= 25_000)
    assert "companies synced" not in output  # no pipeline, no simulators, no baseline
    # The sample was stored as the pull stores it, and every company was cleaned.
    with duckdb.connect(str(tmp_path / "cpu_sample.duckdb"), read_only=True) as conn:
        assert conn.execute("select count(*) from raw_companies").fetchone() == (300,)


def test_cpu_only_refuses_the_other_runs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--cpu-only", "--memory-window", "100"]) == 2
    assert "--cpu-only runs alone" in capsys.readouterr().err


def test_exit_code_is_1_exactly_when_a_target_is_missed() -> None:
    met = Row("rate", "0.95", target=">= 0.9", passed=True)
    info = Row("wall time", "3.0")  # a figure without a target never fails the bench
    missed = Row("memory", "1500", target="< 1024", passed=False)
    assert exit_code([met, info]) == 0
    assert exit_code([met, info, missed]) == 1


class _InFlight:
    """Counts list requests in flight at once over a simulator. Page 2's request waits (up to
    ``patience`` seconds) for another to join it: prefetched pages overlap however slowly a
    loaded machine starts their threads, and one page after another never does."""

    def __init__(self, sim: OkkiSimulator, patience: float) -> None:
        self.sim = sim
        self.patience = patience
        self.now = 0
        self.most = 0
        self.seen = 0
        self._joined = threading.Condition()

    def handle(self, request: SimRequest) -> SimResponse:
        if request.path != LIST_PATH:
            return self.sim.handle(request)
        with self._joined:
            self.now += 1
            self.seen += 1
            self.most = max(self.most, self.now)
            self._joined.notify_all()
            if self.seen == 2:
                self._joined.wait_for(lambda: self.most > 1, timeout=self.patience)
        try:
            return self.sim.handle(request)
        finally:
            with self._joined:
                self.now -= 1


@pytest.mark.parametrize(
    "prefetch",
    [
        False,  # one page after another, as before
        True,  # the pages page 1's totalItem implies, concurrency at a time
    ],
)
def test_a_prefetched_list_pass_matches_the_sequential_one(prefetch: bool) -> None:
    day = date(2026, 11, 20)
    start = datetime(2026, 11, 20, tzinfo=CHINA_TZ)
    sim = OkkiSimulator(generate_companies(430, day, day, seed=3), OkkiSimConfig())
    counter = _InFlight(sim, patience=2.0 if not prefetch else 120.0)
    with OkkiClient(
        "http://okki.test",
        "demo-client",
        "demo-secret",
        rate_limit=None,
        concurrency=4,
        page_size=50,
        transport=mock_transport(counter, sleep=False),
    ) as client:
        pages = list(
            client.iter_list_pages(
                start_time=start, end_time=start + timedelta(days=1), prefetch=prefetch
            )
        )
    truth = [c["company_id"] for c in sim.companies_in_window(start, start + timedelta(days=1))]
    assert [r["company_id"] for p in pages for r in p.records] == truth  # newest first, in order
    assert [p.page for p in pages] == list(range(1, 10))
    # ceil(430 / 50) pages and the empty one that ends the list: no page wasted
    assert sim.stats.calls["/v1/company/list"] == 10
    assert (counter.most > 1) is prefetch


def test_staged_raw_rows_round_trip_with_missing_values(tmp_path: Path) -> None:
    rows = [
        storage.RawRow("2026-11-20", "1001", "2026-11-20 10:00:00", '{"a": "名"}', '{"b": 1}'),
        storage.RawRow("2026-11-20", None, None, '{"name": "no id"}', None),  # kept for quarantine
        storage.RawRow("2026-11-20", "1003", "2026-11-20 11:00:00", "{}", None, True),  # reused
    ]
    at = datetime(2026, 11, 20, 12, tzinfo=UTC)
    with duckdb.connect(str(tmp_path / "raw.duckdb")) as conn:
        storage.ensure_schema(conn)
        storage.stage_raw(conn, "run-1", rows, at)
        stored = conn.execute(
            "select run_id, partition_key, company_id, update_time, list_json, info_json,"
            " info_reused, fetched_at from raw_staging order by list_json"
        ).fetchall()
    expected = [
        ("run-1", r.partition_key, r.company_id, r.update_time, r.list_json, r.info_json,
         r.info_reused, at)
        for r in sorted(rows, key=lambda r: r.list_json)
    ]  # fmt: skip
    assert stored == expected
