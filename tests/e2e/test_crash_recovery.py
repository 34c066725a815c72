"""A SIGKILL at any fault point leaves readable tables, and a plain re-run converges to the uninterrupted result.

Each point of faults.CRASH_POINTS is hit for real: the CLI runs with LAKEHOUSE_TEST_CRASH_AT and kills
itself there (between two commits, or in the middle of writing a table's data files). Published-path
points crash in the SECOND arrival date, on top of a published first date, so the re-run must repair a
batch that updates, displaces and restates what an earlier batch already published; the gated-path
points crash in a batch the publish gate holds back, and the incident-resolving point in the explicit
acceptance of that batch. A traced uninterrupted run proves every declared point is really reached.
"""

from __future__ import annotations

import json
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

from lakehouse.delta.maintenance import survey
from lakehouse.faults import CRASH_ENV, CRASH_POINTS
from tests.e2e.conftest import FIRST_ARRIVAL
from tests.e2e.harness import GATED_PATH_POINTS, fresh_root, lakehouse, ok
from tests.support import assert_same_content, event, land, silver, snapshot

FIRST, CRASHED, GATED = FIRST_ARRIVAL, "2025-01-02", "2025-01-04"
ACCEPT = ("--arrival-date", GATED, "--max-rejected-fraction", "1")
RESTATEMENT_KEY = ["event_date", "caused_by_batch_id"]
RESTATEMENT_FACTS = ["event_date", "rows_before", "rows_after", "net_minor_before", "net_minor_after"]
COUNTED = ["inserted", "updated", "duplicates", "stale", "quarantined"]
PUBLISHED_TABLES = ("silver/billing_events", "silver/billing_events_quarantine", "gold/daily_account_revenue")
WRITTEN_BY = {"during_bronze_write": "bronze/billing_events", "during_ledger_write": "ops/billing_events_ledger"}
WRITTEN_BY |= {"during_silver_write": "silver/billing_events", "during_gold_write": "gold/daily_account_revenue"}
# Each scenario is a chain of CLI subprocesses in its own root; running a few at once keeps the module fast.
WORKERS = max(2, min(4, os.cpu_count() or 2))


@dataclass(frozen=True)
class Scenario:
    """Where a crash starts, which command crashes and re-runs, and which uninterrupted root it must equal."""

    start: str
    reference: str
    crashed_run: tuple[str, ...]
    rerun: tuple[str, ...]  # what the operator types afterwards: a plain run, or the same explicit acceptance
    converged_exit: int  # a gated batch stays gated: its re-run fails the same way the uninterrupted run did


SECOND_DATE = Scenario("first_date", "reference", ("--arrival-date", CRASHED), (), 0)
GATED_BATCH = Scenario("gated_pending", "gated", ("--arrival-date", GATED), (), 1)
ACCEPTED_BATCH = Scenario("gated", "accepted", ACCEPT, ACCEPT, 0)
SCENARIOS = {point: SECOND_DATE for point in CRASH_POINTS if point not in GATED_PATH_POINTS} | {
    "after_incident_record": GATED_BATCH,
    "after_gated_batch_record": GATED_BATCH,
    "after_incident_resolve": ACCEPTED_BATCH,
}


def land_gated_batch(root: Path) -> None:
    """An arrival date whose 5 malformed lines in 25 (20%) break the 5% publish gate."""
    valid = [event(f"gate-{i}", ts=f"2025-01-04T10:{i:02d}:00Z", account="acct_gate", amount=100 + i) for i in range(20)]
    land(root, GATED, "part-0000.jsonl", [*valid, *(f"not json {i}" for i in range(5))])


def unreadable_tables(root: Path) -> dict[str, str]:
    """Every Delta table under tables/, read in full; the error of each one that does not read."""
    errors = {}
    for log in sorted((root / "tables").rglob("_delta_log")):
        try:
            DeltaTable(str(log.parent)).to_pyarrow_table()
        except Exception as error:  # noqa: BLE001 - any failure to read is the finding
            errors[str(log.parent.relative_to(root))] = repr(error)
    return errors


