"""Landing files: discovery, line splitting and the manifest that names a batch."""

from __future__ import annotations

import errno
import hashlib
import os
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import BinaryIO, Protocol

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.fs as pafs

from lakehouse.delta.storage import filesystem, is_remote

LANDING_SUFFIXES = (".jsonl", ".jsonl.gz")
_BOM = b"\xef\xbb\xbf"
_JSON_WHITESPACE = b" \t\r"  # a line of only these is blank; any other byte is a record (perhaps malformed)


class LandingError(RuntimeError):
    """A landing file cannot be read as a whole: the batch must fail loudly, not be published."""


@dataclass(frozen=True)
class LandedFile:
    """One landing file as it was read: its name relative to the feed's landing folder and its digest."""

    relative_path: str
    sha256: str
    size_bytes: int
    line_count: int  # physical lines, blank ones included
    record_count: int  # non-blank lines: the records it delivers
    damage: str | None = None  # why part of the file could not be read (its readable lines are still delivered)
    changed: str | None = None  # the file changed or vanished while the batch was read: landing files are immutable

    def as_metadata(self) -> dict[str, object]:
        return {
            "file": self.relative_path,
            "sha256": self.sha256,
            "bytes": self.size_bytes,
            "lines": self.line_count,
            "records": self.record_count,
            **({"damage": self.damage} if self.damage else {}),
            **({"changed": self.changed} if self.changed else {}),
        }


@dataclass(frozen=True)
class Batch:
    """Everything landed for one arrival date, read once, in name order."""

    dataset: str
    arrival_date: date
    files: tuple[LandedFile, ...]
    rows: pl.DataFrame  # one row per record: _raw, _source_file, _source_line (empty when streamed: stream_batch)
    ignored: tuple[IgnoredEntry, ...] = ()  # the date folder's entries not read (a symlink among them holds the batch)

    @property
    def records(self) -> int:
        return sum(f.record_count for f in self.files)

    @property
    def files_digest(self) -> str:
        return files_digest([(f.relative_path, f.sha256) for f in self.files], list(self.ignored))

    @property
    def held_by(self) -> list[IgnoredEntry]:
        return [e for e in self.ignored if e.holds_batch]

    @property
    def batch_id(self) -> str:
        return batch_id_for(self.dataset, self.arrival_date, self.files_digest)


def files_digest(files: list[tuple[str, str]], ignored: list[IgnoredEntry]) -> str:
    """Digest of the (name, sha256) listing plus the entries that hold the batch; without those, as it always was."""
    listing = "".join(f"{name}\t{sha256}\n" for name, sha256 in files) + _held_listing(ignored)
    return hashlib.sha256(listing.encode()).hexdigest()


def split_recorded(entries: list[dict[str, object]]) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    """A batch record's `files` list as (landed files, ignored entries): bronze records both, marked by `ignored`."""
    return [e for e in entries if "ignored" not in e], [e for e in entries if "ignored" in e]


def batch_id_for(dataset: str, arrival_date: date, files_digest: str) -> str:
    """sha256 of `<dataset>:<arrival_date>:<files digest>`: the same files always name the same batch."""
    return hashlib.sha256(f"{dataset}:{arrival_date.isoformat()}:{files_digest}".encode()).hexdigest()


def feed_landing_dir(root: str | Path, dataset: str) -> Path:
    """A local root's landing folder for the feed (an object-store root's is `<root>/landing/<dataset>/`, see `landing_store`)."""
    return Path(root) / "landing" / dataset


# Why an entry of the landing folder is not ingested. A symlink is never followed, wherever it
# points (out of the folder it is a way to read any file the pipeline can; inside it, a second
# copy of a file): it holds its date's batch (gate `landing_has_no_symlinks`) until it is removed.
HIDDEN = "hidden"  # `.` or `_` first: an upload in progress, a marker (Hadoop/Spark/Delta convention)
SYMLINK = "symlink"
NOT_A_DATE_FOLDER = "not_a_date_folder"
NOT_IN_A_DATE_FOLDER = "not_in_a_date_folder"
NESTED_FOLDER = "nested_folder"
OTHER_EXTENSION = "other_extension"
NOT_A_REGULAR_FILE = "not_a_regular_file"
NAME_NOT_UTF8 = "name_not_utf8"  # lineage names files by UTF-8 text; such a name cannot be recorded


