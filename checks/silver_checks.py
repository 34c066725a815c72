"""Table-level invariants of a feed's silver after its commit: blocking, so a broken table never feeds gold."""

from datetime import date

import dagster as dg
import pandera.polars as pa
import polars as pl

from lakehouse.delta.storage import read_table
from lakehouse.feed import FeedSpec


def one_row_per_key_check(feed: FeedSpec) -> str:
    return f"silver_has_one_row_per_{feed.key}"


def table_checks(feed: FeedSpec) -> dict[str, str]:
    """Silver's table checks (name -> description), which its step evaluates after the commit. They run inside
    the step, not as steps of their own: a step costs a Dagster run several processes and events."""
    return {
        one_row_per_key_check(feed): f"Silver holds at most one row per {feed.key}, across all {feed.partition}s.",
        "silver_rows_match_contract": "The silver rows of the partitions this run touched satisfy the silver row contract (Pandera).",
    }


def silver_has_one_row_per_key(silver_uri: str, feed: FeedSpec) -> dg.AssetCheckResult:
    ids = read_table(silver_uri, columns=[feed.key])
    duplicated = (
        ids.filter(pl.col(feed.key).is_duplicated()).get_column(feed.key).unique().sort()
        if ids.height
        else pl.Series([], dtype=pl.String)
    )
    return dg.AssetCheckResult(
        asset_key=feed.silver_key,
        check_name=one_row_per_key_check(feed),
        passed=duplicated.len() == 0,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "rows": ids.height,
            f"duplicated_{feed.key}s": duplicated.len(),
            "sample": dg.MetadataValue.json(duplicated.head(10).to_list()),
        },
    )


def silver_rows_match_contract(silver_uri: str, dates: list[date], feed: FeedSpec) -> dg.AssetCheckResult:
    in_dates = pl.col(feed.partition).is_in(pl.Series(dates, dtype=pl.Date).implode())
    rows = read_table(silver_uri, in_dates, empty_schema=feed.silver_schema)
    metadata: dict[str, object] = {
        "rows_checked": rows.height,
        f"{feed.partition}s": dg.MetadataValue.json([d.isoformat() for d in dates]),
    }
    try:
        feed.row_contract().validate(rows.drop("_content_hash"), lazy=True)
        passed = True
    except pa.errors.SchemaErrors as errors:
        passed = False
        metadata |= {"failures": errors.failure_cases.height, "sample": dg.MetadataValue.md(str(errors.failure_cases.head(10)))}
    return dg.AssetCheckResult(
        asset_key=feed.silver_key,
        check_name="silver_rows_match_contract",
        passed=passed,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata=metadata,  # type: ignore[arg-type]
    )
