"""A 20-date backfill under a cap of 2 runs and a rows-per-second cap, while the sensor ingests a new date.

Everything is measured from the Dagster instance's own records (RUN_STARTING events, run start and
end times, materialization metadata), never from the test's clock.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl

from assets.billing_feed import BILLING_EVENTS
from lakehouse.app.backfill import BackfillClient, ingest_assets
from tests.e2e.dagster_ui import (
    BACKFILL_TAG,
    BRONZE,
    SILVER,
    instance,
    peak_in_flight,
    rows_written,
    run_metadata_total,
    run_spans,
    running_ui,
    runs_idle,
    wait_until,
)
from tests.e2e.harness import fresh_root, lakehouse, ok
from tests.support import assert_same_content, snapshot

DAYS, FIRST = 20, "2025-01-01"
NEW_DATE = "2025-01-21"
MAX_RUNS, PER_RUN, ROWS_PER_SECOND = 2, 4, 3.0  # ~300 rows: the cap alone makes the backfill last >= 100 s
CAPS = {
    "LAKEHOUSE_BACKFILL_MAX_RUNS": str(MAX_RUNS),
    "LAKEHOUSE_BACKFILL_PARTITIONS_PER_RUN": str(PER_RUN),
    "LAKEHOUSE_BACKFILL_ROWS_PER_SECOND": str(ROWS_PER_SECOND),
}


def ops_batches(root: Path) -> pl.DataFrame:
    return pl.read_delta(str(root / "tables" / "ops" / "batches"))


def test_a_capped_backfill_keeps_two_runs_in_flight_under_the_row_rate_and_never_blocks_the_sensor(tmp_path: Path) -> None:
    staging = tmp_path / "staging"
    ok(
        lakehouse(
            "generate",
            "--root",
            str(staging),
            "--start",
            FIRST,
            "--days",
            str(DAYS + 1),
            "--events-per-day",
            "5",
            "--seed",
            "21",
        )
    )
    new_date_files = staging / "landing" / "billing_events" / NEW_DATE
    held_back = shutil.move(new_date_files, tmp_path / NEW_DATE)  # it lands later, while the backfill runs
    root = fresh_root(staging, tmp_path / "root")
    ok(lakehouse("run", "--root", str(root)))  # the 20 dates published once, sequentially: the backfill re-runs them

    reference = fresh_root(root, tmp_path / "reference")  # a plain sequential run of the same files, for the end
    shutil.copytree(held_back, reference / "landing" / "billing_events" / NEW_DATE)
    ok(lakehouse("run", "--root", str(reference)))

    with running_ui(root, tmp_path / "ui.log", **CAPS) as url:
        client = BackfillClient(url)
        backfill_id = client.launch(ingest_assets(BILLING_EVENTS), [f"2025-01-{d:02d}" for d in range(1, DAYS + 1)], {}, "capped")
        dagster = instance(root)
        # Land the new date once the backfill is under way: the sensor must ingest it without waiting for the backfill.
        wait_until(lambda: dagster.get_runs(filters=_backfill_filter(backfill_id)), 120, "the backfill's first run")
        shutil.copytree(held_back, root / "landing" / "billing_events" / NEW_DATE)
        state = client.wait(backfill_id, timeout=600, report=lambda s: None)
        assert state.succeeded, state.line()
        wait_until(
            lambda: _status(root, NEW_DATE) == "complete" and runs_idle(dagster), 300, "the sensor's runs for the new date"
        )

        backfill = run_spans(dagster, {BACKFILL_TAG: backfill_id})
        sensor = [s for s in run_spans(dagster, {"dagster/partition": NEW_DATE}) if BACKFILL_TAG not in s.tags]

    # No more than MAX_RUNS backfill runs in flight, and PER_RUN dates per run (20 dates -> 5 runs).
    assert len(backfill) == DAYS // PER_RUN
    peak = peak_in_flight(backfill)
    assert peak <= MAX_RUNS, f"{peak} backfill runs in flight"
    # The rows every backfill run wrote, over the time from the first RUN_STARTING to the last end, under the cap.
    rows = rows_written(dagster, {s.run_id for s in backfill})
    elapsed = max(s.ended for s in backfill) - min(s.starting for s in backfill)
    assert rows > 0 and rows / elapsed <= ROWS_PER_SECOND, f"{rows} rows in {elapsed:.1f}s"
    ids = {s.run_id for s in backfill}
    throttled = run_metadata_total(dagster, ids, BRONZE, "throttle_wait_seconds") + run_metadata_total(
        dagster, ids, SILVER, "throttle_wait_seconds"
    )
    assert throttled > 0, "the cap never held a write back, so it proved nothing"
    # The sensor's ingest run started while the backfill was running and ended before the backfill did.
    [ingest] = sensor
    backfill_start, backfill_end = min(s.starting for s in backfill), max(s.ended for s in backfill)
    assert backfill_start < ingest.started < backfill_end and ingest.ended < backfill_end
    print(
        f"\nbackfill: {len(backfill)} runs, peak {peak} in flight (cap {MAX_RUNS}); {rows} rows in {elapsed:.1f}s = "
        f"{rows / elapsed:.1f} rows/s (cap {ROWS_PER_SECOND}), writes held back {throttled:.1f}s in all; sensor run queued {ingest.started - ingest.created:.1f}s, "
        f"ran {ingest.ended - ingest.started:.1f}s, ended {backfill_end - ingest.ended:.1f}s before the backfill"
    )
    # Same tables as the plain sequential run, and the replayed dates kept their one complete batch each.
    assert_same_content(snapshot(root), snapshot(reference))
    assert ops_batches(root).group_by("arrival_date").len().get_column("len").max() == 1


def _backfill_filter(backfill_id: str):  # type: ignore[no-untyped-def]
    import dagster as dg

    return dg.RunsFilter(tags={BACKFILL_TAG: backfill_id})


def _status(root: Path, arrival: str) -> str | None:
    batches = ops_batches(root).filter(pl.col("arrival_date").cast(pl.String) == arrival)
    return batches.item(0, "status") if batches.height else None
