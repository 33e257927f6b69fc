"""``benchmarks.bench``: throughput at OKKI's quota, flat memory, and the gap to the naive loop.

OKKI's quota is the physical limit of a sync: a sync is as fast as it can be when it spends the
quota fully and never wastes a request. The bench measures how close the pipeline comes, in one
invocation, on one sync window served by the simulators:

(a) the pipeline as a user runs it: ``build_defs(...)`` and the ``okki_sync`` job through
    ``execute_in_process``, with ``OkkiResource.rate_limit`` set to the quota. It runs in a
    process of its own (so its peak memory is its own), the simulators in another;
(b) a baseline doing what naive code does: list pages one by one, one info call after another,
    one POST per record, against fresh simulators with the same settings.

Then the same window is synced again unchanged (list requests only: no info call, no write),
cleaning + validation + mapping is timed in CPU seconds on a stage-sized sample (and on the
window's own rows), and, with ``--memory-window N``, a window of N companies is synced (and
re-synced) by a fresh pipeline process whose peak resident memory is reported. The table says
which target each figure meets; the exit code is 1 when one is missed.

Figures come from the simulators' own counters (requests per endpoint, the arrival time of every
business request, throttled answers, batches received), not from the pipeline's metadata.
"""

from __future__ import annotations

import argparse
import multiprocessing
import multiprocessing.connection
import os
import platform
import resource
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Self, TextIO

import httpx

from benchmarks import command_main
from okki_assets.simulator.okki import INFO_PATH, LIST_PATH, TOKEN_PATH
from okki_assets.simulator.target import BATCH_PATH, STATS_PATH

QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}

RATE_TARGET = 0.9  # requests per second >= this share of the quota
SPEEDUP_TARGET = 5.0  # wall time at least this many times better than the baseline
CPU_TARGET = 25_000.0  # cleaning + validation + mapping, records per CPU second (the floor)
MEMORY_TARGET_MB = 1024.0  # peak resident memory of the pipeline process, 200,000 companies
CPU_MIN_SECONDS = 2.0  # repeat the CPU measurement until at least this much CPU was spent
CHILD_TIMEOUT = 6 * 3600.0


# --- settings and results -----------------------------------------------------------------


@dataclass(frozen=True)
class BenchSettings:
    companies: int = 2000
    latency: float = 0.1
    target_latency: float | None = None  # None: the same latency as OKKI
    quota: float = 50.0
    concurrency: int = 8
    seed: int = 7
    compare: bool = True
    memory_window: int = 0
    memory_quota: float = 1500.0
    memory_concurrency: int = 16
    cpu_records: int = 20_000
    cpu_seconds: float = CPU_MIN_SECONDS
    cpu_only: bool = False  # only the CPU figure: no simulators, no pipeline, no baseline
    workdir: Path | None = None

    @property
    def effective_target_latency(self) -> float:
        return self.latency if self.target_latency is None else self.target_latency


@dataclass(frozen=True)
class SimSpec:
    """What the simulator process serves: one day's window of ``companies`` companies."""

    companies: int
    day: str
    latency: float
    target_latency: float
    quota: float | None
    seed: int


@dataclass(frozen=True)
class PipelineSpec:
    okki_url: str
    target_url: str
    database: str
    dagster_home: str
    partition_key: str
    rate_limit: float
    concurrency: int


@dataclass
class SimCounters:
    """A snapshot of both simulators' counters, taken in the simulator process."""

    calls: dict[str, int] = field(default_factory=dict)
    throttled: int = 0
    request_times: list[float] = field(default_factory=list)
    batches: int = 0
    records_applied: int = 0

    def calls_to(self, path: str) -> int:
        return self.calls.get(path, 0)


