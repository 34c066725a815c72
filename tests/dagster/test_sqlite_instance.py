"""The embedded SQLite instance's storage (lakehouse/app/sqlite_storage.py): Dagster's own files and schema,
with connections kept open and run databases copied from an empty one; nothing recorded differently."""

import os
import time
from pathlib import Path

import dagster as dg
import dagster._core.storage.event_log.sqlite.sqlite_event_log as dagster_sqlite_event_log
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
from dagster._core.storage.runs.sqlite.sqlite_run_storage import SqliteRunStorage
from dagster._core.storage.sql import check_alembic_revision, create_engine, get_alembic_config
from sqlalchemy.pool import NullPool

from lakehouse.app.runner import instance_for
from lakehouse.app.sqlite_storage import KEPT_SHARDS, PooledSqliteEventLogStorage, PooledSqliteRunStorage
from lakehouse.settings import Settings


@dg.asset(key="numbers", check_specs=[dg.AssetCheckSpec("positive", asset="numbers", blocking=True)])
def numbers_checked():  # type: ignore[no-untyped-def]
    yield dg.MaterializeResult()
    yield dg.AssetCheckResult(check_name="positive", passed=True)


def _log(run_id: str, message: str) -> dg.EventLogEntry:
    return dg.EventLogEntry(error_info=None, level="INFO", user_message=message, run_id=run_id, timestamp=1.0)


def _instance(root: Path) -> dg.DagsterInstance:
    return instance_for(Settings(root=str(root)))


def test_a_sqlite_root_records_runs_in_pooled_storages_with_dagsters_own_files(tmp_path: Path) -> None:
    instance = _instance(tmp_path)
    assert isinstance(instance.event_log_storage, PooledSqliteEventLogStorage)
    assert isinstance(instance.run_storage, PooledSqliteRunStorage)
    result = dg.materialize([numbers_checked], instance=instance)
    assert result.success
    # Dagster's own storage classes, opened on the same files, read back every event of the run.
    runs_dir = tmp_path / "dagster_home" / "history"
    plain_events = SqliteEventLogStorage(str(runs_dir / "runs")).get_logs_for_run(result.run_id)
    assert [e.dagster_event_type for e in plain_events] == [
        e.dagster_event_type for e in instance.event_log_storage.get_logs_for_run(result.run_id)
    ]
    assert any(e.dagster_event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION for e in plain_events)
    plain_runs = SqliteRunStorage.from_local(str(runs_dir))
    assert [run.status for run in plain_runs.get_runs(dg.RunsFilter(run_ids=[result.run_id]))] == [dg.DagsterRunStatus.SUCCESS]
    # The run's database, a copy of the empty one, is stamped at Dagster's head revision like one Dagster made.
    engine = create_engine(f"sqlite:///{runs_dir / 'runs' / f'{result.run_id}.db'}", poolclass=NullPool)
    with engine.connect() as conn:
        db_revision, head = check_alembic_revision(get_alembic_config(dagster_sqlite_event_log.__file__), conn)
    assert db_revision == head is not None
    # The empty database is not taken for a run's: only real runs are listed.
    assert instance.event_log_storage.get_all_run_ids() == [result.run_id]  # type: ignore[attr-defined]


def test_a_run_database_another_process_created_first_is_kept(tmp_path: Path) -> None:
    storage = PooledSqliteEventLogStorage(str(tmp_path))
    other = SqliteEventLogStorage(str(tmp_path))  # another process's handle, Dagster's own
    other.store_event(_log("shared-run", "from the other process"))
    storage.store_event(_log("shared-run", "from this process"))
    messages = [e.user_message for e in storage.get_logs_for_run("shared-run")]
    assert messages == ["from the other process", "from this process"]


def test_open_connections_are_bounded_and_closed_on_dispose(tmp_path: Path) -> None:
    storage = PooledSqliteEventLogStorage(str(tmp_path))
    for index in range(KEPT_SHARDS + 4):
        storage.store_event(_log(f"run-{index}", "x"))
    assert len(storage._engines) <= KEPT_SHARDS
    storage.dispose()
    assert not storage._engines
    # Closed: each database's WAL was checkpointed into it and removed, as after Dagster's own calls.
    assert not [name for name in os.listdir(tmp_path) if name.endswith("-wal")]


def test_a_watcher_sees_each_event_another_handle_stores_while_the_run_goes_on(tmp_path: Path) -> None:
    """The webserver follows a running run through watchdog on the run's database file: events written by the
    run's process (connection kept open, events in the -wal) must still wake it, one by one."""
    webserver, worker = PooledSqliteEventLogStorage(str(tmp_path)), PooledSqliteEventLogStorage(str(tmp_path))
    worker.store_event(_log("live-run", "first"))
    seen: list[str] = []
    webserver.watch("live-run", None, lambda entry, cursor: seen.append(entry.user_message))
    try:
        for message in ("second", "third"):
            worker.store_event(_log("live-run", message))
            deadline = time.monotonic() + 30  # waits for the watcher thread; never a timing assertion
            while message not in seen and time.monotonic() < deadline:
                time.sleep(0.05)
            assert message in seen
    finally:
        webserver.dispose()
        worker.dispose()


def test_a_forked_child_never_closes_its_parents_open_connections(tmp_path: Path) -> None:
    """Closing an inherited SQLite connection in a child could checkpoint or drop a WAL the parent still uses:
    the child opens its own and leaves the parent's alone, even when it disposes the storage."""
    storage = PooledSqliteEventLogStorage(str(tmp_path))
    storage.store_event(_log("parent-run", "before the fork"))
    inherited = storage._engines["parent-run"]
    pid = os.fork()
    if pid == 0:  # the child: write through its own connection, then dispose everything
        ok = False
        try:
            storage.store_event(_log("parent-run", "from the child"))
            ok = storage._engines["parent-run"] is not inherited and inherited.pool.checkedin() == 1  # type: ignore[attr-defined]
            storage.dispose()
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert inherited.pool.checkedin() == 1  # type: ignore[attr-defined]  # still open here
    storage.store_event(_log("parent-run", "after the fork"))
    assert [e.user_message for e in SqliteEventLogStorage(str(tmp_path)).get_logs_for_run("parent-run")] == [
        "before the fork",
        "from the child",
        "after the fork",
    ]
