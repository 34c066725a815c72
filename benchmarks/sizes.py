"""Benchmark sizes: `full` is the issue's; `medium` is for a quick look; `smoke` is what CI runs (never timed)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Size:
    name: str
    e2e_events: int  # scenario 1: one arrival batch end to end
    apply_batch: int  # scenario 2: the batch silver applies
    histories: tuple[int, int]  # scenario 2: the small and the large history (rows)
    day_events: int  # scenario 3: one big day
    backfill_days: int  # scenario 4
    backfill_events: int  # events per backfilled day
    batches: tuple[int, int]  # scenario 5: few and many batches already processed
    small_batch_events: int  # scenario 5: events per small batch
    maintain_every: int  # scenario 5: table upkeep every this many batches
    repeats: int
    trivial_runs: int  # trivial Dagster materializations timed per repeat
    small_date_events: int  # scenario 7: one small arrival date through Dagster, against its own floor


SIZES = {
    "smoke": Size("smoke", 2_000, 1_000, (30_000, 90_000), 4_000, 3, 200, (2, 6), 50, 3, 1, 2, 2_000),
    "medium": Size("medium", 100_000, 100_000, (1_000_000, 10_000_000), 500_000, 10, 500, (10, 60), 50, 25, 3, 5, 2_000),
    "full": Size("full", 1_000_000, 100_000, (1_000_000, 10_000_000), 5_000_000, 30, 2_000, (10, 1_000), 100, 100, 3, 5, 2_000),
}