@dataclass(frozen=True)
class IgnoredEntry:
    """An entry of the landing folder that is not ingested, and why; `path` is relative to the feed's folder."""

    path: str  # printable: control characters and undecodable bytes escaped
    reason: str
    detail: str

    @property
    def holds_batch(self) -> bool:
        return self.reason == SYMLINK

    def as_metadata(self) -> dict[str, object]:
        return {"file": self.path, "ignored": self.reason, "detail": self.detail}


@dataclass(frozen=True)
class LandingScan:
    """What the feed's landing folder holds now: dates with something to run, and everything not ingested."""

    arrival_dates: list[date]  # dates with a landing file or an entry that holds their batch
    ignored: list[IgnoredEntry]


def printable(name: str) -> str:
    """A name as one readable line: undecodable bytes as \\xNN, control characters (a newline) escaped."""
    text = name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def _is_hidden(name: str) -> bool:
    return name.startswith((".", "_"))


def _is_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # os.scandir hands undecodable bytes over as lone surrogates
        return False
    return True


def _arrival_date(name: str) -> date | None:
    """The date a folder name spells in `YYYY-MM-DD`, or None (`2026-02-30`, `2026-1-05` and `x` are not dates)."""
    try:
        arrival = date.fromisoformat(name)
    except ValueError:
        return None
    return arrival if name == arrival.isoformat() else None


# What an entry of the landing folder is, judged without following a symlink.
FILE, FOLDER, LINK, OTHER = "file", "folder", "symlink", "other"
Identity = tuple[int, int, int]  # (inode, size, mtime_ns): a change to any means the file was replaced or rewritten


@dataclass(frozen=True)
class Entry:
    name: str
    path: str  # the store's own path: local path, or `bucket/key` on an object store
    kind: str  # FILE, FOLDER, LINK or OTHER


class LandingStore(Protocol):
    """Where a root's landing files are: the listing, identity and one-shot read that the rules below need."""

    def entries(self, folder: str) -> list[Entry]: ...  # in name order; a missing folder has none
    def kind(self, path: str) -> str | None: ...  # None when nothing is there
    def identity(self, path: str) -> Identity | None: ...  # None when it vanished
    def read_once(self, path: str) -> tuple[bytes, Identity | None, str | None]: ...


class LocalLandingStore:
    """A local folder: never follows a symlink, on listing or on reading."""

    def entries(self, folder: str) -> list[Entry]:
        try:
            with os.scandir(folder) as listing:
                return [Entry(e.name, e.path, _local_kind(e)) for e in sorted(listing, key=lambda entry: entry.name)]
        except (FileNotFoundError, NotADirectoryError):
            return []

    def kind(self, path: str) -> str | None:
        if os.path.islink(path):
            return LINK
        return FOLDER if os.path.isdir(path) else FILE if os.path.isfile(path) else OTHER if os.path.lexists(path) else None

    def identity(self, path: str) -> Identity | None:
        try:
            return _identity(os.stat(path, follow_symlinks=False))
        except FileNotFoundError:
            return None

    def read_once(self, path: str) -> tuple[bytes, Identity | None, str | None]:
        return _read_once(Path(path))


def _local_kind(entry: os.DirEntry[str]) -> str:
    if entry.is_symlink():
        return LINK
    if entry.is_dir(follow_symlinks=False):
        return FOLDER
    return FILE if entry.is_file(follow_symlinks=False) else OTHER


