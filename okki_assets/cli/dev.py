"""``okki-assets dev``: both simulators plus ``dg dev`` (the Dagster UI), in one command; Ctrl-C
stops all.

It starts the OKKI and target simulators on 127.0.0.1 (seeded like the demo: the same options
give the same data), optionally syncs the ``--partitions`` most recent days the way the demo does,
then ``dg dev`` with the environment pointed at them: ``OKKI_BASE_URL``,
``OKKI_CLIENT_ID``/``SECRET``, ``TARGET_URL``/``TOKEN``, ``OKKI_ASSETS_DUCKDB``
(``data/demo.duckdb``), ``OKKI_SYNC_START`` (the first day the simulator holds) and
``DAGSTER_HOME`` (``.dagster_home``). Instance and DuckDB file are the demo's world, emptied first
like the simulators' data, so everything the UI shows is in the DuckDB file and Materialize has
simulators to talk to. Other variables of the shell (mapping file, quarantine threshold, alert
webhook) pass through. The banner lists the variables it sets, and ``.dagster_home/dev-env.sh``
holds them for ``source``, so ``dg launch`` from a shell reaches the same world.

Process handling, which the webserver test reuses:

- ``dg dev`` runs in a session (process group) of its own, so this process decides how it
  stops: Ctrl-C (SIGINT) or SIGTERM here sends SIGTERM to the whole group, which Dagster handles
  like Ctrl-C (webserver, daemon, code server and in-flight runs shut down); whatever is left
  after a grace period gets SIGKILL. A second Ctrl-C kills the group at once.
- Dagster maps SIGTERM onto its SIGINT handler. A process started from a non-interactive shell's
  ``&`` job inherits SIGINT *ignored*, and so would ignore SIGTERM too; ``dg dev`` is therefore
  started through a two-line trampoline that resets both signals to their defaults, then execs.
- Its working directory is the instance folder, not the project: Dagster's dev server loads a
  ``.env`` file from its working directory *over* the environment, and a ``.env`` meant for the
  real OKKI or target must never be mixed with the simulators. The code location comes from a
  workspace file written there, pointing at this installation's ``okki_assets`` by absolute path.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import IO

import httpx
import yaml

import okki_assets
from okki_assets.cli.demo import (
    UI_HINT,
    World,
    demo_overrides,
    fresh_world,
    recent_keys,
    sync_partitions,
)
from okki_assets.cli.kingdee import kingdee_if
from okki_assets.cli.options import (
    add_partitions_argument,
    add_project_dir_argument,
    add_target_argument,
    add_world_arguments,
    at_least,
    check_partitions,
    check_ports_free,
    port,
)
from okki_assets.okki_time import CHINA_TZ
from okki_assets.partitions import window_for_key
from okki_assets.simulator.harness import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_TARGET_TOKEN,
    RunningSimulators,
    fault_profile,
    running_simulators,
)

LOCATION = "okki_assets"
DEFINITIONS_MODULE = "okki_assets.definitions"
DEFAULT_PORT = 3000
STOP_GRACE_SECONDS = 30.0
READY_TIMEOUT_SECONDS = 180.0
#: The file in the instance folder holding the environment given to dg dev, for ``source``.
ENVIRONMENT_FILE = "dev-env.sh"
#: The variables ``okki-assets dev`` sets; a value of the shell for any of them is replaced.
SIMULATOR_VARIABLES = (
    "OKKI_BASE_URL",
    "OKKI_CLIENT_ID",
    "OKKI_CLIENT_SECRET",
    "OKKI_RATE_LIMIT",
    "TARGET_URL",
    "TARGET_TOKEN",
    "OKKI_ASSETS_DUCKDB",
    "OKKI_SYNC_START",
    "DAGSTER_HOME",
    # a real Kingdee account in the shell must never meet the simulators either
    *(f"K3CLOUD_{name}" for name in (
        "ACCT_ID", "USERNAME", "APP_ID", "APP_SECRET", "PASSWORD", "LCID", "ORG", "CURRENCY",
        "NUMBER_PREFIX", "BATCH_SIZE", "COUNTRY_MAP", "SETTLE_SECONDS",
    )),
)  # fmt: skip
# Reset SIGINT and SIGTERM to their defaults (an inherited "ignored" survives exec); on Linux,
# ask for SIGTERM when the parent dies (PR_SET_PDEATHSIG, kept across exec), so that even a
# killed parent leaves nothing behind; give up if the parent is already gone; then exec.
_TRAMPOLINE = (
    "import ctypes, os, signal, sys\n"
    "signal.signal(signal.SIGINT, signal.SIG_DFL); signal.signal(signal.SIGTERM, signal.SIG_DFL)\n"
    "try:\n"
    "    ctypes.CDLL(None).prctl(1, signal.SIGTERM)\n"
    "except (AttributeError, OSError):\n"
    "    pass\n"
    "if os.getppid() != int(sys.argv[1]):\n"
    "    sys.exit(1)\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)


# --- building blocks (also used by the webserver test) -----------------------------------------


def code_root() -> Path:
    """The folder that holds the ``okki_assets`` package (a checkout or site-packages)."""
    return Path(okki_assets.__file__).resolve().parent.parent


def write_workspace(folder: Path) -> Path:
    """A workspace file in ``folder`` loading ``okki_assets.definitions`` as ``okki_assets``."""
    entry = {
        "python_module": {
            "module_name": DEFINITIONS_MODULE,
            "working_directory": str(code_root()),
            "location_name": LOCATION,
        }
    }
    path = folder / "workspace.yaml"
    path.write_text(yaml.safe_dump({"load_from": [entry]}, sort_keys=False), encoding="utf-8")
    return path


def dg_executable() -> str:
    """The ``dg`` command of this Python environment (next to ``sys.executable``): Dagster
    1.13's ``dg dev`` serves the UI as ``dagster dev`` does, without its SupersessionWarning."""
    candidate = Path(sys.executable).parent / "dg"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("dg")
    if found is None:
        raise FileNotFoundError("the dg command (dagster-dg-cli) is not installed here")
    return found


