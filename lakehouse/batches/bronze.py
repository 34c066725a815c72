"""Bronze: every landed line of an arrival date, lossless, replaced atomically per arrival date."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import polars as pl

from lakehouse.batches.ops import OpsTables, batch_record, now_utc
from lakehouse.batches.spill import Spill
from lakehouse.batches.throttle import RowRateLimit
from lakehouse.delta.locking import exclusive_writer
from lakehouse.delta.storage import (
    CommitInfo,
    FrameStream,
    ensure_table,
    replace_where,
    scan_table,
    table_exists,
    table_uri,
    table_version,
)
from lakehouse.faults import crash_point
from lakehouse.feed import BRONZE_SCHEMA, FeedSpec
from lakehouse.settings import Settings
from lakehouse.staging.landing import LANDED_ROWS_SCHEMA, Batch, stream_batch
from lakehouse.staging.records import STAGE_CHUNK_ROWS

# Bronze's Parquet row groups hold the slices silver stages (lakehouse.batches.batch reads a date back
# slice by slice): a slice then decodes exactly one row group, whatever the date's size.
ROW_GROUP_ROWS = STAGE_CHUNK_ROWS


@dataclass(frozen=True)
class BronzeReport:
    batch_id: str
    files: list[dict[str, object]]
    ignored: list[dict[str, object]]  # entries of the date folder not read, with why (lakehouse.staging.landing.IgnoredEntry)
    records: int
    table_version: int | None
    rewritten: bool  # False when bronze already held exactly this batch (a replay)


def land_bronze(
    settings: Settings,
    feed: FeedSpec,
    arrival_date: date,
    run_id: str,
    code_version: str,
    rate_limit: RowRateLimit | None = None,
) -> BronzeReport:
    """Replace bronze's arrival-date partition with every landed line, atomically; a replay writes nothing.

    The lines are read file by file into a `Spill` (the batch id, on every row, is known only once every file
    is digested), then streamed into the one commit: memory holds the largest file, not the date.
    A backfill's `rate_limit` is paid before taking the writer lock, so pacing never blocks other writers.
    """
    with Spill(LANDED_ROWS_SCHEMA) as lines:
        # landing files are immutable: no lock needed to read them
        batch = stream_batch(settings.root, feed.dataset, arrival_date, lambda rows: lines.add(0, rows))
        if rate_limit is not None:
            rate_limit.acquire(batch.records)
        with exclusive_writer(settings.root, feed.dataset, settings.lock_timeout_seconds, settings.lock_dsn):
            return _replace_partition(settings, feed, arrival_date, run_id, code_version, batch, lines)


def _replace_partition(
    settings: Settings, feed: FeedSpec, arrival_date: date, run_id: str, code_version: str, batch: Batch, lines: Spill
) -> BronzeReport:
    files = [f.as_metadata() for f in batch.files]
    ignored = [e.as_metadata() for e in batch.ignored]
    uri = table_uri(settings.root, "bronze", feed.dataset)
    held = _held_batches(uri, arrival_date)
    replay = batch.records > 0 and held == {batch.batch_id: batch.records}
    commit = CommitInfo(
        dataset=feed.dataset,
        batch_id=batch.batch_id,
        run_id=run_id,
        code_version=code_version,
        arrival_date=arrival_date,
        source_files=tuple(files),
        counts={"records_in": batch.records},
    )
    ensure_table(uri, BRONZE_SCHEMA, ["_arrival_date"], commit)
    if not replay:
        ingested_at = now_utc()
        lineage = {
            "_batch_id": pl.lit(batch.batch_id),
            "_arrival_date": pl.lit(arrival_date),
            "_run_id": pl.lit(run_id),
            "_ingested_at": pl.lit(ingested_at).cast(pl.Datetime("us", "UTC")),
        }
        rows = FrameStream(
            BRONZE_SCHEMA, lambda: (frame.with_columns(**lineage) for frame in lines.frames(0)), ("_raw", "_source_line")
        )
        replace_where(
            uri,
            rows,
            f"_arrival_date = '{arrival_date.isoformat()}'",
            commit,
            "bronze: replace arrival date",
            "during_bronze_write",
            max_row_group_rows=ROW_GROUP_ROWS,
        )
        crash_point("after_bronze_commit")
    ops = OpsTables(settings.root)
    if ops.batch(batch.batch_id).is_empty():
        ops.record_batch(
            batch_record(
                feed.dataset,
                arrival_date,
                batch.batch_id,
                "landed",
                files + ignored,
                code_version,
                records_in=batch.records,
            ),
            commit,
        )
        crash_point("after_batch_landed")
    return BronzeReport(batch.batch_id, files, ignored, batch.records, table_version(uri), rewritten=not replay)


def _held_batches(uri: str, arrival_date: date) -> dict[str, int]:
    """Bronze's rows of the date per batch id, counted without keeping a row in memory."""
    if not table_exists(uri):
        return {}
    counts = scan_table(uri).filter(pl.col("_arrival_date") == arrival_date).group_by("_batch_id").len().collect()
    return dict(counts.iter_rows())  # type: ignore[arg-type]
