"""Run arrival dates through the real Dagster definitions in process, recording runs in a Dagster instance."""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from importlib.resources import files
from pathlib import Path

import dagster as dg
import polars as pl

from lakehouse.app.triggers import gold_refresh_request
from lakehouse.batches.ops import OpsTables
from lakehouse.definitions import build_definitions, default_feed
from lakehouse.delta.locking import exclusive_file_lock
from lakehouse.feed import FeedSpec
from lakehouse.settings import SettingError, Settings
from lakehouse.staging.landing import current_batch_id, landed_arrival_dates


@dataclass(frozen=True)
class DateOutcome:
    arrival_date: date
    ingest_run_id: str
    ingest_ok: bool
    gold_run_id: str | None
    gold_ok: bool | None
    message: str

    @property
    def ok(self) -> bool:
        return self.ingest_ok and self.gold_ok is not False


def _failure_message(result: RunResult) -> str:
    """The first failed step's own words: a gate's description, or the error's first line."""
    failure = next((event for event in result.all_events if event.is_step_failure), None)
    if failure is None:
        return "run failed"
    data = failure.step_failure_data
    if data.user_failure_data is not None and data.user_failure_data.description:
        return data.user_failure_data.description
    return data.error.message.strip().splitlines()[0] if data.error else "run failed"


MANAGED_MARKER = "# lakehouse-managed:"
PID_TAG = "lakehouse/pid"  # host:pid of the process running a CLI run in process


def dagster_home(settings: Settings) -> Path:
    return Path(os.environ.get("DAGSTER_HOME") or Path(settings.root) / "dagster_home").absolute()


def install_instance_config(home: Path, settings: Settings) -> None:
    """Write the shipped dagster.yaml (run queue, pools; PostgreSQL storage when LAKEHOUSE_INSTANCE=postgres)
    with the settings' caps, unless the user owns the file.

    A missing, empty or still lakehouse-managed file is (re)written, so LAKEHOUSE_BACKFILL_* take effect on
    the next start; a file without the marker line is the operator's and is left alone.
    """
    from lakehouse.app.instance import render_instance_config

    target = home / "dagster.yaml"
    current = target.read_text() if target.exists() else ""
    if current.strip() and not current.startswith(MANAGED_MARKER):
        return
    rendered = render_instance_config(settings, files("lakehouse").joinpath("dagster.yaml").read_text(), home)
    if rendered != current:
        target.write_text(rendered)


def instance_for(settings: Settings) -> dg.DagsterInstance:
    """DAGSTER_HOME's instance when set (so runs show in the UI), else an embedded SQLite one under the root.

    Opening a new SQLite instance creates its schema; runs starting together would race on it
    (and can corrupt its migration table), so opening happens under a lock in the instance folder.
    A PostgreSQL instance also gets its writer pools' limits here, before any step can use them.
    """
    from lakehouse.app.instance import set_pool_limits, writer_pools
    from lakehouse.delta.storage import is_remote

    if is_remote(settings.root) and not os.environ.get("DAGSTER_HOME"):
        raise SettingError(f"an object-store root ({settings.root}) needs DAGSTER_HOME: a local folder for dagster.yaml")
    home = dagster_home(settings)
    home.mkdir(parents=True, exist_ok=True)
    with exclusive_file_lock(home / ".lakehouse-init.lock", "the Dagster instance's schema", settings.lock_timeout_seconds):
        install_instance_config(home, settings)
        instance = dg.DagsterInstance.from_config(str(home))
        # Touch every storage now, while we hold the lock, so none is created lazily later by two runs at once.
        instance.get_runs(limit=1)
        instance.all_instigator_state()
        instance.get_asset_keys(limit=1)
        if settings.uses_postgres_instance:
            set_pool_limits(instance, writer_pools(build_definitions(settings)))
    return instance


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fail_abandoned_cli_runs(instance: dg.DagsterInstance) -> list[str]:
    """Mark failed the in-process CLI runs whose process died (SIGKILL, power loss), and free their pool slots.

    Nothing else would: no daemon monitors an in-process run, and a slot it held would block every later
    step of the feed's writer pool.
    """
    host = socket.gethostname()
    abandoned = []
    statuses = [dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.NOT_STARTED]
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=statuses, tags={"lakehouse/trigger": "cli"})):
        owner, _, pid = run.tags.get(PID_TAG, "").rpartition(":")
        if owner == host and pid.isdigit() and not _pid_alive(int(pid)):
            instance.report_run_failed(run, f"the lakehouse process that ran it (pid {pid}) is gone")
            instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
            abandoned.append(run.run_id)
    return abandoned


@contextmanager
def reaping_abandoned_cli_runs(instance: dg.DagsterInstance, interval_seconds: float = 2.0) -> Iterator[None]:
    """Keep failing dead CLI runs while this process runs: a run waiting for the writer pool's slot would
    otherwise wait forever for a slot a killed run still holds (no daemon monitors in-process runs).

    It shares the runs' instance (Dagster's storages serve several threads, as in the webserver): opening a
    second one cost every `lakehouse run` a tenth of a second."""
    stop = threading.Event()

    def reap() -> None:
        while not stop.wait(interval_seconds):
            try:
                fail_abandoned_cli_runs(instance)
            except Exception as error:  # noqa: BLE001 - reaping is best effort; say so, never kill the run
                print(f"lakehouse: could not check for abandoned runs: {error}", file=sys.stderr)

    reaper = threading.Thread(target=reap, name="lakehouse-reaper", daemon=True)
    reaper.start()
    try:
        yield
    finally:
        stop.set()
        reaper.join(timeout=10)