def dagster_dev_command(workspace: Path, host: str, port: int) -> list[str]:
    """``dg dev`` on ``workspace``, bound to ``host``:``port``."""
    return [dg_executable(), "dev", "-w", str(workspace), "-h", host, "-p", str(port)]


def dev_environment(
    base: Mapping[str, str],
    sims: RunningSimulators,
    *,
    database: Path,
    home: Path,
    sync_start: str,
    rate_limit: float = 100.0,
) -> dict[str, str]:
    """``base`` with the simulator variables replaced by values pointing at ``sims``."""
    env = {k: v for k, v in base.items() if k not in SIMULATOR_VARIABLES}
    env.update(
        OKKI_BASE_URL=sims.okki_url,
        OKKI_CLIENT_ID=DEMO_CLIENT_ID,
        OKKI_CLIENT_SECRET=DEMO_CLIENT_SECRET,
        OKKI_RATE_LIMIT=str(rate_limit),
        TARGET_URL=sims.target_url,
        TARGET_TOKEN=DEMO_TARGET_TOKEN,
        OKKI_ASSETS_DUCKDB=str(database),
        OKKI_SYNC_START=sync_start,
        DAGSTER_HOME=str(home),
    )
    return env


def _given(env: Mapping[str, str]) -> list[str]:
    """The variables dev sets: the simulators', and Kingdee's with ``--target k3cloud``."""
    return [name for name in SIMULATOR_VARIABLES if name in env]


