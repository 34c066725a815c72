"""A SIGKILL at any commit boundary leaves readable tables, and a plain re-run converges to the uninterrupted result.

Each crash point is hit for real: the CLI runs with LAKEHOUSE_TEST_CRASH_AT and kills itself between two
commits. The crash happens in the SECOND arrival date, on top of a published first date, so the re-run
must repair a batch that updates, displaces and restates what an earlier batch already published.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from deltalake import DeltaTable

from lakehouse.faults import CRASH_ENV, CRASH_POINTS
from tests.support import assert_same_content, silver, snapshot

pytestmark = pytest.mark.e2e

LAKEHOUSE = str(Path(sys.executable).with_name("lakehouse"))
FIRST, CRASHED = "2025-01-01", "2025-01-02"  # every point, restatement included, is reached in the second date
RESTATEMENT_KEY = ["event_date", "caused_by_batch_id"]
RESTATEMENT_FACTS = ["event_date", "rows_before", "rows_after", "net_minor_before", "net_minor_after"]
COUNTED = ["inserted", "updated", "duplicates", "stale", "quarantined"]
PUBLISHED_TABLES = ("silver/billing_events", "silver/billing_events_quarantine", "gold/daily_account_revenue")


def lakehouse(*args: str, crash_at: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "LAKEHOUSE_ROOT", CRASH_ENV)}  # instance under the root
    if crash_at:
        env[CRASH_ENV] = crash_at
    return subprocess.run([LAKEHOUSE, *args], env=env, capture_output=True, text=True, timeout=180)


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr[-4000:]}"
    return result


def fresh_root(source: Path, destination: Path) -> Path:
    """A copy of a root's landing files and tables; the Dagster instance is not copied, each root gets its own."""
    shutil.copytree(source, destination, ignore=shutil.ignore_patterns("dagster_home"))
    return destination


def delta_tables(root: Path) -> list[Path]:
    return sorted(log.parent for log in (root / "tables").rglob("_delta_log"))


def table_versions(root: Path, names: tuple[str, ...]) -> dict[str, int]:
    return {name: DeltaTable(str(root / "tables" / name)).version() for name in names}


def ops(root: Path, name: str) -> pl.DataFrame:
    return pl.read_delta(str(root / "tables" / "ops" / name))


@pytest.fixture(scope="module")
def landed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Generated once: 3 arrival dates with late data, corrections and malformed records."""
    root = tmp_path_factory.mktemp("landed")
    ok(lakehouse("generate", "--root", str(root), "--start", FIRST, "--days", "3", "--events-per-day", "150", "--seed", "11"))
    return root


@pytest.fixture(scope="module")
def reference(landed: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uninterrupted run every recovery must reproduce."""
    root = fresh_root(landed, tmp_path_factory.mktemp("reference") / "root")
    ok(lakehouse("run", "--root", str(root)))
    return root


@pytest.fixture(scope="module")
def first_date_published(landed: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The state each crash starts from, built once and copied: only the first arrival date published."""
    root = fresh_root(landed, tmp_path_factory.mktemp("first_date") / "root")
    ok(lakehouse("run", "--root", str(root), "--arrival-date", FIRST))
    return root


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_rerun_after_sigkill_at_commit_boundary_converges_to_uninterrupted_result(
    point: str, first_date_published: Path, reference: Path, tmp_path: Path
) -> None:
    root = fresh_root(first_date_published, tmp_path / "root")

    crashed = lakehouse("run", "--root", str(root), "--arrival-date", CRASHED, crash_at=point)
    assert crashed.returncode == -signal.SIGKILL, f"{point} was not reached:\n{crashed.stdout}\n{crashed.stderr[-4000:]}"

    # Between the crash and the re-run, readers must still see consistent tables: Delta commits are atomic.
    for table in delta_tables(root):
        DeltaTable(str(table)).to_pyarrow_table()
    assert silver(root).get_column("event_id").is_duplicated().sum() == 0

    # No --arrival-date: an interrupted batch is not published, so the CLI must find it by itself.
    recovered = ok(lakehouse("run", "--root", str(root)))
    assert CRASHED in recovered.stdout, recovered.stdout
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
    before = table_versions(root, PUBLISHED_TABLES)
    idle = ok(lakehouse("run", "--root", str(root)))
    assert "nothing to run" in idle.stdout, idle.stdout
    assert table_versions(root, PUBLISHED_TABLES) == before
