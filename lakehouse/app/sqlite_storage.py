"""The Dagster instance's SQLite storage, with an event log that costs a small run less.

Dagster's own SQLite event log opens a new engine and connection for every event and disposes it after:
closing the last connection to a WAL database checkpoints it and deletes its `-wal` file, two more
fsyncs. That was most of a small date's run time (the two runs of one arrival date store about 70
events, many into two databases each). Here each database keeps one pooled connection: every event is
still its own committed transaction with the same durability (`synchronous` is left at SQLite's
default), only the open/close around it goes.

Every run also gets a database of its own, which Dagster creates with its whole schema and an alembic
stamp (about 0.1 s a run). Here a new run's database is a copy of one such empty database that Dagster
itself initialised for the installed Dagster version, kept beside the run databases; a run database
another process already created is never replaced. Everything else is Dagster's storage as is.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import tempfile
import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from dagster._core.storage.event_log.sqlite.sqlite_event_log import INDEX_SHARD_NAME, SqliteEventLogStorage
from dagster._core.storage.runs.sqlite.sqlite_run_storage import SqliteRunStorage
from dagster._core.storage.schedules.sqlite.sqlite_schedule_storage import SqliteScheduleStorage
from dagster._core.storage.sql import create_engine
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS
from dagster._core.storage.sqlite_storage import (
    DagsterSqliteStorage,
    _event_logs_directory,
    _runs_directory,
    _schedule_directory,
)
from dagster._serdes import ConfigurableClassData
from dagster.version import __version__ as dagster_version
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import QueuePool

# A forked child's copies of its parent's open connections: kept referenced and never closed there, since
# closing one in the child could checkpoint or remove a WAL the parent still writes (SQLite and fork do not mix).
_INHERITED: list[Engine] = []
KEPT_SHARDS = 8  # a long-lived webserver or daemon touches many runs' databases; only the most recent stay open


class PooledSqliteEventLogStorage(SqliteEventLogStorage):
    """SqliteEventLogStorage whose shards (the index and each run's database) keep a connection open."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None) -> None:
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        self._engines_pid = os.getpid()
        self._tables_found: set[str] = set()
        super().__init__(base_dir, inst_data)

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData | None, config_value: Any) -> PooledSqliteEventLogStorage:
        return cls(inst_data=inst_data, **config_value)

    def _engine(self, shard: str) -> Engine:
        """The shard's engine (callers hold `_db_lock`, so at most one connection is ever checked out)."""
        if self._engines_pid != os.getpid():  # a forked child never uses its parent's open connections
            _INHERITED.extend(self._engines.values())
            self._engines, self._engines_pid = OrderedDict(), os.getpid()
        engine = self._engines.get(shard)
        if engine is None:
            engine = create_engine(
                self.conn_string_for_shard(shard),
                poolclass=QueuePool,
                pool_size=1,  # the one connection kept open; Dagster's schema set-up nests a few more, closed after
                max_overflow=-1,
                # Used from one thread at a time (under _db_lock), not always the same one (the event watcher's).
                connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS, "check_same_thread": False},
            )
            self._engines[shard] = engine
            while len(self._engines) > KEPT_SHARDS:
                self._engines.popitem(last=False)[1].dispose()
        self._engines.move_to_end(shard)
        return engine

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        with self._db_lock:
            engine = self._engine(shard)
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            with engine.connect() as conn:
                raw = conn.connection.dbapi_connection
                changes = raw.total_changes  # type: ignore[union-attr]
                with conn.begin():
                    yield conn
                wrote = raw.total_changes != changes  # type: ignore[union-attr]
        if wrote and shard != INDEX_SHARD_NAME:
            # A webserver follows a running run by watching its database file for modification (watchdog). The
            # events now wait in the -wal file until a checkpoint, so the file is touched instead, as Dagster's
            # close-and-checkpoint after every event modified it. Only after writes: a watcher's own reads must
            # not wake it again.
            os.utime(self.path_for_shard(shard))

    def has_table(self, table_name: str) -> bool:
        """Dagster asks this (with a connection of its own) before storing every asset check event; a table, once
        there, stays (a missing one may be added by `dagster instance migrate`, so only a found one is remembered)."""
        if table_name not in self._tables_found and super().has_table(table_name):
            self._tables_found.add(table_name)
        return table_name in self._tables_found

    def _initdb(self, engine: Engine, for_index_shard: bool = False) -> None:
        target = engine.url.database
        if for_index_shard or not target or os.path.exists(target) or not self._copy_empty_run_db(target):
            super()._initdb(engine, for_index_shard)

    def _empty_run_db(self) -> str:
        """An empty run database Dagster initialised (schema, WAL mode, alembic stamp), made once per Dagster
        version. Not named *.db: Dagster takes every *.db beside the index for a run's."""
        template = os.path.join(self._base_dir, f".empty-run-{dagster_version}.sqlite")
        if not os.path.exists(template):
            scratch = tempfile.mkdtemp(dir=self._base_dir, prefix=".empty-run-")
            try:
                made = os.path.join(scratch, "run.db")
                engine = create_engine(f"sqlite:///{made}", connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS})
                super()._initdb(engine)
                engine.dispose()  # its last connection closed: the WAL is checkpointed into the file
                with contextlib.suppress(FileExistsError):  # another process made it meanwhile: theirs stays
                    os.link(made, template)
            finally:
                for name in os.listdir(scratch):
                    os.unlink(os.path.join(scratch, name))
                os.rmdir(scratch)
        return template

    def _copy_empty_run_db(self, target: str) -> bool:
        """Create the run database `target` as a copy of the empty one; False when another process created it first."""
        staged = f"{target}.{os.getpid()}.new"
        with open(self._empty_run_db(), "rb") as source, open(staged, "wb") as copy:
            copy.write(source.read())
            copy.flush()
            os.fsync(copy.fileno())
        try:
            os.link(staged, target)  # all at once, and never over a database that exists
            return True
        except FileExistsError:
            return False
        finally:
            os.unlink(staged)

    def close_connections(self) -> None:
        self._dispose_engines()

    def _dispose_engines(self) -> None:
        with self._db_lock:
            for engine in self._engines.values():
                if self._engines_pid == os.getpid():
                    engine.dispose()
                else:
                    _INHERITED.append(engine)
            self._engines.clear()

    def wipe(self) -> None:
        self._dispose_engines()  # wipe deletes the run databases: no connection may keep one open
        super().wipe()

    def dispose(self) -> None:
        self._dispose_engines()
        super().dispose()


