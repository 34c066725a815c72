"""The executor is the deployment's choice: LAKEHOUSE_EXECUTOR picks it, the broker settings configure both sides."""

from __future__ import annotations

import pytest

from lakehouse.app.cli import main
from lakehouse.app.workers import celery_executor_config, worker_argv
from lakehouse.definitions import executor_for
from lakehouse.settings import Settings


def test_the_setting_picks_the_executor_of_every_job() -> None:
    assert executor_for(Settings()).name == "lakehouse_run_kind"
    assert executor_for(Settings(executor="celery")).name == "lakehouse_celery"


def test_redis_keeps_results_in_the_broker_under_the_queues_prefix_and_rabbitmq_returns_them_over_rpc() -> None:
    redis = celery_executor_config(Settings(executor="celery", celery_broker="redis://r:6379/3", celery_queue="q1"))
    assert redis["backend"] == "redis://r:6379/3"
    assert redis["config_source"]["task_default_queue"] == "q1"
    assert redis["config_source"]["broker_transport_options"]["global_keyprefix"] == "q1:"
    assert redis["config_source"]["result_backend_transport_options"] == {"global_keyprefix": "q1:"}
    amqp = celery_executor_config(Settings(executor="celery", celery_broker="amqp://guest@rabbit//", celery_queue="q2"))
    assert amqp["backend"] == "rpc://" and "broker_transport_options" not in amqp["config_source"]


def test_a_worker_listens_on_the_deployments_queue_taking_one_step_at_a_time() -> None:
    argv = worker_argv(Settings(celery_queue="q3"), "w9", 2)
    assert argv[argv.index("--queues") + 1] == "q3" and argv[argv.index("--concurrency") + 1] == "2"
    assert argv[argv.index("--prefetch-multiplier") + 1] == "1" and "w9@%h" in argv


def test_a_worker_without_the_postgresql_instance_is_refused_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: object
) -> None:
    monkeypatch.setenv("LAKEHOUSE_INSTANCE", "sqlite")
    assert main(["worker", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "workers need the PostgreSQL instance" in err
