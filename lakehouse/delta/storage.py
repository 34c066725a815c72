"""Delta Lake I/O, the one door to every table: every commit carries its batch's lineage, every write is one
atomic commit, and a root's URI scheme (local path or `s3://...`) decides how a table is reached.

The rest of the code never calls deltalake or scans a table's files itself: a remote table needs its
storage options on every call, and only this module knows them.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Literal, TypeVar

import polars as pl
import pyarrow as pa
import pyarrow.fs as pafs
from deltalake import ColumnProperties, CommitProperties, DeltaTable, Field, Schema, WriterProperties, write_deltalake
from deltalake.exceptions import CommitFailedError
from deltalake.table import TableMerger
from deltalake.transaction import AddAction, RemoveAction

from lakehouse.faults import fault_armed, mid_write

T = TypeVar("T")


def is_remote(uri: str | Path) -> bool:
    """An object-store URI (`s3://bucket/prefix`); anything else is a local path."""
    return "://" in str(uri)


def join_uri(root: str | Path, *parts: str) -> str:
    """`root/parts...`, keeping a URI's scheme: `Path` would turn `s3://b/p` into `s3:/b/p`."""
    if is_remote(root):
        return "/".join([str(root).rstrip("/"), *parts])
    return str(Path(root, *parts))


def table_uri(root: str | Path, layer: str, name: str) -> str:
    """Asset keys follow storage: ["silver", "billing_events"] lives at <root>/tables/silver/billing_events."""
    return join_uri(root, "tables", layer, name)


# The standard variables delta-rs and boto read, under the object_store keys that deltalake and
# Polars both accept. Read at each call, never stored: no secret lands in a file or a table.
STORAGE_ENV = {
    "AWS_ENDPOINT_URL": "aws_endpoint_url",
    "AWS_ACCESS_KEY_ID": "aws_access_key_id",
    "AWS_SECRET_ACCESS_KEY": "aws_secret_access_key",
    "AWS_REGION": "aws_region",
    "AWS_ALLOW_HTTP": "aws_allow_http",
}


class UnsafeObjectStoreError(RuntimeError):
    """The environment turns off the conditional PUT that makes concurrent Delta commits safe on an object store."""


def _refuse_unsafe_commits() -> None:
    """delta-rs and object_store read these variables themselves: with conditional PUT disabled a commit
    cannot be made atomically (delta-rs 1.6 cannot write at all), and an unsafe rename lets two writers
    overwrite each other's log entry, losing a commit silently."""
    unsafe = [
        f"{name}={os.environ[name]}"
        for name in ("AWS_S3_ALLOW_UNSAFE_RENAME", "AWS_CONDITIONAL_PUT", "CONDITIONAL_PUT")
        if os.environ.get(name, "").strip().lower() in ({"true", "1", "yes"} if "RENAME" in name else {"disabled"})
    ]
    if unsafe:
        raise UnsafeObjectStoreError(
            f"refusing to use the object store with {', '.join(unsafe)}: Delta commits need conditional PUT "
            "(If-None-Match) so that concurrent writers cannot overwrite each other's commit; unset it. Nothing was written."
        )


def storage_options(uri: str | Path) -> dict[str, str] | None:
    """What a deltalake or Polars call needs to reach `uri`: None for a local path."""
    if not is_remote(uri):
        return None
    _refuse_unsafe_commits()
    return {key: os.environ[name] for name, key in STORAGE_ENV.items() if os.environ.get(name)}


def filesystem(uri: str | Path) -> tuple[pafs.FileSystem, str]:
    """A pyarrow filesystem reaching `uri` and the path on it (`bucket/prefix/...` for S3), for the files
    that are not Delta tables (landing) and for listing tables; its connection comes from the same AWS_* variables."""
    if not is_remote(uri):
        return pafs.LocalFileSystem(), str(uri)
    scheme, _, path = str(uri).partition("://")
    if scheme not in ("s3", "s3a"):
        raise ValueError(f"unsupported object store {scheme}:// in {uri}: only s3:// (S3-compatible) roots are supported")
    options = storage_options(uri) or {}
    endpoint = options.get("aws_endpoint_url", "")
    http = endpoint.startswith("http://")
    return (
        pafs.S3FileSystem(
            access_key=options.get("aws_access_key_id"),
            secret_key=options.get("aws_secret_access_key"),
            region=options.get("aws_region") or "us-east-1",
            endpoint_override=endpoint.removeprefix("http://").removeprefix("https://") or None,
            scheme="http" if http else "https",
        ),
        path.rstrip("/"),
    )