@dataclass
class Traffic:
    """What one phase cost at the simulators (the difference of two snapshots)."""

    list_calls: int
    info_calls: int
    throttled: int
    batches: int
    records_applied: int
    business_span: float  # seconds from the first to the last business request

    @property
    def business_calls(self) -> int:
        return self.list_calls + self.info_calls

    @property
    def rate(self) -> float:
        """Requests per second over the span of OKKI traffic ((n-1) gaps over the span)."""
        if self.business_calls < 2 or self.business_span <= 0:
            return 0.0
        return (self.business_calls - 1) / self.business_span

    @classmethod
    def between(cls, before: SimCounters, after: SimCounters) -> Traffic:
        times = after.request_times[len(before.request_times) :]
        return cls(
            list_calls=after.calls_to(LIST_PATH) - before.calls_to(LIST_PATH),
            info_calls=after.calls_to(INFO_PATH) - before.calls_to(INFO_PATH),
            throttled=after.throttled - before.throttled,
            batches=after.batches - before.batches,
            records_applied=after.records_applied - before.records_applied,
            business_span=(times[-1] - times[0]) if len(times) > 1 else 0.0,
        )


@dataclass
class SyncOutcome:
    """One ``okki_sync`` run, as the pipeline process saw it."""

    success: bool
    seconds: float
    peak_rss_mb: float
    stored: int = 0
    error: str = ""


@dataclass
class Row:
    metric: str
    ours: str
    baseline: str = ""
    ratio: str = ""
    target: str = ""
    passed: bool | None = None

    @property
    def verdict(self) -> str:
        return "" if self.passed is None else ("pass" if self.passed else "FAIL")


# --- the simulator process ----------------------------------------------------------------


def _serve_simulators(conn: multiprocessing.connection.Connection, spec: SimSpec) -> None:
    """Entry point of the simulator process: serve both simulators, answer stats requests."""
    from okki_assets.simulator.data import generate_companies
    from okki_assets.simulator.http import ServerThread
    from okki_assets.simulator.okki import OkkiSimConfig, OkkiSimulator
    from okki_assets.simulator.target import TargetSimConfig, TargetSimulator

    day = date.fromisoformat(spec.day)
    okki = OkkiSimulator(
        generate_companies(spec.companies, day, day, seed=spec.seed),
        OkkiSimConfig(latency=spec.latency, quota_rps=spec.quota, seed=spec.seed),
        copy_records=False,
    )
    target = TargetSimulator(TargetSimConfig(latency=spec.target_latency, seed=spec.seed))
    with ServerThread(okki) as o, ServerThread(target) as t:
        conn.send({"okki": o.url, "target": t.url})
        while True:
            command = conn.recv()
            if command == "stats":
                s = okki.stats
                conn.send(
                    SimCounters(
                        calls=s.calls,
                        throttled=sum(s.throttled.values()),
                        request_times=s.request_times,
                    )
                )
            else:
                break
    conn.close()


class _Child:
    """A spawned child process driven over a pipe: its entry point sends one greeting, then
    answers each message; any other message than the ones it knows makes it exit."""

    def __init__(self, entry: Any, spec: object, name: str) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._name = name
        self._conn, child = ctx.Pipe()
        self._process = ctx.Process(target=entry, args=(child, spec), name=name, daemon=True)
        self._process.start()
        child.close()
        self.greeting = self._receive()

    def ask(self, message: str) -> Any:
        self._conn.send(message)
        return self._receive()

    def _receive(self) -> Any:
        deadline = time.monotonic() + CHILD_TIMEOUT
        while not self._conn.poll(1.0):
            if not self._process.is_alive():
                raise RuntimeError(f"{self._name} exited with code {self._process.exitcode}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self._name} did not answer within {CHILD_TIMEOUT:.0f}s")
        return self._conn.recv()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self._process.is_alive():
            with suppress(BrokenPipeError, OSError):
                self._conn.send("stop")
            self._process.join(timeout=60)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(timeout=10)
        self._conn.close()


class SimulatorProcess(_Child):
    """Both simulators served by a separate process on 127.0.0.1 (fresh data each time)."""

    def __init__(self, spec: SimSpec) -> None:
        super().__init__(_serve_simulators, spec, "the simulator process")
        self.okki_url: str = self.greeting["okki"]
        self.target_url: str = self.greeting["target"]

    def counters(self) -> SimCounters:
        counters: SimCounters = self.ask("stats")
        stats = httpx.get(self.target_url + STATS_PATH, timeout=30).json()
        counters.batches = int(stats["batches_received"])
        counters.records_applied = sum(stats["records_applied"].values())
        return counters


# --- the pipeline process -----------------------------------------------------------------


