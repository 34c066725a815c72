"""Gold's invariant: each refreshed partition equals silver's aggregate for that event date."""

from datetime import date

import dagster as dg
import polars as pl

from assets.billing_feed import BILLING_EVENTS
from assets.gold import GOLD_KEY, GOLD_SCHEMA, GOLD_TABLE, daily_account_revenue
from lakehouse.resources import LakehouseResource, run_partition_keys
from lakehouse.storage import read_table, table_uri


@dg.asset_check(
    asset=GOLD_KEY,
    blocking=True,
    description="Every gold partition of this run equals the aggregate of silver's rows for that date.",
)
def gold_matches_silver_aggregate(context: dg.AssetCheckExecutionContext, lakehouse: LakehouseResource) -> dg.AssetCheckResult:
    dates = pl.Series([date.fromisoformat(k) for k in run_partition_keys(context)], dtype=pl.Date)
    in_dates = pl.col("event_date").is_in(dates.implode())
    columns = list(GOLD_SCHEMA)
    expected = daily_account_revenue(read_table(table_uri(lakehouse.root, "silver", BILLING_EVENTS.dataset), in_dates)).sort(
        columns
    )
    actual = (
        read_table(table_uri(lakehouse.root, "gold", GOLD_TABLE), in_dates, empty_schema=GOLD_SCHEMA)
        .select(columns)
        .sort(columns)
    )
    mismatched = sorted(
        {
            d.isoformat()
            for d in pl.concat(
                [expected.join(actual, on=columns, how="anti"), actual.join(expected, on=columns, how="anti")]
            ).get_column("event_date")
        }
    )
    return dg.AssetCheckResult(
        passed=not mismatched,
        metadata={
            "event_dates_checked": dates.len(),
            "gold_rows": actual.height,
            "mismatched_event_dates": dg.MetadataValue.json(mismatched),
        },
    )
