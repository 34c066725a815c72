"""Quarantine rows: every rejected delivery with its reason, every rule it broke, and its lineage."""

from __future__ import annotations

from datetime import date

import polars as pl

from lakehouse.batches.ops import now_utc
from lakehouse.batches.resolution import LINEAGE
from lakehouse.delta.merge import apply_changes
from lakehouse.delta.storage import CommitInfo, read_table
from lakehouse.faults import crash_point
from lakehouse.feed import FeedSpec

WALL_CLOCK = ("_run_id", "_quarantined_at")


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


def write_quarantine(uri: str, feed: FeedSpec, desired: pl.DataFrame, arrival_date: date, commit: CommitInfo) -> None:
    """Make quarantine hold exactly `desired` for this arrival date's deliveries, plus the displaced
    deliveries of other dates that `desired` names (their rows are updated, never deleted here)."""
    own_scope = pl.col("_arrival_date") == arrival_date
    displaced_keys = desired.filter(~own_scope).select(LINEAGE)
    dates = desired.get_column("_arrival_date").unique().implode()
    current = read_table(uri, pl.col("_arrival_date").is_in(dates) | own_scope, empty_schema=feed.quarantine_schema)
    current = pl.concat([current.filter(own_scope), current.join(displaced_keys, on=LINEAGE, how="semi")])
    compare = [column for column in feed.quarantine_schema if column not in WALL_CLOCK]
    apply_changes(
        uri,
        desired,
        current,
        key=LINEAGE,
        partition="_arrival_date",
        compare=compare,
        commit=commit,
        operation="quarantine: batch rejects",
        delete_scope=own_scope,
    )
    crash_point("after_quarantine_commit")