def peak_rss_mb() -> float:
    """The process's resident-memory high-water mark in MB (VmHWM; ru_maxrss elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss / (1024 * 1024) if sys.platform == "darwin" else maxrss / 1024


def _value(metadata: dict[str, Any], key: str) -> int:
    entry = metadata.get(key)
    value = getattr(entry, "value", entry)
    return int(value) if isinstance(value, int | float) else 0


def _run_pipeline(conn: multiprocessing.connection.Connection, spec: PipelineSpec) -> None:
    """Entry point of the pipeline process: build the definitions, run ``okki_sync`` on demand."""
    import dagster as dg

    from okki_assets.definitions import build_defs
    from okki_assets.resources import OkkiResource, TargetResource, WarehouseResource
    from okki_assets.simulator.harness import (
        DEMO_CLIENT_ID,
        DEMO_CLIENT_SECRET,
        DEMO_TARGET_TOKEN,
    )

    defs = build_defs(
        okki=OkkiResource(
            base_url=spec.okki_url,
            client_id=DEMO_CLIENT_ID,
            client_secret=DEMO_CLIENT_SECRET,
            rate_limit=spec.rate_limit,
            concurrency=spec.concurrency,
        ),
        target=TargetResource(url=spec.target_url, token=DEMO_TARGET_TOKEN),
        warehouse=WarehouseResource(database=spec.database),
        sync_start=spec.partition_key,
    )
    job = defs.resolve_job_def("okki_sync")
    overrides = {"telemetry": {"enabled": False}}
    with dg.DagsterInstance.local_temp(spec.dagster_home, overrides=overrides) as instance:
        conn.send("ready")
        while conn.recv() == "sync":
            started = time.monotonic()
            try:
                result = job.execute_in_process(
                    partition_key=spec.partition_key,
                    instance=instance,
                    raise_on_error=False,
                    run_config=QUIET,
                )
            except Exception as e:  # reported to the parent, which prints it and fails
                conn.send(
                    SyncOutcome(False, time.monotonic() - started, peak_rss_mb(), error=str(e))
                )
                continue
            seconds = time.monotonic() - started
            by_asset: dict[str, dict[str, Any]] = {}
            for event in result.get_asset_materialization_events():
                mat = event.event_specific_data.materialization  # type: ignore[union-attr]
                by_asset[mat.asset_key.to_user_string()] = dict(mat.metadata)
            failed = [e.check_name for e in result.get_asset_check_evaluations() if not e.passed]
            error = ", ".join(f"check {name} failed" for name in failed)
            if not result.success:
                error = error or "the run failed"
            conn.send(
                SyncOutcome(
                    result.success and not failed,
                    seconds,
                    peak_rss_mb(),
                    stored=_value(by_asset.get("raw_companies", {}), "fetched"),
                    error=error,
                )
            )
    conn.close()


class PipelineProcess(_Child):
    """The pipeline in a process of its own: ``sync()`` runs the job once and reports."""

    def __init__(self, spec: PipelineSpec) -> None:
        super().__init__(_run_pipeline, spec, "the pipeline process")

    def sync(self) -> SyncOutcome:
        outcome: SyncOutcome = self.ask("sync")
        return outcome


# --- the baseline -------------------------------------------------------------------------


@dataclass
class BaselineOutcome:
    seconds: float
    companies: int
    posts: int


def _baseline_call(http: httpx.Client, method: str, url: str, **kwargs: Any) -> dict[str, Any]:
    """One request, repeated after a pause while the answer is a throttle or a 5xx."""
    for _ in range(20):
        response = http.request(method, url, **kwargs)
        body = response.json() if response.status_code < 500 else {}
        code = body.get("code") if isinstance(body, dict) else None
        if response.status_code == 429 or response.status_code >= 500 or code in (429, 503):
            time.sleep(float(response.headers.get("Retry-After") or 0.5))
            continue
        response.raise_for_status()
        return body if isinstance(body, dict) else {}
    raise RuntimeError("the baseline was throttled 20 times in a row")


def run_baseline(okki_url: str, target_url: str, partition_key: str) -> BaselineOutcome:
    """What naive code does: list pages one by one, info one by one, one POST per record."""
    from okki_assets.simulator.harness import (
        DEMO_CLIENT_ID,
        DEMO_CLIENT_SECRET,
        DEMO_TARGET_TOKEN,
    )

    day = date.fromisoformat(partition_key)
    window: dict[str, str | int] = {
        "start_time": f"{day} 00:00:00",
        "end_time": f"{day + timedelta(days=1)} 00:00:00",
        "count": 100,
    }
    target_headers = {"Authorization": f"Bearer {DEMO_TARGET_TOKEN}"}
    started = time.monotonic()
    posts = 0
    with httpx.Client(timeout=60) as http:
        token = http.post(
            okki_url + TOKEN_PATH,
            data={
                "grant_type": "client_credentials",
                "client_id": DEMO_CLIENT_ID,
                "client_secret": DEMO_CLIENT_SECRET,
                "scope": "company",
            },
        ).json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        ids: list[str] = []
        page = 1
        while True:
            params = {**window, "start_index": page}
            data = _baseline_call(http, "GET", okki_url + LIST_PATH, params=params, headers=auth)
            rows = data["data"]["list"]
            ids += [str(row["company_id"]) for row in rows]
            if not rows or len(ids) >= int(data["data"]["totalItem"]):
                break
            page += 1
        for cid in ids:
            info: dict[str, Any] = _baseline_call(
                http, "GET", okki_url + INFO_PATH, params={"company_id": cid}, headers=auth
            )["data"]
            contact: dict[str, Any] = next(iter(info.get("customers") or []), {})
            record = {
                "id": cid,
                "fullName": info.get("name"),
                "country": info.get("country"),
                "email": contact.get("email"),
                "updatedAt": info.get("update_time"),
            }
            _baseline_call(
                http,
                "POST",
                target_url + BATCH_PATH,
                json={"records": [record]},
                headers={**target_headers, "Idempotency-Key": uuid.uuid4().hex},
            )
            posts += 1
    return BaselineOutcome(time.monotonic() - started, len(ids), posts)


# --- CPU of cleaning, validation and mapping ------------------------------------------------


@dataclass
class CpuOutcome:
    records: int
    cpu_seconds: float

    @property
    def per_second(self) -> float:
        return self.records / self.cpu_seconds if self.cpu_seconds > 0 else 0.0

    @property
    def per_10k(self) -> float:
        return self.cpu_seconds / self.records * 10_000 if self.records else 0.0


def raw_chunks(database: str, partition_key: str) -> list[Any]:
    """A partition's raw rows as the clean stage reads them (``storage.iter_raw``'s chunks)."""
    import duckdb

    from okki_assets import storage

    with duckdb.connect(database, read_only=True) as conn:
        return list(storage.iter_raw(conn, partition_key))


def write_raw_sample(database: str, partition_key: str, companies: int, seed: int) -> None:
    """``companies`` companies of the simulators' generator, stored in ``raw_companies`` exactly
    as the pull stores them (list record and info payload as JSON text)."""
    import json
    from datetime import UTC, datetime

    import duckdb
    import pandas as pd

    from okki_assets import storage
    from okki_assets.simulator.data import generate_companies, list_view

    day = date.fromisoformat(partition_key)
    records = generate_companies(companies, day, day, seed=seed)
    frame = pd.DataFrame(
        {
            "partition_key": partition_key,
            "company_id": [str(r["company_id"]) for r in records],
            "update_time": [r["update_time"] for r in records],
            "list_json": [json.dumps(list_view(r), ensure_ascii=False) for r in records],
            "info_json": [json.dumps(r, ensure_ascii=False) for r in records],
        }
    )
    with duckdb.connect(database) as conn:
        storage.ensure_schema(conn)
        conn.register("_sample", frame)
        conn.execute(
            "insert into raw_companies (partition_key, company_id, update_time, list_json,"
            " info_json, info_reused, fetched_at, run_id) select partition_key, company_id,"
            " update_time, list_json, info_json, false, ?, 'bench' from _sample",
            [datetime.now(tz=UTC)],
        )


def measure_cpu(
    chunks: list[Any], partition_key: str, min_seconds: float = CPU_MIN_SECONDS
) -> CpuOutcome:
    """CPU seconds (``time.process_time``) of ``clean_companies`` (cleaning and the pandera
    validation) + ``map_records`` + ``content_hash`` over raw chunks, the work the clean and
    load stages do per record, repeated until ``min_seconds`` of CPU were spent.

    The garbage collector is treated as the stages treat it: paused over a chunk's work, then
    one collection of the young generations while the chunk's records are still alive (the
    load stage keeps them while it sends), counted in the time. One untimed pass over the
    first chunk comes first: the figure is the steady state of a worker that cleans chunk
    after chunk, not the first-touch cost of a fresh process's memory."""
    import gc

    from okki_assets.cleaning import clean_companies
    from okki_assets.gc_pause import gc_paused
    from okki_assets.mapping import content_hash, load_mapping, map_records
    from okki_assets.partitions import window_for_key

    start, end = window_for_key(partition_key)
    mapping = load_mapping(None)
    records = 0
    spent = 0.0
    if chunks:
        map_records(clean_companies(chunks[0], start, end).cleaned, mapping)
    while chunks and (spent < min_seconds or records == 0):
        for chunk in chunks:
            t0 = time.process_time()
            with gc_paused():
                result = clean_companies(chunk, start, end)
                mapped = map_records(result.cleaned, mapping)
                hashes = [content_hash(record) for record in mapped]
                del result
            gc.collect(1)
            del mapped, hashes
            spent += time.process_time() - t0
            records += len(chunk)
    return CpuOutcome(records, spent)


