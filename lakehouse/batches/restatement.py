"""Refresh aggregate partitions from their source and record every restatement of a published one.

Order matters for "exactly once, crashes included": the restatement record (keyed by partition
and causing batch) is committed before the partitions are replaced. A crash before the
replacement re-computes the same record (a no-op upsert); a crash after it finds nothing left
to change.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

import polars as pl

from lakehouse import __version__ as CODE_VERSION
from lakehouse.batches.ops import OpsTables
from lakehouse.delta.locking import exclusive_writer
from lakehouse.delta.storage import CommitInfo, ensure_table, read_table, replace_where, sql_in_list, table_uri, table_version
from lakehouse.faults import crash_point
from lakehouse.feed import FeedSpec
from lakehouse.settings import Settings


@dataclass(frozen=True)
class RefreshReport:
    requested: list[date]
    changed: list[date]
    restatements: list[dict[str, object]]
    rows_written: int
    table_version: int | None
    source_version: int | None  # the source snapshot the partitions were computed from


def _partition_summary(frame: pl.DataFrame, partition: str, day: date, measure: str) -> tuple[int, int]:
    rows = frame.filter(pl.col(partition) == day)
    return rows.height, int(rows.get_column(measure).sum() or 0)


def refresh_gold(settings: Settings, feed: FeedSpec, dates: list[date], caused_by: str, run_id: str) -> RefreshReport:
    """Recompute the feed's gold for `dates` from silver; a batch's refresh also marks that batch complete."""
    ops = OpsTables(settings.root)
    commit = ops.commit_for_batch(feed.dataset, caused_by, run_id, CODE_VERSION)
    report = refresh_partitions(
        settings,
        source_uri=table_uri(settings.root, "silver", feed.dataset),
        target_uri=table_uri(settings.root, "gold", feed.gold.table),
        target_schema=dict(feed.gold.schema),
        partition=feed.partition,
        dates=dates,
        aggregate=feed.gold.aggregate,
        source_columns=list(feed.gold.source_columns),
        measure=feed.gold.measure,
        caused_by=caused_by,
        commit=commit,
        table_name=f"gold/{feed.gold.table}",
    )
    ops.mark_complete(caused_by, commit)
    return report


def refresh_partitions(
    settings: Settings,
    *,
    source_uri: str,
    target_uri: str,
    target_schema: dict[str, pl.DataType],
    partition: str,
    dates: list[date],
    aggregate: Callable[[pl.DataFrame], pl.DataFrame],
    source_columns: list[str],
    measure: str,
    caused_by: str,
    commit: CommitInfo,
    table_name: str,
) -> RefreshReport:
    """Recompute `aggregate` (of the source's `source_columns`) for each date and replace only the partitions that changed.

    A restatement record carries the partition's rows and its `measure` total, before and after."""
    with exclusive_writer(settings.root, table_name.replace("/", "_"), settings.lock_timeout_seconds, settings.lock_dsn):
        ensure_table(target_uri, target_schema, [partition], commit)  # under the lock: it may migrate the schema
        if not dates:
            return RefreshReport([], [], [], 0, table_version(target_uri), table_version(source_uri))
        in_dates = pl.col(partition).is_in(pl.Series(dates, dtype=pl.Date).implode())
        source_version = table_version(source_uri)  # pinned, so a check can recompute from the very same snapshot
        after = (
            aggregate(read_table(source_uri, in_dates, source_columns, version=source_version))
            .select(list(target_schema))
            .sort(list(target_schema))
        )
        before = (
            read_table(target_uri, in_dates, empty_schema=target_schema).select(list(target_schema)).sort(list(target_schema))
        )
        changed = [
            d
            for d in sorted(set(dates))
            if not before.filter(pl.col(partition) == d).equals(after.filter(pl.col(partition) == d))
        ]
        restatements = []
        for day in changed:
            rows_before, total_before = _partition_summary(before, partition, day, measure)
            if rows_before == 0:
                continue  # a first publication, not a restatement: nobody can have used it yet
            rows_after, total_after = _partition_summary(after, partition, day, measure)
            restatements.append(
                {
                    "dataset": commit.dataset,
                    "table": table_name,
                    "event_date": day,
                    "caused_by_batch_id": caused_by,
                    "rows_before": rows_before,
                    "rows_after": rows_after,
                    f"{measure}_before": total_before,
                    f"{measure}_after": total_after,
                }
            )
        if restatements:
            OpsTables(settings.root).record_restatements(restatements, measure, commit)
            crash_point("after_restatement_record")
        rows = after.filter(pl.col(partition).is_in(pl.Series(changed, dtype=pl.Date).implode()))
        if changed:
            replace_where(
                target_uri,
                rows,
                f"{partition} IN {sql_in_list(changed)}",
                commit,
                f"{table_name}: refresh partitions",
                "during_gold_write",
            )
            crash_point("after_gold_commit")
        return RefreshReport(sorted(set(dates)), changed, restatements, rows.height, table_version(target_uri), source_version)