@dataclass(frozen=True)
class CommitInfo:
    """The batch lineage written into every Delta commit's metadata (and mirrored in Dagster metadata)."""

    dataset: str
    batch_id: str
    run_id: str
    code_version: str
    arrival_date: date | None = None
    source_files: tuple[Mapping[str, object], ...] = ()
    counts: Mapping[str, int] = field(default_factory=dict)
    operation: str = ""

    def custom_metadata(self) -> dict[str, str]:
        return {
            "dataset": self.dataset,
            "batch_id": self.batch_id,
            "run_id": self.run_id,
            "code_version": self.code_version,
            "arrival_date": self.arrival_date.isoformat() if self.arrival_date else "",
            "source_files": json.dumps(list(self.source_files), sort_keys=True),
            "batch_counts": json.dumps(dict(self.counts), sort_keys=True),
            "lakehouse_operation": self.operation,
        }

    def properties(self, operation: str) -> CommitProperties:
        info = CommitInfo(**{**self.__dict__, "operation": operation})
        fence = _FENCE.get()
        if fence is None:
            return CommitProperties(custom_metadata=info.custom_metadata())
        # A fenced writer stamps its lock and token on the commit (how a later holder's commits are told
        # apart), and lets delta-rs no silent rebase: a newer version than the verified one fails the commit.
        stamp = {FENCE_LOCK_KEY: fence.lock, FENCE_TOKEN_KEY: str(fence.token)}
        return CommitProperties(custom_metadata={**info.custom_metadata(), **stamp}, max_commit_retries=0)


class StaleWriterError(RuntimeError):
    """This writer's lock lapsed or a newer holder of it committed: its plan is stale, so it must not commit."""


FENCE_LOCK_KEY = "writer_lock"
FENCE_TOKEN_KEY = "writer_token"


@dataclass
class Fence:
    """What a distributed writer lock hands the writes made under it: the lock's name, its fencing token (larger
    for every later holder), a check that the lock is still held, and the version of each table the batch
    first read (what it planned against)."""

    lock: str
    token: int
    still_held: Callable[[], None]  # raises StaleWriterError when the lock lapsed
    planned: dict[str, int] = field(default_factory=dict)

    def note_read(self, uri: str, version: int) -> None:
        self.planned.setdefault(uri, version)

    def verify(self, uri: str) -> DeltaTable | None:
        """The latest snapshot of `uri`, once this writer is known to still own it: its lock held, and no commit of
        another holder of the lock since the version planned against (nor any of a newer holder, planned or not)."""
        self.still_held()
        if not table_exists(uri):
            return None
        table = open_table(uri)
        planned = self.planned.get(uri)
        depth = table.version() - planned if planned is not None else FENCE_HISTORY_DEPTH
        for entry in table.history(max(depth, 1)) if depth > 0 or planned is None else []:
            if entry.get(FENCE_LOCK_KEY) != self.lock:
                continue  # another lock's writer (a shared ops table): its keyed rows are not this plan's
            token = int(entry.get(FENCE_TOKEN_KEY) or 0)
            newer = entry.get("version", -1) > (planned if planned is not None else -1) and token != self.token
            if token > self.token or newer:
                raise StaleWriterError(
                    f"refusing to commit to {uri}: another holder of the {self.lock} lock (token {token}, this writer "
                    f"{self.token}) committed version {entry.get('version')} after this batch planned against "
                    f"{'version ' + str(planned) if planned is not None else 'an earlier version'}. Nothing more is "
                    "written by this run; re-run it to plan from the current tables."
                )
        return table


FENCE_HISTORY_DEPTH = 20  # commits searched for a newer holder's when the batch never read the table
_FENCE: ContextVar[Fence | None] = ContextVar("lakehouse_fence", default=None)
_VERIFIED: ContextVar[dict[str, DeltaTable] | None] = ContextVar("lakehouse_verified", default=None)


@contextmanager
def fenced(fence: Fence) -> Iterator[Fence]:
    """Fence every write made in this context (this thread) with `fence`; a writer lock enters it."""
    token = _FENCE.set(fence)
    try:
        yield fence
    finally:
        _FENCE.reset(token)