# --- orchestration ------------------------------------------------------------------------


@dataclass
class Comparison:
    settings: BenchSettings
    partition_key: str
    first: SyncOutcome
    first_traffic: Traffic
    resync: SyncOutcome
    resync_traffic: Traffic
    baseline: BaselineOutcome
    baseline_traffic: Traffic
    cpu: CpuOutcome  # a stage-sized sample of the simulators' companies
    cpu_window: CpuOutcome  # the bench window's own raw rows, as stored by (a)


@dataclass
class MemoryRun:
    companies: int
    outcome: SyncOutcome
    traffic: Traffic
    resync: SyncOutcome  # the same window again, unchanged (reused payloads, nothing sent)
    resync_traffic: Traffic


def bench_day() -> str:
    """Yesterday in China time: a complete window, inside the partitions the job knows."""
    from okki_assets.partitions import today_key

    return (date.fromisoformat(today_key()) - timedelta(days=1)).isoformat()


def _fresh(database: Path) -> str:
    """The path of a DuckDB file, emptied: the simulators start empty, so must the ledger."""
    for path in (database, database.with_name(database.name + ".wal")):
        path.unlink(missing_ok=True)
    return str(database)


def _pipeline_spec(
    sims: SimulatorProcess, workdir: Path, name: str, key: str, rate: float, concurrency: int
) -> PipelineSpec:
    home = workdir / f"{name}_dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    return PipelineSpec(
        okki_url=sims.okki_url,
        target_url=sims.target_url,
        database=_fresh(workdir / f"{name}.duckdb"),
        dagster_home=str(home),
        partition_key=key,
        rate_limit=rate,
        concurrency=concurrency,
    )


