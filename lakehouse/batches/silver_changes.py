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

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date

import polars as pl

from lakehouse.batches.resolution import key_slices
from lakehouse.delta.storage import (
    CommitInfo,
    DataFile,
    FrameStream,
    append_rows,
    data_files,
    rewrite_files,
    scan_files,
    table_version,
)
from lakehouse.feed import FeedSpec

ROW_HASH = "_row_hash"  # a hash of every silver column: equal rows have equal hashes (a collision is 2^-64)
FILE = "_file"
SLICE = "_slice"
CRASH_POINT = "during_silver_write"  # the test-only fault point inside silver's write (lakehouse.faults)
KEY_HASH_SEED = 0  # a key's Polars hash: 8 bytes, where the keys themselves would be the biggest thing kept


@dataclass(frozen=True)
class SilverChange:
    upserted: int  # rows inserted or updated (a move counts once)
    deleted: int  # rows removed from their old event date by a move
    version: int | None  # the table version after the commit, None if nothing was committed


def _row_hash(schema: dict[str, pl.DataType]) -> pl.Expr:
    return pl.struct([pl.col(name).cast(dtype) for name, dtype in schema.items()]).hash(seed=0).alias(ROW_HASH)


Targets = Callable[[], Iterable[tuple[list[int], pl.DataFrame]]]  # (group of key slices, its target rows), in order


@dataclass
class SilverPlan:
    """The changes of one batch: counted and located group by group (`add`), then committed at once (`commit`),
    which computes each group's upserts again as it streams them rather than keeping them."""

    uri: str
    feed: FeedSpec
    current: pl.DataFrame  # silver's rows of the batch's keys: key, partition, file, row hash, slice
    files: dict[str, DataFile]  # by URI: silver's data files in the candidate partitions
    removals: list[pl.DataFrame] = field(default_factory=list)  # key, partition, file of the rows to remove
    upserted: int = 0
    deleted: int = 0

    def add(self, group: list[int], target: pl.DataFrame) -> None:
        """Compare the target rows of a group of key slices with silver's current rows of the same slices."""
        key, partition = self.feed.key, self.feed.partition
        target, current = self._compared(group, target)
        upserts = self._upserts(target, current)
        self.upserted += upserts.height
        if current.is_empty():
            return
        same = [key, partition, ROW_HASH]
        removals = current.join(target.select(same), on=same, how="anti")
        if not removals.is_empty():
            self.removals.append(removals.select(key, partition, FILE))
            self.deleted += removals.join(target.select(key, partition), on=[key, partition], how="anti").height

    def _compared(self, group: list[int], target: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
        """The group's target rows and silver's current rows of them, hashed when there is anything to compare."""
        key = self.feed.key
        target = target.select(list(self.feed.silver_schema))
        # Rows of these slices whose key the group delivers: the hash join that found them may have matched others.
        current = self.current.filter(pl.col(SLICE).is_in(group)).join(target.select(key), on=key, how="semi")
        if not current.is_empty():  # a batch of new keys (most of a day) has nothing to compare: no row is hashed
            target = target.with_columns(_row_hash(self.feed.silver_schema))
        return target, current

    def _upserts(self, target: pl.DataFrame, current: pl.DataFrame) -> pl.DataFrame:
        if current.is_empty():
            return target
        key, partition = self.feed.key, self.feed.partition
        return target.join(current, on=[key, partition, ROW_HASH], how="anti").drop(ROW_HASH)

    def commit(self, commit: CommitInfo, operation: str, targets: Targets) -> SilverChange:
        """Commit the changes `add` found; `targets` gives the same groups' target rows again."""
        if not self.upserted and not self.removals:
            return SilverChange(0, 0, None)
        schema = self.feed.silver_schema
        unique = (self.feed.key, "_content_hash", "_source_line")

        def upserts() -> Iterator[pl.DataFrame]:
            for group, target in targets():
                yield self._upserts(*self._compared(group, target))

        if not self.removals:  # only new rows: an append is the same single commit
            append_rows(self.uri, FrameStream(schema, upserts, unique), commit, operation, CRASH_POINT)
        else:
            removals = pl.concat(self.removals)
            removed = [self.files[uri] for uri in removals.get_column(FILE).unique().sort()]
            stream = FrameStream(schema, lambda: self._rows_to_write(upserts(), removals, removed), unique)
            rewrite_files(self.uri, stream, removed, [self.feed.partition], commit, operation, CRASH_POINT)
        return SilverChange(self.upserted, self.deleted, table_version(self.uri))

    def _rows_to_write(
        self, upserts: Iterable[pl.DataFrame], removals: pl.DataFrame, removed: list[DataFile]
    ) -> Iterator[pl.DataFrame]:
        """The upserts, then every removed file's rows but the removed ones (its file is replaced whole)."""
        yield from upserts
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
    rows = scan_files([file], uri, FILE, _file_columns(schema, partition)).drop(FILE).collect()
    value = file.partition_values.get(partition)
    return rows.with_columns(_typed(pl.lit(value), schema[partition]).alias(partition)).select(list(schema))


def _file_columns(schema: dict[str, pl.DataType], partition: str) -> dict[str, pl.DataType]:
    return {name: dtype for name, dtype in schema.items() if name != partition}


def _typed(text: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """A partition value as the log writes it (text) in the column's type."""
    return text.str.to_date() if dtype == pl.Date else text.cast(dtype)


def plan_silver(uri: str, feed: FeedSpec, key_hashes: pl.Series, candidate_dates: Iterable[date], slices: int) -> SilverPlan:
    """Silver's current rows of the keys whose hashes (`KEY_HASH_SEED`) are `key_hashes`, in the candidate event
    dates (the only partitions a key's row can be in), read once and narrowly, ready for the slices' comparisons."""
    partition, schema = feed.partition, feed.silver_schema
    dates = {d.isoformat() for d in candidate_dates}
    files = {f.uri: f for f in data_files(uri) if f.partition_values.get(partition) in dates}
    narrow = {feed.key: schema[feed.key], partition: schema[partition], FILE: pl.String(), ROW_HASH: pl.UInt64()}
    if not files or key_hashes.is_empty():
        current = pl.DataFrame(schema={**narrow, SLICE: pl.UInt64()})
    else:
        where = pl.DataFrame(
            {FILE: list(files), partition: [files[u].partition_values[partition] for u in files]},
            schema={FILE: pl.String(), partition: pl.String()},
        ).with_columns(_typed(pl.col(partition), schema[partition]))
        current = (
            scan_files(list(files.values()), uri, FILE, _file_columns(schema, partition))
            .filter(pl.col(feed.key).hash(seed=KEY_HASH_SEED).is_in(key_hashes.implode()))
            .join(where.lazy(), on=FILE)
            .select(feed.key, partition, FILE, _row_hash(schema))
            .collect(engine="streaming")
        )
        current = current.with_columns(key_slices(current.get_column(feed.key), slices).alias(SLICE))
    return SilverPlan(uri, feed, current, files)
