"""Prepare every input once per invocation, reproducibly from (size, seed), under the work folder.

Landing files and synthetic histories are generated; the many-batch roots of scenario 5 are built
by the real engine, with table upkeep every `maintain_every` batches.
"""

from __future__ import annotations

import os
import shutil
from datetime import date, timedelta
from pathlib import Path

from benchmarks import data
from benchmarks.sizes import Size
from lakehouse.delta.storage import open_table


def landing(work: Path, name: str, batches: dict[date, int], seed: int, layout: str = "compact") -> None:
    """Landing files of `name`; a layout other than compact renders the compact folder's very records
    (`<name>-<layout>`: the same labels draw the same events), so layouts compare on the same data."""
    root = work / (name if layout == "compact" else f"{name}-{layout}")
    if root.exists():
        return
    for arrival, events in batches.items():
        frame = data.arrival_batch(events, seed, arrival, label=f"{name}-{arrival}")
        data.write_landing(root, frame, arrival, layout=layout, seed=seed)


def histories(work: Path, size: Size, seed: int) -> None:
    batch = work / "apply-batch.parquet"
    if not batch.exists():
        data.apply_batch(size.apply_batch, seed).write_parquet(batch)
    for rows in size.histories:
        target = work / f"history-{rows}"
        if not target.exists():
            data.write_history(target, rows, seed)


def maintain(root: Path) -> None:
    """Table upkeep between batches: compact small files, checkpoint, drop expired logs, vacuum.

    The same deltalake operations `lakehouse maintain` (another change) runs. Retention is each
    table's own (lakehouse.delta.storage.TABLE_PROPERTIES), so time travel and rollback within it keep
    working: vacuum and log cleanup only remove what fell out of it.
    """
    for log in sorted((root / "tables").glob("*/*/_delta_log")):
        table = open_table(str(log.parent))
        table.optimize.compact()
        table.create_checkpoint()
        table.cleanup_metadata()
        table.vacuum(dry_run=False)


def many_batches(work: Path, size: Size, seed: int) -> None:
    """Roots after few and after many small batches, one arrival date each, and the batch that follows."""
    from benchmarks.measures import _engine_dates, link_copy

    few, many = size.batches
    first = data.ARRIVAL - timedelta(days=many)
    dates = [first + timedelta(days=k) for k in range(many)]
    if (work / f"batches-{many}").exists():
        return
    building = work / "building"
    shutil.rmtree(building, ignore_errors=True)
    for index, arrival in enumerate(dates, start=1):
        data.write_landing(
            building, data.arrival_batch(size.small_batch_events, seed, arrival, label=f"small-{arrival}"), arrival
        )
        _engine_dates(building, [arrival])
        if index % size.maintain_every == 0:
            maintain(building)
        if index == few:
            link_copy(building, work / f"batches-{few}")
    os.rename(building, work / f"batches-{many}")
    after = data.ARRIVAL
    data.write_landing(work / "next-batch", data.arrival_batch(size.small_batch_events, seed, after, label="small-next"), after)


def everything(work: Path, size: Size, seed: int, needs: set[str]) -> None:
    """Prepare what the selected measurements read (`needs`: landing folders, "history", "batches")."""
    work.mkdir(parents=True, exist_ok=True)
    for layout in data.LAYOUTS:
        if "landing-e2e" + ("" if layout == "compact" else f"-{layout}") in needs:
            landing(work, "landing-e2e", {data.ARRIVAL: size.e2e_events}, seed, layout)
    if "landing-day-mixed" in needs:  # the big day comes from several producers, as a real feed's would
        landing(work, "landing-day", {data.ARRIVAL: size.day_events}, seed, "mixed")
    if "landing-backfill" in needs:
        backfill = {data.ARRIVAL - timedelta(days=k): size.backfill_events for k in range(size.backfill_days)}
        landing(work, "landing-backfill", backfill, seed)
    if "landing-small" in needs:  # scenario 7: the date before (run untimed first, as on a root in use) and the date
        landing(work, "landing-small", {data.ARRIVAL - timedelta(days=k): size.small_date_events for k in (1, 0)}, seed)
    if "history" in needs:
        histories(work, size, seed)
    if "batches" in needs:
        many_batches(work, size, seed)