class ObjectLandingStore:
    """An object store (S3): a key prefix is a folder; there are no symlinks, pipes or undecodable names.

    An object's identity is its size and modification time (the store gives no inode); an object is
    replaced whole, never appended to, so a read is one GET of one version.
    """

    def __init__(self, fs: pafs.FileSystem) -> None:
        self.fs = fs

    def entries(self, folder: str) -> list[Entry]:
        infos = self.fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True, recursive=False))
        return sorted((Entry(i.base_name, i.path, _object_kind(i)) for i in infos), key=lambda entry: entry.name)

    def kind(self, path: str) -> str | None:
        info = self.fs.get_file_info(path)
        return None if info.type == pafs.FileType.NotFound else _object_kind(info)

    def identity(self, path: str) -> Identity | None:
        info = self.fs.get_file_info(path)
        return None if info.type != pafs.FileType.File else (0, info.size or 0, info.mtime_ns or 0)

    def read_once(self, path: str) -> tuple[bytes, Identity | None, str | None]:
        before = self.identity(path)
        if before is None:
            return b"", None, "vanished while the batch was being read"
        try:
            with self.fs.open_input_stream(path, compression=None) as stream:  # the bytes as landed: .gz is decoded later
                raw = stream.read()
        except FileNotFoundError:
            return b"", None, "vanished while the batch was being read"
        after = self.identity(path)
        if after is None:
            return raw, None, "vanished while the batch was being read"
        if before != after or len(raw) != after[1]:
            return raw, after, f"changed while being read ({before[1]} bytes before, {after[1]} after, {len(raw)} read)"
        return raw, after, None


def _object_kind(info: pafs.FileInfo) -> str:
    return FOLDER if info.type == pafs.FileType.Directory else FILE if info.type == pafs.FileType.File else OTHER


def landing_store(root: str | Path) -> tuple[LandingStore, str]:
    """The store holding `root`'s landing files and the root's path on it; the URI's scheme decides."""
    if not is_remote(root):
        return LocalLandingStore(), str(root)
    fs, path = filesystem(root)
    return ObjectLandingStore(fs), path


def _feed_dir(root: str | Path, dataset: str) -> tuple[LandingStore, str]:
    store, base = landing_store(root)
    return store, f"{base}/landing/{dataset}" if is_remote(root) else str(feed_landing_dir(root, dataset))