def run_comparison(settings: BenchSettings, workdir: Path, out: TextIO) -> Comparison:
    key = bench_day()
    spec = SimSpec(
        settings.companies,
        key,
        settings.latency,
        settings.effective_target_latency,
        settings.quota,
        settings.seed,
    )
    with SimulatorProcess(spec) as sims:
        pspec = _pipeline_spec(sims, workdir, "ours", key, settings.quota, settings.concurrency)
        with PipelineProcess(pspec) as pipeline:
            _say(out, f"(a) pipeline: okki_sync on {key} through Dagster ...")
            before = sims.counters()
            first = pipeline.sync()
            middle = sims.counters()
            _say(out, f"    {first.seconds:.1f}s; unchanged re-sync ...")
            resync = pipeline.sync()
            after = sims.counters()
            _say(out, f"    {resync.seconds:.1f}s")
    cpu = time_cpu_sample(settings, workdir, key, out, indent="    ")
    cpu_window = measure_cpu(raw_chunks(pspec.database, key), key, settings.cpu_seconds)
    with SimulatorProcess(spec) as sims:
        _say(out, "(b) baseline: sequential pages, sequential info, one POST per record ...")
        b_before = sims.counters()
        baseline = run_baseline(sims.okki_url, sims.target_url, key)
        b_after = sims.counters()
        _say(out, f"    {baseline.seconds:.1f}s")
    return Comparison(
        settings,
        key,
        first,
        Traffic.between(before, middle),
        resync,
        Traffic.between(middle, after),
        baseline,
        Traffic.between(b_before, b_after),
        cpu,
        cpu_window,
    )