def write_environment(home: Path, env: Mapping[str, str]) -> Path:
    """The simulator variables of ``env`` as a file a shell can ``source`` (``dev-env.sh`` in
    the instance folder), so that ``dg launch`` from a shell reaches the same simulators,
    DuckDB file and instance as the UI. The secrets are the simulators' demo values."""
    path = home / ENVIRONMENT_FILE
    lines = [
        "# okki-assets dev: the environment given to dg dev (the simulators' demo values).",
        "# Valid while that okki-assets dev runs; `source` it, then run dg launch.",
        *(f"export {name}={shlex.quote(env[name])}" for name in _given(env)),
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def environment_lines(env: Mapping[str, str], path: Path) -> str:
    """The banner's list of the simulator variables given to dg dev, and where they are kept."""
    shown = "".join(f"    {name}={env[name]}\n" for name in _given(env))
    return (
        "  environment given to dg dev (demo values; to run dg launch from a shell,"
        f" first: source {shlex.quote(str(path))}):\n{shown}"
    )


def start_process_group(
    command: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path,
    stdout: IO[bytes] | int | None = None,
    stderr: IO[bytes] | int | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``command`` as the leader of a new session, with SIGINT/SIGTERM at their defaults
    and (on Linux) a SIGTERM when this process dies."""
    return subprocess.Popen(
        [sys.executable, "-c", _TRAMPOLINE, str(os.getpid()), *command],
        env=dict(env),
        cwd=cwd,
        stdout=stdout,
        stderr=stderr,
        start_new_session=True,
    )


def group_alive(pgid: int) -> bool:
    """Whether any process of the process group ``pgid`` still exists."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signum)


def stop_process_group(
    proc: subprocess.Popen[bytes], grace: float = STOP_GRACE_SECONDS
) -> int | None:
    """SIGTERM the group led by ``proc``, wait up to ``grace`` seconds, then SIGKILL what is left.

    Returns the leader's exit code. Idempotent.
    """
    pgid = proc.pid
    if proc.poll() is None or group_alive(pgid):
        _signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    nudge = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        if proc.poll() is not None and not group_alive(pgid):
            break
        if proc.poll() is not None and time.monotonic() >= nudge:
            # The leader is gone but its group is not: a process started after the SIGTERM
            # (dg dev restarts a code server that exits while it shuts down) never had it.
            _signal_group(pgid, signal.SIGTERM)
            nudge = time.monotonic() + 1.0
        time.sleep(0.1)
    if proc.poll() is None or group_alive(pgid):
        _signal_group(pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
        deadline = time.monotonic() + 5
        while group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.05)  # orphaned zombies are reaped by init shortly
    return proc.returncode


def webserver_ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/server_info", timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def wait_for_webserver(
    url: str, proc: subprocess.Popen[bytes], timeout: float = READY_TIMEOUT_SECONDS
) -> None:
    """Wait until the webserver answers ``/server_info``; raise if ``proc`` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"dg dev exited with code {proc.returncode} before serving")
        if webserver_ready(url):
            return
        time.sleep(0.25)
    raise RuntimeError(f"dg dev did not answer on {url} within {timeout:.0f}s")


# --- the command ------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_world_arguments(parser, faults="moderate")
    add_partitions_argument(
        parser, default=0, help="most recent partitions to sync before the UI starts"
    )
    parser.add_argument(
        "--deleted",
        type=at_least(0),
        default=5,
        help="companies deleted in OKKI today, so that tombstones show",
    )
    parser.add_argument("--host", default="127.0.0.1", help="webserver host")
    parser.add_argument("--port", type=port(), default=DEFAULT_PORT, help="webserver port")
    parser.add_argument(
        "--okki-port", type=port(free_ok=True), default=0, help="OKKI simulator port (0: free)"
    )
    parser.add_argument(
        "--target-port", type=port(free_ok=True), default=0, help="target simulator port"
    )
    add_project_dir_argument(parser)
    add_target_argument(parser)


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Rules across options, and the ports: one taken is refused before the world is emptied
    (dg dev would otherwise log "address already in use" and wait for ever)."""
    check_partitions(parser, args)
    check_ports_free(
        parser,
        [
            ("--port", args.host, args.port),
            ("--okki-port", "127.0.0.1", args.okki_port),
            ("--target-port", "127.0.0.1", args.target_port),
        ],
    )


class _Stop:
    """SIGINT/SIGTERM handlers: the first asks for a clean stop, the second kills the group."""

    def __init__(self) -> None:
        self.requested = False
        self.pgid: int | None = None
        self._previous: dict[int, object] = {}

    def install(self) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._handle)

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested and self.pgid is not None:
            _signal_group(self.pgid, signal.SIGKILL)
        self.requested = True


