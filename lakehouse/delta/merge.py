"""The one hand-written write: a keyed, partition-pruned Delta MERGE of the rows that actually changed.

Callers state the desired end state of a scope (the rows a batch owns); this diffs it with the
current rows and commits upserts and deletes in one atomic MERGE (an append when every key is
new), or nothing when nothing changed, so a replay makes no commit and a re-run after a crash converges.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from lakehouse.delta.storage import (
    CommitInfo,
    arrow_stream,
    merge_into,
    sql_in_list,
    table_version,
    with_commit_retry,
    write_table,
)

OP = "_op"


@dataclass(frozen=True)
class MergeStats:
    upserted: int
    deleted: int
    version: int | None  # the table version after the commit, None if nothing was committed


def apply_changes(
    uri: str,
    desired: pl.DataFrame,
    current: pl.DataFrame,
    *,
    key: list[str],
    partition: str | None,
    compare: list[str],
    commit: CommitInfo,
    operation: str,
    delete_scope: pl.Expr | None = None,
    update_guard: str | None = None,
) -> MergeStats:
    """Make the table's rows in scope equal `desired`.

    Args:
        desired: the rows the scope must hold, in the table's schema.
        current: the rows the scope holds now (read by the caller with partition pruning).
        key: the merge key; it must include `partition` (if any) so the MERGE prunes by literal partitions.
        compare: columns whose difference makes an update (wall-clock and run-id columns excluded).
        delete_scope: which current rows may be deleted when absent from `desired` (default all).
        update_guard: an extra SQL condition an update must meet (silver's version guard).
    """
    if not current.is_empty():
        current = current.select(desired.columns)
    upserts = desired.join(current, on=compare, how="anti", nulls_equal=True) if not current.is_empty() else desired
    deletable = current.filter(delete_scope) if delete_scope is not None and not current.is_empty() else current
    deletes = deletable.join(desired, on=key, how="anti", nulls_equal=True) if not deletable.is_empty() else deletable
    if upserts.is_empty() and deletes.is_empty():
        return MergeStats(0, 0, None)
    if deletes.is_empty() and (current.is_empty() or upserts.join(current, on=key, how="semi").is_empty()):
        # Only new keys: an append is the same single commit, without MERGE's join against the target's files.
        with_commit_retry(lambda: write_table(uri, arrow_stream(upserts), commit, operation), uri=uri)
        return MergeStats(len(upserts), 0, table_version(uri))
    source = pl.concat(
        [upserts.with_columns(pl.lit("upsert").alias(OP)), deletes.select(key).with_columns(pl.lit("delete").alias(OP))],
        how="diagonal_relaxed",
    )
    on = " AND ".join(f"t.{column} = s.{column}" for column in key)
    if partition is not None:
        on += f" AND t.{partition} IN {sql_in_list(source.get_column(partition).unique().to_list())}"
    assignments = {column: f"s.{column}" for column in desired.columns}
    guard = f" AND ({update_guard})" if update_guard else ""

    def merge() -> dict[str, int]:
        return (
            merge_into(uri, source.to_arrow(), on, commit, operation)
            .when_matched_update(updates=assignments, predicate=f"s.{OP} = 'upsert'{guard}")
            .when_matched_delete(predicate=f"s.{OP} = 'delete'")
            .when_not_matched_insert(updates=assignments, predicate=f"s.{OP} = 'upsert'")
            .execute()
        )

    metrics = with_commit_retry(merge, uri=uri)
    written = metrics["num_target_rows_inserted"] + metrics["num_target_rows_updated"]
    if written != len(upserts) or metrics["num_target_rows_deleted"] != len(deletes):
        # A guard refused a row or a key matched twice: the table disagrees with what was decided. Fail loudly.
        raise RuntimeError(
            f"MERGE into {uri} wrote {written} rows and deleted {metrics['num_target_rows_deleted']}, "
            f"expected {len(upserts)} and {len(deletes)}: the table changed under this run or holds a duplicate key"
        )
    return MergeStats(len(upserts), len(deletes), table_version(uri))