def table_versions(root: Path) -> dict[str, int]:
    return {
        str(log.parent.relative_to(root)): DeltaTable(str(log.parent)).version() for log in (root / "tables").rglob("_delta_log")
    }


def ops(root: Path, name: str) -> pl.DataFrame:
    return pl.read_delta(str(root / "tables" / "ops" / name))


def orphans(root: Path) -> dict[str, int]:
    return {found.table: len(found.orphans) for found in survey(root, 168) if found.orphans}


@dataclass
class Recovery:
    """What was observed at each stage of one crash-and-rerun, in order."""

    root: Path
    crash: subprocess.CompletedProcess[str]
    unreadable_after_crash: dict[str, str]
    duplicate_event_ids_after_crash: int
    orphans_after_crash: dict[str, int]
    rerun: subprocess.CompletedProcess[str]
    idle_rerun: subprocess.CompletedProcess[str]
    versions_before_idle: dict[str, int]
    versions_after_idle: dict[str, int]


def crash_then_rerun(point: str, scenario: Scenario, start: Path, root: Path) -> Recovery:
    fresh_root(start, root)
    crash = lakehouse("run", "--root", str(root), *scenario.crashed_run, **{CRASH_ENV: point})
    # Between the crash and the re-run, readers must still see consistent tables: Delta commits are atomic.
    unreadable = unreadable_tables(root)
    duplicates = int(silver(root).get_column("event_id").is_duplicated().sum()) if not unreadable else -1
    left_over = orphans(root)
    # A plain run: an interrupted batch is not published, so the CLI must find it by itself.
    rerun = lakehouse("run", "--root", str(root), *scenario.rerun)
    before = table_versions(root)
    idle = lakehouse("run", "--root", str(root))
    return Recovery(root, crash, unreadable, duplicates, left_over, rerun, idle, before, table_versions(root))


