"""One writer per feed at a time: a second run for the same data waits, then stops with a clear message."""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class WriterBusyError(RuntimeError):
    """Another run holds the feed's write lock for longer than this run was willing to wait."""


@contextmanager
def exclusive_writer(root: str | Path, name: str, timeout_seconds: float) -> Iterator[None]:
    """Hold the feed-level lock `<root>/tables/ops/_locks/<name>.lock` (see `exclusive_file_lock`)."""
    if "://" in str(root):
        yield
        return
    with exclusive_file_lock(Path(root) / "tables" / "ops" / "_locks" / f"{name}.lock", name, timeout_seconds):
        yield


@contextmanager
def exclusive_file_lock(path: Path, name: str, timeout_seconds: float) -> Iterator[None]:
    """Hold an advisory file lock; the kernel drops it when the holder dies, so a SIGKILL never wedges it.

    Only local roots can be locked this way; an object-store root must be serialized by the
    orchestrator instead (the Dagster pool on the writing assets).
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
