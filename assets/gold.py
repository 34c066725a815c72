"""gold.daily_account_revenue: a pure function of silver's rows per event_date, refreshed where inputs changed."""

from collections.abc import Iterator
from datetime import date

import dagster as dg
import polars as pl

from assets.billing_feed import BILLING_EVENTS
from assets.bronze import WRITER_POOL
from assets.silver import SILVER_KEY
from checks.gold_checks import DESCRIPTION, gold_matches_silver_aggregate
from lakehouse.ops import OpsTables
from lakehouse.resources import BATCH_TAG, CODE_VERSION, TOUCHED_DATES_TAG, LakehouseResource
from lakehouse.restatement import RefreshReport, refresh_partitions
from lakehouse.settings import Settings
from lakehouse.storage import table_uri

GOLD_TABLE = "daily_account_revenue"
GOLD_KEY = dg.AssetKey(["gold", GOLD_TABLE])
GOLD_SCHEMA: dict[str, pl.DataType] = {
    "event_date": pl.Date(),
    "account_id": pl.String(),
    "currency": pl.String(),
    "charges_minor": pl.Int64(),
    "refunds_minor": pl.Int64(),
    "adjustments_minor": pl.Int64(),
    "net_minor": pl.Int64(),
    "event_count": pl.Int64(),
}


SILVER_COLUMNS = ["event_date", "account_id", "currency", "event_type", "amount_minor"]  # all gold reads of silver


def daily_account_revenue(silver: pl.DataFrame) -> pl.DataFrame:
    """One row per (event_date, account_id, currency); refunds_minor sums refunds and credits."""
    if silver.is_empty():
        return pl.DataFrame(schema=GOLD_SCHEMA)
    amount, kind = pl.col("amount_minor"), pl.col("event_type")
    return (
        silver.group_by("event_date", "account_id", "currency")
        .agg(
            charges_minor=amount.filter(kind == "charge").sum(),
            refunds_minor=amount.filter(kind.is_in(["refund", "credit"])).sum(),
            adjustments_minor=amount.filter(kind == "adjustment").sum(),
            net_minor=amount.sum(),
            event_count=pl.len(),
        )
        .select([pl.col(name).cast(dtype) for name, dtype in GOLD_SCHEMA.items()])
        .sort("event_date", "account_id", "currency")
    )


def refresh_gold(settings: Settings, dates: list[date], caused_by: str, run_id: str) -> RefreshReport:
    """Recompute gold for `dates` from silver; a batch's refresh also marks that batch complete."""
    commit = OpsTables(settings.root).commit_for_batch(BILLING_EVENTS.dataset, caused_by, run_id, CODE_VERSION)
    report = refresh_partitions(
        settings,
        source_uri=table_uri(settings.root, "silver", BILLING_EVENTS.dataset),
        target_uri=table_uri(settings.root, "gold", GOLD_TABLE),
        target_schema=GOLD_SCHEMA,
        partition="event_date",
        dates=dates,
        aggregate=daily_account_revenue,
        source_columns=SILVER_COLUMNS,
        caused_by=caused_by,
        commit=commit,
        table_name=f"gold/{GOLD_TABLE}",
    )
    OpsTables(settings.root).mark_complete(caused_by, commit)
    return report


def check_refresh(root: str, dates: list[date], report: RefreshReport) -> dg.AssetCheckResult:
    """gold_matches_silver_aggregate for `dates`, on the silver snapshot the refresh read and the gold version it left."""
    return gold_matches_silver_aggregate(
        silver_uri=table_uri(root, "silver", BILLING_EVENTS.dataset),
        gold_uri=table_uri(root, "gold", GOLD_TABLE),
        dates=dates,
        silver_version=report.source_version,
        gold_version=report.table_version,
        aggregate=daily_account_revenue,
        gold_schema=GOLD_SCHEMA,
        silver_columns=SILVER_COLUMNS,
        asset_key=GOLD_KEY,
    )


def build_gold(partitions: dg.PartitionsDefinition, mapping: dg.PartitionMapping) -> dg.AssetsDefinition:
    @dg.asset(
        key=GOLD_KEY,
        partitions_def=partitions,
        deps=[dg.AssetDep(SILVER_KEY, partition_mapping=mapping)],
        backfill_policy=dg.BackfillPolicy.single_run(),
        check_specs=[dg.AssetCheckSpec("gold_matches_silver_aggregate", asset=GOLD_KEY, blocking=True, description=DESCRIPTION)],
        pool=WRITER_POOL,
        code_version=CODE_VERSION,
        group_name="billing_events",
        kinds={"deltalake", "polars"},
        description="Daily revenue per account and currency, by event date.",
    )
    def gold_daily_account_revenue(
        context: dg.AssetExecutionContext, lakehouse: LakehouseResource
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        settings = lakehouse.settings()
        requested = [date.fromisoformat(key) for key in context.partition_keys]
        tags = context.run.tags
        caused_by = tags.get(BATCH_TAG) or f"run:{context.run.run_id}"
        if TOUCHED_DATES_TAG in tags:  # a batch's refresh: only the dates it touched, not the whole range
            touched = {date.fromisoformat(d) for d in tags[TOUCHED_DATES_TAG].split(",") if d}
            requested = [d for d in requested if d in touched]
        report = refresh_gold(settings, requested, caused_by, context.run.run_id)
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
        check = check_refresh(settings.root, [date.fromisoformat(key) for key in context.partition_keys], report)
        yield check
        if not check.passed:
            raise dg.Failure(description="gold does not match silver's aggregate; see gold_matches_silver_aggregate's metadata")

    return gold_daily_account_revenue
