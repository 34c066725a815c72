"""One writer per feed at a time: a second run for the same data waits, then stops with a clear message."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from lakehouse.delta.storage import Fence, StaleWriterError, fenced, is_remote


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
            f"cannot lock {name} on {self.root}: object-store roots need the distributed writer lock, a PostgreSQL "
            f"advisory lock: set {LOCK_DSN_ENV} (or the DAGSTER_PG_* variables of a PostgreSQL instance). Nothing was written."
        )


LOCK_DSN_ENV = "LAKEHOUSE_LOCK_DSN"  # declared with its rule in lakehouse.settings (Settings.lock_dsn)
# A lock session idle this long is ended by the server: a frozen holder (SIGSTOP, a paused VM) loses the lock
# after at most this; a live one sends a heartbeat every third of it. TCP keepalives end a vanished machine's.
SESSION_SECONDS = 30
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2, "keepalives_count": 3}


def lock_dsn(dsn: str | None = None) -> str | None:
    """The PostgreSQL the writer lock lives in: `dsn`, else LAKEHOUSE_LOCK_DSN, else the PostgreSQL instance's
    DAGSTER_PG_* variables, else the dagster-postgres storage DAGSTER_HOME's own dagster.yaml configures (the
    same database the Dagster instance uses), else None."""
    if dsn or os.environ.get(LOCK_DSN_ENV):
        return dsn or os.environ[LOCK_DSN_ENV]
    if not os.environ.get("DAGSTER_PG_HOST"):
        return instance_dsn()
    parts = {
        "host": os.environ["DAGSTER_PG_HOST"],
        "port": os.environ.get("DAGSTER_PG_PORT", "5432"),
        "user": os.environ.get("DAGSTER_PG_USER", "postgres"),
        "password": os.environ.get("DAGSTER_PG_PASSWORD", ""),
        "dbname": os.environ.get("DAGSTER_PG_DB", "postgres"),
    }
    return " ".join(f"{k}='{v}'" for k, v in parts.items() if v)


def instance_dsn() -> str | None:
    """The PostgreSQL of the Dagster instance in DAGSTER_HOME (an operator's own dagster.yaml included): its
    `storage: postgres:` (or legacy `run_storage:`) `postgres_url` or `postgres_db`, `env:` values resolved."""
    import yaml
    from dagster_postgres.utils import pg_url_from_config

    config_file = Path(os.environ.get("DAGSTER_HOME", "")) / "dagster.yaml"
    if not os.environ.get("DAGSTER_HOME") or not config_file.is_file():
        return None
    config = yaml.safe_load(config_file.read_text()) or {}
    storage = (config.get("storage") or {}).get("postgres") or (config.get("run_storage") or {}).get("config")
    if not isinstance(storage, dict) or not ({"postgres_url", "postgres_db"} & set(storage)):
        return None
    url = pg_url_from_config(_with_env(storage))
    return url.replace("postgresql+psycopg2://", "postgresql://", 1)  # the lock connects with psycopg2 directly


def _with_env(value: Any) -> Any:
    """A Dagster config value with each `{env: NAME}` replaced by the variable's value."""
    if isinstance(value, dict):
        if set(value) == {"env"}:
            return os.environ.get(value["env"], "")
        return {k: _with_env(v) for k, v in value.items()}
    return value


def lock_key(root: str, name: str) -> int:
    """The advisory lock's 64-bit key: one per (root, name), so two roots on one database never exclude each other."""
    return int.from_bytes(hashlib.sha256(f"{root.rstrip('/')}\0{name}".encode()).digest()[:8], "big", signed=True)


@dataclass(frozen=True)
class PostgresWriterLock:
    """An object-store root's lock: a PostgreSQL session advisory lock on a connection of its own, held for the
    whole batch. The server drops it when the holder's session ends (killed process: about 1 ms; frozen one:
    after SESSION_SECONDS without a heartbeat). A lock alone cannot stop a frozen holder that wakes up, so each
    holder gets a fencing token (a sequence: larger for every later holder) and fences its writes with it
    (see `storage.Fence`)."""

    root: str
    dsn: str

    @contextmanager
    def hold(self, name: str, timeout_seconds: float) -> Iterator[None]:
        import psycopg2  # only an object-store root needs the driver

        key = lock_key(self.root, name)
        connection = psycopg2.connect(
            self.dsn,
            application_name=f"lakehouse writer {name} {socket.gethostname()}:{os.getpid()}",
            options=f"-c idle_session_timeout={SESSION_SECONDS * 1000}",
            connect_timeout=10,
            **KEEPALIVES,
        )
        connection.autocommit = True  # a session lock: no transaction may stay open (idle_session_timeout skips those)
        try:
            self._acquire(connection, key, name, timeout_seconds)
            token = _next_token(connection)
            lost = threading.Event()

            def still_held() -> None:
                try:
                    _query(
                        connection,
                        "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() "
                        "AND granted AND ((classid::bigint << 32) | objid::bigint) = %s",
                        (key,),
                        expect_row=True,
                    )
                except Exception as error:  # noqa: BLE001 - any failure means the session (so the lock) may be gone
                    lost.set()
                    raise StaleWriterError(
                        f"the writer lock for {name} on {self.root} was lost ({str(error).strip() or type(error).__name__}): "
                        "its session ended (a pause longer than the session limit, or the network). Nothing more is "
                        "written by this run; re-run it."
                    ) from None

            with _heartbeat(connection, lost), fenced(Fence(name, token, still_held)):
                yield
        finally:
            connection.close()  # ends the session: the lock goes with it

    def _acquire(self, connection: Any, key: int, name: str, timeout_seconds: float) -> None:
        deadline = time.monotonic() + timeout_seconds
        while not _query(connection, "SELECT pg_try_advisory_lock(%s)", (key,)):
            if time.monotonic() >= deadline:
                holder = _query(
                    connection,
                    "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                    "WHERE l.locktype = 'advisory' AND l.granted AND ((l.classid::bigint << 32) | l.objid::bigint) = %s",
                    (key,),
                )
                raise WriterBusyError(
                    f"another run is writing {name} (holder: {holder or 'unknown'}); waited {timeout_seconds:.0f}s. "
                    "Nothing was written by this run; retry once the other run finishes."
                )
            time.sleep(0.1)


def _query(connection: Any, sql: str, args: tuple[object, ...] = (), expect_row: bool = False) -> Any:
    with connection.cursor() as cursor:
        cursor.execute(sql, args)
        row = cursor.fetchone()
    if expect_row and row is None:
        raise RuntimeError("the lock is no longer held by this session")
    return row[0] if row else None


def _next_token(connection: Any) -> int:
    """A fencing token from a sequence: every later holder of any lock gets a larger one."""
    for attempt in range(3):
        try:
            return int(_query(connection, "SELECT nextval('lakehouse_writer_fence')"))
        except Exception:  # noqa: BLE001 - the sequence is created on first use; two first users may race
            if attempt == 2:
                raise
            with contextlib.suppress(Exception):  # a racing creator made it: the next nextval works
                _query(connection, "CREATE SEQUENCE IF NOT EXISTS lakehouse_writer_fence")
    raise AssertionError("unreachable")


@contextmanager
def _heartbeat(connection: Any, lost: threading.Event) -> Iterator[None]:
    """Keep the lock's session from idling out while the holder is alive; stop at the first failure (the fence
    then refuses the next commit)."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(SESSION_SECONDS / 3):
            try:
                _query(connection, "SELECT 1")
            except Exception:  # noqa: BLE001 - the session is gone: the fence reports it at the next commit
                lost.set()
                return

    thread = threading.Thread(target=beat, name="lakehouse-lock-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


def writer_lock(root: str | Path, dsn: str | None = None) -> WriterLock:
    """The root's writer lock strategy, chosen here only: a kernel file lock for a local root (one machine);
    for an object-store root a PostgreSQL advisory lock when a DSN is configured, else a refusal."""
    if not is_remote(root):
        return FileWriterLock(Path(root))
    configured = lock_dsn(dsn)
    return PostgresWriterLock(str(root), configured) if configured else MissingDistributedLock(str(root))


@contextmanager
def exclusive_writer(root: str | Path, name: str, timeout_seconds: float, dsn: str | None = None) -> Iterator[None]:
    """Hold the root's writer lock for `name` (one writer per feed, or per aggregate table)."""
    with writer_lock(root, dsn).hold(name, timeout_seconds):
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
