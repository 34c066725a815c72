"""Gold's invariant: each refreshed partition equals silver's aggregate for that event date."""

from collections.abc import Callable
from datetime import date

import dagster as dg
import polars as pl

from lakehouse.storage import read_table

DESCRIPTION = "Every gold partition of this run equals the aggregate of silver's rows for that date."


def gold_matches_silver_aggregate(
    *,
    silver_uri: str,
    gold_uri: str,
    dates: list[date],
    silver_version: int | None,
    gold_version: int | None,
    aggregate: Callable[[pl.DataFrame], pl.DataFrame],
    gold_schema: dict[str, pl.DataType],
    silver_columns: list[str],
    asset_key: dg.AssetKey,
) -> dg.AssetCheckResult:
    """Judged on the silver snapshot the refresh read and the gold version it left: other batches may
    commit to silver meanwhile, and the check must judge the refresh, not their timing.

    Gold's step runs it after its commit (not as a step of its own: a step costs a run several processes)."""
    in_dates = pl.col("event_date").is_in(pl.Series(dates, dtype=pl.Date).implode())
    columns = list(gold_schema)
    silver = read_table(silver_uri, in_dates, silver_columns, version=silver_version)
    expected = aggregate(silver).sort(columns)
    actual = read_table(gold_uri, in_dates, empty_schema=gold_schema, version=gold_version).select(columns).sort(columns)
    differing = pl.concat([expected.join(actual, on=columns, how="anti"), actual.join(expected, on=columns, how="anti")])
    mismatched = sorted({d.isoformat() for d in differing.get_column("event_date")})
    return dg.AssetCheckResult(
        asset_key=asset_key,
        check_name="gold_matches_silver_aggregate",
        passed=not mismatched,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "event_dates_checked": len(dates),
            "gold_rows": actual.height,
            "silver_version": silver_version,
            "gold_version": gold_version,
            "mismatched_event_dates": dg.MetadataValue.json(mismatched),
        },
    )