def _delete_some(sims: RunningSimulators, count: int, keys: list[str]) -> list[str]:
    """Delete ``count`` companies of the older windows in the OKKI simulator, now (China time):
    syncing their window first and today's afterwards sends their tombstones."""
    start, _ = window_for_key(keys[0])
    _, end = window_for_key(keys[-2] if len(keys) > 1 else keys[-1])
    candidates = sims.okki.companies_in_window(start, end)
    step = max(1, len(candidates) // max(count, 1))
    deleted = []
    for company in candidates[::step][:count]:
        sims.okki.delete_company(company["company_id"], delete_time=datetime.now(tz=CHINA_TZ))
        deleted.append(str(company["company_id"]))
    return deleted


def _banner(
    args: argparse.Namespace,
    profile: str,
    deleted: int,
    sims: RunningSimulators,
    world: World,
    keys: list[str],
    env: Mapping[str, str],
    target_url: str,
) -> str:
    """What dev serves, and the environment it gives dg dev (also written for ``source``)."""
    return (
        f"okki-assets dev: {args.companies} companies over {args.days} days,"
        f" fault profile '{profile}', {deleted} deleted today\n"
        f"  OKKI simulator   {sims.okki_url}  (client_id {DEMO_CLIENT_ID})\n"
        f"  target simulator {target_url}\n"
        f"  DuckDB file      {world.database} (new)\n"
        f"  DAGSTER_HOME     {world.home} (emptied)\n"
        f"  partitions       {keys[0]} ... {keys[-1]} (today)\n"
    ) + environment_lines(env, write_environment(world.home, env))


def run(args: argparse.Namespace) -> int:
    out = sys.stdout
    project = Path(args.project_dir).resolve()
    world = fresh_world(project)
    home, database = world.home, world.database
    profile = fault_profile(args.faults)
    keys = recent_keys(args.days)
    workspace = write_workspace(home)
    stop = _Stop()
    stop.install()  # before the child starts, so no signal is lost in between
    try:
        with (
            running_simulators(
                companies=args.companies,
                days=args.days,
                profile=profile,
                seed=args.seed,
                okki_port=args.okki_port,
                target_port=args.target_port,
                okki_overrides=demo_overrides(keys[0]),
            ) as sims,
            kingdee_if(args.target == "k3cloud", args.faults, args.seed) as kingdee,
        ):
            deleted = _delete_some(sims, args.deleted, keys) if args.deleted > 0 else []
            env = dev_environment(
                os.environ, sims, database=database, home=home, sync_start=keys[0]
            )
            env.update(kingdee.environment() if kingdee else {})
            target_url = kingdee.url if kingdee else sims.target_url
            out.write(_banner(args, profile.name, len(deleted), sims, world, keys, env, target_url))
            if (project / ".env").exists():
                out.write(
                    "  (.env is not read by okki-assets dev: the simulators' settings win; but"
                    " dg launch in the project folder reads it over the shell's)\n"
                )
            out.flush()
            if args.partitions and not stop.requested:
                out.write(f"Syncing the {args.partitions} most recent partitions first:\n")
                recent = keys[-args.partitions :]
                target = kingdee.resource() if kingdee else None
                sync_partitions(sims, world, recent, keys[0], out, lambda: stop.requested, target)
            if stop.requested:  # Ctrl-C while the simulators were starting or syncing
                return 0
            code = _serve_dg_dev(args, workspace, env, home, stop, out)
    finally:
        stop.restore()
    if not stop.requested and code:
        out.write(f"dg dev exited with code {code} (see its messages above)\n")
    out.write("okki-assets dev stopped.\n")
    out.flush()
    return 0 if stop.requested or not code else 1


def _serve_dg_dev(
    args: argparse.Namespace,
    workspace: Path,
    env: Mapping[str, str],
    home: Path,
    stop: _Stop,
    out: IO[str],
) -> int | None:
    """Run dg dev until it exits or a stop is asked for, saying when its UI is ready; returns
    its exit code as stop_process_group reads it."""
    url = f"http://{args.host}:{args.port}"
    out.write(f"Starting dg dev on {url}; Ctrl-C stops everything.\n")
    out.flush()
    proc = start_process_group(
        dagster_dev_command(workspace, args.host, args.port), env=env, cwd=home
    )
    stop.pgid = proc.pid
    try:
        ready = False
        while not stop.requested and proc.poll() is None:
            if not ready and webserver_ready(url):
                ready = True
                out.write(
                    f"\nDagster UI ready: {url}  ({UI_HINT}; pick partitions for a backfill)\n\n"
                )
                out.flush()
            time.sleep(0.25)
    finally:
        if stop.requested:
            out.write("\nStopping dg dev and the simulators ...\n")
            out.flush()
        code = stop_process_group(proc)
    return code
