"""Runs triggered by data: a landing sensor per arrival date, and gold refresh after each published batch."""

import json
from datetime import date

import dagster as dg
import polars as pl

from assets.billing_feed import BILLING_EVENTS
from lakehouse.landing import current_batch_id, fingerprint, ignored_summary, scan_landing
from lakehouse.ops import OpsTables
from lakehouse.resources import (
    BATCH_TAG,
    PRIORITY_TAG,
    RANGE_END_TAG,
    RANGE_START_TAG,
    REGULAR_PRIORITY,
    TOUCHED_DATES_TAG,
    LakehouseResource,
)


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


def build_sensors(ingest_job: str, gold_job: str) -> list[dg.SensorDefinition]:
    @dg.sensor(
        job_name=ingest_job,
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Requests the ingest run for an arrival date when its landing files appear or change.",
    )
    def billing_events_landing_sensor(context: dg.SensorEvaluationContext, lakehouse: LakehouseResource) -> dg.SensorResult:
        settings = lakehouse.settings()
        seen: dict[str, str] = json.loads(context.cursor or "{}")
        done = set(
            OpsTables(settings.root)
            .batch_rows(BILLING_EVENTS.dataset)
            .filter(pl.col("status") == "complete")
            .get_column("batch_id")
            .to_list()
        )
        requests = []
        landing = scan_landing(settings.root, BILLING_EVENTS.dataset)
        if landing.ignored:  # never a run, but always in the evaluation, so an operator sees them in the UI
            context.log.warning(ignored_summary(landing.ignored))
        for arrival in landing.arrival_dates:
            if arrival < settings.partitions_start:
                context.log.warning(
                    f"arrival date {arrival} is before the partitions start {settings.partitions_start}; not ingested"
                )
                continue
            change = fingerprint(settings.root, BILLING_EVENTS.dataset, arrival)
            if seen.get(arrival.isoformat()) == change:
                continue
            seen[arrival.isoformat()] = change
            batch_id = current_batch_id(settings.root, BILLING_EVENTS.dataset, arrival)
            if batch_id not in done:  # run key = batch id: the same files never trigger twice
                requests.append(
                    dg.RunRequest(
                        partition_key=arrival.isoformat(),
                        run_key=batch_id,
                        tags={BATCH_TAG: batch_id, PRIORITY_TAG: REGULAR_PRIORITY},
                    )
                )
        return dg.SensorResult(
            run_requests=requests,
            cursor=json.dumps(seen, sort_keys=True),
            skip_reason=ignored_summary(landing.ignored) if landing.ignored and not requests else None,
        )

    @dg.sensor(
        job_name=gold_job,
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Restates gold: after each published batch, refreshes every event date it touched.",
    )
    def billing_events_gold_refresh_sensor(context: dg.SensorEvaluationContext, lakehouse: LakehouseResource) -> dg.SensorResult:
        settings = lakehouse.settings()
        published = OpsTables(settings.root).batch_rows(BILLING_EVENTS.dataset).filter(pl.col("status") == "published")
        requests = [
            gold_refresh_request(
                row["batch_id"],
                row["arrival_date"],
                [date.fromisoformat(d) for d in json.loads(row["touched_event_dates"] or "[]")],
                settings.event_partitions_start,
            )
            for row in published.iter_rows(named=True)
        ]
        return dg.SensorResult(run_requests=requests)

    return [billing_events_landing_sensor, billing_events_gold_refresh_sensor]
