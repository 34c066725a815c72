"""Gold's invariant: each refreshed partition equals silver's aggregate for that partition."""

from datetime import date

import dagster as dg
import polars as pl

from lakehouse.delta.storage import read_table, table_uri
from lakehouse.feed import FeedSpec

DESCRIPTION = "Every gold partition of this run equals the aggregate of silver's rows for that partition."


def gold_matches_silver_aggregate(
    root: str, feed: FeedSpec, dates: list[date], silver_version: int | None, gold_version: int | None
) -> dg.AssetCheckResult:
    """Judged on the silver snapshot the refresh read and the gold version it left: other batches may
    commit to silver meanwhile, and the check must judge the refresh, not their timing.

    Gold's step runs it after its commit (not as a step of its own: a step costs a run several processes)."""
    gold = feed.gold
    in_dates = pl.col(feed.partition).is_in(pl.Series(dates, dtype=pl.Date).implode())
    columns = list(gold.schema)
    silver = read_table(table_uri(root, "silver", feed.dataset), in_dates, list(gold.source_columns), version=silver_version)
    expected = gold.aggregate(silver).sort(columns)
    actual = (
        read_table(table_uri(root, "gold", gold.table), in_dates, empty_schema=gold.schema, version=gold_version)
        .select(columns)
        .sort(columns)
    )
    differing = pl.concat([expected.join(actual, on=columns, how="anti"), actual.join(expected, on=columns, how="anti")])
    mismatched = sorted({d.isoformat() for d in differing.get_column(feed.partition)})
    return dg.AssetCheckResult(
        asset_key=feed.gold_key,
        check_name="gold_matches_silver_aggregate",
        passed=not mismatched,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            f"{feed.partition}s_checked": len(dates),
            "gold_rows": actual.height,
            "silver_version": silver_version,
            "gold_version": gold_version,
            f"mismatched_{feed.partition}s": dg.MetadataValue.json(mismatched),
        },
    )
