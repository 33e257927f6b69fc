"""Throwaway database servers for the SQL target's tests: PostgreSQL and MariaDB, real ones.

Each is Debian's server (``postgresql``, ``mariadb-server``) started in a temporary directory on
a free port of 127.0.0.1, with a password login (so a wrong password is refused as in
production), and stopped at the end of the pytest session. Under pytest-xdist each worker starts
its own. When the suite runs as root, the servers run as their system users (``postgres``,
``mysql``): initdb refuses root. A test asks for a fresh database (``new_database``), so tests
never see each other's tables. Missing binaries skip the tests that need them, naming the
package.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import sqlalchemy as sa

from okki_assets_tests.ports import free_port

PASSWORD = "s3cret-pw"
START_TIMEOUT = 60.0


def _as_user(user: str, argv: list[str]) -> list[str]:
    return ["runuser", "-u", user, "--", *argv] if os.geteuid() == 0 else argv


def _own(path: Path, user: str) -> None:
    if os.geteuid() == 0:
        entry = pwd.getpwnam(user)
        for root, dirs, files in os.walk(path):
            for name in [root, *(os.path.join(root, n) for n in dirs + files)]:
                os.chown(name, entry.pw_uid, entry.pw_gid)


@dataclass
class DbServer:
    """A running server: its admin URL and the databases made for tests."""

    kind: str  # "postgresql" or "mariadb"
    port: int
    home: Path
    admin_url: str
    process: subprocess.Popen[bytes] | None = None
    databases: list[str] = field(default_factory=list)

    def url(self, database: str, password: str = PASSWORD) -> str:
        scheme = "postgresql" if self.kind == "postgresql" else "mariadb"
        user = "postgres" if self.kind == "postgresql" else "okki"
        return f"{scheme}://{user}:{password}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh, empty database; its URL (with the password)."""
        name = "t_" + uuid.uuid4().hex[:12]
        engine = sa.create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {name}")
        engine.dispose()
        self.databases.append(name)
        return self.url(name)


def _wait(url: str, what: str, log: Path, port: int) -> None:
    """Until the server answers SQL; the port is polled with a plain socket first (a driver
    that fails half-way through its handshake leaves its socket for the garbage collector)."""
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            engine = sa.create_engine(url)
            with engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
            engine.dispose()
            return
        except (OSError, sa.exc.OperationalError):
            if time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                raise RuntimeError(f"{what} did not start: {tail}") from None
            time.sleep(0.2)


def postgres_binaries() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def start_postgres() -> DbServer:
    bin_dir = postgres_binaries()
    if bin_dir is None:
        pytest.skip("PostgreSQL is not installed (Debian package postgresql)")
    home = Path(tempfile.mkdtemp(prefix="okki-pg-"))
    (home / "pw").write_text(PASSWORD)
    (home / "sock").mkdir()
    _own(home, "postgres")
    os.chmod(home, 0o700)
    data, log = home / "data", home / "log"
    subprocess.run(
        _as_user("postgres", [str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres",
                              "-A", "scram-sha-256", f"--pwfile={home / 'pw'}", "--no-sync",
                              "-E", "UTF8", "--locale=C"]),
        check=True, capture_output=True,
    )  # fmt: skip
    port = free_port()
    options = (
        f"-p {port} -k {home / 'sock'} -c listen_addresses=127.0.0.1 -c fsync=off"
        " -c synchronous_commit=off -c full_page_writes=off -c max_connections=60"
    )
    subprocess.run(
        _as_user("postgres", [str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options,
                              "-l", str(log), "-w", "-t", "60", "start"]),
        check=True, capture_output=True,
    )  # fmt: skip
    admin = f"postgresql+psycopg://postgres:{PASSWORD}@127.0.0.1:{port}/postgres"
    server = DbServer("postgresql", port, home, admin)
    try:
        _wait(admin, "PostgreSQL", log, port)
    except BaseException:
        stop_postgres(server)
        raise
    return server


def stop_postgres(server: DbServer) -> None:
    bin_dir = postgres_binaries()
    assert bin_dir is not None
    subprocess.run(
        _as_user("postgres", [str(bin_dir / "pg_ctl"), "-D", str(server.home / "data"),
                              "-m", "immediate", "-w", "stop"]),
        check=False, capture_output=True,
    )  # fmt: skip
    shutil.rmtree(server.home, ignore_errors=True)


def start_mariadb() -> DbServer:
    mariadbd = shutil.which("mariadbd") or (
        "/usr/sbin/mariadbd" if Path("/usr/sbin/mariadbd").exists() else None
    )
    install = shutil.which("mariadb-install-db") or "/usr/bin/mariadb-install-db"
    if mariadbd is None or not Path(install).exists():
        pytest.skip("MariaDB is not installed (Debian package mariadb-server)")
    home = Path(tempfile.mkdtemp(prefix="okki-maria-"))
    data, log, sock = home / "data", home / "log", home / "mysqld.sock"
    data.mkdir()
    _own(home, "mysql")
    user = ["--user=mysql"] if os.geteuid() == 0 else []
    subprocess.run(
        [install, "--no-defaults", *user, f"--datadir={data}", "--skip-test-db",
         "--auth-root-authentication-method=normal"],
        check=True, capture_output=True,
    )  # fmt: skip
    port = free_port()
    process = subprocess.Popen(
        [mariadbd, "--no-defaults", *user, f"--datadir={data}", f"--port={port}",
         "--bind-address=127.0.0.1", f"--socket={sock}", f"--pid-file={home / 'pid'}",
         f"--log-error={log}", "--innodb-flush-log-at-trx-commit=0", "--skip-log-bin",
         "--innodb-buffer-pool-size=64M", "--performance-schema=off",
         "--sql-mode=STRICT_ALL_TABLES"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    root = f"mariadb+pymysql://root@localhost/mysql?unix_socket={sock}"
    server = DbServer("mariadb", port, home, root, process)
    try:
        _wait(root, "MariaDB", log, port)
        engine = sa.create_engine(root, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.exec_driver_sql(f"CREATE USER 'okki'@'%%' IDENTIFIED BY '{PASSWORD}'")
            conn.exec_driver_sql("GRANT ALL PRIVILEGES ON *.* TO 'okki'@'%%'")
        engine.dispose()
    except BaseException:
        stop_mariadb(server)
        raise
    server.admin_url = server.url("mysql").replace("mariadb://", "mariadb+pymysql://")
    return server


def stop_mariadb(server: DbServer) -> None:
    if server.process is not None:
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()
    shutil.rmtree(server.home, ignore_errors=True)


@pytest.fixture(scope="session")
def postgresql_server() -> Iterator[DbServer]:
    server = start_postgres()
    try:
        yield server
    finally:
        stop_postgres(server)


@pytest.fixture(scope="session")
def mariadb_server() -> Iterator[DbServer]:
    server = start_mariadb()
    try:
        yield server
    finally:
        stop_mariadb(server)


@pytest.fixture(params=["postgresql", "mariadb", "sqlite"])
def sql_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database of each kind: a new database on the session's server, or a new file."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'target.sqlite'}"
    server: DbServer = request.getfixturevalue(f"{request.param}_server")
    return server.new_database()