def run_memory(settings: BenchSettings, workdir: Path, out: TextIO) -> MemoryRun:
    key = bench_day()
    spec = SimSpec(settings.memory_window, key, 0.0, 0.0, settings.memory_quota, settings.seed)
    _say(
        out,
        f"memory: {settings.memory_window} companies in one window, quota"
        f" {settings.memory_quota:g}/s, no latency ...",
    )
    with SimulatorProcess(spec) as sims:
        pspec = _pipeline_spec(
            sims, workdir, "memory", key, settings.memory_quota, settings.memory_concurrency
        )
        with PipelineProcess(pspec) as pipeline:
            before = sims.counters()
            outcome = pipeline.sync()
            middle = sims.counters()
            _say(out, f"    {outcome.seconds:.1f}s, peak {outcome.peak_rss_mb:.0f} MB; re-sync ...")
            resync = pipeline.sync()
            after = sims.counters()
    _say(out, f"    {resync.seconds:.1f}s, peak {resync.peak_rss_mb:.0f} MB")
    return MemoryRun(
        settings.memory_window,
        outcome,
        Traffic.between(before, middle),
        resync,
        Traffic.between(middle, after),
    )


def _say(out: TextIO, text: str) -> None:
    out.write(text + "\n")
    out.flush()


# --- the report ---------------------------------------------------------------------------


def _ratio(a: float, b: float, digits: int = 1) -> str:
    return f"{a / b:.{digits}f}x" if b else "-"


def comparison_rows(c: Comparison) -> list[Row]:
    s = c.settings
    a, b = c.first_traffic, c.baseline_traffic
    r = c.resync_traffic
    speedup = c.baseline.seconds / c.first.seconds if c.first.seconds else 0.0
    ours_cps = c.first.stored / c.first.seconds if c.first.seconds else 0.0
    base_cps = c.baseline.companies / c.baseline.seconds if c.baseline.seconds else 0.0
    return [
        Row(
            "sync run succeeded (checks passed)",
            "yes" if c.first.success else f"no: {c.first.error}",
            "",
            "",
            "yes",
            c.first.success,
        ),
        Row("companies synced", str(c.first.stored), str(c.baseline.companies)),
        Row(
            "OKKI requests (list + info)",
            f"{a.list_calls} + {a.info_calls}",
            f"{b.list_calls} + {b.info_calls}",
            _ratio(a.business_calls, b.business_calls, 2),
        ),
        Row(
            "request rate / quota",
            f"{a.rate / s.quota:.3f} ({a.rate:.1f}/s)",
            f"{b.rate / s.quota:.3f} ({b.rate:.1f}/s)",
            _ratio(a.rate, b.rate),
            f">= {RATE_TARGET}",
            a.rate >= RATE_TARGET * s.quota,
        ),
        Row("throttled answers", str(a.throttled), str(b.throttled), "", "0", a.throttled == 0),
        Row(
            "wall time (s)",
            f"{c.first.seconds:.1f}",
            f"{c.baseline.seconds:.1f}",
            f"{speedup:.1f}x faster",
            f">= {SPEEDUP_TARGET:g}x faster",
            speedup >= SPEEDUP_TARGET,
        ),
        Row(
            "companies per second", f"{ours_cps:.1f}", f"{base_cps:.1f}", _ratio(ours_cps, base_cps)
        ),
        Row("target POSTs", str(a.batches), str(b.batches), _ratio(a.batches, b.batches, 3)),
        *cpu_rows(c.cpu, s.cpu_records),
        Row(
            f"  the same on the window's own {c.first.stored:,} rows",
            f"{c.cpu_window.per_second:,.0f}",
        ),
        Row("peak memory, pipeline process (MB)", f"{c.first.peak_rss_mb:.0f}"),
        Row(
            "unchanged re-sync: succeeded",
            "yes" if c.resync.success else f"no: {c.resync.error}",
            "",
            "",
            "yes",
            c.resync.success,
        ),
        Row("unchanged re-sync: list requests", str(r.list_calls)),
        Row("unchanged re-sync: info calls", str(r.info_calls), "", "", "0", r.info_calls == 0),
        Row(
            "unchanged re-sync: target writes",
            f"{r.batches} batches, {r.records_applied} records",
            "",
            "",
            "0",
            r.batches == 0 and r.records_applied == 0,
        ),
        Row("unchanged re-sync: wall time (s)", f"{c.resync.seconds:.1f}"),
    ]


