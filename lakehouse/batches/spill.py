"""Frames filed under a number and read back one number at a time, in memory while they are small and in
local temporary Arrow files beyond that: a big arrival date's deliveries (several times its lines once
typed) are never whole in memory, while a small date never touches the disk.

The files live in the process's temporary folder (`TMPDIR`) and are removed when the spill closes, also on
error; a killed process leaves them for the system's temporary-file cleanup (they hold no table state).
"""

from __future__ import annotations

import shutil
import tempfile
from collections import defaultdict
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType

import polars as pl

MEMORY_BYTES = 128 * 2**20  # frames held in memory before the rest go to disk: a small date stays in memory


class Spill:
    """Frames filed by group number; `read(group)` gives a group's frames concatenated, in the order added."""

    def __init__(self, schema: Mapping[str, pl.DataType], memory_bytes: int = MEMORY_BYTES) -> None:
        self.schema = dict(schema)
        self._memory_left = memory_bytes
        self._held: dict[int, list[pl.DataFrame | Path]] = defaultdict(list)
        self._rows: dict[int, int] = defaultdict(int)
        self._folder: Path | None = None
        self._files = 0

    def __enter__(self) -> Spill:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self.close()

    def add(self, group: int, frame: pl.DataFrame) -> None:
        if frame.is_empty():
            return
        self._rows[group] += frame.height
        size = int(frame.estimated_size())
        if size <= self._memory_left:
            self._memory_left -= size
            self._held[group].append(frame)
            return
        if self._folder is None:
            self._folder = Path(tempfile.mkdtemp(prefix="lakehouse-spill-"))
        path = self._folder / f"{self._files:06d}.arrow"
        self._files += 1
        frame.write_ipc(path, compression="lz4")  # lz4: cheaper to write and read back than the bytes it saves
        self._held[group].append(path)

    def rows(self, group: int) -> int:
        return self._rows.get(group, 0)

    @property
    def groups(self) -> list[int]:
        return sorted(self._held)

    def frames(self, group: int) -> Iterator[pl.DataFrame]:
        for item in self._held.get(group, []):
            yield item if isinstance(item, pl.DataFrame) else pl.read_ipc(item)

    def read(self, group: int) -> pl.DataFrame:
        parts = list(self.frames(group))
        return pl.concat(parts) if parts else pl.DataFrame(schema=self.schema)

    def close(self) -> None:
        self._held.clear()
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None
