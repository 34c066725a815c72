"""A records-per-second cap shared by every backfill run writing under one root.

The budget lives in a small file under a local root, so two backfill runs in two processes share it; an
object-store root's lives in PostgreSQL (the writer lock's database), so runs on every machine share it.
A write first reserves its rows' share of time after every earlier reservation, then waits until
that share has elapsed: over any span that starts before the first reservation, the rows written
divided by the time taken stays at or under the cap. The clock paces writes; it never decides data.
"""

from __future__ import annotations

import fcntl
import hashlib
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class RowRateLimit:
    """At most `rows_per_second` rows, summed over every process that shares `state_file`.

    `waited_seconds` and `rows` add up what this process was held back and charged, for run metadata.
    """

    state_file: Path
    rows_per_second: float
    waited_seconds: float = 0.0
    rows: int = 0

    def acquire(self, rows: int) -> float:
        """Block until `rows` more rows fit under the cap; returns the seconds waited."""
        if rows <= 0:
            return 0.0
        wait = max(0.0, self._reserve(rows))
        time.sleep(wait)
        self.waited_seconds += wait
        self.rows += rows
        return wait

    def _reserve(self, rows: int) -> float:
        """Book `rows`' share of time after every earlier booking; the seconds until it has elapsed."""
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.state_file, "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)  # held for a read and a write only, never while waiting
            try:
                handle.seek(0)
                text = handle.read().strip()
                now = time.time()  # wall time, not monotonic: the budget is shared across processes
                start = max(now, float(text)) if text else now
                ready_at = start + rows / self.rows_per_second
                handle.seek(0)
                handle.truncate()
                handle.write(repr(ready_at))
                handle.flush()
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        return ready_at - time.time()


@dataclass
class SharedRowRateLimit(RowRateLimit):
    """The same budget in a PostgreSQL row keyed by the root: one atomic statement books the rows, on the
    database's clock (machines' clocks disagree; the database's is the one every run reads)."""

    dsn: str = ""

    def _reserve(self, rows: int) -> float:
        import psycopg2  # only an object-store root's budget needs it

        with psycopg2.connect(self.dsn, connect_timeout=10) as connection, connection.cursor() as cursor:
            # Two first bookings would race on CREATE TABLE IF NOT EXISTS (a duplicate catalog row): serialize them.
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext('lakehouse_backfill_budget'))")
            cursor.execute(
                "CREATE TABLE IF NOT EXISTS lakehouse_backfill_budget (root text PRIMARY KEY, ready_at double precision NOT NULL)"
            )
            cursor.execute(
                "WITH now AS (SELECT extract(epoch FROM clock_timestamp()) AS t) "
                "INSERT INTO lakehouse_backfill_budget AS b (root, ready_at) SELECT %(root)s, t + %(share)s FROM now "
                "ON CONFLICT (root) DO UPDATE SET ready_at = GREATEST(b.ready_at, (SELECT t FROM now)) + %(share)s "
                "RETURNING ready_at - (SELECT t FROM now)",
                {"root": str(self.state_file), "share": rows / self.rows_per_second},
            )
            row = cursor.fetchone()
        connection.close()
        return float(row[0]) if row else 0.0


def backfill_rate_limit(root: str | Path, rows_per_second: float, dsn: str | None = None) -> RowRateLimit | None:
    """The root's shared cap, or None when there is no cap (0).

    An object-store root keeps its budget in PostgreSQL when the writer lock's DSN is configured (every
    machine shares it), else in the local temp folder: shared by the runs of this machine only.
    """
    if rows_per_second <= 0:
        return None
    if "://" in str(root):
        from lakehouse.delta.locking import lock_dsn  # the writer lock's database: one setting for both

        if shared := lock_dsn(dsn):
            return SharedRowRateLimit(Path(str(root)), rows_per_second, dsn=shared)
        digest = hashlib.sha256(str(root).encode()).hexdigest()[:16]
        return RowRateLimit(Path(tempfile.gettempdir()) / f"lakehouse-backfill-{digest}.budget", rows_per_second)
    return RowRateLimit(Path(root) / "tables" / "ops" / "_locks" / "backfill_rows_per_second.budget", rows_per_second)
