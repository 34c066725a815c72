"""A feed's bronze table: every landed line, lossless, one partition per arrival date."""

from datetime import date
from typing import Any

import dagster as dg

from lakehouse.app.resources import CODE_VERSION, LakehouseResource
from lakehouse.batches.bronze import BronzeReport, land_bronze
from lakehouse.batches.runlog import batch_log
from lakehouse.feed import FeedSpec
from lakehouse.staging.landing import feed_level_ignored


def _metadata(report: BronzeReport, strays: list[dict[str, object]]) -> dict[str, Any]:
    return {
        "batch_id": report.batch_id,
        "records": dg.MetadataValue.int(report.records),
        "source_files": dg.MetadataValue.json(report.files),
        # Never silent: what the date's folder (and the feed's folder outside any date) holds that was not read.
        "ignored_entries": dg.MetadataValue.json(report.ignored + strays),
        "table_version": report.table_version,
        "rewritten": report.rewritten,
    }


def build_bronze(feed: FeedSpec, partitions: dg.PartitionsDefinition, backfill_policy: dg.BackfillPolicy) -> dg.AssetsDefinition:
    @dg.asset(
        key=feed.bronze_key,
        partitions_def=partitions,
        backfill_policy=backfill_policy,
        pool=feed.writer_pool,
        code_version=CODE_VERSION,
        group_name=feed.dataset,
        kinds={"deltalake", "polars"},
        description="Every landed line with its exact bytes (`_raw`) and lineage; replaced per arrival date.",
    )
    def bronze(context: dg.AssetExecutionContext, lakehouse: LakehouseResource) -> dg.MaterializeResult:
        settings, rate_limit = lakehouse.settings(), lakehouse.rate_limit(context.run.tags)
        # A backfill run may carry several arrival dates: each lands as its own batch, in date order.
        reports = [
            land_bronze(settings, feed, date.fromisoformat(key), context.run.run_id, CODE_VERSION, rate_limit)
            for key in sorted(context.partition_keys)
        ]
        run_log = batch_log(context.log, feed.dataset, context.run.run_id)
        for key, report in zip(sorted(context.partition_keys), reports, strict=True):
            run_log.for_batch(report.batch_id, date.fromisoformat(key)).info(
                f"landed {report.records} records from {len(report.files)} file(s)"
                + ("" if report.rewritten else " (a replay: bronze already held them)")
                + (f"; {len(report.ignored)} entr(ies) not read" if report.ignored else "")
            )
        strays = [e.as_metadata() for e in feed_level_ignored(settings.root, feed.dataset)]
        metadata = _metadata(reports[-1], strays)
        if len(reports) > 1:
            metadata["records"] = dg.MetadataValue.int(sum(r.records for r in reports))
            metadata["batches"] = dg.MetadataValue.json(
                [{"batch_id": r.batch_id, "records": r.records, "rewritten": r.rewritten} for r in reports]
            )
        return dg.MaterializeResult(
            metadata={**metadata, **lakehouse.applied_caps(context.run.tags, len(context.partition_keys), rate_limit)}
        )

    return bronze