def _note_read(uri: str, table: DeltaTable) -> None:
    fence = _FENCE.get()
    if fence is not None:
        fence.note_read(uri, table.version())


def _write_target(uri: str) -> str | DeltaTable:
    """The snapshot a fenced write must commit on top of (verified, never rebased), else the URI (latest)."""
    verified = _VERIFIED.get()
    return verified.get(uri, uri) if verified else uri


def table_exists(uri: str) -> bool:
    return DeltaTable.is_deltatable(uri, storage_options=storage_options(uri))


def open_table(uri: str, version: int | None = None) -> DeltaTable:
    """The table's snapshot (latest or `version`); operations on it (merge, vacuum, history) inherit its options."""
    return DeltaTable(uri, version=version, storage_options=storage_options(uri))


def scan_table(uri: str, version: int | None = None) -> pl.LazyFrame:
    if version is None and _FENCE.get() is not None:  # a fenced batch remembers what it planned against
        table = open_table(uri)
        _note_read(uri, table)
        version = table.version()
    return pl.scan_delta(uri, version=version, storage_options=storage_options(uri))


def scan_data_files(uri: str, file_column: str) -> pl.LazyFrame | None:
    """Every data file of the current version as one scan, each row naming its file in `file_column`
    (None when the table has no file). For lookups that need to know which file (so which partition)
    holds a value; `scan_table` is the reader otherwise."""
    table = open_table(uri)
    _note_read(uri, table)
    files = table.file_uris()
    if not files:
        return None
    return pl.scan_parquet(files, include_file_paths=file_column, hive_partitioning=False, storage_options=storage_options(uri))


def write_table(
    uri: str,
    data: pa.RecordBatchReader | pa.Table,
    commit: CommitInfo,
    operation: str,
    *,
    mode: Literal["append", "overwrite"] = "append",
    predicate: str | None = None,
    partition_by: list[str] | None = None,
    schema_mode: Literal["merge", "overwrite"] | None = None,
    target_file_size: int | None = None,
    max_row_group_rows: int | None = None,
    unique: Sequence[str] = (),
) -> None:
    """One Delta write, one commit, carrying `commit`'s lineage: no write without it (DESIGN rule 10).

    `predicate` (an overwrite's scope, SQL) replaces only the rows it matches; `max_row_group_rows` caps the
    Parquet row groups (delta-rs' default is 1,048,576 rows), the unit a sliced reader decodes.
    """
    common: dict[str, Any] = {
        "partition_by": partition_by,
        "schema_mode": schema_mode,
        "target_file_size": target_file_size,
        "storage_options": storage_options(uri),
        "commit_properties": commit.properties(operation),
        "writer_properties": writer_properties(max_row_group_rows, unique) if max_row_group_rows or unique else None,
    }
    target = _write_target(uri)
    if not isinstance(target, str):
        del common["storage_options"]  # a snapshot carries its own
    if mode == "append":
        write_deltalake(target, data, mode="append", **common)
    else:
        write_deltalake(target, data, mode="overwrite", predicate=predicate, **common)


def writer_properties(max_row_group_rows: int | None, unique: Sequence[str]) -> WriterProperties:
    """Parquet settings of a write: row groups capped at `max_row_group_rows`, and no dictionary for the `unique`
    columns (ids, hashes, raw lines): the writer would build one, find it no smaller, and drop it (measured: the
    ledger's 1M-row write 1.04 s with dictionaries, 0.82 s without them for its unique columns; bronze's 0.81 s, 0.65 s)."""
    plain = {name: ColumnProperties(dictionary_enabled=False) for name in unique}
    return WriterProperties(max_row_group_size=max_row_group_rows, column_properties=plain or None)


def merge_into(uri: str, source: pa.Table, predicate: str, commit: CommitInfo, operation: str) -> TableMerger:
    """A MERGE builder on the latest version, aliased `s` (source) and `t` (target), carrying `commit`'s lineage."""
    target = _write_target(uri)
    return (target if isinstance(target, DeltaTable) else open_table(uri)).merge(
        source, predicate=predicate, source_alias="s", target_alias="t", commit_properties=commit.properties(operation)
    )


