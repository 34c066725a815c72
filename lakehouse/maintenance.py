"""Orphaned data files: find them for `lakehouse status`, remove them with `lakehouse maintain`.

A write killed between its Parquet files and its Delta commit leaves files no commit references:
readers never see them, but they take space. delta-rs's vacuum already knows every file a table
needs: a *full* vacuum lists what the log does not reference (orphans) plus the files older
versions referenced (tombstones), and keeps, by modification or removal time, whatever is younger
than the retention window, so time travel within the window still reads and a write in flight
(whose files are seconds old) is never touched. `maintain` also holds every writer lock of the
root while it deletes, so no live write of this engine runs at all.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from deltalake import DeltaTable

from lakehouse.locking import exclusive_file_lock
from lakehouse.storage import is_remote, open_table

LOCKS = Path("tables", "ops", "_locks")


@dataclass(frozen=True)
class TableFiles:
    """Files in a table's folder that its current version does not read."""

    table: str  # relative to <root>/tables, e.g. "silver/billing_events"
    orphans: tuple[str, ...]  # no commit references them: the leftovers of killed writes
    orphan_bytes: int
    reclaimable: tuple[str, ...]  # orphans and old versions' files outside the retention window
    reclaimable_bytes: int


def table_paths(root: str | Path) -> list[Path]:
    """Every Delta table under <root>/tables."""
    tables = Path(root) / "tables"
    return sorted(log.parent for log in tables.rglob("_delta_log")) if tables.exists() else []


def _size(table: Path, files: Iterable[str]) -> int:
    return sum((table / name).stat().st_size for name in files if (table / name).exists())


def _on_disk(path: Path, names: Iterable[str]) -> set[str]:
    """Paths relative to the table; a tombstone whose file an earlier vacuum deleted stays listed in the log, not on disk."""
    base = str(path)
    relative = {os.path.relpath(name, base) if os.path.isabs(name) else name for name in names}  # strings: thousands a table
    return {name for name in relative if os.path.exists(os.path.join(base, name))}


def _vacuum_list(table: DeltaTable, path: Path, retention_hours: float, *, full: bool) -> set[str]:
    # delta-rs takes whole hours; rounding down can only keep more files than asked, never fewer.
    return _on_disk(
        path, table.vacuum(retention_hours=int(retention_hours), dry_run=True, enforce_retention_duration=False, full=full)
    )


def unreferenced_files(path: Path, retention_hours: float) -> TableFiles:
    table = open_table(str(path))  # loaded once for the three dry runs
    not_current = _vacuum_list(table, path, 0, full=True)
    tombstones = _vacuum_list(table, path, 0, full=False)  # files a commit removed: older versions read them
    orphans = tuple(sorted(not_current - tombstones))
    reclaimable = tuple(sorted(_vacuum_list(table, path, retention_hours, full=True)))
    return TableFiles(
        table=str(path.relative_to(path.parents[1])),
        orphans=orphans,
        orphan_bytes=_size(path, orphans),
        reclaimable=reclaimable,
        reclaimable_bytes=_size(path, reclaimable),
    )


def survey(root: str | Path, retention_hours: float) -> list[TableFiles]:
    return [unreferenced_files(path, retention_hours) for path in table_paths(root)]


def maintain(
    root: str | Path, retention_hours: float, lock_names: Iterable[str], lock_timeout_seconds: float, dry_run: bool = False
) -> list[TableFiles]:
    """Remove, per table, the files no version within `retention_hours` needs; return what was (or would be) removed.

    Every writer lock of the root is held meanwhile (the named ones plus any lock file already
    present, in a fixed order so two maintainers cannot deadlock), so no write of this engine is
    in flight. Files younger than the retention window are kept whatever references them.
    """
    if retention_hours < 0:
        raise ValueError(f"the retention must be >= 0 hours, got {retention_hours}")
    if is_remote(root):
        raise ValueError("maintain needs a local root: on an object store, writers cannot be locked out (see README)")
    locks = Path(root) / LOCKS
    names = set(lock_names) | ({p.stem for p in locks.glob("*.lock")} if locks.exists() else set())
    with ExitStack() as held:
        for name in sorted(names):
            held.enter_context(exclusive_file_lock(locks / f"{name}.lock", name, lock_timeout_seconds))
        removed = []
        for found in survey(root, retention_hours):
            if found.reclaimable and not dry_run:
                path = Path(root).resolve() / "tables" / found.table
                open_table(str(path)).vacuum(
                    retention_hours=int(retention_hours), dry_run=False, enforce_retention_duration=False, full=True
                )
                if left := _on_disk(path, found.reclaimable):
                    raise RuntimeError(
                        f"vacuum of {found.table} left {len(left)} files it should have removed: {sorted(left)[:3]}"
                    )
            removed.append(found)
        return removed
