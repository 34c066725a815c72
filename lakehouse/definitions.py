"""The composition root that workspace.yaml loads: the feeds, and each one's assets, checks, jobs and sensors."""

from __future__ import annotations

from collections.abc import Iterator

import dagster as dg
from dagster._core.execution.retries import RetryMode  # no public alias in 1.13
from dagster._core.executor.base import Executor
from dagster._core.executor.in_process import InProcessExecutor  # likewise; built as the in_process_executor builds it
from dagster._core.executor.multiprocess import MultiprocessExecutor  # likewise

from lakehouse.app.resources import BACKFILL_TAG, LakehouseResource
from lakehouse.feed import FeedSpec
from lakehouse.settings import Settings


class RunKindExecutor(dg.Executor):
    """Backfill runs get their own step concurrency, apart from regular runs'.

    Every daemon-launched run already executes in its own run-worker process. Regular runs put each
    step in a process of its own too (up to `regular_steps` at once). A backfill run with
    `backfill_steps` = 1 runs its steps one after another inside its run worker: the feed's writer pool
    lets one step write at a time anyway, and a process per step costs seconds of start-up on a
    small machine, paid once per step of every backfill run; with more than 1 it gets its own
    multiprocess executor. An executor cannot see run tags when it is built, only when it executes,
    so the choice is made there.
    """

    def __init__(self, regular_steps: int, backfill_steps: int) -> None:
        self.regular = MultiprocessExecutor(RetryMode.DISABLED, regular_steps, start_method="forkserver")
        self.backfill: Executor = (
            InProcessExecutor(RetryMode.DISABLED)
            if backfill_steps == 1
            else MultiprocessExecutor(RetryMode.DISABLED, backfill_steps, start_method="forkserver")
        )

    @property
    def retries(self) -> RetryMode:
        return self.regular.retries

    def execute(self, plan_context, execution_plan) -> Iterator[dg.DagsterEvent]:  # type: ignore[no-untyped-def]
        chosen = self.backfill if BACKFILL_TAG in plan_context.dagster_run.tags else self.regular
        return chosen.execute(plan_context, execution_plan)


def run_kind_executor(settings: Settings) -> dg.ExecutorDefinition:
    @dg.executor(name="lakehouse_run_kind", requirements=dg.multiple_process_executor_requirements())
    def lakehouse_run_kind(_init: dg.InitExecutorContext) -> dg.Executor:
        return RunKindExecutor(settings.regular_step_concurrency, settings.backfill_step_concurrency)

    return lakehouse_run_kind


def executor_for(settings: Settings) -> dg.ExecutorDefinition:
    """The deployment's choice (LAKEHOUSE_EXECUTOR): steps in local processes, or on Celery workers."""
    if settings.executor == "celery":
        from lakehouse.app.workers import celery_executor_definition

        return celery_executor_definition(settings)  # type: ignore[no-any-return]
    return run_kind_executor(settings)


def feeds() -> list[FeedSpec]:
    """The feeds this code location runs: a new feed is one more spec here, and nothing else in the engine."""
    from assets.billing_feed import BILLING_EVENTS  # imported here: the engine never imports a feed at module level

    return [BILLING_EVENTS]


def default_feed() -> FeedSpec:
    """The feed a caller means when it names none: the only one (a second feed makes callers name theirs)."""
    [feed] = feeds()
    return feed


def sample_generator():  # type: ignore[no-untyped-def]
    """What `lakehouse generate` and the demo write: the billing feed's realistic landing files, faults included."""
    from assets.sample_data import generate_landing

    return generate_landing


def build_definitions(settings: Settings, with_feeds: list[FeedSpec] | None = None) -> dg.Definitions:
    """Every feed's assets, checks, jobs and sensors (each built from its spec), sharing one resource and executor."""
    from assets.definitions import feed_definitions

    shared = dg.Definitions(resources={"lakehouse": LakehouseResource.from_settings(settings)}, executor=executor_for(settings))
    return dg.Definitions.merge(*(feed_definitions(feed, settings) for feed in with_feeds or feeds()), shared)


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions(Settings.from_env())
