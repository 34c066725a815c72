"""Table-level invariants of a feed's silver after its commit: blocking, so a broken table never feeds gold."""

from collections.abc import Iterator
from datetime import date

import dagster as dg
import pandera.polars as pa
import polars as pl

from lakehouse.delta.storage import count_rows, read_partition_chunks, read_table, scan_table, table_exists
from lakehouse.feed import FeedSpec

CHECK_CHUNK_ROWS = 200_000  # silver rows validated at once


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
    if not table_exists(silver_uri):
        duplicated, ids = pl.Series(feed.key, [], dtype=pl.String), 0
    else:
        # The streaming engine keeps a count per key, never the rows (its cost still grows with silver, not the batch).
        scan = scan_table(silver_uri)
        per_key = scan.group_by(feed.key).agg(pl.len().alias("rows")).filter(pl.col("rows") > 1).select(feed.key)
        duplicated = per_key.collect(engine="streaming").to_series().sort()
        ids = scan.select(pl.len()).collect().item()
    return dg.AssetCheckResult(
        asset_key=feed.silver_key,
        check_name=one_row_per_key_check(feed),
        passed=duplicated.len() == 0,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "rows": ids,
            f"duplicated_{feed.key}s": duplicated.len(),
            "sample": dg.MetadataValue.json(duplicated.head(10).to_list()),
        },
    )


def silver_rows_match_contract(silver_uri: str, dates: list[date], feed: FeedSpec) -> dg.AssetCheckResult:
    """Validated about CHECK_CHUNK_ROWS rows at a time (the rule is per row): a big day's partitions are never
    whole in memory, and a small batch's are one read and one validation (each costs a fixed 10-30 ms)."""
    checked, failures, sample = 0, 0, None
    contract = feed.row_contract()
    for rows in _touched_rows(silver_uri, dates, feed):
        checked += rows.height
        try:
            contract.validate(rows, lazy=True)
        except pa.errors.SchemaErrors as errors:
            failures += errors.failure_cases.height
            sample = sample if sample is not None else errors.failure_cases.head(10)
    metadata: dict[str, object] = {
        "rows_checked": checked,
        f"{feed.partition}s": dg.MetadataValue.json([d.isoformat() for d in dates]),
    }
    if sample is not None:
        metadata |= {"failures": failures, "sample": dg.MetadataValue.md(str(sample))}
    return dg.AssetCheckResult(
        asset_key=feed.silver_key,
        check_name="silver_rows_match_contract",
        passed=sample is None,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata=metadata,  # type: ignore[arg-type]
    )


def _touched_rows(silver_uri: str, dates: list[date], feed: FeedSpec) -> Iterator[pl.DataFrame]:
    """Silver's rows of `dates` (without the content hash) in frames of about CHECK_CHUNK_ROWS."""
    columns = [name for name in feed.silver_schema if name != "_content_hash"]
    in_dates = pl.col(feed.partition).is_in(pl.Series(dates, dtype=pl.Date).implode())
    if count_rows(silver_uri, in_dates) <= CHECK_CHUNK_ROWS:
        yield read_table(silver_uri, in_dates, columns, feed.silver_schema)
        return
    held: list[pl.DataFrame] = []
    for day in sorted(set(dates)):
        for rows in read_partition_chunks(silver_uri, feed.partition, day, columns, CHECK_CHUNK_ROWS, feed.silver_schema):
            held.append(rows)
            if sum(frame.height for frame in held) >= CHECK_CHUNK_ROWS:
                yield pl.concat(held)
                held = []
    if held:
        yield pl.concat(held)
