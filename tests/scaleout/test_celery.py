"""Steps on Celery workers (LAKEHOUSE_EXECUTOR=celery) against the same dates run in process.

Two workers started by the fixture, on a broker queue of the test's own, share the test's PostgreSQL instance;
the run process (here, the test's) claims the writer pool's slot for each step and sends the step to the queue.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from dataclasses import replace
from pathlib import Path

import dagster as dg

from lakehouse.app.runner import instance_for, run_arrival_dates
from lakehouse.settings import Settings
from tests.scaleout.conftest import Workers
from tests.scaleout.test_object_store_pipeline import content, local_reference
from tests.support import assert_same_content

WRITER_POOL = "lakehouse_billing_events_writer"


def worker_of_each_step(instance: dg.DagsterInstance, run_ids: list[str]) -> dict[tuple[str, str], str]:
    """(run id, step key) -> the Celery worker that executed it, from the worker's own engine event."""
    found = {}
    for run_id in run_ids:
        for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
            event = record.dagster_event
            metadata = event.engine_event_data.metadata if event and event.engine_event_data else {}
            if "Celery worker" in metadata:
                found[(run_id, event.step_key or "")] = str(metadata["Celery worker"].value)
    return found


def seconds_per_step(instance: dg.DagsterInstance, run_ids: list[str]) -> tuple[float, float]:
    """(run wall time per step, step body time per step) over `run_ids`, from the instance's own event times."""
    walls, bodies, steps = 0.0, 0.0, 0
    for run_id in run_ids:
        records = instance.all_logs(run_id)
        times = {r.dagster_event.event_type: r.timestamp for r in records if r.dagster_event and not r.dagster_event.step_key}
        walls += times[dg.DagsterEventType.RUN_SUCCESS] - times[dg.DagsterEventType.RUN_START]
        started = {}
        for r in records:
            event = r.dagster_event
            if event and event.event_type == dg.DagsterEventType.STEP_START:
                started[event.step_key] = r.timestamp
            elif event and event.event_type == dg.DagsterEventType.STEP_SUCCESS:
                bodies += r.timestamp - started[event.step_key]
                steps += 1
    return walls / steps, bodies / steps


def copy_landing(local: Path, root: Path) -> None:
    shutil.copytree(local / "landing", root / "landing")


def test_a_run_whose_steps_execute_on_two_celery_workers_equals_an_in_process_run(
    tmp_path: Path, celery_workers: Workers
) -> None:
    local, dates, local_seconds = local_reference(tmp_path)
    root = tmp_path / "celery_root"
    copy_landing(local, root)
    # The cost baseline: the same dates in process, on a PostgreSQL instance like the Celery run's.
    baseline_root = tmp_path / "in_process_root"
    copy_landing(local, baseline_root)
    in_process = run_arrival_dates(replace(Settings.from_env(root=str(baseline_root)), executor="local"), dates)
    settings = Settings.from_env(root=str(root))
    assert settings.executor == "celery"
    instance = instance_for(settings)
    started = time.perf_counter()
    outcomes = run_arrival_dates(settings, dates, instance=instance)
    celery_seconds = time.perf_counter() - started
    assert all(o.ok for o in outcomes), [o.message for o in outcomes]
    assert_same_content(content(local), content(root))

    run_ids = [o.ingest_run_id for o in outcomes] + [o.gold_run_id for o in outcomes if o.gold_run_id]
    workers = worker_of_each_step(instance, run_ids)
    steps = sum(len(instance.get_run_by_id(r).step_keys_to_execute or []) for r in run_ids)  # type: ignore[union-attr]
    # Every step of every run went through a worker, and both workers took some.
    assert len(workers) >= len(run_ids) and {w.split("@")[0] for w in workers.values()} == {"w1", "w2"}, workers
    assert instance.event_log_storage.get_concurrency_info(WRITER_POOL).claimed_slots == []
    local_wall, local_body = seconds_per_step(
        instance, [o.ingest_run_id for o in in_process] + [o.gold_run_id for o in in_process if o.gold_run_id]
    )
    celery_wall, celery_body = seconds_per_step(instance, run_ids)
    print(
        f"\n{len(dates)} arrival dates, {len(workers)} steps on workers ({steps} planned): in process {local_seconds:.2f}s, "
        f"Celery {celery_seconds:.2f}s; per step, run time {local_wall:.2f}s in process vs {celery_wall:.2f}s on Celery "
        f"(x{celery_wall / local_wall:.1f}), step body {local_body:.2f}s vs {celery_body:.2f}s"
    )


