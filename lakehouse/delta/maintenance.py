"""Orphaned data files: find them for `lakehouse status`, remove them with `lakehouse maintain`.

A write killed between its Parquet files and its Delta commit leaves files no commit references:
readers never see them, but they take space. delta-rs's vacuum already knows every file a table
needs: a *full* vacuum lists what the log does not reference (orphans) plus the files older
versions referenced (tombstones), and keeps, by modification or removal time, whatever is younger
than the retention window, so time travel within the window still reads and a write in flight
(whose files are seconds old) is never touched. `maintain` also holds every writer lock of the
root while it deletes, so no live write of this engine runs at all. On an object store the same works
through the store's listing (pyarrow's filesystem with the AWS_* connection).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pyarrow.fs as pafs
from deltalake import DeltaTable

from lakehouse.delta.locking import exclusive_writer
from lakehouse.delta.storage import filesystem, is_remote, join_uri, open_table

LOCKS = Path("tables", "ops", "_locks")


@dataclass(frozen=True)
class TableFiles:
    """Files in a table's folder that its current version does not read."""

    table: str  # relative to <root>/tables, e.g. "silver/billing_events"
    orphans: tuple[str, ...]  # no commit references them: the leftovers of killed writes
    orphan_bytes: int
    reclaimable: tuple[str, ...]  # orphans and old versions' files outside the retention window
    reclaimable_bytes: int


def table_paths(root: str | Path) -> list[str]:
    """Every Delta table under <root>/tables: `<layer>/<name>` on an object store (a recursive listing would name
    every data file), any depth on a local disk."""
    if not is_remote(root):
        tables = Path(root) / "tables"
        # tables/<layer>/<name>: a rewrite's throwaway table inside a table (storage.rewrite_files) is not one
        return sorted(str(log.parent) for log in tables.glob("*/*/_delta_log")) if tables.exists() else []
    fs, base = filesystem(root)
    found = []
    for layer in _folders(fs, f"{base}/tables"):
        found += [join_uri(root, "tables", _name(layer), _name(t)) for t in _folders(fs, layer) if _is_table(fs, t)]
    return sorted(found)


def _folders(fs: pafs.FileSystem, path: str) -> list[str]:
    infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    return [i.path for i in infos if i.type == pafs.FileType.Directory]


def _is_table(fs: pafs.FileSystem, path: str) -> bool:
    return fs.get_file_info(f"{path}/_delta_log").type == pafs.FileType.Directory


def _name(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


def _relative(table: str, names: Iterable[str]) -> set[str]:
    """Paths relative to the table, whatever form vacuum gives them in (relative, absolute, or a URI)."""
    base = table.rstrip("/") + "/"
    return {
        name.removeprefix(base) if name.startswith(base) else os.path.relpath(name, table) if os.path.isabs(name) else name
        for name in names
    }


def _present(table: str, names: Iterable[str]) -> dict[str, int]:
    """The files of `names` still present, with their sizes: a tombstone whose file an earlier vacuum deleted stays
    listed in the log, not in storage. One batched lookup on an object store."""
    fs, base = filesystem(table)
    relative = sorted(_relative(table, names))  # strings: thousands a table
    infos = fs.get_file_info([f"{base}/{name}" for name in relative]) if relative else []
    return {name: info.size or 0 for name, info in zip(relative, infos, strict=True) if info.type == pafs.FileType.File}


def _vacuum_list(table: DeltaTable, uri: str, retention_hours: float, *, full: bool) -> dict[str, int]:
    # delta-rs takes whole hours; rounding down can only keep more files than asked, never fewer.
    return _present(
        uri, table.vacuum(retention_hours=int(retention_hours), dry_run=True, enforce_retention_duration=False, full=full)
    )


def unreferenced_files(path: str | Path, retention_hours: float) -> TableFiles:
    uri = str(path)
    table = open_table(uri)  # loaded once for the three dry runs
    not_current = _vacuum_list(table, uri, 0, full=True)
    tombstones = _vacuum_list(table, uri, 0, full=False)  # files a commit removed: older versions read them
    orphans = tuple(sorted(set(not_current) - set(tombstones)))
    reclaimable = _vacuum_list(table, uri, retention_hours, full=True)
    return TableFiles(
        table="/".join(uri.rstrip("/").replace(os.sep, "/").rsplit("/", 2)[-2:]),
        orphans=orphans,
        orphan_bytes=sum(not_current[name] for name in orphans),
        reclaimable=tuple(sorted(reclaimable)),
        reclaimable_bytes=sum(reclaimable.values()),
    )


def survey(root: str | Path, retention_hours: float) -> list[TableFiles]:
    return [unreferenced_files(path, retention_hours) for path in table_paths(root)]


def maintain(
    root: str | Path, retention_hours: float, lock_names: Iterable[str], lock_timeout_seconds: float, dry_run: bool = False
) -> list[TableFiles]:
    """Remove, per table, the files no version within `retention_hours` needs; return what was (or would be) removed.

    Every writer lock of the root is held meanwhile (the named ones plus, on a local root, any lock file
    already present; in a fixed order so two maintainers cannot deadlock), so no write of this engine is
    in flight. Files younger than the retention window are kept whatever references them. An object-store
    root takes its writer locks in PostgreSQL (see `locking.writer_lock`), so it needs the lock's DSN.
    """
    if retention_hours < 0:
        raise ValueError(f"the retention must be >= 0 hours, got {retention_hours}")
    locks = Path(root) / LOCKS
    names = set(lock_names)
    if not is_remote(root) and locks.exists():
        names |= {p.stem for p in locks.glob("*.lock")}
    with ExitStack() as held:
        for name in sorted(names):
            held.enter_context(exclusive_writer(root, name, lock_timeout_seconds))
        removed = []
        for found in survey(root, retention_hours):
            if found.reclaimable and not dry_run:
                uri = join_uri(root if is_remote(root) else Path(root).resolve(), "tables", *found.table.split("/"))
                open_table(uri).vacuum(
                    retention_hours=int(retention_hours), dry_run=False, enforce_retention_duration=False, full=True
                )
                if left := _present(uri, found.reclaimable):
                    raise RuntimeError(
                        f"vacuum of {found.table} left {len(left)} files it should have removed: {sorted(left)[:3]}"
                    )
            removed.append(found)
        return removed