# Upkeep every table carries from its creation, so a long life of small batches does not slow
# loading: delta-rs writes a checkpoint every `checkpointInterval` commits (a load replays at most
# that many JSON commits; 10 is Spark's default, delta-rs' is 100) and then drops log entries older
# than the log retention. Vacuum keeps removed files for the deleted-file retention. Both
# retentions bound how far back time travel and a rollback (RESTORE) reach: a week of versions.
TABLE_PROPERTIES = {
    "delta.checkpointInterval": "10",
    "delta.enableExpiredLogCleanup": "true",
    "delta.logRetentionDuration": "interval 30 days",
    "delta.deletedFileRetentionDuration": "interval 7 days",
}


class SchemaMigrationError(RuntimeError):
    """The code's schema for a table drops or retypes a column: a rewrite the engine never does silently."""


def _delta_fields(schema: Mapping[str, pl.DataType]) -> dict[str, Field]:
    """The Delta fields a frame of `schema` is written as (the types delta-rs gives the table)."""
    return {f.name: f for f in Schema.from_arrow(pl.DataFrame(schema=dict(schema)).to_arrow().schema).fields}


def ensure_table(uri: str, schema: Mapping[str, pl.DataType], partition_by: list[str], commit: CommitInfo) -> None:
    """Make the table exist with `schema`, so readers and MERGE always find it; a racing creator is fine.

    The creating commit carries `commit`'s lineage like any other. An existing table missing some of
    `schema`'s columns (the code added one, e.g. a gold measure) gets them in a metadata-only commit,
    its old rows reading null until rewritten; a column dropped or retyped raises SchemaMigrationError.
    """
    if table_exists(uri):
        migrate_schema(uri, schema, commit)
        return
    empty = pl.DataFrame(schema=dict(schema)).to_arrow()
    try:
        write_deltalake(
            uri,
            empty,
            partition_by=partition_by,
            mode="append",
            configuration=TABLE_PROPERTIES,
            storage_options=storage_options(uri),
            commit_properties=commit.properties("create table"),
        )
    except CommitFailedError:
        if not table_exists(uri):
            raise
        migrate_schema(uri, schema, commit)


def migrate_schema(uri: str, schema: Mapping[str, pl.DataType], commit: CommitInfo) -> None:
    """Add the columns `schema` has and the table lacks (nullable, metadata only); refuse any other difference."""
    wanted = _delta_fields(schema)

    def add_missing() -> None:
        table = open_table(uri)  # re-read on a retry: a racing writer may have added some already
        held = {f.name: f for f in table.schema().fields}
        dropped = sorted(set(held) - set(wanted))
        retyped = [
            f"{n} {held[n].type} -> {wanted[n].type}" for n in sorted(set(held) & set(wanted)) if held[n].type != wanted[n].type
        ]
        if dropped or retyped:
            problems = ([f"drops columns {dropped}"] if dropped else []) + ([f"retypes {', '.join(retyped)}"] if retyped else [])
            raise SchemaMigrationError(
                f"the code's schema for {uri} {' and '.join(problems)}: only added columns migrate on their own; "
                "migrate the table explicitly (a rewrite) before running this code"
            )
        added = [field for name, field in wanted.items() if name not in held]
        if added:
            table.alter.add_columns(added, commit_properties=commit.properties("add columns"))

    with_commit_retry(add_missing)


def read_table(
    uri: str,
    predicate: pl.Expr | None = None,
    columns: list[str] | None = None,
    empty_schema: Mapping[str, pl.DataType] | None = None,
    version: int | None = None,
) -> pl.DataFrame:
    """Read a table snapshot (filtered with partition pruning; the latest or a given version); a missing table reads as no rows."""
    if not table_exists(uri):
        fence = _FENCE.get()
        if fence is not None and version is None:
            fence.note_read(uri, -1)  # planned against no table: any other holder's creation moved it
        return pl.DataFrame(schema=dict(empty_schema or {}))
    frame = scan_table(uri, version)
    if predicate is not None:
        frame = frame.filter(predicate)
    if columns is not None:
        frame = frame.select(columns)
    return frame.collect()


def count_rows(uri: str, predicate: pl.Expr) -> int:
    """How many rows match `predicate` (no column is kept in memory); a missing table has none."""
    if not table_exists(uri):
        return 0
    return int(scan_table(uri).filter(predicate).select(pl.len()).collect().item())