@pytest.fixture(scope="module")
def prepared(landed: Path, reference: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The start and reference roots of every scenario, each built once by uninterrupted runs (the last two traced)."""
    base = tmp_path_factory.mktemp("prepared")
    first_date = fresh_root(landed, base / "first_date")
    ok(lakehouse("run", "--root", str(first_date), "--arrival-date", FIRST))
    gated_pending = fresh_root(reference, base / "gated_pending")
    land_gated_batch(gated_pending)
    # The traced chain: every arrival date from scratch (the last one gated), then its explicit acceptance.
    gated = fresh_root(landed, base / "gated")
    land_gated_batch(gated)
    held = lakehouse("run", "--root", str(gated), **{CRASH_ENV: f"trace:{base / 'trace-gated'}"})
    assert held.returncode == 1 and f"{GATED}  FAILED" in held.stdout, held.stdout + held.stderr[-4000:]
    accepted = fresh_root(gated, base / "accepted")
    ok(lakehouse("run", "--root", str(accepted), *ACCEPT, **{CRASH_ENV: f"trace:{base / 'trace-accepted'}"}))
    return {
        "first_date": first_date,
        "reference": reference,
        "gated_pending": gated_pending,
        "gated": gated,
        "accepted": accepted,
        "traces": base,
    }


@pytest.fixture(scope="module")
def recoveries(prepared: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Future[Recovery]]]:
    """Every crash point's scenario, run WORKERS at a time in the background; each test waits only for its own."""
    workdir = tmp_path_factory.mktemp("crashes")
    pool = ThreadPoolExecutor(max_workers=WORKERS)
    try:
        yield {
            point: pool.submit(crash_then_rerun, point, scenario, prepared[scenario.start], workdir / point)
            for point, scenario in SCENARIOS.items()
        }
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def test_an_uninterrupted_run_reaches_every_declared_fault_point(prepared: dict[str, Path]) -> None:
    reached = set()
    for name in ("trace-gated", "trace-accepted"):
        reached |= set((prepared["traces"] / name).read_text().split())
    assert reached == set(CRASH_POINTS), f"never reached: {sorted(set(CRASH_POINTS) - reached)}"


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_rerun_after_sigkill_at_fault_point_converges_to_uninterrupted_result(
    point: str, recoveries: dict[str, Future[Recovery]], prepared: dict[str, Path]
) -> None:
    recovery, scenario = recoveries[point].result(), SCENARIOS[point]
    root, crash, rerun, reference = recovery.root, recovery.crash, recovery.rerun, prepared[scenario.reference]

    assert crash.returncode == -signal.SIGKILL, f"{point} was not reached:\n{crash.stdout}\n{crash.stderr[-4000:]}"
    assert recovery.unreadable_after_crash == {}
    assert recovery.duplicate_event_ids_after_crash == 0
    if point in WRITTEN_BY:  # killed between its data files and its commit: the files are there, unreferenced
        assert recovery.orphans_after_crash.get(WRITTEN_BY[point], 0) > 0, recovery.orphans_after_crash
    else:
        assert recovery.orphans_after_crash == {}

    assert rerun.returncode == scenario.converged_exit, f"{rerun.stdout}\n{rerun.stderr[-4000:]}"
    assert_same_content(snapshot(root), snapshot(reference))

    # Restatements are recorded exactly once, with the same before/after facts as without the crash.
    restatements, expected = ops(root, "restatements"), ops(reference, "restatements")
    assert restatements.filter(pl.struct(RESTATEMENT_KEY).is_duplicated()).is_empty(), restatements
    assert sorted(restatements.select(RESTATEMENT_FACTS).rows()) == sorted(expected.select(RESTATEMENT_FACTS).rows())

    # Batch records and incidents end as they would have: same statuses, counts conserved, no duplicates.
    batches = ops(root, "batches")
    assert sorted(batches.select("batch_id", "status").rows()) == sorted(
        ops(reference, "batches").select("batch_id", "status").rows()
    )
    unbalanced = batches.filter(pl.col("records_in") != pl.sum_horizontal(COUNTED))
    assert unbalanced.is_empty(), unbalanced.select("batch_id", "arrival_date", "records_in", *COUNTED)
    incident_facts = ["incident_id", "failure_mode", "status", "resolved_by_batch_id"]
    if (reference / "tables" / "ops" / "incidents").exists():
        assert sorted(ops(root, "incidents").select(incident_facts).rows()) == sorted(
            ops(reference, "incidents").select(incident_facts).rows()
        )

    # Once converged, another run changes nothing (a gated batch is judged again and commits nothing).
    assert recovery.idle_rerun.returncode == scenario.converged_exit, recovery.idle_rerun.stdout
    if scenario.converged_exit == 0:
        assert "nothing to run" in recovery.idle_rerun.stdout, recovery.idle_rerun.stdout
    assert recovery.versions_after_idle == recovery.versions_before_idle


def test_status_reports_the_orphans_of_a_killed_write_and_maintain_keeps_them_inside_the_window(
    recoveries: dict[str, Future[Recovery]], tmp_path: Path
) -> None:
    root = fresh_root(recoveries["during_bronze_write"].result().root, tmp_path / "root")
    left = orphans(root)["bronze/billing_events"]
    history = {table: DeltaTable(str(root / table)).version() for table in table_versions(root)}

    status = json.loads(ok(lakehouse("status", "--root", str(root), "--json")).stdout)
    assert status["orphan_files"]["bronze/billing_events"]["files"] == left
    assert status["orphan_files"]["bronze/billing_events"]["bytes"] > 0
    assert "Orphan data files (left by killed writes): " in ok(lakehouse("status", "--root", str(root))).stdout

    before = snapshot(root)
    kept = ok(lakehouse("maintain", "--root", str(root)))  # default window: 168 h, and every file here is minutes old
    assert "removed 0 files" in kept.stdout, kept.stdout
    assert orphans(root)["bronze/billing_events"] == left
    for table, latest in history.items():  # time travel to every version inside the window still reads
        for version in range(latest + 1):
            DeltaTable(str(root / table), version=version).to_pyarrow_table()

    ok(lakehouse("maintain", "--root", str(root), "--retention-hours", "0"))
    assert orphans(root) == {}
    assert unreadable_tables(root) == {}
    assert_same_content(snapshot(root), before)
    after = json.loads(ok(lakehouse("status", "--root", str(root), "--json")).stdout)
    assert after["orphan_files"] == {}
