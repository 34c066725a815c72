"""Make silver hold a batch's target rows, in one commit and in bounded memory, however big the batch.

The target rows (one per key the batch delivers) come a key slice at a time. Each slice is compared with
the rows silver holds now for its keys: a target row identical to a current one is left alone, the others
are upserts, and every current row not identical to its key's target is removed (an updated row, or a key
that moved to another event date). The commit adds the upserts and rewrites only the files holding removed
rows (copy-on-write, `storage.rewrite_files`), so a replay commits nothing and a re-run after a crash
converges whatever silver holds.

Silver's current rows of the batch's keys are read once, narrowly (key, partition, file and a hash of the
whole row), since reading them again for each slice would decode the candidate partitions' keys each time.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date

import polars as pl

from lakehouse.batches.resolution import key_slices
from lakehouse.batches.spill import Spill
from lakehouse.delta.storage import (
    CommitInfo,
    DataFile,
    FrameStream,
    data_files,
    rewrite_files,
    scan_files,
    table_version,
    with_commit_retry,
    write_table,
)
from lakehouse.feed import FeedSpec

ROW_HASH = "_row_hash"  # a hash of every silver column: equal rows have equal hashes (a collision is 2^-64)
FILE = "_file"
SLICE = "_slice"


@dataclass(frozen=True)
class SilverChange:
    upserted: int  # rows inserted or updated (a move counts once)
    deleted: int  # rows removed from their old event date by a move
    version: int | None  # the table version after the commit, None if nothing was committed


def _row_hash(schema: dict[str, pl.DataType]) -> pl.Expr:
    return pl.struct([pl.col(name).cast(dtype) for name, dtype in schema.items()]).hash(seed=0).alias(ROW_HASH)


@dataclass
class SilverPlan:
    """The changes of one batch, gathered slice by slice, then committed at once by `commit`."""

    uri: str
    feed: FeedSpec
    current: pl.DataFrame  # silver's rows of the batch's keys: key, partition, file, row hash, slice
    files: dict[str, DataFile]  # by URI: silver's data files in the candidate partitions
    slices: int
    upserts: Spill = field(init=False)
    removals: list[pl.DataFrame] = field(default_factory=list)  # key, partition, file of the rows to remove
    upserted: int = 0
    deleted: int = 0

    def __post_init__(self) -> None:
        self.upserts = Spill(self.feed.silver_schema)

    def __enter__(self) -> SilverPlan:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.upserts.close()

    def add(self, group: Iterable[int], target: pl.DataFrame) -> None:
        """Compare the target rows of a group of key slices with silver's current rows of the same slices."""
        key, partition = self.feed.key, self.feed.partition
        target = target.select(list(self.feed.silver_schema)).with_columns(_row_hash(self.feed.silver_schema))
        current = self.current.filter(pl.col(SLICE).is_in(list(group)))
        same = [key, partition, ROW_HASH]
        upserts = target.join(current, on=same, how="anti") if not current.is_empty() else target
        removals = current.join(target.select(same), on=same, how="anti")
        self.upserts.add(0, upserts.drop(ROW_HASH))
        self.upserted += upserts.height
        if not removals.is_empty():
            self.removals.append(removals.select(key, partition, FILE))
            self.deleted += removals.join(target.select(key, partition), on=[key, partition], how="anti").height

    def commit(self, commit: CommitInfo, operation: str) -> SilverChange:
        if not self.upserted and not self.removals:
            return SilverChange(0, 0, None)
        schema = self.feed.silver_schema
        if not self.removals:  # only new rows: an append is the same single commit
            stream = FrameStream(schema, lambda: self.upserts.frames(0))
            with_commit_retry(lambda: write_table(self.uri, stream.reader(), commit, operation), uri=self.uri)
        else:
            removals = pl.concat(self.removals)
            removed = [self.files[uri] for uri in removals.get_column(FILE).unique().sort()]
            stream = FrameStream(schema, lambda: self._rows_to_write(removals, removed))
            rewrite_files(self.uri, stream, removed, [self.feed.partition], commit, operation)
        return SilverChange(self.upserted, self.deleted, table_version(self.uri))

    def _rows_to_write(self, removals: pl.DataFrame, removed: list[DataFile]) -> Iterator[pl.DataFrame]:
        """The upserts, then every removed file's rows but the removed ones (its file is replaced whole)."""
        yield from self.upserts.frames(0)
        key, partition = self.feed.key, self.feed.partition
        dropped = 0
        for file in removed:
            rows = _read_file(file, self.uri, partition, self.feed.silver_schema)
            kept = rows.join(removals.filter(pl.col(FILE) == file.uri), on=[key, partition], how="anti")
            dropped += rows.height - kept.height
            yield kept
        if dropped != len(removals):
            # The files no longer hold what was read under the lock: fail the write rather than commit a guess.
            raise RuntimeError(
                f"silver {self.uri} changed under this run: {dropped} rows matched in the files to rewrite, "
                f"{len(removals)} expected"
            )


def _read_file(file: DataFile, uri: str, partition: str, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    rows = scan_files([file], uri, FILE).drop(FILE).collect()
    value = file.partition_values.get(partition)
    return rows.with_columns(_typed(pl.lit(value), schema[partition]).alias(partition)).select(list(schema))


def _typed(text: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """A partition value as the log writes it (text) in the column's type."""
    return text.str.to_date() if dtype == pl.Date else text.cast(dtype)


def plan_silver(uri: str, feed: FeedSpec, keys: pl.Series, candidate_dates: Iterable[date], slices: int) -> SilverPlan:
    """Silver's current rows of `keys` in the candidate event dates (the only partitions a key's row can be in),
    read once and narrowly, ready for the slices' comparisons."""
    partition, schema = feed.partition, feed.silver_schema
    dates = {d.isoformat() for d in candidate_dates}
    files = {f.uri: f for f in data_files(uri) if f.partition_values.get(partition) in dates}
    narrow = {feed.key: schema[feed.key], partition: schema[partition], FILE: pl.String(), ROW_HASH: pl.UInt64()}
    if not files or keys.is_empty():
        current = pl.DataFrame(schema={**narrow, SLICE: pl.UInt64()})
    else:
        where = pl.DataFrame(
            {FILE: list(files), partition: [files[u].partition_values[partition] for u in files]},
            schema={FILE: pl.String(), partition: pl.String()},
        ).with_columns(_typed(pl.col(partition), schema[partition]))
        current = (
            scan_files(list(files.values()), uri, FILE)
            .join(keys.to_frame(feed.key).lazy(), on=feed.key, how="semi")
            .join(where.lazy(), on=FILE)
            .select(feed.key, partition, FILE, _row_hash(schema))
            .collect(engine="streaming")
        )
        current = current.with_columns(key_slices(current.get_column(feed.key), slices).alias(SLICE))
    return SilverPlan(uri, feed, current, files, slices)