def _close_connections(*storages: weakref.ref[PooledSqliteRunStorage | PooledSqliteEventLogStorage]) -> None:
    for ref in storages:
        storage = ref()
        if storage is not None:
            storage.close_connections()


class PooledSqliteRunStorage(SqliteRunStorage):
    """SqliteRunStorage (runs.db: runs, their status changes, snapshots) keeping its connection open: Dagster's
    opens and closes one per call, about 50 for the two runs of one date."""

    def __init__(self, conn_string: str, inst_data: ConfigurableClassData | None = None) -> None:
        super().__init__(conn_string, inst_data)
        self._engine: Engine | None = None
        self._engine_pid = os.getpid()
        self._engine_lock = threading.Lock()

    def _pooled(self) -> Engine:
        with self._engine_lock:
            if self._engine is None or self._engine_pid != os.getpid():  # a forked child opens its own
                if self._engine is not None:
                    _INHERITED.append(self._engine)
                # One connection kept; a caller on another thread at the same moment gets its own, closed after.
                self._engine = create_engine(
                    self._conn_string,
                    poolclass=QueuePool,
                    pool_size=1,
                    max_overflow=-1,
                    connect_args={"check_same_thread": False},
                )
                self._engine_pid = os.getpid()
            return self._engine

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        with self._pooled().connect() as conn, conn.begin():
            yield conn

    def close_connections(self) -> None:
        with self._engine_lock:
            if self._engine is not None:
                if self._engine_pid == os.getpid():
                    self._engine.dispose()
                else:
                    _INHERITED.append(self._engine)
                self._engine = None

    def dispose(self) -> None:
        self.close_connections()
        super().dispose()


class LakehouseSqliteStorage(DagsterSqliteStorage):
    """Dagster's SQLite storage (the same files under `base_dir`) with pooled run and event log storages."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None) -> None:
        # DagsterSqliteStorage.__init__'s own body, with the pooled storages in place of Dagster's: calling it would
        # open Dagster's run and event log storages (runs.db's alembic check among them) only to replace them, a
        # twentieth of a second on every instance opened.
        self.base_dir = base_dir
        self._run_storage = PooledSqliteRunStorage.from_local(_runs_directory(base_dir))
        self._event_log_storage = PooledSqliteEventLogStorage(_event_logs_directory(base_dir))
        self._schedule_storage = SqliteScheduleStorage.from_local(_schedule_directory(base_dir))
        self._inst_data = inst_data
        super(DagsterSqliteStorage, self).__init__()
        # Closing the connections at exit checkpoints each database's WAL into it and removes the -wal file, as
        # Dagster's own storage does after every call (an open connection is never left to the process's end).
        atexit.register(_close_connections, weakref.ref(self._run_storage), weakref.ref(self._event_log_storage))

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData | None, config_value: Any) -> LakehouseSqliteStorage:
        return cls.from_local(inst_data=inst_data, **config_value)