def cpu_rows(cpu: CpuOutcome, sample: int) -> list[Row]:
    """The clean + validate + map figures of a sample, against the floor of CPU_TARGET."""
    return [
        Row(
            f"clean+validate+map CPU s / 10k ({sample:,} sample)",
            f"{cpu.per_10k:.3f}",
            "",
            "",
            f"<= {10_000 / CPU_TARGET:.3f}",
            None,
        ),
        Row(
            f"clean+validate+map records / CPU s ({sample:,} sample)",
            f"{cpu.per_second:,.0f}",
            "",
            "",
            f">= {CPU_TARGET:,.0f}",
            cpu.per_second >= CPU_TARGET,
        ),
        Row("  that figure / the floor", _ratio(cpu.per_second, CPU_TARGET, 2)),
    ]


def time_cpu_sample(
    settings: BenchSettings, workdir: Path, key: str, out: TextIO, indent: str = ""
) -> CpuOutcome:
    """The CPU figure: a generated sample stored as the pull stores it, then timed."""
    companies = f"{settings.cpu_records:,} companies"
    _say(out, f"{indent}timing cleaning + validation + mapping on {companies} ...")
    sample = _fresh(workdir / "cpu_sample.duckdb")
    write_raw_sample(sample, key, settings.cpu_records, settings.seed)
    return measure_cpu(raw_chunks(sample, key), key, settings.cpu_seconds)


def memory_rows(m: MemoryRun) -> list[Row]:
    r = m.resync_traffic
    peak = max(m.outcome.peak_rss_mb, m.resync.peak_rss_mb)
    return [
        Row(
            f"memory run: {m.companies:,} companies synced",
            f"{m.outcome.stored:,}" + ("" if m.outcome.success else f" ({m.outcome.error})"),
            "",
            "",
            f"{m.companies:,}",
            m.outcome.success and m.outcome.stored == m.companies,
        ),
        Row(
            "memory run: peak memory, pipeline process (MB)",
            f"{peak:.0f}",
            "",
            "",
            f"< {MEMORY_TARGET_MB:.0f}",
            peak < MEMORY_TARGET_MB,
        ),
        Row(
            "memory run: wall time (s), requests/s",
            f"{m.outcome.seconds:.0f}, {m.traffic.rate:.0f}/s",
            "",
            "",
            "",
            None,
        ),
        Row(
            "memory run: throttled answers",
            str(m.traffic.throttled + r.throttled),
            "",
            "",
            "0",
            m.traffic.throttled + r.throttled == 0,
        ),
        Row(
            "memory run: unchanged re-sync info calls, writes",
            f"{r.info_calls}, {r.batches}" + ("" if m.resync.success else f" ({m.resync.error})"),
            "",
            "",
            "0, 0",
            m.resync.success and r.info_calls == 0 and r.batches == 0,
        ),
        Row("memory run: unchanged re-sync wall time (s)", f"{m.resync.seconds:.0f}"),
    ]


COLUMNS = ("metric", "ours (a)", "baseline (b)", "a vs b", "target", "result")


def format_table(rows: list[Row]) -> str:
    cells = [(r.metric, r.ours, r.baseline, r.ratio, r.target, r.verdict) for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(COLUMNS)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(COLUMNS, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)).rstrip() for c in cells]
    return "\n".join(lines)


def machine() -> str:
    try:
        import psutil

        memory = f", {psutil.virtual_memory().total / 2**30:.0f} GB RAM"
    except ImportError:
        memory = ""
    cpu = platform.processor() or platform.machine()
    return (
        f"{os.cpu_count()} cores ({cpu}){memory}, {platform.system()} {platform.release()},"
        f" Python {platform.python_version()}"
    )


def run_bench(settings: BenchSettings, out: TextIO) -> int:
    if settings.workdir is not None:
        settings.workdir.mkdir(parents=True, exist_ok=True)
        return _run_bench_in(settings, settings.workdir, out)
    with tempfile.TemporaryDirectory(prefix="okki-bench-") as tmp:
        return _run_bench_in(settings, Path(tmp), out)


