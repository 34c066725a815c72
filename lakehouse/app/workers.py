"""Steps on Celery workers (dagster-celery): the executor's configuration from the settings, the workers' Celery
app, and the command that starts a worker.

The run process (the CLI's, or the run worker the daemon launched) keeps the run: it claims each step's pool
slot in the instance, then sends the step to the broker queue; a worker rebuilds the instance from the run's
instance reference (so it needs the PostgreSQL instance) and the job from its code pointer (so it needs the same
code and the same LAKEHOUSE_* settings), executes the one step and reports its events through the instance.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from lakehouse.settings import Settings

REDIS_SCHEMES = ("redis://", "rediss://")


def uses_redis(settings: Settings) -> bool:
    return settings.celery_broker.startswith(REDIS_SCHEMES)


def celery_executor_config(settings: Settings) -> dict[str, Any]:
    """The dagster-celery executor's config: broker, result backend and the Celery settings both sides share.

    Redis keeps the results in the broker's own database; RabbitMQ returns them to the run over `rpc://`.
    On Redis every key (queue, bindings, results) carries the queue name as prefix, so a deployment's keys
    can be listed and removed together.
    """
    source: dict[str, Any] = {
        "task_default_queue": settings.celery_queue,
        "worker_prefetch_multiplier": 1,  # a worker takes one step at a time: the others stay for idle workers
        "broker_connection_retry_on_startup": True,
        # A step's result is read by its run at once; on RabbitMQ each run's rpc:// reply queue expires after this.
        "result_expires": 3600,
    }
    if uses_redis(settings):
        prefix = {"global_keyprefix": f"{settings.celery_queue}:"}
        source["broker_transport_options"] = {"max_retries": 3, "interval_start": 0, "interval_step": 0.2, **prefix}
        source["result_backend_transport_options"] = prefix
    backend = settings.celery_broker if uses_redis(settings) else "rpc://"
    return {"broker": settings.celery_broker, "backend": backend, "config_source": source}


def celery_executor_definition(settings: Settings):  # type: ignore[no-untyped-def]
    """dagster-celery's executor with this deployment's broker and queue (retries off, as the local executor's)."""
    from dagster_celery import celery_executor

    return celery_executor.configured({**celery_executor_config(settings), "retries": {"disabled": {}}}, name="lakehouse_celery")


def make_worker_app(settings: Settings):  # type: ignore[no-untyped-def]
    """The Celery app a worker runs: dagster-celery's step task, on the executor's own broker and settings."""
    from dagster_celery.executor import CeleryExecutor
    from dagster_celery.make_app import make_app_with_task_routes
    from dagster_celery.tasks import create_task

    config = celery_executor_config(settings)
    executor = CeleryExecutor.for_cli(config["broker"], config["backend"], None, config["config_source"])
    queue = settings.celery_queue
    app = make_app_with_task_routes(
        {"execute_plan": {"queue": queue, "routing_key": f"{queue}.execute_plan"}}, app_args=executor.app_args()
    )
    from kombu import Queue

    app.conf.task_queues = [Queue(queue, routing_key=f"{queue}.#", queue_arguments={"x-max-priority": 10})]
    create_task(app)
    return app


def worker_argv(settings: Settings, name: str, concurrency: int, loglevel: str = "WARNING") -> list[str]:
    """`celery worker` on this deployment's queue: `concurrency` step processes, one step taken at a time each."""
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "lakehouse.app.celery_app",
        "worker",
        "--queues",
        settings.celery_queue,
        "--concurrency",
        str(concurrency),
        "--prefetch-multiplier",
        "1",
        "--hostname",
        f"{name}@%h",
        "--loglevel",
        loglevel,
        "--without-gossip",
        "--without-mingle",
    ]


def exec_worker(settings: Settings, name: str, concurrency: int, loglevel: str) -> None:
    """Replace this process with the worker (signals and exit code are the worker's own)."""
    argv = worker_argv(settings, name, concurrency, loglevel)
    os.execv(argv[0], argv)