def read_partition_chunks(
    uri: str, column: str, value: date, columns: list[str], rows: int, schema: Mapping[str, pl.DataType] | None = None
) -> Iterator[pl.DataFrame]:
    """One partition's rows in slices of at most `rows`, read file by file and slice by slice, so neither
    the partition nor work derived from it (often several times its size) is ever whole in memory.

    Each slice is its own Parquet read (Polars prunes to the row groups it overlaps), so memory is bounded
    by a slice plus the row groups it touches; tables whose writer caps row groups at `rows`
    (`write_table(max_row_group_rows=...)`) decode nothing twice. A missing table yields nothing.
    """
    if not table_exists(uri):
        return
    table = open_table(uri)
    if "deletionVectors" in (table.protocol().reader_features or []):  # a file's rows are not the table's rows
        yield from read_table(uri, pl.col(column) == value, columns, schema).iter_slices(rows)
        return
    _note_read(uri, table)
    files = table.file_uris(file_pruning_predicate=[(column, "=", value.isoformat())])  # a partition value: exact
    wanted = [name for name in columns if name != column]
    options = storage_options(uri)
    typed = _as_table_columns({n: schema[n] for n in wanted}) if schema else {}
    for file in files:
        scan = pl.scan_parquet(file, hive_partitioning=False, storage_options=options, **typed).select(wanted)
        height = scan.select(pl.len()).collect().item()  # from the footer: no column is decoded
        for start in range(0, height, rows):
            chunk = scan.slice(start, rows).collect()
            if column in columns:
                chunk = chunk.with_columns(pl.lit(value).alias(column))
            chunk = chunk.select(columns)
            yield chunk.cast({name: schema[name] for name in columns}) if schema is not None else chunk  # type: ignore[arg-type]


def table_version(uri: str) -> int | None:
    return open_table(uri).version() if table_exists(uri) else None


def sql_in_list(values: Iterable[object]) -> str:
    """A literal IN list: delta-rs prunes partitions only when the predicate names them as literals."""
    literals = sorted({f"'{v.isoformat()}'" if isinstance(v, date) else f"'{v}'" for v in values})
    return "(" + ", ".join(literals) + ")"


# Row groups of a streamed write: delta-rs buffers a row group per partition before it encodes it, so its
# default (1,048,576 rows) would hold a big write's rows, for each partition written, in memory.
STREAMED_ROW_GROUP_ROWS = 131_072


@dataclass(frozen=True)
class FrameStream:
    """Rows produced on demand, afresh for each write attempt (a retried commit reads them again): delta-rs
    encodes a lazily produced stream in bounded memory, so a write of any size never holds its rows whole."""

    schema: Mapping[str, pl.DataType]
    frames: Callable[[], Iterable[pl.DataFrame]]
    unique: tuple[str, ...] = ()  # columns whose values rarely repeat (see `writer_properties`)

    def reader(self) -> pa.RecordBatchReader:
        columns, arrow_schema = list(self.schema), pl.DataFrame(schema=dict(self.schema)).to_arrow().schema
        batches = (
            batch
            for frame in self.frames()
            for chunk in frame.select(columns).cast(dict(self.schema)).iter_slices(WRITE_CHUNK_ROWS)  # type: ignore[arg-type]
            for batch in chunk.to_arrow().to_batches()
        )
        return pa.RecordBatchReader.from_batches(arrow_schema, batches)

    def whole(self) -> pl.DataFrame:
        parts = [frame.select(list(self.schema)).cast(dict(self.schema)) for frame in self.frames()]  # type: ignore[arg-type]
        return pl.concat(parts) if parts else pl.DataFrame(schema=dict(self.schema))


def replace_where(
    uri: str,
    data: pl.DataFrame | FrameStream,
    predicate: str,
    commit: CommitInfo,
    operation: str,
    crash_during: str | None = None,
    max_row_group_rows: int | None = None,
) -> None:
    """Atomically replace the rows matching `predicate` with `data` (an empty `data` deletes them).

    `crash_during` names the test-only fault point inside this write (see `faults.mid_write`).
    """
    stream = data if isinstance(data, FrameStream) else FrameStream(data.schema, lambda: [data])

    def write() -> None:
        arrow, target_file_size = _maybe_stopped(stream, uri, crash_during)
        write_table(
            uri,
            arrow,
            commit,
            operation,
            mode="overwrite",
            predicate=predicate,
            target_file_size=target_file_size,
            max_row_group_rows=max_row_group_rows,
            unique=stream.unique,
        )

    with_commit_retry(write, uri=uri)


