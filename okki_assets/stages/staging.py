"""Raw rows on their way to ``raw_companies``, for a window's pull and the account's alike.

A pull stages its rows as they come (every ``STAGE_CHUNK`` rows, nothing visible yet),
publishes them for its partition in one transaction at the end, and discards what it staged
when it fails, so that a failed pull leaves the previous copy untouched.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext

import duckdb

from okki_assets import storage
from okki_assets.stages.common import Connect, now

STAGE_CHUNK = 1_000


class RawStager:
    """One run's raw rows: staged every ``STAGE_CHUNK`` rows, published in one go, discarded
    on failure (``discarding_on_failure``)."""

    def __init__(self, connect: Connect, run_id: str) -> None:
        self._connect, self._run_id = connect, run_id
        self._fetched_at = now()
        self._rows: list[storage.RawRow] = []
        self.staged = 0

    @property
    def added(self) -> int:
        """Rows added so far, staged or still waiting."""
        return self.staged + len(self._rows)

    def add(self, row: storage.RawRow) -> bool:
        """Add one row; True when it completed a chunk, which is now staged."""
        self._rows.append(row)
        if len(self._rows) < STAGE_CHUNK:
            return False
        self.stage()
        return True

    def stage(self, conn: duckdb.DuckDBPyConnection | None = None) -> None:
        """Stage the rows waiting, on ``conn`` or else on a connection of their own."""
        if self._rows:
            with self._connect() if conn is None else nullcontext(conn) as writer:
                storage.stage_raw(writer, self._run_id, self._rows, self._fetched_at)
            self.staged += len(self._rows)
            self._rows.clear()

    def publish(self, conn: duckdb.DuckDBPyConnection, partition_keys: Sequence[str]) -> None:
        """Stage the rows still waiting and publish the run's rows of ``partition_keys``."""
        self.stage(conn)
        storage.publish_raw(conn, self._run_id, partition_keys)

    @contextmanager
    def discarding_on_failure(
        self, *keep: Callable[[duckdb.DuckDBPyConnection], None]
    ) -> Iterator[None]:
        """Discard what the run staged when the block fails, after writing on the same
        connection what must outlive the failure (``keep``: the fetched info payloads)."""
        try:
            yield
        except BaseException:
            with self._connect() as conn:
                for write in keep:
                    write(conn)
                storage.discard_staging(conn, self._run_id)
            raise
