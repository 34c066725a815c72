"""A feed's gold aggregate: a pure function of silver's rows per partition, refreshed where its inputs changed."""

from collections.abc import Iterator
from datetime import date

import dagster as dg

from checks.gold_checks import DESCRIPTION, gold_matches_silver_aggregate
from lakehouse.app.resources import BATCH_TAG, CODE_VERSION, TOUCHED_DATES_TAG, LakehouseResource
from lakehouse.batches.restatement import refresh_gold
from lakehouse.batches.runlog import batch_log
from lakehouse.feed import FeedSpec


def build_gold(feed: FeedSpec, partitions: dg.PartitionsDefinition, mapping: dg.PartitionMapping) -> dg.AssetsDefinition:
    @dg.asset(
        key=feed.gold_key,
        partitions_def=partitions,
        deps=[dg.AssetDep(feed.silver_key, partition_mapping=mapping)],
        backfill_policy=dg.BackfillPolicy.single_run(),
        check_specs=[
            dg.AssetCheckSpec("gold_matches_silver_aggregate", asset=feed.gold_key, blocking=True, description=DESCRIPTION)
        ],
        pool=feed.writer_pool,
        code_version=CODE_VERSION,
        group_name=feed.dataset,
        kinds={"deltalake", "polars"},
        description=feed.gold.description,
        # Overdue in the asset graph when not refreshed for this long: a stalled feed shows on its aggregate too.
        freshness_policy=dg.FreshnessPolicy.time_window(fail_window=feed.freshness_window),
    )
    def gold(
        context: dg.AssetExecutionContext, lakehouse: LakehouseResource
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        settings = lakehouse.settings()
        requested = [date.fromisoformat(key) for key in context.partition_keys]
        tags = context.run.tags
        caused_by = tags.get(BATCH_TAG) or f"run:{context.run.run_id}"
        if TOUCHED_DATES_TAG in tags:  # a batch's refresh: only the dates it touched, not the whole range
            touched = {date.fromisoformat(d) for d in tags[TOUCHED_DATES_TAG].split(",") if d}
            requested = [d for d in requested if d in touched]
        log = batch_log(context.log, feed.dataset, context.run.run_id, caused_by)
        log.info(f"refreshing {len(requested)} {feed.partition}(s) of {feed.gold.table}")
        report = refresh_gold(settings, feed, requested, caused_by, context.run.run_id)
        log.info(
            f"refreshed: {len(report.changed)} partition(s) changed, {len(report.restatements)} restatement(s), "
            f"{report.rows_written} rows written"
        )
        yield dg.MaterializeResult(
            metadata={
                **lakehouse.applied_caps(context.run.tags, len(context.partition_keys)),
                "caused_by_batch_id": caused_by,
                "refreshed_event_dates": dg.MetadataValue.json([d.isoformat() for d in report.requested]),
                "changed_event_dates": dg.MetadataValue.json([d.isoformat() for d in report.changed]),
                "restatements": dg.MetadataValue.json([{**r, "event_date": str(r["event_date"])} for r in report.restatements]),
                "rows_written": dg.MetadataValue.int(report.rows_written),
                "table_version": report.table_version,
                "silver_version_read": report.source_version,
            }
        )
        # Judged on the snapshot the refresh read and the version it left, for the partitions it refreshed: another
        # batch may have changed silver on a date inside this run's range, and its own gold run refreshes that one.
        check = gold_matches_silver_aggregate(settings.root, feed, report.requested, report.source_version, report.table_version)
        yield check
        if not check.passed:
            log.error(f"gold_matches_silver_aggregate failed for {feed.gold.table}; see the check's metadata")
            raise dg.Failure(description="gold does not match silver's aggregate; see gold_matches_silver_aggregate's metadata")

    return gold
