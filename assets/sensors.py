"""A feed's runs triggered by data: a landing sensor per arrival date, and gold refresh after each published batch."""

import json
from datetime import date

import dagster as dg
import polars as pl

from lakehouse.app.resources import BATCH_TAG, PRIORITY_TAG, REGULAR_PRIORITY, LakehouseResource
from lakehouse.app.triggers import gold_refresh_request
from lakehouse.batches.ops import OpsTables
from lakehouse.feed import FeedSpec
from lakehouse.staging.landing import current_batch_id, fingerprint, ignored_summary, scan_landing


def build_sensors(feed: FeedSpec) -> list[dg.SensorDefinition]:
    @dg.sensor(
        name=f"{feed.dataset}_landing_sensor",
        job_name=feed.ingest_job,
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Requests the ingest run for an arrival date when its landing files appear or change.",
    )
    def landing_sensor(context: dg.SensorEvaluationContext, lakehouse: LakehouseResource) -> dg.SensorResult:
        settings = lakehouse.settings()
        seen: dict[str, str] = json.loads(context.cursor or "{}")
        done = set(
            OpsTables(settings.root)
            .batch_rows(feed.dataset)
            .filter(pl.col("status") == "complete")
            .get_column("batch_id")
            .to_list()
        )
        requests = []
        landing = scan_landing(settings.root, feed.dataset)
        if landing.ignored:  # never a run, but always in the evaluation, so an operator sees them in the UI
            context.log.warning(ignored_summary(landing.ignored))
        for arrival in landing.arrival_dates:
            if arrival < settings.partitions_start:
                context.log.warning(
                    f"arrival date {arrival} is before the partitions start {settings.partitions_start}; not ingested"
                )
                continue
            change = fingerprint(settings.root, feed.dataset, arrival)
            if seen.get(arrival.isoformat()) == change:
                continue
            seen[arrival.isoformat()] = change
            batch_id = current_batch_id(settings.root, feed.dataset, arrival)
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
        name=f"{feed.dataset}_gold_refresh_sensor",
        job_name=feed.gold_job,
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Restates gold: after each published batch, refreshes every event date it touched.",
    )
    def gold_refresh_sensor(context: dg.SensorEvaluationContext, lakehouse: LakehouseResource) -> dg.SensorResult:
        settings = lakehouse.settings()
        published = OpsTables(settings.root).batch_rows(feed.dataset).filter(pl.col("status") == "published")
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

    return [landing_sensor, gold_refresh_sensor]
