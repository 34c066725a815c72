"""The run a published batch causes: one gold refresh, requested alike by the sensor and the CLI."""

from datetime import date

import dagster as dg

from lakehouse.app.resources import BATCH_TAG, PRIORITY_TAG, RANGE_END_TAG, RANGE_START_TAG, REGULAR_PRIORITY, TOUCHED_DATES_TAG


def gold_refresh_request(batch_id: str, arrival_date: date, touched: list[date], event_start: date) -> dg.RunRequest:
    """One gold run per published batch, over the range of event dates it touched (only those are recomputed)."""
    in_range = [d for d in touched if d >= event_start] or [max(arrival_date, event_start)]
    return dg.RunRequest(
        run_key=f"gold:{batch_id}",
        tags={
            RANGE_START_TAG: min(in_range).isoformat(),
            RANGE_END_TAG: max(in_range).isoformat(),
            BATCH_TAG: batch_id,
            TOUCHED_DATES_TAG: ",".join(d.isoformat() for d in touched),
            PRIORITY_TAG: REGULAR_PRIORITY,
        },
    )
