"""A backfill run over arrival dates whose files changed restates gold exactly as regular runs would.

In process (the daemon-driven path is test_backfill_caps.py): one backfill run carries both dates,
as BackfillPolicy.multi_run makes it, tagged `dagster/backfill` as Dagster tags it, under a row cap;
then the gold refresh sensor's requests run, as the daemon would run them.
"""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import dagster as dg
import polars as pl

from assets.billing_feed import BILLING_EVENTS
from lakehouse.app.resources import BACKFILL_TAG, RANGE_END_TAG, RANGE_START_TAG
from lakehouse.app.runner import run_arrival_dates
from lakehouse.definitions import build_definitions
from lakehouse.delta.storage import read_table, table_uri
from tests.support import assert_same_content, event, land, settings_for, snapshot

D1, D2 = "2025-01-10", "2025-01-11"
RESTATEMENT_FACTS = ["event_date", "caused_by_batch_id", "rows_before", "rows_after", "net_minor_before", "net_minor_after"]


def restatements(root: Path) -> pl.DataFrame:
    return read_table(table_uri(root, "ops", "restatements")).select(RESTATEMENT_FACTS).sort(RESTATEMENT_FACTS)


def test_a_backfill_of_changed_arrival_dates_restates_gold_like_a_regular_run(tmp_path: Path) -> None:
    root, regular = tmp_path / "backfilled", tmp_path / "regular"
    land(root, D1, "a.jsonl", [event("e1", ts="2025-01-10T08:00:00Z"), event("e2", ts="2025-01-09T08:00:00Z", amount=50)])
    land(root, D2, "a.jsonl", [event("e3", ts="2025-01-11T08:00:00Z")])
    run_arrival_dates(settings_for(root), [date(2025, 1, 10), date(2025, 1, 11)], instance=dg.DagsterInstance.ephemeral())
    # Re-deliveries: a correction of e2 (published on event date 01-09) and a late event for 01-10.
    land(root, D1, "b.jsonl", [event("e2", 2, ts="2025-01-09T08:00:00Z", amount=75)])
    land(root, D2, "b.jsonl", [event("e4", ts="2025-01-10T20:00:00Z", amount=30)])
    shutil.copytree(root, regular)

    settings = settings_for(root, backfill_rows_per_second=1000.0, backfill_partitions_per_run=2)
    defs, instance = build_definitions(settings), dg.DagsterInstance.ephemeral()
    backfill = defs.resolve_job_def(BILLING_EVENTS.ingest_job).execute_in_process(
        instance=instance, tags={BACKFILL_TAG: "bf-test", RANGE_START_TAG: D1, RANGE_END_TAG: D2}
    )
    assert backfill.success
    silver_meta = backfill.asset_materializations_for_node("silver_billing_events")[-1].metadata
    assert silver_meta["backfill_rows_per_second_cap"].value == 1000.0 and silver_meta["backfill_id"].value == "bf-test"
    sensor = defs.resolve_sensor_def("billing_events_gold_refresh_sensor")
    context = dg.build_sensor_context(instance=instance, resources={"lakehouse": defs.resources["lakehouse"]}, definitions=defs)
    requests = sensor(context).run_requests
    assert len(requests) == 2  # one gold refresh per re-published batch
    for request in requests:
        assert defs.resolve_job_def(BILLING_EVENTS.gold_job).execute_in_process(instance=instance, tags=request.tags).success

    run_arrival_dates(settings_for(regular), [date(2025, 1, 10), date(2025, 1, 11)], instance=dg.DagsterInstance.ephemeral())
    assert_same_content(snapshot(root), snapshot(regular))
    restated = restatements(root)
    assert set(restated.get_column("event_date").to_list()) == {date(2025, 1, 9), date(2025, 1, 10)}
    assert restated.equals(restatements(regular))
