"""Throwaway database servers for integration tests: Debian's PostgreSQL on a free loopback port.

``postgres_server`` (one per test session, so one per pytest-xdist worker) runs ``initdb`` into
a new folder and starts ``postgres`` in the foreground on 127.0.0.1 only (no Unix socket), with
a random superuser password and password authentication (scram-sha-256) for every connection,
as a production server has. PostgreSQL refuses to run as root: when the tests run as root, both
run as the ``postgres`` system user. The server is stopped (fast shutdown) and its folder
removed at the end of the session.

``postgres_url`` gives each test a database of its own on that server (a superuser URL), and
``PostgresServer.create_role`` / ``create_database`` make an owner that is not a superuser, as a
deployment would.

Needs the distribution's server binaries (``apt-get install postgresql``: initdb and postgres
under /usr/lib/postgresql/<version>/bin); without them the tests that use these fixtures skip.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psycopg2
import pytest
from psycopg2 import sql

HOST = "127.0.0.1"
SUPERUSER = "postgres"
START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class PostgresServer:
    """A running PostgreSQL server on loopback, and its superuser's credentials."""

    host: str
    port: int
    user: str
    password: str

    def url(self, database: str = "postgres", user: str = "", password: str = "") -> str:
        user, password = (user, password) if user else (self.user, self.password)
        userinfo = f"{quote(user, safe='')}:{quote(password, safe='')}"
        return f"postgresql://{userinfo}@{self.host}:{self.port}/{database}"

    def execute(self, statement: sql.Composable | str, params: tuple[object, ...] = ()) -> None:
        """One statement as the superuser, outside a transaction (CREATE DATABASE needs that)."""
        conn = psycopg2.connect(self.url())
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(statement, params or None)
        finally:
            conn.close()

    def create_role(self, name: str, password: str) -> None:
        """A login role that is not a superuser."""
        self.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD %s").format(sql.Identifier(name)), (password,)
        )

    def create_database(self, name: str, owner: str = "") -> str:
        """A new database (owned by ``owner`` when given); returns the superuser's URL to it."""
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if owner:
            statement = sql.SQL("{} OWNER {}").format(statement, sql.Identifier(owner))
        self.execute(statement)
        return self.url(name)


def server_binaries() -> Path | None:
    """The newest installed PostgreSQL server's bin folder, or None."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: (
            int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0
        ),
    )
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _as_user() -> str | None:
    """The system user to run the server as: ``postgres`` when we are root, else ourselves."""
    return SUPERUSER if os.geteuid() == 0 else None


def _chown(path: Path, user: str | None) -> None:
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)


def _ready(server: PostgresServer) -> bool:
    try:
        psycopg2.connect(server.url(), connect_timeout=2).close()
    except psycopg2.OperationalError:
        return False
    return True


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)  # fast shutdown: disconnect clients, then exit
        try:
            proc.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@contextlib.contextmanager
def running_postgres(bin_dir: Path) -> Iterator[PostgresServer]:
    """initdb into a new folder and run ``postgres`` on a free loopback port until exit."""
    user = _as_user()
    folder = Path(tempfile.mkdtemp(prefix="okki-pg-"))
    try:
        _chown(folder, user)
        password = secrets.token_urlsafe(16)
        pwfile = folder / "pwfile"
        pwfile.write_text(password + "\n", encoding="utf-8")
        _chown(pwfile, user)
        data = folder / "data"
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8"}
        subprocess.run(
            [str(bin_dir / "initdb"), "-D", str(data), "-U", SUPERUSER, f"--pwfile={pwfile}"]
            + ["--auth=scram-sha-256", "--encoding=UTF8", "--locale=C.UTF-8"],
            user=user,
            env=env,
            cwd=folder,
            check=True,
            capture_output=True,
        )
        port = _free_port()
        log = (folder / "postgres.log").open("wb")
        proc = subprocess.Popen(
            [str(bin_dir / "postgres"), "-D", str(data), "-p", str(port)]
            + ["-c", f"listen_addresses={HOST}", "-c", "unix_socket_directories="]
            + ["-c", "fsync=off", "-c", "full_page_writes=off"],
            user=user,
            env=env,
            cwd=folder,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        server = PostgresServer(HOST, port, SUPERUSER, password)
        try:
            deadline = time.monotonic() + START_TIMEOUT_SECONDS
            while not _ready(server):
                if proc.poll() is not None or time.monotonic() > deadline:
                    tail = (folder / "postgres.log").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"PostgreSQL did not start on {HOST}:{port}:\n{tail}")
                time.sleep(0.2)
            yield server
        finally:
            _stop(proc)
            log.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    bin_dir = server_binaries()
    if bin_dir is None:
        pytest.skip("PostgreSQL server binaries not installed (apt-get install postgresql)")
    with running_postgres(bin_dir) as server:
        yield server


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """A new, empty database for this test (superuser URL)."""
    return postgres_server.create_database(f"test_{secrets.token_hex(6)}")
