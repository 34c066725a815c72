"""The backfill row cap: one budget shared by processes, paid before writing, and never applied to regular runs."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

from lakehouse.app.resources import BACKFILL_TAG, LakehouseResource
from lakehouse.batches.throttle import RowRateLimit, backfill_rate_limit
from lakehouse.settings import Settings

RATE, WRITES, ROWS = 200.0, 4, 25  # two processes x 4 writes x 25 rows = 200 rows: at least 1 s at 200 rows/s


def _write_paced(state_file: str, marks: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    limit = RowRateLimit(Path(state_file), RATE)
    for _ in range(WRITES):
        limit.acquire(ROWS)
        marks.put(time.time())  # when this write would start


def test_two_processes_sharing_a_budget_write_no_faster_than_the_cap_together(tmp_path: Path) -> None:
    limit = backfill_rate_limit(tmp_path, RATE)
    assert limit is not None
    marks: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
    started = time.time()
    workers = [multiprocessing.Process(target=_write_paced, args=(str(limit.state_file), marks)) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    last_write = max(marks.get(timeout=5) for _ in range(2 * WRITES))
    # Every write waits for its own rows' share after all earlier reservations: 200 rows need >= 1 s from the start.
    assert last_write - started >= 2 * WRITES * ROWS / RATE


def test_a_write_of_no_rows_never_waits_and_no_cap_means_no_limit(tmp_path: Path) -> None:
    limit = RowRateLimit(tmp_path / "budget", 1.0)
    assert limit.acquire(0) == 0.0 and not limit.state_file.exists()
    assert backfill_rate_limit(tmp_path, 0.0) is None


def test_only_backfill_runs_are_throttled(tmp_path: Path) -> None:
    resource = LakehouseResource.from_settings(Settings(root=str(tmp_path), backfill_rows_per_second=10.0))
    regular, backfill = {"dagster/partition": "2025-01-01"}, {BACKFILL_TAG: "abc"}
    assert resource.rate_limit(regular) is None and resource.applied_caps(regular, 1) == {}
    assert resource.rate_limit(backfill) is not None
    assert resource.applied_caps(backfill, 4)["backfill_rows_per_second_cap"] == 10.0
