"""Landing files: discovery, line splitting and the manifest that names a batch."""

from __future__ import annotations

import hashlib
import os
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

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
    rows: pl.DataFrame  # one row per record: _raw, _source_file, _source_line

    @property
    def files_digest(self) -> str:
        listing = "".join(f"{f.relative_path}\t{f.sha256}\n" for f in self.files)
        return hashlib.sha256(listing.encode()).hexdigest()

    @property
    def batch_id(self) -> str:
        return batch_id_for(self.dataset, self.arrival_date, self.files_digest)


def batch_id_for(dataset: str, arrival_date: date, files_digest: str) -> str:
    """sha256 of `<dataset>:<arrival_date>:<files digest>`: the same files always name the same batch."""
    return hashlib.sha256(f"{dataset}:{arrival_date.isoformat()}:{files_digest}".encode()).hexdigest()


def feed_landing_dir(root: str | Path, dataset: str) -> Path:
    return Path(root) / "landing" / dataset


def landed_arrival_dates(root: str | Path, dataset: str) -> list[date]:
    """Arrival-date folders that hold at least one landing file; other folders are ignored."""
    base = feed_landing_dir(root, dataset)
    if not base.is_dir():
        return []
    dates = []
    for folder in sorted(base.iterdir()):
        try:
            arrival = date.fromisoformat(folder.name)
        except ValueError:
            continue
        if folder.is_dir() and folder.name == arrival.isoformat() and _landing_files(folder):
            dates.append(arrival)
    return dates


def _landing_files(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_file() and p.name.endswith(LANDING_SUFFIXES)), key=lambda p: p.name)


def fingerprint(root: str | Path, dataset: str, arrival_date: date) -> str:
    """A cheap change detector (names, sizes, mtimes) so a sensor need not hash every file each tick."""
    folder = feed_landing_dir(root, dataset) / arrival_date.isoformat()
    parts = []
    for path in _landing_files(folder):
        try:
            stat = path.stat()
        except FileNotFoundError:  # removed since the listing: it is not part of what landed now
            continue
        parts.append(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


def read_batch(root: str | Path, dataset: str, arrival_date: date) -> Batch:
    """Read every landing file of an arrival date, files in name order and lines in file order."""
    folder = feed_landing_dir(root, dataset) / arrival_date.isoformat()
    if not folder.is_dir():
        raise LandingError(f"no landing folder for {dataset} arrival date {arrival_date}: {folder}")
    files, parts = [], []
    identities: list[tuple[int, int, int] | None] = []
    # hashlib releases the GIL: each file is digested on a thread while its lines are split.
    with ThreadPoolExecutor(1, thread_name_prefix="lakehouse-sha256") as hasher:
        for path in _landing_files(folder):
            relative = f"{arrival_date.isoformat()}/{path.name}"
            raw, identity, changed = _read_once(path)
            digest = hasher.submit(_sha256_hex, raw)
            content, damage = _decode(path, raw)
            lines, numbers = record_lines(content)
            records = lines.filter(numbers.is_not_null())
            files.append(LandedFile(relative, digest.result(), len(raw), lines.len(), records.len(), damage, changed))
            identities.append(identity)
            parts.append(
                pl.DataFrame(
                    {
                        "_raw": records,
                        "_source_file": pl.repeat(relative, records.len(), eager=True),
                        "_source_line": numbers.drop_nulls(),
                    }
                )
            )
    # A file may change after its own read while later files are read: check them all once more at the end.
    files = [
        f if f.changed else _replace_changed(f, _changed_since(folder / f.relative_path.split("/", 1)[1], identity))
        for f, identity in zip(files, identities, strict=True)
    ]
    if not files:
        raise LandingError(f"no {'/'.join(LANDING_SUFFIXES)} files in {folder}")
    schema = {"_raw": pl.Binary, "_source_file": pl.String, "_source_line": pl.Int64}
    rows = pl.concat([part.cast(schema) for part in parts]) if parts else pl.DataFrame(schema=schema)  # type: ignore[arg-type]
    return Batch(dataset, arrival_date, tuple(files), rows)


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
        with path.open("rb") as handle:
            before = _identity(os.fstat(handle.fileno()))
            raw = handle.read()
            after = _identity(os.fstat(handle.fileno()))
    except FileNotFoundError:
        return b"", None, "vanished while the batch was being read"
    if before != after or len(raw) != after[1]:
        return raw, after, f"changed while being read ({before[1]} bytes before, {after[1]} after, {len(raw)} read)"
    return raw, after, None


def _changed_since(path: Path, identity: tuple[int, int, int] | None) -> str | None:
    try:
        now = _identity(path.stat())
    except FileNotFoundError:
        return "vanished after it was read, before the batch finished reading"
    return None if now == identity else "changed (replaced or rewritten) after it was read"


def _replace_changed(landed: LandedFile, changed: str | None) -> LandedFile:
    return landed if changed is None else replace(landed, changed=changed)


def _decode(path: Path, raw: bytes) -> tuple[bytes, str | None]:
    if not path.name.endswith(".gz"):
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
    folder = feed_landing_dir(root, dataset) / arrival_date.isoformat()
    listing = ""
    for path in _landing_files(folder):
        try:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
        except FileNotFoundError:  # removed since the listing: it is not part of what landed now
            continue
        listing += f"{arrival_date.isoformat()}/{path.name}\t{digest}\n"
    return batch_id_for(dataset, arrival_date, hashlib.sha256(listing.encode()).hexdigest())
