"""The composition root that workspace.yaml loads: the billing feed's assets, checks, jobs and sensors."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import dagster as dg
from dagster._core.execution.retries import RetryMode  # no public alias in 1.13
from dagster._core.executor.base import Executor
from dagster._core.executor.in_process import InProcessExecutor  # likewise; built as the in_process_executor builds it
from dagster._core.executor.multiprocess import MultiprocessExecutor  # likewise

from lakehouse.resources import BACKFILL_TAG, LakehouseResource
from lakehouse.settings import Settings

INGEST_JOB = "ingest_billing_events"
GOLD_JOB = "refresh_gold_daily_account_revenue"


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


def build_definitions(settings: Settings) -> dg.Definitions:
    # Imported here so the engine never imports a feed at module level (imports flow assets -> lakehouse).
    from assets.bronze import build_bronze
    from assets.gold import GOLD_KEY, build_gold
    from assets.partitions import arrival_partitions, event_partitions, gold_from_arrivals
    from assets.sensors import build_sensors
    from assets.silver import build_silver

    arrivals = arrival_partitions(settings)
    events = event_partitions(settings)
    with warnings.catch_warnings():
        # BackfillPolicy and nonexistent-upstream mappings are beta in 1.13; we use them on purpose and pin the minor version.
        warnings.filterwarnings("ignore", category=dg.BetaWarning)
        # A backfill run of bronze/silver carries at most this many arrival dates (their bodies loop over them in order).
        per_run = dg.BackfillPolicy.multi_run(max_partitions_per_run=settings.backfill_partitions_per_run)
        bronze, silver = build_bronze(arrivals, per_run), build_silver(arrivals, per_run)
        gold = build_gold(events, gold_from_arrivals(settings))
    ingest = dg.define_asset_job(
        INGEST_JOB,
        selection=dg.AssetSelection.assets(bronze, silver),
        description="Land one arrival date into bronze, then judge, gate and publish it to silver.",
    )
    refresh = dg.define_asset_job(
        GOLD_JOB, selection=dg.AssetSelection.assets(GOLD_KEY), description="Recompute gold for the event dates a batch touched."
    )
    return dg.Definitions(
        assets=[bronze, silver, gold],
        jobs=[ingest, refresh],
        sensors=build_sensors(INGEST_JOB, GOLD_JOB),
        resources={"lakehouse": LakehouseResource.from_settings(settings)},
        executor=run_kind_executor(settings),
    )


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions(Settings.from_env())