def append_rows(uri: str, rows: FrameStream, commit: CommitInfo, operation: str, crash_during: str | None = None) -> None:
    """Append `rows`, streamed, in one commit (`crash_during`: the test-only fault point inside this write)."""

    def write() -> None:
        data, target_file_size = _maybe_stopped(rows, uri, crash_during)
        write_table(
            uri,
            data,
            commit,
            operation,
            target_file_size=target_file_size,
            max_row_group_rows=STREAMED_ROW_GROUP_ROWS,
            unique=rows.unique,
        )

    with_commit_retry(write, uri=uri)


def _maybe_stopped(rows: FrameStream, uri: str, crash_during: str | None) -> tuple[pa.RecordBatchReader | pa.Table, int | None]:
    """The stream a write consumes; armed at `crash_during` (tests only), one that stops the process mid-write."""
    if crash_during is not None and fault_armed(crash_during):
        return mid_write(crash_during, uri, rows.whole().to_arrow())
    return rows.reader(), None


@dataclass(frozen=True)
class DataFile:
    """One data file of a table's current version, as its log names it."""

    uri: str  # what a reader opens
    path: str  # relative to the table, as an add or remove action names it
    size: int
    partition_values: dict[str, str | None]


def data_files(uri: str) -> list[DataFile]:
    """The data files of the table's current version (the verified one under a fence); none for a missing table.

    A table with deletion vectors is refused: a file's rows are then not the table's rows, and a file-level
    rewrite (`rewrite_files`) would resurrect deleted rows.
    """
    if not table_exists(uri):
        return []
    target = _write_target(uri)
    table = target if isinstance(target, DeltaTable) else open_table(uri)
    _note_read(uri, table)
    if "deletionVectors" in (table.protocol().reader_features or []):
        raise RuntimeError(f"{uri} uses deletion vectors, which this engine's file rewrites do not support")
    actions = pa.table(table.get_add_actions(flatten=False)).to_pylist()
    return [
        DataFile(
            join_uri(uri, action["path"]),
            action["path"],
            action["size_bytes"],
            {name: None if value is None else str(value) for name, value in (action.get("partition") or {}).items()},
        )
        for action in actions
    ]


def scan_files(files: list[DataFile], uri: str, file_column: str, columns: Mapping[str, pl.DataType]) -> pl.LazyFrame:
    """The given data files as one scan of `columns` (the files' columns: partition columns are not in them, take
    them from `DataFile.partition_values`), each row naming its file's URI in `file_column`."""
    return pl.scan_parquet(
        [f.uri for f in files],
        include_file_paths=file_column,
        hive_partitioning=False,
        storage_options=storage_options(uri),
        **_as_table_columns(columns),
    )


def _as_table_columns(columns: Mapping[str, pl.DataType]) -> dict[str, Any]:
    """Parquet scan options reading files as the table's `columns`: a column added to the table after a file was
    written reads as null from it, as in Delta (without a schema Polars takes the first file's, and a later file
    with the added column fails the scan)."""
    return {"schema": dict(columns), "missing_columns": "insert", "extra_columns": "ignore"}


STAGED_PREFIX = "staged-"  # a rewrite's files are written as a throwaway table in a folder of this name


