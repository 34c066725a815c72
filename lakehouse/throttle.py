"""A records-per-second cap shared by every backfill run writing under one root.

The budget lives in a small file under the root, so two backfill runs in two processes share it.
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
        wait = max(0.0, ready_at - time.time())
        time.sleep(wait)
        self.waited_seconds += wait
        self.rows += rows
        return wait


def backfill_rate_limit(root: str | Path, rows_per_second: float) -> RowRateLimit | None:
    """The root's shared cap, or None when there is no cap (0).

    An object-store root keeps its budget in the local temp folder: shared by the runs of this
    machine only (like the write lock, see README).
    """
    if rows_per_second <= 0:
        return None
    if "://" in str(root):
        digest = hashlib.sha256(str(root).encode()).hexdigest()[:16]
        return RowRateLimit(Path(tempfile.gettempdir()) / f"lakehouse-backfill-{digest}.budget", rows_per_second)
    return RowRateLimit(Path(root) / "tables" / "ops" / "_locks" / "backfill_rows_per_second.budget", rows_per_second)
