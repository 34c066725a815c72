"""bronze.billing_events: every landed line, lossless, one partition per arrival date."""

from datetime import date

import dagster as dg

from assets.billing_feed import BILLING_EVENTS
from lakehouse.bronze import land_bronze
from lakehouse.resources import CODE_VERSION, LakehouseResource

BRONZE_KEY = dg.AssetKey(["bronze", BILLING_EVENTS.dataset])


def build_bronze(partitions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    @dg.asset(
        key=BRONZE_KEY,
        partitions_def=partitions,
        code_version=CODE_VERSION,
        group_name="billing_events",
        kinds={"deltalake", "polars"},
        description="Every landed line with its exact bytes (`_raw`) and lineage; replaced per arrival date.",
    )
    def bronze_billing_events(context: dg.AssetExecutionContext, lakehouse: LakehouseResource) -> dg.MaterializeResult:
        report = land_bronze(
            lakehouse.settings(), BILLING_EVENTS, date.fromisoformat(context.partition_key), context.run.run_id, CODE_VERSION
        )
        return dg.MaterializeResult(
            metadata={
                "batch_id": report.batch_id,
                "records": dg.MetadataValue.int(report.records),
                "source_files": dg.MetadataValue.json(report.files),
                "table_version": report.table_version,
                "rewritten": report.rewritten,
            }
        )

    return bronze_billing_events
