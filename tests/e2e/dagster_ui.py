"""The real `lakehouse ui` (webserver + daemon) on a free loopback port, and what its instance recorded about runs."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from tests.e2e.harness import LAKEHOUSE, lakehouse_env

BACKFILL_TAG = "dagster/backfill"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(condition: Callable[[], object], timeout: float, what: str, poll: float = 1.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout:.0f}s for {what}")
        time.sleep(poll)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/server_info", timeout=5) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@contextmanager
def running_ui(root: Path, log: Path, **env: str) -> Iterator[str]:
    """`lakehouse ui --root root` until the block ends; then Ctrl-C (SIGINT) as a user would, SIGKILL as a last resort."""
    port = free_port()
    with open(log, "w") as out:
        process = subprocess.Popen(
            [LAKEHOUSE, "ui", "--root", str(root), "--port", str(port)],
            env=lakehouse_env(**env),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: teardown reaches the webserver, daemon and code servers
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until(lambda: _answers(url) or process.poll() is not None, 180, f"the webserver at {url}")
            assert process.poll() is None, f"lakehouse ui exited {process.returncode}:\n{log.read_text()[-3000:]}"
            yield url
        finally:
            os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(timeout=90)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            with contextlib.suppress(ProcessLookupError):  # anything of the group still alive did not stop with Ctrl-C
                os.killpg(process.pid, signal.SIGKILL)


def instance(root: Path) -> dg.DagsterInstance:
    return dg.DagsterInstance.from_config(str(root / "dagster_home"))


@dataclass(frozen=True)
class RunSpan:
    """When a run was handed to a run worker (RUN_STARTING) until it ended, from the instance's records."""

    run_id: str
    tags: dict[str, str]
    created: float
    starting: float
    started: float
    ended: float


def run_spans(dagster: dg.DagsterInstance, tags: dict[str, str] | None = None) -> list[RunSpan]:
    spans = []
    for record in dagster.get_run_records(filters=dg.RunsFilter(tags=tags or {})):
        run = record.dagster_run
        starting = dagster.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.RUN_STARTING).records
        assert record.start_time and record.end_time and starting, f"run {run.run_id} has not finished: {run.status}"
        spans.append(
            RunSpan(
                run.run_id,
                dict(run.tags),
                record.create_timestamp.timestamp(),
                starting[0].timestamp,
                record.start_time,
                record.end_time,
            )
        )
    return sorted(spans, key=lambda s: s.starting)


def peak_in_flight(spans: list[RunSpan]) -> int:
    """The most runs in flight (RUN_STARTING to end) at any instant; an end at the same instant as a start comes first."""
    edges = sorted([(s.starting, 1) for s in spans] + [(s.ended, -1) for s in spans], key=lambda e: (e[0], e[1]))
    peak = current = 0
    for _, step in edges:
        current += step
        peak = max(peak, current)
    return peak


BRONZE, SILVER = dg.AssetKey(["bronze", "billing_events"]), dg.AssetKey(["silver", "billing_events"])


def run_metadata_total(dagster: dg.DagsterInstance, run_ids: set[str], key: dg.AssetKey, field: str) -> float:
    """A metadata value summed over runs; a run over several dates records one materialization per date,
    each with the run's total, so each run counts once."""
    per_run: dict[str, float] = {}
    for event in dagster.fetch_materializations(key, limit=10_000).records:
        materialization = event.asset_materialization
        if event.run_id in run_ids and materialization is not None and field in materialization.metadata:
            per_run[event.run_id] = float(materialization.metadata[field].value)  # type: ignore[arg-type]
    return sum(per_run.values())


def rows_written(dagster: dg.DagsterInstance, run_ids: set[str]) -> int:
    """Rows these runs wrote: bronze's landed records plus silver's judged records (what the row cap counts)."""
    return int(
        run_metadata_total(dagster, run_ids, BRONZE, "records") + run_metadata_total(dagster, run_ids, SILVER, "records_in")
    )


def runs_idle(dagster: dg.DagsterInstance) -> bool:
    unfinished = [
        dg.DagsterRunStatus.QUEUED,
        dg.DagsterRunStatus.NOT_STARTED,
        dg.DagsterRunStatus.STARTING,
        dg.DagsterRunStatus.STARTED,
    ]
    return not dagster.get_runs(filters=dg.RunsFilter(statuses=unfinished))
