"""Gold's invariant: each refreshed partition equals silver's aggregate for that event date."""

from datetime import date

import dagster as dg
import polars as pl

from assets.billing_feed import BILLING_EVENTS
from assets.gold import GOLD_KEY, GOLD_SCHEMA, GOLD_TABLE, SILVER_COLUMNS, daily_account_revenue
from lakehouse.resources import LakehouseResource, run_partition_keys
from lakehouse.storage import read_table, table_uri


def _refreshed_versions(context: dg.AssetCheckExecutionContext) -> tuple[int | None, int | None]:
    """The silver snapshot this run's gold refresh read, and the gold version it left: other batches
    may commit to silver meanwhile, and the check must judge the refresh, not their timing."""
    records = context.instance.get_records_for_run(context.run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
    for record in reversed(records):
        materialization = record.asset_materialization
        if materialization is not None and materialization.asset_key == GOLD_KEY:
            metadata = materialization.metadata
            return metadata["silver_version_read"].value, metadata["table_version"].value  # type: ignore[return-value]
    return None, None


@dg.asset_check(
    asset=GOLD_KEY,
    blocking=True,
    description="Every gold partition of this run equals the aggregate of silver's rows for that date.",
)
def gold_matches_silver_aggregate(context: dg.AssetCheckExecutionContext, lakehouse: LakehouseResource) -> dg.AssetCheckResult:
    dates = pl.Series([date.fromisoformat(k) for k in run_partition_keys(context)], dtype=pl.Date)
    in_dates = pl.col("event_date").is_in(dates.implode())
    columns = list(GOLD_SCHEMA)
    silver_version, gold_version = _refreshed_versions(context)
    silver = read_table(
        table_uri(lakehouse.root, "silver", BILLING_EVENTS.dataset), in_dates, SILVER_COLUMNS, version=silver_version
    )
    expected = daily_account_revenue(silver).sort(columns)
    actual = read_table(table_uri(lakehouse.root, "gold", GOLD_TABLE), in_dates, empty_schema=GOLD_SCHEMA, version=gold_version)
    actual = actual.select(columns).sort(columns)
    differing = pl.concat([expected.join(actual, on=columns, how="anti"), actual.join(expected, on=columns, how="anti")])
    mismatched = sorted({d.isoformat() for d in differing.get_column("event_date")})
    return dg.AssetCheckResult(
        passed=not mismatched,
        metadata={
            "event_dates_checked": dates.len(),
            "gold_rows": actual.height,
            "silver_version": silver_version,
            "gold_version": gold_version,
            "mismatched_event_dates": dg.MetadataValue.json(mismatched),
        },
    )
