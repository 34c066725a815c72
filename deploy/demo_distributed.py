"""`make demo-distributed`: the demo of the whole deployment on one machine, then torn down.

It starts what the deployment needs locally: an S3 server (moto, in a child process) holding the tables, a
database of its own on the machine's PostgreSQL (the Dagster instance, writer locks and backfill budget), a queue
of its own on the machine's Redis (or the broker LAKEHOUSE_CELERY_BROKER names) and two Celery workers
(`lakehouse worker`). Then it runs `lakehouse demo` there with LAKEHOUSE_EXECUTOR=celery, which prints the same
summary as the embedded demo, and says which worker executed how many steps. Everything it made is removed after.

PostgreSQL is reached as DAGSTER_PG_HOST/PORT/USER (default 127.0.0.1:5432, postgres; password from PGPASSWORD or
~/.pgpass); the workers need the same code, so this runs from the project's environment.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

LAKEHOUSE = str(Path(sys.executable).with_name("lakehouse"))
WORKERS = ("w1", "w2")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(what: str, ready, timeout: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise SystemExit(f"demo-distributed: {what} did not start within {timeout:.0f}s")
        time.sleep(0.2)


def answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def main() -> int:
    import psycopg2
    from kombu import Connection

    pg = {
        "host": os.environ.get("DAGSTER_PG_HOST", "127.0.0.1"),
        "port": os.environ.get("DAGSTER_PG_PORT", "5432"),
        "user": os.environ.get("DAGSTER_PG_USER", "postgres"),
    }
    broker = os.environ.get("LAKEHOUSE_CELERY_BROKER", "redis://127.0.0.1:6379/0")
    try:
        admin = psycopg2.connect(dbname="postgres", connect_timeout=3, **pg)
    except psycopg2.OperationalError as error:
        print(
            f"demo-distributed: no PostgreSQL at {pg['host']}:{pg['port']} as {pg['user']}: {str(error).strip()}", file=sys.stderr
        )
        return 2
    try:
        with Connection(broker, connect_timeout=3) as connection:
            connection.ensure_connection(max_retries=1, timeout=3)
    except Exception as error:  # noqa: BLE001 - any failure to reach the broker is the one line to print
        print(f"demo-distributed: no Celery broker at {broker.split('@')[-1]}: {error}", file=sys.stderr)
        return 2

    name = f"lakehouse_demo_{uuid.uuid4().hex[:10]}"
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    port = free_port()
    moto = subprocess.Popen(
        [sys.executable, "-c", f"import time\nfrom moto.server import ThreadedMotoServer\n"
         f"ThreadedMotoServer(ip_address='127.0.0.1', port={port}, verbose=False).start()\ntime.sleep(1e9)"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    workers: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="lakehouse-demo-distributed-") as scratch:
        home, logs = Path(scratch) / "dagster_home", Path(scratch)
        home.mkdir()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("LAKEHOUSE_", "AWS_"))},
            "LAKEHOUSE_INSTANCE": "postgres",
            "DAGSTER_PG_HOST": pg["host"],
            "DAGSTER_PG_PORT": pg["port"],
            "DAGSTER_PG_USER": pg["user"],
            "DAGSTER_PG_DB": name,
            "DAGSTER_HOME": str(home),
            "LAKEHOUSE_EXECUTOR": "celery",
            "LAKEHOUSE_CELERY_BROKER": broker,
            "LAKEHOUSE_CELERY_QUEUE": name,
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
            "AWS_ACCESS_KEY_ID": "demo",
            "AWS_SECRET_ACCESS_KEY": "demo",
            "AWS_REGION": "us-east-1",
            "AWS_ALLOW_HTTP": "true",
        }
        try:
            wait_for("the S3 server", lambda: answers(port))
            import boto3

            boto3.client(
                "s3", endpoint_url=env["AWS_ENDPOINT_URL"], aws_access_key_id="demo", aws_secret_access_key="demo",
                region_name="us-east-1",
            ).create_bucket(Bucket="lakehouse-demo")  # fmt: skip
            for worker in WORKERS:
                with open(logs / f"{worker}.log", "wb") as out:
                    workers.append(
                        subprocess.Popen(
                            [LAKEHOUSE, "worker", "--name", worker, "--loglevel", "INFO"],
                            env=env,
                            stdout=out,
                            stderr=subprocess.STDOUT,
                            start_new_session=True,
                        )  # fmt: skip
                    )
            for worker in WORKERS:
                wait_for(f"worker {worker}", lambda w=worker: " ready." in (logs / f"{w}.log").read_text(errors="replace"))
            print(f"two Celery workers ({', '.join(WORKERS)}) on {broker.split('@')[-1]}, queue {name}; "
                  f"instance on PostgreSQL database {name}; tables on s3://lakehouse-demo (moto at 127.0.0.1:{port})\n")  # fmt: skip
            started = time.perf_counter()
            demo = subprocess.run([LAKEHOUSE, "demo", "--root", "s3://lakehouse-demo/demo", *sys.argv[1:]], env=env)
            elapsed = time.perf_counter() - started
            steps = Counter(  # each worker logs one line per step it executed
                worker
                for worker in WORKERS
                for line in (logs / f"{worker}.log").read_text(errors="replace").splitlines()
                if "Task execute_plan[" in line and " succeeded " in line
            )
            print(f"\nsteps executed per Celery worker: {', '.join(f'{w} {steps[w]}' for w in WORKERS)}; "
                  f"`lakehouse demo` took {elapsed:.1f}s with its start-up")  # fmt: skip
            return demo.returncode
        finally:
            for process in workers:
                if process.poll() is None:
                    os.killpg(process.pid, signal.SIGTERM)
            for process in workers:
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
            moto.kill()
            moto.wait()
            with admin.cursor() as cursor:
                cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.close()
            if broker.startswith(("redis://", "rediss://")):
                import redis

                client = redis.Redis.from_url(broker)
                keys = list(client.scan_iter(match=f"{name}:*", count=1000))
                if keys:
                    client.delete(*keys)


if __name__ == "__main__":
    sys.exit(main())