@dataclass(frozen=True)
class RunResult:
    """What the runner needs of a finished run, however its steps executed."""

    run_id: str
    success: bool
    all_events: list[dg.DagsterEvent]


def execute(
    settings: Settings, job: dg.JobDefinition, instance: dg.DagsterInstance, run_config: dict, tags: dict[str, str]
) -> RunResult:
    """One run of `job` from this process: its steps in this process (LAKEHOUSE_EXECUTOR=local), or on Celery workers.

    Under Celery the job is loaded by its code pointer (lakehouse.definitions:defs) both here and on every worker,
    so the run's steps are the code location's own; in-process execution ignores any job's executor, so Celery
    runs go through `execute_job`, which honours it.
    """
    result = _execute(settings, job, instance, run_config, tags)
    if not result.success:
        # As the daemon's run monitoring does for runs it launched (free_slots_after_run_end_seconds): a step whose
        # Celery worker process was killed fails (WorkerLostError) without the step event that frees its pool slot.
        instance.event_log_storage.free_concurrency_slots_for_run(result.run_id)
    return result


def _execute(
    settings: Settings, job: dg.JobDefinition, instance: dg.DagsterInstance, run_config: dict, tags: dict[str, str]
) -> RunResult:
    if settings.executor != "celery":
        done = job.execute_in_process(instance=instance, run_config=run_config, raise_on_error=False, tags=tags)
        return RunResult(done.run_id, done.success, list(done.all_events))
    from dagster._core.definitions.reconstruct import ReconstructableRepository  # no public alias in 1.13

    if not settings.uses_postgres_instance:
        raise SettingError(
            "LAKEHOUSE_EXECUTOR=celery needs the PostgreSQL instance (LAKEHOUSE_INSTANCE=postgres): workers share it"
        )
    recon = ReconstructableRepository.for_module("lakehouse.definitions", "defs").get_reconstructable_job(job.name)
    # This process's settings travel in the run's config, so a worker's steps use them, not the worker's own
    # environment (which still builds the job: its LAKEHOUSE_* settings must agree on the partitions).
    carried = {**run_config, "resources": {"lakehouse": {"config": {"settings_texts": settings.texts()}}}}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Task name 'execute_plan' is already registered")  # dagster-celery's own
        with dg.execute_job(recon, instance, run_config=carried, tags=tags, raise_on_error=False) as result:
            return RunResult(result.run_id, result.success, list(result.all_events))


def pending_arrival_dates(settings: Settings, dataset: str) -> list[date]:
    """Landed dates whose current files are not yet fully published (gated, failed or interrupted included)."""
    complete = set(
        OpsTables(settings.root).batch_rows(dataset).filter(pl.col("status") == "complete").get_column("batch_id").to_list()
    )
    return [
        d for d in landed_arrival_dates(settings.root, dataset) if current_batch_id(settings.root, dataset, d) not in complete
    ]


def run_arrival_dates(
    settings: Settings,
    arrival_dates: list[date],
    max_rejected_fraction: float | None = None,
    instance: dg.DagsterInstance | None = None,
    accept_damaged_files: bool = False,
    feed: FeedSpec | None = None,
    accept_volume_anomaly: bool = False,
) -> list[DateOutcome]:
    """Ingest then refresh gold for each arrival date of `feed` (default: the code location's one feed), in date
    order, through the real definitions."""
    instance = instance or instance_for(settings)
    with reaping_abandoned_cli_runs(instance):
        feed = feed or default_feed()
        defs = build_definitions(settings, [feed])
        fail_abandoned_cli_runs(instance)
        cli_tags = {"lakehouse/trigger": "cli", PID_TAG: f"{socket.gethostname()}:{os.getpid()}"}
        ingest, refresh = defs.resolve_job_def(feed.ingest_job), defs.resolve_job_def(feed.gold_job)
        quiet = {
            "loggers": {"console": {"config": {"log_level": "WARNING"}}}
        }  # the instance keeps every event; the terminal gets the summary
        run_config = {
            "ops": {
                feed.silver_op: {
                    "config": {
                        "max_rejected_fraction": max_rejected_fraction,
                        "accept_damaged_files": accept_damaged_files,
                        "accept_volume_anomaly": accept_volume_anomaly,
                    }
                }
            },
            **quiet,
        }
        outcomes = []
        for arrival in sorted(set(arrival_dates)):
            if arrival < settings.partitions_start:
                raise ValueError(
                    f"arrival date {arrival} is before the partitions start {settings.partitions_start} (LAKEHOUSE_PARTITIONS_START)"
                )
            result = execute(settings, ingest, instance, run_config, {**cli_tags, "dagster/partition": arrival.isoformat()})
            if not result.success:
                message = _failure_message(result)
                outcomes.append(DateOutcome(arrival, result.run_id, False, None, None, message))
                continue
            batch = (
                OpsTables(settings.root)
                .batch_rows(feed.dataset)
                .filter((pl.col("arrival_date") == arrival) & pl.col("status").is_in(["published", "complete"]))
                .sort("_recorded_at")
                .tail(1)
            )
            row = batch.row(0, named=True)
            touched = [date.fromisoformat(d) for d in json.loads(row["touched_event_dates"] or "[]")]
            request = gold_refresh_request(row["batch_id"], arrival, touched, settings.event_partitions_start)
            gold = execute(settings, refresh, instance, quiet, {**request.tags, **cli_tags})
            message = (
                f"published batch {row['batch_id'][:12]}; gold refreshed for {len(touched)} event dates"
                if gold.success
                else "gold refresh failed"
            )
            outcomes.append(DateOutcome(arrival, result.run_id, True, gold.run_id, gold.success, message))
        return outcomes
