"""Fixtures for running off one machine: an S3 server of our own, and a PostgreSQL database per test.

The S3 server is a Python dependency (moto), so its tests never skip. PostgreSQL is a service: probed with
a short timeout, its tests skip with the reason on a machine without one, and fail under CI=true.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

PG = {
    "host": os.environ.get("LAKEHOUSE_TEST_PG_HOST", "127.0.0.1"),
    "port": os.environ.get("LAKEHOUSE_TEST_PG_PORT", "5432"),
    "user": os.environ.get("LAKEHOUSE_TEST_PG_USER", "postgres"),
}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's ThreadedMotoServer in a process of its own: in the test's process, a deltalake call that holds the
    GIL while it waits on the server (DeltaTable.history) would wait forever for a server that cannot run."""
    port = _free_port()
    code = (
        "import time\nfrom moto.server import ThreadedMotoServer\n"
        f"ThreadedMotoServer(ip_address='127.0.0.1', port={port}, verbose=False).start()\ntime.sleep(1e9)"
    )
    server = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("the moto S3 server did not start") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.kill()
        server.wait()


S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1", "AWS_ALLOW_HTTP": "true"}


@pytest.fixture
def s3_root(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A bucket of the test's own on the S3 server, the AWS_* variables pointing at it, and a root inside it."""

    env = {**S3_ENV, "AWS_ENDPOINT_URL": s3_endpoint}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_S3_ALLOW_UNSAFE_RENAME", "AWS_CONDITIONAL_PUT", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    bucket = f"lake-{uuid.uuid4().hex[:12]}"
    s3_client(s3_endpoint).create_bucket(Bucket=bucket)
    return f"s3://{bucket}/lakehouse"


def s3_client(endpoint: str):  # type: ignore[no-untyped-def]
    import boto3

    return boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )


def upload(local: Path, root: str) -> None:
    """Every file under `local` to the same place under the object-store `root`."""
    bucket, _, prefix = root.removeprefix("s3://").partition("/")
    client = s3_client(os.environ["AWS_ENDPOINT_URL"])
    for path in sorted(p for p in local.rglob("*") if p.is_file()):
        client.upload_file(str(path), bucket, f"{prefix}/{path.relative_to(local).as_posix()}")


@pytest.fixture(scope="session")
def pg_server() -> dict[str, str]:
    import psycopg2

    try:
        psycopg2.connect(dbname="postgres", connect_timeout=2, **PG).close()
    except psycopg2.OperationalError as error:
        reason = f"no PostgreSQL at {PG['host']}:{PG['port']} as {PG['user']} ({str(error).strip()})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}: CI must run the PostgreSQL tests")
        pytest.skip(reason)
    return PG


@pytest.fixture
def pg_database(pg_server: dict[str, str]) -> Iterator[str]:
    """A database of the test's own (created, then dropped): its DSN."""
    import psycopg2

    name = f"lakehouse_test_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(dbname="postgres", connect_timeout=2, **pg_server)
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"host={pg_server['host']} port={pg_server['port']} user={pg_server['user']} dbname={name}"
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture
def pg_instance(pg_database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """LAKEHOUSE_INSTANCE=postgres on the test's database (which also holds the writer locks), a DAGSTER_HOME of its own."""
    words = dict(word.split("=", 1) for word in pg_database.split())
    env = {
        "LAKEHOUSE_INSTANCE": "postgres",
        "DAGSTER_PG_HOST": words["host"],
        "DAGSTER_PG_PORT": words["port"],
        "DAGSTER_PG_USER": words["user"],
        "DAGSTER_PG_DB": words["dbname"],
        "LAKEHOUSE_LOCK_DSN": pg_database,
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
    }
    (tmp_path / "dagster_home").mkdir()
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("DAGSTER_PG_PASSWORD", raising=False)
    return pg_database


BROKERS = {  # probed in this order; the first that answers is the tests' broker
    "redis": os.environ.get("LAKEHOUSE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
    "rabbitmq": os.environ.get("LAKEHOUSE_TEST_AMQP_URL", "pyamqp://guest:guest@127.0.0.1:5672//"),
}


def _broker_answers(url: str) -> str | None:
    """None when the broker at `url` answers within 2 s, else why not."""
    from kombu import Connection

    try:
        with Connection(url, connect_timeout=2, transport_options={"max_retries": 0}) as connection:
            connection.ensure_connection(max_retries=1, timeout=2)
            return None
    except Exception as error:  # noqa: BLE001 - any failure to connect is the reason to report
        return f"{url.split('@')[-1]}: {str(error).strip() or type(error).__name__}"


@pytest.fixture(scope="session")
def celery_broker() -> str:
    """A Celery broker on this machine: Redis, else RabbitMQ, each probed with a short timeout."""
    reasons = []
    for url in BROKERS.values():
        problem = _broker_answers(url)
        if problem is None:
            return url
        reasons.append(problem)
    reason = f"no Celery broker (Redis or RabbitMQ) answers: {'; '.join(reasons)}"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}: CI must run the Celery tests")
    pytest.skip(reason)


@pytest.fixture
def celery_env(celery_broker: str, pg_instance: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """LAKEHOUSE_EXECUTOR=celery on a queue of the test's own; afterwards the queue and (on Redis) its keys are removed."""
    queue = f"lakehouse_test_{uuid.uuid4().hex[:10]}"
    env = {"LAKEHOUSE_EXECUTOR": "celery", "LAKEHOUSE_CELERY_BROKER": celery_broker, "LAKEHOUSE_CELERY_QUEUE": queue}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    try:
        yield env
    finally:
        _remove_queue(celery_broker, queue)


def _remove_queue(broker: str, queue: str) -> None:
    if broker.startswith(("redis://", "rediss://")):
        import redis

        client = redis.Redis.from_url(broker)
        keys = list(client.scan_iter(match=f"{queue}:*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()
        return
    from kombu import Connection

    with Connection(broker) as connection:
        channel = connection.channel()
        channel.queue_delete(queue)


class Workers:
    """Celery workers (`lakehouse worker`), each in a process group of its own, with a log file each."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, **extra_env: str) -> None:
        log = self.folder / f"{name}.log"
        with open(log, "wb") as out:
            self.processes[name] = subprocess.Popen(
                [str(Path(sys.executable).with_name("lakehouse")), "worker", "--name", name, "--loglevel", "INFO"],
                env={**os.environ, **extra_env},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        for name, process in self.processes.items():
            log = self.folder / f"{name}.log"
            while " ready." not in log.read_text(errors="replace"):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"worker {name} did not start:\n{log.read_text(errors='replace')[-3000:]}")
                time.sleep(0.2)

    def stop(self, name: str) -> None:
        process = self.processes.pop(name)
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)  # warm shutdown: the pool's children go with it
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # any child left behind

    def stop_all(self) -> None:
        for name in list(self.processes):
            self.stop(name)


@pytest.fixture
def celery_workers(celery_env: dict[str, str], tmp_path: Path) -> Iterator[Workers]:
    """Two workers of one step each on the test's queue, instance and settings; stopped after the test."""
    folder = tmp_path / "workers"
    folder.mkdir()
    workers = Workers(folder)
    try:
        for name in ("w1", "w2"):
            workers.start(name)
        workers.wait_ready()
        yield workers
    finally:
        workers.stop_all()