def _name(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


def scan_date_folder(folder: str | Path, prefix: str, store: LandingStore | None = None) -> tuple[list[str], list[IgnoredEntry]]:
    """An arrival-date folder's landing files in name order, and every other entry with why it is not read.

    Never follows a symlink: entries are judged by what they are, not what they point to.
    """
    files, ignored = [], []
    for entry in (store or LocalLandingStore()).entries(str(folder)):
        shown = f"{prefix}{printable(entry.name)}"
        if entry.kind == LINK:
            ignored.append(IgnoredEntry(shown, SYMLINK, "a symlink is never followed; it holds this date until removed"))
        elif _is_hidden(entry.name):
            ignored.append(IgnoredEntry(shown, HIDDEN, "starts with '.' or '_': temporary or marker, never read"))
        elif entry.kind == FOLDER:
            ignored.append(IgnoredEntry(shown + "/", NESTED_FOLDER, "a folder inside an arrival date: nothing in it is read"))
        elif entry.kind != FILE:
            ignored.append(IgnoredEntry(shown, NOT_A_REGULAR_FILE, "not a regular file (a pipe, socket or device)"))
        elif not entry.name.endswith(LANDING_SUFFIXES):
            ignored.append(IgnoredEntry(shown, OTHER_EXTENSION, f"only {', '.join(LANDING_SUFFIXES)} files are read"))
        elif not _is_utf8(entry.name):
            ignored.append(IgnoredEntry(shown, NAME_NOT_UTF8, "the name is not valid UTF-8, so lineage cannot name it"))
        else:
            files.append(entry.path)
    return files, ignored


def _feed_level(
    root: str | Path, dataset: str
) -> tuple[LandingStore, list[tuple[date, str, str]], list[date], list[IgnoredEntry]]:
    """The feed folder's own entries: the date folders to look into (date, path, name), the dates a symlinked
    date folder holds, and every other entry with why it is not read. Lists the feed folder only."""
    store, feed_dir = _feed_dir(root, dataset)
    folders, held, ignored = [], [], []
    for entry in store.entries(feed_dir):
        shown, arrival = printable(entry.name), _arrival_date(entry.name)
        if entry.kind == LINK:
            ignored.append(
                IgnoredEntry(
                    shown, SYMLINK, "a symlink is never followed" + ("; it holds this date until removed" if arrival else "")
                )
            )
            if arrival is not None:
                held.append(arrival)
        elif _is_hidden(entry.name):
            ignored.append(IgnoredEntry(shown, HIDDEN, "starts with '.' or '_': temporary or marker, never read"))
        elif entry.kind != FOLDER:
            ignored.append(IgnoredEntry(shown, NOT_IN_A_DATE_FOLDER, "files are read only inside an arrival-date folder"))
        elif arrival is None:
            ignored.append(IgnoredEntry(shown + "/", NOT_A_DATE_FOLDER, "not a real date in YYYY-MM-DD: nothing in it is read"))
        else:
            folders.append((arrival, entry.path, entry.name))
    return store, folders, held, ignored


def scan_landing(root: str | Path, dataset: str) -> LandingScan:
    """Every arrival date of a feed with something to run, and every entry (at any level) that is not ingested."""
    store, folders, dates, ignored = _feed_level(root, dataset)
    for arrival, path, name in folders:
        files, inside = scan_date_folder(path, f"{name}/", store)
        ignored += inside
        if files or any(e.holds_batch for e in inside):
            dates.append(arrival)
    return LandingScan(sorted(dates), ignored)


def ignored_summary(ignored: list[IgnoredEntry]) -> str:
    """One message naming every entry not ingested and why (a sensor's evaluation, a log line)."""
    listed = "; ".join(f"{e.path} ({e.reason})" for e in ignored)
    return f"{len(ignored)} landing entr{'y' if len(ignored) == 1 else 'ies'} not ingested: {listed}"


def feed_level_ignored(root: str | Path, dataset: str) -> list[IgnoredEntry]:
    """The entries not ingested that lie outside any arrival-date folder (a stray folder or file, a hidden one)."""
    return _feed_level(root, dataset)[3]


def landed_arrival_dates(root: str | Path, dataset: str) -> list[date]:
    """Arrival dates with a landing file or an entry that holds their batch (see scan_landing)."""
    return scan_landing(root, dataset).arrival_dates


def _date_folder(root: str | Path, dataset: str, arrival_date: date) -> tuple[LandingStore, str, list[str], list[IgnoredEntry]]:
    """One date's store, folder, landing files and ignored entries; a date folder that is itself a symlink is held, never followed."""
    store, feed_dir = _feed_dir(root, dataset)
    folder = f"{feed_dir}/{arrival_date.isoformat()}"
    if store.kind(folder) == LINK:
        return (
            store,
            folder,
            [],
            [IgnoredEntry(arrival_date.isoformat(), SYMLINK, "a symlink is never followed; it holds this date until removed")],
        )
    return store, folder, *scan_date_folder(folder, f"{arrival_date.isoformat()}/", store)


def _held_listing(ignored: list[IgnoredEntry]) -> str:
    """The entries that hold a batch are part of its identity: removing one names a new batch, which the sensor runs."""
    return "".join(f"{e.path}\t{e.reason}\n" for e in ignored if e.holds_batch)


def fingerprint(root: str | Path, dataset: str, arrival_date: date) -> str:
    """A cheap change detector (names, sizes, mtimes) so a sensor need not hash every file each tick."""
    store, _, files, ignored = _date_folder(root, dataset, arrival_date)
    parts = []
    for path in files:
        identity = store.identity(path)
        if identity is None:  # removed since the listing: it is not part of what landed now
            continue
        parts.append(f"{_name(path)}:{identity[1]}:{identity[2]}")
    return hashlib.sha256(("|".join(parts) + _held_listing(ignored)).encode()).hexdigest()


LANDED_ROWS_SCHEMA: dict[str, pl.DataType] = {"_raw": pl.Binary(), "_source_file": pl.String(), "_source_line": pl.Int64()}


def read_batch(root: str | Path, dataset: str, arrival_date: date) -> Batch:
    """Read every landing file of an arrival date, files in name order and lines in file order.

    Only regular files are read, never through a symlink; every other entry comes back in `ignored`.
    """
    parts: list[pl.DataFrame] = []
    batch = stream_batch(root, dataset, arrival_date, parts.append)
    rows = pl.concat(parts) if parts else pl.DataFrame(schema=LANDED_ROWS_SCHEMA)
    return replace(batch, rows=rows)


def stream_batch(root: str | Path, dataset: str, arrival_date: date, on_rows: Callable[[pl.DataFrame], None]) -> Batch:
    """`read_batch`, handing each file's rows to `on_rows` as soon as its lines are split instead of keeping them
    (the batch's `rows` stay empty): a big date is never whole in memory, only its largest file."""
    store, folder, paths, ignored = _date_folder(root, dataset, arrival_date)
    if store.kind(folder) not in (FOLDER, LINK):
        raise LandingError(f"no landing folder for {dataset} arrival date {arrival_date}: {_shown_folder(root, folder)}")
    files = []
    identities: list[tuple[int, int, int] | None] = []
    # hashlib releases the GIL: each file is digested on a thread while its lines are split.
    with ThreadPoolExecutor(1, thread_name_prefix="lakehouse-sha256") as hasher:
        for path in paths:
            relative = f"{arrival_date.isoformat()}/{_name(path)}"
            raw, identity, changed = store.read_once(path)
            digest = hasher.submit(_sha256_hex, raw)
            content, damage = _decode(_name(path), raw)
            lines, numbers = record_lines(content)
            records = lines.filter(numbers.is_not_null())
            files.append(LandedFile(relative, digest.result(), len(raw), lines.len(), records.len(), damage, changed))
            identities.append(identity)
            del raw, content, lines  # the file's bytes go before the next file is read
            rows = pl.DataFrame(
                {
                    "_raw": records,
                    "_source_file": pl.repeat(relative, records.len(), eager=True),
                    "_source_line": numbers.drop_nulls(),
                }
            )
            on_rows(rows.cast(LANDED_ROWS_SCHEMA))  # type: ignore[arg-type]
    # A file may change after its own read while later files are read: check them all once more at the end.
    files = [
        f if f.changed else _replace_changed(f, _changed_since(store, f"{folder}/{f.relative_path.split('/', 1)[1]}", identity))
        for f, identity in zip(files, identities, strict=True)
    ]
    if not files and not any(e.holds_batch for e in ignored):
        raise LandingError(f"no {'/'.join(LANDING_SUFFIXES)} files in {_shown_folder(root, folder)}")
    return Batch(dataset, arrival_date, tuple(files), pl.DataFrame(schema=LANDED_ROWS_SCHEMA), tuple(ignored))


def _sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _identity(stat: os.stat_result) -> tuple[int, int, int]:
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


def _read_once(path: Path) -> tuple[bytes, tuple[int, int, int] | None, str | None]:
    """Read a file's bytes exactly once (what is digested is what is delivered); say if it moved under us.

    A writer still appending, truncating or replacing the file changes its inode, size or mtime
    between the two stats, or the bytes read disagree with its size.
    """
    try:
        with _open_landing_file(path) as handle:
            before = _identity(os.fstat(handle.fileno()))
            raw = handle.read()
            after = _identity(os.fstat(handle.fileno()))
    except FileNotFoundError:
        return b"", None, "vanished while the batch was being read"
    except OSError as error:
        if error.errno != errno.ELOOP:
            raise
        return b"", None, "replaced by a symlink while the batch was being read"
    if before != after or len(raw) != after[1]:
        return raw, after, f"changed while being read ({before[1]} bytes before, {after[1]} after, {len(raw)} read)"
    return raw, after, None


def _open_landing_file(path: Path) -> BinaryIO:
    """Open for reading without following a symlink: one swapped in after the listing is refused (ELOOP)."""
    return open(os.open(path, os.O_RDONLY | os.O_NOFOLLOW), "rb")


def _changed_since(store: LandingStore, path: str, identity: Identity | None) -> str | None:
    now = store.identity(path)
    if now is None:
        return "vanished after it was read, before the batch finished reading"
    return None if now == identity else "changed (replaced or rewritten) after it was read"


def _shown_folder(root: str | Path, folder: str) -> str:
    """A folder as the operator named it: an object store's path with its scheme back."""
    return f"{str(root).split('://', 1)[0]}://{folder}" if is_remote(root) else folder


def _replace_changed(landed: LandedFile, changed: str | None) -> LandedFile:
    return landed if changed is None else replace(landed, changed=changed)


def _decode(name: str, raw: bytes) -> tuple[bytes, str | None]:
    if not name.endswith(".gz"):
        return raw, None
    if not raw:  # gzip of nothing still has a header: an empty .gz is an upload that never started
        return b"", "truncated gzip: the file is empty, without even a gzip header"
    return gunzip_readable_prefix(raw)


def gunzip_readable_prefix(raw: bytes, chunk_size: int = 4096) -> tuple[bytes, str | None]:
    """Decompress every gzip member; on damage, return the complete lines decompressed before it and why.

    Nothing that landed may be lost from bronze, so a corrupt or truncated file still delivers
    what can be read of it; the batch's gate then refuses to publish it. A truncated file's
    prefix is exact; in a corrupt one DEFLATE notices the damage only some way after it, so the
    last lines read may be damaged too (an operator accepting it should know).
    """
    out, rest, consumed = bytearray(), raw, 0
    while rest:
        member, position = zlib.decompressobj(wbits=31), 0
        while not member.eof:
            if position >= len(rest):
                return _complete_lines(out), "truncated gzip: the file ends inside a compressed stream"
            chunk = rest[position : position + chunk_size]
            try:
                out += member.decompress(chunk)
            except zlib.error as error:
                return _complete_lines(out), f"corrupt gzip near byte {consumed + position} ({error})"
            position += len(chunk)
        consumed += position - len(member.unused_data)
        rest = member.unused_data + rest[position:]
    return bytes(out), None


def _complete_lines(content: bytearray) -> bytes:
    """Up to the last newline: a line cut by the damage is not a line that landed."""
    return bytes(content[: content.rfind(b"\n") + 1])


def record_lines(content: bytes) -> tuple[pl.Series, pl.Series]:
    """Every physical line without its LF/CRLF ending (a leading BOM dropped, a missing final newline
    fine) and, per line, its 1-based number, or null where it is blank; vectorised, because a Python
    object per line costs seconds for a big day."""
    if content.startswith(_BOM):
        content = content[len(_BOM) :]
    if not content:
        return pl.Series("_raw", [], dtype=pl.Binary), pl.Series("_source_line", [], dtype=pl.Int64)
    data = np.frombuffer(content, dtype=np.uint8)
    newlines = np.flatnonzero(data == ord("\n"))
    ends = newlines if content.endswith(b"\n") else np.append(newlines, len(data))
    starts = np.concatenate([[0], newlines + 1])[: len(ends)]
    crlf = (ends > starts) & (data[np.maximum(ends - 1, 0)] == ord("\r"))
    ends = ends - crlf
    # One contiguous buffer of the lines without their endings, so Arrow can own it as-is.
    keep = np.ones(len(data), dtype=bool)
    keep[newlines] = False
    keep[ends[crlf]] = False
    lengths = ends - starts
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    array = pa.LargeBinaryArray.from_buffers(
        pa.large_binary(), len(lengths), [None, pa.py_buffer(offsets), pa.py_buffer(data[keep])]
    )
    lines = pl.Series("_raw", array, dtype=pl.Binary)
    # Blank lines are rare: only those empty or starting with whitespace need a closer look.
    maybe_blank = np.flatnonzero((lengths == 0) | np.isin(data[np.minimum(starts, len(data) - 1)], list(_JSON_WHITESPACE)))
    blank = [int(i) for i in maybe_blank if not content[starts[i] : ends[i]].strip(_JSON_WHITESPACE)]
    numbers = pl.Series("_source_line", np.arange(1, len(lengths) + 1, dtype=np.int64))
    return lines, numbers.scatter(blank, None) if blank else numbers


def current_batch_id(root: str | Path, dataset: str, arrival_date: date) -> str:
    """The batch id the landed files of a date would get now, hashing files without parsing lines."""
    store, _, paths, ignored = _date_folder(root, dataset, arrival_date)
    listing = []
    for path in paths:
        raw, identity, _ = store.read_once(path)
        if identity is None:  # removed (or swapped for a symlink) since the listing: not part of what landed now
            continue
        listing.append((f"{arrival_date.isoformat()}/{_name(path)}", _sha256_hex(raw)))
    return batch_id_for(dataset, arrival_date, files_digest(listing, ignored))