def test_a_killed_worker_fails_its_step_frees_its_slot_and_a_rerun_is_exact(tmp_path: Path, celery_env: dict[str, str]) -> None:
    local, dates, _ = local_reference(tmp_path, days=1)
    root = tmp_path / "celery_root"
    copy_landing(local, root)

    settings = Settings.from_env(root=str(root))
    instance = instance_for(settings)
    flags = tmp_path / "flags"
    workers = Workers(tmp_path)
    try:
        # One worker whose step process stops right after silver's commit, before the batch is recorded.
        workers.start("doomed", LAKEHOUSE_TEST_CRASH_AT=f"pause:after_silver_commit:{flags}")
        workers.wait_ready()
        outcome: list[object] = []
        runner = threading.Thread(target=lambda: outcome.extend(run_arrival_dates(settings, dates, instance=instance)))
        runner.start()
        deadline = time.monotonic() + 120
        while not (flags / "paused").exists():
            assert time.monotonic() < deadline and runner.is_alive(), "the step never reached the pause point"
            time.sleep(0.1)
        [claimed] = instance.event_log_storage.get_concurrency_info(WRITER_POOL).claimed_slots
        step_process = int((flags / "paused").read_text())
        os.kill(step_process, signal.SIGKILL)  # the process executing the step, as the OOM killer would
        runner.join(timeout=120)
        assert not runner.is_alive(), "the run did not end after its step's worker process was killed"
        [failed] = outcome
        assert not failed.ok and failed.ingest_run_id == claimed.run_id  # type: ignore[attr-defined]
        run = instance.get_run_by_id(claimed.run_id)
        assert run is not None and run.status == dg.DagsterRunStatus.FAILURE
        assert instance.event_log_storage.get_concurrency_info(WRITER_POOL).claimed_slots == []
        workers.stop_all()

        # A re-run on healthy workers publishes each date exactly once: the same tables as the in-process run.
        for name in ("w1", "w2"):
            workers.start(name)
        workers.wait_ready()
        rerun = run_arrival_dates(settings, dates, instance=instance)
        assert all(o.ok for o in rerun), [o.message for o in rerun]
        assert_same_content(content(local), content(root))
    finally:
        workers.stop_all()
        (flags / "resume").parent.mkdir(exist_ok=True)
        (flags / "resume").touch()


def test_a_backfill_under_celery_keeps_its_caps(tmp_path: Path, celery_env: dict[str, str]) -> None:
    """A Dagster backfill through the real webserver and daemon, its runs' steps on two workers: at most MAX_RUNS
    runs in flight, PER_RUN dates a run, the rows-per-second cap, one writer at a time, and the same tables."""
    from assets.billing_feed import BILLING_EVENTS
    from lakehouse.app.backfill import BackfillClient, ingest_assets
    from tests.e2e.dagster_ui import BACKFILL_TAG, instance, peak_in_flight, rows_written, run_spans, running_ui

    max_runs, per_run, rows_per_second = 1, 2, 8.0
    caps = {
        "LAKEHOUSE_BACKFILL_MAX_RUNS": str(max_runs),
        "LAKEHOUSE_BACKFILL_PARTITIONS_PER_RUN": str(per_run),
        "LAKEHOUSE_BACKFILL_ROWS_PER_SECOND": str(rows_per_second),
    }
    local, dates, _ = local_reference(tmp_path, days=4)
    root = tmp_path / "root"
    copy_landing(local, root)
    # Published once first (in process), so the sensors have nothing to launch: the backfill replays the dates.
    assert all(o.ok for o in run_arrival_dates(replace(Settings.from_env(root=str(root)), executor="local"), dates))
    workers = Workers(tmp_path)
    try:
        for name in ("w1", "w2"):  # a daemon's runs carry no settings: the workers' own must be the code location's
            workers.start(name, LAKEHOUSE_ROOT=str(root), **caps)
        workers.wait_ready()
        with running_ui(root, tmp_path / "ui.log", **caps) as url:
            client = BackfillClient(url)
            backfill_id = client.launch(ingest_assets(BILLING_EVENTS), [d.isoformat() for d in dates], {}, "celery backfill")
            state = client.wait(backfill_id, timeout=600, report=lambda s: None)
            assert state.succeeded, state.line()
            dagster = instance(root)
            backfill = run_spans(dagster, {BACKFILL_TAG: backfill_id})
    finally:
        workers.stop_all()

    ids = [s.run_id for s in backfill]
    assert len(backfill) == len(dates) // per_run
    assert peak_in_flight(backfill) <= max_runs
    rows = rows_written(dagster, set(ids))
    elapsed = max(s.ended for s in backfill) - min(s.starting for s in backfill)
    assert rows > 0 and rows / elapsed <= rows_per_second, f"{rows} rows in {elapsed:.1f}s"
    on_workers = worker_of_each_step(dagster, ids)
    assert {run_id for run_id, _ in on_workers} == set(ids), "a backfill run's steps did not go to the Celery workers"
    assert dagster.event_log_storage.get_concurrency_info(WRITER_POOL).claimed_slots == []
    assert_same_content(content(local), content(root))
    print(
        f"\nCelery backfill: {len(backfill)} runs, peak {peak_in_flight(backfill)} in flight (cap {max_runs}), "
        f"{len(on_workers)} steps on {sorted({w.split('@')[0] for w in on_workers.values()})}; "
        f"{rows} rows in {elapsed:.1f}s = {rows / elapsed:.1f} rows/s (cap {rows_per_second})"
    )
