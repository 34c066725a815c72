"""A SIGKILL at any commit boundary leaves readable tables, and a plain re-run converges to the uninterrupted result.

Each crash point is hit for real: the CLI runs with LAKEHOUSE_TEST_CRASH_AT and kills itself between two
commits. The crash happens in the SECOND arrival date, on top of a published first date, so the re-run
must repair a batch that updates, displaces and restates what an earlier batch already published.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest
from deltalake import DeltaTable

from lakehouse.faults import CRASH_ENV, CRASH_POINTS
from tests.e2e.conftest import FIRST_ARRIVAL
from tests.e2e.harness import fresh_root, lakehouse, ok
from tests.support import assert_same_content, silver, snapshot

pytestmark = pytest.mark.e2e

FIRST, CRASHED = FIRST_ARRIVAL, "2025-01-02"  # every point, restatement included, is reached in the second date
RESTATEMENT_KEY = ["event_date", "caused_by_batch_id"]
RESTATEMENT_FACTS = ["event_date", "rows_before", "rows_after", "net_minor_before", "net_minor_after"]
COUNTED = ["inserted", "updated", "duplicates", "stale", "quarantined"]
PUBLISHED_TABLES = ("silver/billing_events", "silver/billing_events_quarantine", "gold/daily_account_revenue")
# Each scenario is a chain of CLI subprocesses in its own root; running a few at once keeps the module fast.
WORKERS = max(2, min(4, os.cpu_count() or 2))


def unreadable_tables(root: Path) -> dict[str, str]:
    """Every Delta table under tables/, read in full; the error of each one that does not read."""
    errors = {}
    for log in sorted((root / "tables").rglob("_delta_log")):
        try:
            DeltaTable(str(log.parent)).to_pyarrow_table()
        except Exception as error:  # noqa: BLE001 - any failure to read is the finding
            errors[str(log.parent.relative_to(root))] = repr(error)
    return errors


def table_versions(root: Path, names: tuple[str, ...]) -> dict[str, int]:
    return {name: DeltaTable(str(root / "tables" / name)).version() for name in names}


def ops(root: Path, name: str) -> pl.DataFrame:
    return pl.read_delta(str(root / "tables" / "ops" / name))


@dataclass
class Recovery:
    """What was observed at each stage of one crash-and-rerun, in order."""

    root: Path
    crash: subprocess.CompletedProcess[str]
    unreadable_after_crash: dict[str, str]
    duplicate_event_ids_after_crash: int
    rerun: subprocess.CompletedProcess[str]
    idle_rerun: subprocess.CompletedProcess[str]
    versions_before_idle: dict[str, int]
    versions_after_idle: dict[str, int]


def crash_then_rerun(point: str, start: Path, root: Path) -> Recovery:
    fresh_root(start, root)
    crash = lakehouse("run", "--root", str(root), "--arrival-date", CRASHED, **{CRASH_ENV: point})
    # Between the crash and the re-run, readers must still see consistent tables: Delta commits are atomic.
    unreadable = unreadable_tables(root)
    duplicates = int(silver(root).get_column("event_id").is_duplicated().sum()) if not unreadable else -1
    # No --arrival-date: an interrupted batch is not published, so the CLI must find it by itself.
    rerun = lakehouse("run", "--root", str(root))
    before = table_versions(root, PUBLISHED_TABLES) if rerun.returncode == 0 else {}
    idle = lakehouse("run", "--root", str(root))
    after = table_versions(root, PUBLISHED_TABLES) if rerun.returncode == 0 else {}
    return Recovery(root, crash, unreadable, duplicates, rerun, idle, before, after)


@pytest.fixture(scope="module")
def recoveries(landed: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Future[Recovery]]]:
    """Every crash point's scenario, run WORKERS at a time in the background; each test waits only for its own."""
    start = fresh_root(landed, tmp_path_factory.mktemp("first_date") / "root")
    ok(lakehouse("run", "--root", str(start), "--arrival-date", FIRST))  # built once, copied into each scenario's root
    workdir = tmp_path_factory.mktemp("crashes")
    pool = ThreadPoolExecutor(max_workers=WORKERS)
    try:
        yield {point: pool.submit(crash_then_rerun, point, start, workdir / point) for point in CRASH_POINTS}
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_rerun_after_sigkill_at_commit_boundary_converges_to_uninterrupted_result(
    point: str, recoveries: dict[str, Future[Recovery]], reference: Path
) -> None:
    recovery = recoveries[point].result()
    root, crash, rerun = recovery.root, recovery.crash, recovery.rerun

    assert crash.returncode == -signal.SIGKILL, f"{point} was not reached:\n{crash.stdout}\n{crash.stderr[-4000:]}"
    assert recovery.unreadable_after_crash == {}
    assert recovery.duplicate_event_ids_after_crash == 0

    ok(rerun)
    assert f"{CRASHED}  ok" in rerun.stdout, rerun.stdout
    assert_same_content(snapshot(root), snapshot(reference))

    # Restatements are recorded exactly once, with the same before/after facts as without the crash.
    restatements, expected = ops(root, "restatements"), ops(reference, "restatements")
    assert restatements.filter(pl.struct(RESTATEMENT_KEY).is_duplicated()).is_empty(), restatements
    assert restatements.height == expected.height
    assert set(restatements.select(RESTATEMENT_FACTS).rows()) == set(expected.select(RESTATEMENT_FACTS).rows())

    batches = ops(root, "batches")
    assert batches.get_column("status").to_list() == ["complete"] * 3, batches
    unbalanced = batches.filter(pl.col("records_in") != pl.sum_horizontal(COUNTED))
    assert unbalanced.is_empty(), unbalanced.select("batch_id", "arrival_date", "records_in", *COUNTED)

    # Once converged, another run has nothing to do and commits nothing.
    ok(recovery.idle_rerun)
    assert "nothing to run" in recovery.idle_rerun.stdout, recovery.idle_rerun.stdout
    assert recovery.versions_after_idle == recovery.versions_before_idle
