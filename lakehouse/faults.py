"""Named fault points for the crash-safety tests: a real SIGKILL (or a pause) where state changes.

Enabled only by the test-only environment variable LAKEHOUSE_TEST_CRASH_AT; unset in production,
where each call is one dictionary lookup and nothing else. Its values:

    <point>                   SIGKILL the process there: no cleanup code runs, like a power cut.
    pause:<point>:<dir>       create <dir>/paused, then block until <dir>/resume exists (a race test
                              starts a second run meanwhile; it may also SIGKILL the paused one).
                              A `during_*` point cannot resume its write: it dies once resumed.
    trace:<file>              append the name of every point reached to <file> and carry on.

`during_*` points fire in the middle of writing a table's data files: after Parquet files have
reached the table's folder, before the Delta commit that would reference them (see `mid_write`).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

CRASH_ENV = "LAKEHOUSE_TEST_CRASH_AT"
CRASH_POINTS = (
    "during_bronze_write",
    "after_bronze_commit",
    "after_batch_landed",
    "after_quarantine_commit",
    "after_incident_record",
    "after_gated_batch_record",
    "during_ledger_write",
    "after_ledger_commit",
    "during_silver_write",
    "after_silver_commit",
    "after_batch_record",
    "after_incident_resolve",
    "after_restatement_record",
    "during_gold_write",
    "after_gold_commit",
    "after_batch_complete",
)
PAUSE_LIMIT_SECONDS = 600.0  # a forgotten paused run gives up instead of holding the lock forever
MID_WRITE_ROWS = 1024  # rows per streamed batch when a write is made to stop mid-way
MID_WRITE_MAX_ROWS = 1_000_000  # far above what delta-rs buffers before its first file


def _armed() -> tuple[str, str, str] | None:
    """(mode, point, argument) from the environment, or None in production."""
    value = os.environ.get(CRASH_ENV)
    if not value:
        return None
    if value.startswith("trace:"):
        return "trace", "", value.removeprefix("trace:")
    if value.startswith("pause:"):
        point, _, folder = value.removeprefix("pause:").partition(":")
        return "pause", point, folder
    return "kill", value, ""


def crash_point(name: str) -> None:
    """Die, pause or record here if the test asked for it."""
    assert name in CRASH_POINTS, name
    armed = _armed()
    if armed is None:
        return
    mode, point, argument = armed
    if mode == "trace":
        with open(argument, "a") as trace:
            trace.write(name + "\n")
    elif point == name:
        _stop(mode, argument)


def _stop(mode: str, folder: str) -> None:
    if mode == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    flags = Path(folder)
    flags.mkdir(parents=True, exist_ok=True)
    (flags / "paused").write_text(str(os.getpid()))
    deadline = time.monotonic() + PAUSE_LIMIT_SECONDS
    while not (flags / "resume").exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"paused at a fault point for {PAUSE_LIMIT_SECONDS:.0f}s and never resumed")
        time.sleep(0.05)


def fault_armed(name: str) -> bool:
    """Whether a test armed (or traces) the fault point `name`; a write then goes through `mid_write`."""
    armed = _armed()
    return armed is not None and (armed[0] == "trace" or armed[1] == name)


def mid_write(name: str, uri: str, data: pa.Table) -> tuple[pa.Table | pa.RecordBatchReader, int | None]:
    """The data and target file size for a write that may be stopped at `name` once its first data files exist.

    Unarmed, the data passes through untouched. Armed for this point, the data is streamed with
    one file per row group, and the stream stops (SIGKILL; in pause mode, a pause and then the
    SIGKILL) as soon as a Parquet file of this write is on disk, before the Delta commit. delta-rs
    buffers about 15,000 rows before it writes a file, more than a test batch holds, so the stream
    repeats the data until that happens: the repeats never reach a commit, they only make the
    buffered writer put real files on disk while the write is still open.
    """
    assert name in CRASH_POINTS, name
    armed = _armed()
    if armed is None or not fault_armed(name):
        return data, None
    mode, _, argument = armed
    if mode == "trace":
        crash_point(name)
        return data, None
    if not data.num_rows:  # nothing to write, so no file can appear: stop before the commit
        _halt(mode, argument)
    before = set(Path(uri).rglob("*.parquet"))

    def batches() -> Iterator[pa.RecordBatch]:
        streamed = 0
        while streamed < MID_WRITE_MAX_ROWS:
            for batch in data.to_batches(max_chunksize=MID_WRITE_ROWS):
                if set(Path(uri).rglob("*.parquet")) - before:
                    _halt(mode, argument)
                yield batch
                streamed += batch.num_rows
                time.sleep(0.001)  # let the writer's threads catch up with the stream
        raise RuntimeError(f"{name}: no data file reached {uri} after {streamed} rows; cannot stop mid-write")

    return pa.RecordBatchReader.from_batches(data.schema, batches()), 1


def _halt(mode: str, folder: str) -> None:
    """Stop a write for good: a write resumed from here would commit the repeated rows, so it dies after a pause."""
    if mode == "pause":
        _stop("pause", folder)
    _stop("kill", folder)
