"""Orphan files: found per table, removed only outside the retention window, never while a writer holds a lock."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from deltalake import DeltaTable

from lakehouse.delta.locking import WriterBusyError, exclusive_writer
from lakehouse.delta.maintenance import maintain, survey
from tests.support import event, land, run_batch, snapshot

SILVER = Path("tables", "silver", "billing_events")
LOCK_NAMES = ["billing_events", "gold_daily_account_revenue"]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    land(tmp_path, "2025-01-10", "part-0000.jsonl", [event(f"e{i}", ts="2025-01-10T12:00:00Z") for i in range(5)])
    run_batch(tmp_path, "2025-01-10")
    land(tmp_path, "2025-01-11", "part-0000.jsonl", [event("e0", 2, ts="2025-01-10T13:00:00Z", amount=7)])
    run_batch(tmp_path, "2025-01-11")  # a correction: silver's first file is now only read by version 1
    return tmp_path


def plant_orphan(root: Path, name: str, age_hours: float) -> Path:
    """A copy of a live data file under a name no commit references: what a killed write leaves behind."""
    written = sorted((root / SILVER).rglob("*.parquet"))[0]
    orphan = written.with_name(name)
    shutil.copyfile(written, orphan)
    stamp = time.time() - age_hours * 3600
    os.utime(orphan, (stamp, stamp))
    return orphan


def test_survey_reports_untracked_files_as_orphans_and_not_the_files_old_versions_need(root: Path) -> None:
    orphan = plant_orphan(root, "part-killed-write.snappy.parquet", age_hours=0)

    found = {t.table: t for t in survey(root, retention_hours=168)}["silver/billing_events"]

    assert [Path(name).name for name in found.orphans] == [orphan.name]
    assert found.orphan_bytes == orphan.stat().st_size
    assert found.reclaimable == ()  # minutes old: inside the window


def test_maintain_removes_only_files_older_than_the_retention_and_time_travel_inside_it_still_reads(root: Path) -> None:
    old = plant_orphan(root, "part-old.snappy.parquet", age_hours=48)
    young = plant_orphan(root, "part-young.snappy.parquet", age_hours=1)
    before = snapshot(root)
    versions = DeltaTable(str(root / SILVER)).version()

    removed = {t.table: t for t in maintain(root, 24, LOCK_NAMES, lock_timeout_seconds=5)}

    assert [Path(name).name for name in removed["silver/billing_events"].reclaimable] == [old.name]
    assert not old.exists() and young.exists()
    after = snapshot(root)
    assert all(after[name].equals(before[name]) for name in before)
    for version in range(versions + 1):  # every version's files were written seconds ago: all inside the window
        DeltaTable(str(root / SILVER), version=version).to_pyarrow_table()


def test_maintain_with_zero_retention_removes_every_unreferenced_file_and_keeps_the_content(root: Path) -> None:
    plant_orphan(root, "part-killed-write.snappy.parquet", age_hours=0)
    before = snapshot(root)

    maintain(root, 0, LOCK_NAMES, lock_timeout_seconds=5)

    assert all(not t.orphans and not t.reclaimable for t in survey(root, 0))
    after = snapshot(root)
    assert all(after[name].equals(before[name]) for name in before)


def test_maintain_waits_for_a_live_writer_then_stops_without_removing_anything(root: Path) -> None:
    orphan = plant_orphan(root, "part-in-flight.snappy.parquet", age_hours=48)

    with (
        exclusive_writer(root, "billing_events", timeout_seconds=5),
        pytest.raises(WriterBusyError, match="another run is writing"),
    ):
        maintain(root, 0, LOCK_NAMES, lock_timeout_seconds=0.3)

    assert orphan.exists()


def test_maintain_refuses_a_negative_retention(root: Path) -> None:
    with pytest.raises(ValueError, match="retention"):
        maintain(root, -1, LOCK_NAMES, lock_timeout_seconds=1)
