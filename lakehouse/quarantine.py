"""Quarantine rows: every rejected delivery with its reason, every rule it broke, and its lineage."""

from __future__ import annotations

import polars as pl

from lakehouse.feed import FeedSpec
from lakehouse.ops import now_utc
from lakehouse.resolution import LINEAGE


def quarantine_rows(feed: FeedSpec, frame: pl.DataFrame, run_id: str) -> pl.DataFrame:
    schema = feed.quarantine_schema
    stamped = frame.with_columns(_run_id=pl.lit(run_id), _quarantined_at=pl.lit(now_utc()).cast(pl.Datetime("us", "UTC")))
    for name in schema:
        if name not in stamped.columns:
            stamped = stamped.with_columns(pl.lit(None).alias(name))
    return stamped.select([pl.col(name).cast(dtype) for name, dtype in schema.items()])


def validation_rejects(feed: FeedSpec, judged: pl.DataFrame, run_id: str) -> pl.DataFrame:
    detail = pl.col("_detail") + pl.when(pl.col("_parse_error").is_not_null()).then(
        pl.lit(" (") + pl.col("_parse_error") + pl.lit(")")
    ).otherwise(pl.lit(""))
    return quarantine_rows(feed, judged.filter(pl.col("_reason").is_not_null()).with_columns(_detail=detail), run_id)


def conflict_detail(feed: FeedSpec) -> pl.Expr:
    return pl.format(
        "version_conflict: {} {} version {} was delivered with different content; kept the delivery at {} line {} "
        "(arrival {}, batch {}), whose content hash is the smallest",
        pl.lit(feed.key),
        pl.col(feed.key),
        pl.col(feed.version),
        pl.col("_kept_source_file"),
        pl.col("_kept_source_line"),
        pl.col("_kept_arrival_date"),
        pl.col("_kept_batch_id").str.slice(0, 12),
    )


def conflict_rows(feed: FeedSpec, losers: pl.DataFrame, raw_by_lineage: pl.DataFrame, run_id: str) -> pl.DataFrame:
    with_raw = losers.join(raw_by_lineage, on=LINEAGE, how="left")
    return quarantine_rows(feed, with_raw.with_columns(_reason=pl.lit("version_conflict"), _detail=conflict_detail(feed)), run_id)
