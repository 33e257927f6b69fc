"""``okki-assets demo --target sqlite|postgres``: the demo's target as a SQL table.

``sqlite`` writes ``data/demo_target.sqlite`` in the project; ``postgres`` starts a throwaway
PostgreSQL server (Debian's ``postgresql`` package; as the ``postgres`` user when run as root) on
a free port of 127.0.0.1 for the length of the demo. At the end the demo prints what the table
holds.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

import sqlalchemy as sa

from okki_assets.targets.port import TargetSettings

DEMO_SQLITE = "data/demo_target.sqlite"
DEMO_PASSWORD = "demo-only-password"
TARGET_KINDS = ("sim", "sqlite", "postgres")


def postgres_bin() -> Path | None:
    """The newest installed PostgreSQL's bin folder (Debian's layout), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def _as(user: str, argv: list[str]) -> list[str]:
    return ["runuser", "-u", user, "--", *argv] if os.geteuid() == 0 else argv


@contextmanager
def throwaway_postgres() -> Iterator[str]:
    """A PostgreSQL server in a temporary folder for the block; its URL (password login)."""
    bin_dir = postgres_bin()
    if bin_dir is None:
        raise RuntimeError("PostgreSQL is not installed (Debian: apt-get install postgresql)")
    home = Path(tempfile.mkdtemp(prefix="okki-demo-pg-"))
    (home / "pw").write_text(DEMO_PASSWORD)
    if os.geteuid() == 0:
        shutil.chown(home, "postgres", "postgres")
        shutil.chown(home / "pw", "postgres", "postgres")
    data = str(home / "data")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    initdb = [str(bin_dir / "initdb"), "-D", data, "-U", "postgres", "-A", "scram-sha-256"]
    initdb += [f"--pwfile={home / 'pw'}", "--no-sync"]
    subprocess.run(_as("postgres", initdb), check=True, capture_output=True)
    pg_ctl = [str(bin_dir / "pg_ctl"), "-D", data]
    options = f"-p {port} -k {home} -c listen_addresses=127.0.0.1 -c fsync=off"
    start = [*pg_ctl, "-o", options, "-l", f"{home}/log", "-w", "start"]
    subprocess.run(_as("postgres", start), check=True, capture_output=True)
    try:
        yield f"postgresql://postgres:{DEMO_PASSWORD}@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            _as("postgres", [*pg_ctl, "-m", "fast", "-w", "stop"]), check=False, capture_output=True
        )
        shutil.rmtree(home, ignore_errors=True)


@contextmanager
def demo_target(kind: str, project_dir: Path) -> Iterator[str | None]:
    """The TARGET_URL of the demo's target (None: the target simulator)."""
    if kind == "sqlite":
        path = project_dir / DEMO_SQLITE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        yield f"sqlite:///{path}"
    elif kind == "postgres":
        with throwaway_postgres() as url:
            yield url
    else:
        yield None


def print_table(url: str, out: TextIO, table: str = TargetSettings.table, sample: int = 5) -> None:
    """What the target table holds: live and soft-deleted rows, its columns, a few rows."""
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as conn:
            t = sa.Table(table, sa.MetaData(), autoload_with=conn)
            live = conn.execute(
                sa.select(sa.func.count()).select_from(t).where(t.c._deleted_at.is_(None))
            ).scalar_one()
            deleted = conn.execute(
                sa.select(sa.func.count()).select_from(t).where(t.c._deleted_at.is_not(None))
            ).scalar_one()
            rows = conn.execute(sa.select(t).order_by(t.c.id).limit(sample)).mappings().all()
    finally:
        engine.dispose()
    shown = sa.engine.make_url(url).render_as_string(hide_password=True)
    out.write(
        f"table {table} at {shown}: {live} live rows, {deleted} soft-deleted\n"
        f"  columns: {', '.join(c.name for c in t.columns)}\n"
    )
    for row in rows:
        name, synced = row.get("fullName", ""), row["_synced_at"]
        out.write(f"  {row['id']:>10}  {str(name)[:40]:<40}  synced {synced}\n")
