"""One writer per feed at a time: a second run for the same data waits, then stops with a clear message."""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from lakehouse.storage import is_remote


class WriterBusyError(RuntimeError):
    """Another run holds the feed's write lock for longer than this run was willing to wait."""


class DistributedLockRequiredError(RuntimeError):
    """The root is an object store, whose writers no local lock can exclude."""


class WriterLock(Protocol):
    """How one writer per name is held for a root; `writer_lock` picks the implementation."""

    def hold(self, name: str, timeout_seconds: float) -> AbstractContextManager[None]: ...


@dataclass(frozen=True)
class FileWriterLock:
    """A local root's lock: a kernel file lock under `<root>/tables/ops/_locks/` (see `exclusive_file_lock`)."""

    root: Path

    def hold(self, name: str, timeout_seconds: float) -> AbstractContextManager[None]:
        return exclusive_file_lock(self.root / "tables" / "ops" / "_locks" / f"{name}.lock", name, timeout_seconds)


@dataclass(frozen=True)
class MissingDistributedLock:
    """An object-store root's lock, until a distributed one (a PostgreSQL advisory lock on the Dagster
    instance's database) implements `WriterLock`: refusing is safer than writing unlocked, since writers
    on different machines would race each other's commits."""

    root: str

    def hold(self, name: str, timeout_seconds: float) -> AbstractContextManager[None]:
        raise DistributedLockRequiredError(
            f"cannot lock {name} on {self.root}: object-store roots need the distributed writer lock, "
            "which this version does not have yet; use a local root. Nothing was written."
        )


def writer_lock(root: str | Path) -> WriterLock:
    """The root's writer lock strategy, chosen here only: a file lock for a local root."""
    return MissingDistributedLock(str(root)) if is_remote(root) else FileWriterLock(Path(root))


@contextmanager
def exclusive_writer(root: str | Path, name: str, timeout_seconds: float) -> Iterator[None]:
    """Hold the root's writer lock for `name` (one writer per feed, or per aggregate table)."""
    with writer_lock(root).hold(name, timeout_seconds):
        yield


@contextmanager
def exclusive_file_lock(path: Path, name: str, timeout_seconds: float) -> Iterator[None]:
    """Hold an advisory file lock; the kernel drops it when the holder dies, so a SIGKILL never wedges it.

    Only local roots can be locked this way (see `writer_lock`).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        deadline = time.monotonic() + timeout_seconds
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    handle.seek(0)
                    holder = handle.read().strip() or "unknown"
                    raise WriterBusyError(
                        f"another run is writing {name} (holder: {holder}); waited {timeout_seconds:.0f}s. "
                        "Nothing was written by this run; retry once the other run finishes."
                    ) from None
                time.sleep(0.1)
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