def rewrite_files(
    uri: str,
    rows: FrameStream,
    removed: list[DataFile],
    partition_by: list[str],
    commit: CommitInfo,
    operation: str,
    crash_during: str | None = None,
) -> None:
    """One commit that adds `rows` as new data files and removes the `removed` files (whose rows the caller
    put back in `rows` unless it meant to drop them): a copy-on-write change of any size in bounded memory.

    delta-rs' MERGE holds its whole source in memory; here delta-rs writes `rows` (streamed, with its own
    statistics) as a throwaway table in a `staged-*` folder inside the table, and its add actions, together
    with the removals, become one commit of the table. Files of an attempt that never commits are unreferenced
    and go with the table's upkeep (vacuum).
    """

    def write() -> None:
        target = _write_target(uri)
        table = target if isinstance(target, DeltaTable) else open_table(uri)
        _remove_dead_staging_logs(uri)
        folder = f"{STAGED_PREFIX}{uuid.uuid4().hex}"
        staged = join_uri(uri, folder)
        try:
            data, target_file_size = _maybe_stopped(rows, uri, crash_during)
            write_deltalake(
                staged,
                data,
                partition_by=partition_by,
                target_file_size=target_file_size,
                storage_options=storage_options(uri),
                commit_properties=commit.properties(operation),
                writer_properties=writer_properties(STREAMED_ROW_GROUP_ROWS, rows.unique),
            )
            adds = [
                AddAction(
                    f"{folder}/{add['path']}", add["size"], add["partitionValues"], add["modificationTime"], True, add["stats"]
                )
                for add in _first_commit_adds(staged)
            ]
            deleted_at = int(time.time() * 1000)  # file bookkeeping for vacuum's retention, never a data decision
            removes = [RemoveAction(f.path, True, deleted_at, f.size, f.partition_values) for f in removed]
            table.create_write_transaction(
                [*adds, *removes], "append", table.schema(), partition_by, commit_properties=commit.properties(operation)
            )
        except BaseException:
            _remove_folder(staged)  # nothing references its files: the next attempt writes its own
            raise
        _remove_folder(join_uri(staged, "_delta_log"))  # the throwaway table's log: its files now belong to the table

    with_commit_retry(write, uri=uri)


def _first_commit_adds(uri: str) -> list[dict[str, Any]]:
    fs, path = filesystem(uri)
    with fs.open_input_stream(f"{path}/_delta_log/{0:020d}.json") as log:
        entries = [json.loads(line) for line in log.read().decode().splitlines() if line.strip()]
    return [entry["add"] for entry in entries if "add" in entry]


def _remove_dead_staging_logs(uri: str) -> None:
    """The logs of earlier rewrites that never committed (a killed process): under the feed's writer lock no other
    rewrite is in flight, so each is dead; their data files are unreferenced and go with vacuum."""
    fs, path = filesystem(uri)
    for info in fs.get_file_info(pafs.FileSelector(path, allow_not_found=True)):
        if info.type == pafs.FileType.Directory and info.base_name.startswith(STAGED_PREFIX):
            _remove_folder(join_uri(uri, info.base_name, "_delta_log"))


def _remove_folder(uri: str) -> None:
    fs, path = filesystem(uri)
    if fs.get_file_info(path).type == pafs.FileType.Directory:
        fs.delete_dir(path)  # with its contents


WRITE_CHUNK_ROWS = 100_000


def arrow_stream(data: pl.DataFrame) -> pa.RecordBatchReader:
    """The frame as Arrow batches converted one slice at a time: a big write never holds a whole Arrow copy."""
    schema = data.head(0).to_arrow().schema
    batches = (batch for chunk in data.iter_slices(WRITE_CHUNK_ROWS) for batch in chunk.to_arrow().to_batches())
    return pa.RecordBatchReader.from_batches(schema, batches)


def with_commit_retry(write: Callable[[], T], attempts: int = 5, uri: str | None = None) -> T:
    """Retry a commit that lost a race: delta-rs raises on a real conflict whatever its own retry count says.

    Every caller recomputes nothing between attempts because its input is already the desired end
    state of the rows it names (replace or keyed merge), so a retry is safe while one writer holds
    the lock. Under a distributed lock (a `Fence` is active) and given the table's `uri`, each attempt
    first verifies the lock is still held and that no other holder of it committed to the table since
    this batch planned, then commits on exactly the verified snapshot (no silent rebase): a stale writer
    (paused past its lock's lapse) is refused with StaleWriterError, never replayed on the newer version.
    """
    fence = _FENCE.get()
    for attempt in range(attempts):
        reset = None
        if fence is not None and uri is not None:
            snapshot = fence.verify(uri)
            reset = _VERIFIED.set({uri: snapshot} if snapshot is not None else {})
        try:
            return write()
        except CommitFailedError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.05 * 2**attempt)  # the next attempt re-verifies: another holder's commit refuses it
        finally:
            if reset is not None:
                _VERIFIED.reset(reset)
    raise AssertionError("unreachable")