def _run_bench_in(settings: BenchSettings, workdir: Path, out: TextIO) -> int:
    s = settings
    _say(out, f"benchmarks.bench on {machine()}")
    if s.compare and not s.cpu_only:
        _say(
            out,
            f"window: {s.companies} companies; OKKI latency {s.latency * 1000:g} ms, quota"
            f" {s.quota:g} requests/s; target latency {s.effective_target_latency * 1000:g} ms;"
            f" pipeline concurrency {s.concurrency}\n",
        )
    rows: list[Row] = []
    if s.cpu_only:
        rows += cpu_rows(time_cpu_sample(s, workdir, bench_day(), out), s.cpu_records)
    elif s.compare:
        rows += comparison_rows(run_comparison(s, workdir, out))
    if s.memory_window:
        rows += memory_rows(run_memory(s, workdir, out))
    _say(out, "\n" + format_table(rows))
    missed = [r.metric for r in rows if r.passed is False]
    _say(out, f"\nMISSED: {'; '.join(missed)}" if missed else "\nall targets met")
    return exit_code(rows)


def exit_code(rows: list[Row]) -> int:
    """1 when a row with a target missed it, else 0 (rows without a target never fail)."""
    return 1 if any(r.passed is False for r in rows) else 0


# --- the command --------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--companies", type=int, default=2000, help="companies in the window")
    parser.add_argument("--latency", type=float, default=0.1, help="OKKI latency, seconds")
    parser.add_argument(
        "--target-latency", type=float, default=None, help="target latency (default: --latency)"
    )
    parser.add_argument("--quota", type=float, default=50.0, help="OKKI quota, requests/s")
    parser.add_argument("--concurrency", type=int, default=8, help="pipeline info calls in flight")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--memory-window",
        type=int,
        default=0,
        metavar="N",
        help="also sync a window of N companies and report the pipeline process's peak memory",
    )
    parser.add_argument("--memory-quota", type=float, default=1500.0, help="quota of that run")
    parser.add_argument("--memory-concurrency", type=int, default=16)
    parser.add_argument(
        "--cpu-records", type=int, default=20_000, help="companies in the CPU timing sample"
    )
    parser.add_argument(
        "--cpu-seconds", type=float, default=CPU_MIN_SECONDS, help="least CPU time to measure"
    )
    parser.add_argument(
        "--no-compare", action="store_true", help="skip (a) vs (b); with --memory-window only"
    )
    parser.add_argument(
        "--cpu-only",
        action="store_true",
        help="only the clean + validate + map CPU figure (seconds, no simulators)",
    )
    parser.add_argument("--workdir", default=None, help="keep DuckDB files here (default: temp)")


def run(args: argparse.Namespace) -> int:
    if args.cpu_only and (args.no_compare or args.memory_window):
        print("--cpu-only runs alone: drop --no-compare and --memory-window", file=sys.stderr)
        return 2
    if args.no_compare and not args.memory_window:
        print("--no-compare needs --memory-window", file=sys.stderr)
        return 2
    settings = BenchSettings(
        companies=args.companies,
        latency=args.latency,
        target_latency=args.target_latency,
        quota=args.quota,
        concurrency=args.concurrency,
        seed=args.seed,
        compare=not args.no_compare,
        memory_window=args.memory_window,
        memory_quota=args.memory_quota,
        memory_concurrency=args.memory_concurrency,
        cpu_records=args.cpu_records,
        cpu_seconds=args.cpu_seconds,
        cpu_only=args.cpu_only,
        workdir=Path(args.workdir) if args.workdir else None,
    )
    return run_bench(settings, sys.stdout)


def main(argv: Sequence[str] | None = None) -> int:
    description = "measure throughput against the OKKI quota, peak memory, and a naive baseline"
    return command_main("bench", description, add_arguments, run, argv)


__all__ = [
    "BenchSettings",
    "Row",
    "add_arguments",
    "exit_code",
    "format_table",
    "main",
    "measure_cpu",
    "run",
    "run_baseline",
    "run_bench",
]

if __name__ == "__main__":
    sys.exit(main())
