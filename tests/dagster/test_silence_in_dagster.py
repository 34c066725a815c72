"""Silence in the Dagster UI: the volume check, freshness policies, and log lines that name batch and run."""

from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import dagster as dg

from assets.billing_feed import BILLING_EVENTS
from lakehouse.app.runner import run_arrival_dates
from lakehouse.batches.volume import VOLUME_CHECK, VolumeRule
from lakehouse.definitions import build_definitions
from tests.dagster.test_definitions import check_evaluations
from tests.support import event, land, settings_for

START = date(2025, 1, 1)


def land_day(root: Path, n: int, records: int) -> date:
    arrival = START + timedelta(days=n)
    land(root, arrival.isoformat(), "export.jsonl", [event(f"d{n}-{i}", ts=f"{arrival}T08:00:00Z") for i in range(records)])
    return arrival


def test_silver_and_gold_carry_a_freshness_policy_of_the_feeds_window(tmp_path: Path) -> None:
    graph = build_definitions(settings_for(tmp_path)).get_repository_def().asset_graph
    for key in (BILLING_EVENTS.silver_key, BILLING_EVENTS.gold_key):
        policy = graph.get(key).freshness_policy
        assert isinstance(policy, dg.FreshnessPolicy) and policy.fail_window.to_timedelta() == timedelta(hours=36)  # type: ignore[attr-defined]
    assert BILLING_EVENTS.freshness_window == timedelta(hours=36)


def test_the_volume_check_warns_by_default_and_blocks_when_the_feed_says_so(tmp_path: Path) -> None:
    def spec(feed):  # type: ignore[no-untyped-def]
        graph = build_definitions(settings_for(tmp_path), [feed]).get_repository_def().asset_graph
        return graph.get_check_spec(dg.AssetCheckKey(feed.silver_key, VOLUME_CHECK))

    assert not spec(BILLING_EVENTS).blocking
    assert spec(replace(BILLING_EVENTS, volume=VolumeRule(blocking=True))).blocking


def test_a_thin_date_publishes_with_a_warn_check_and_its_log_lines_name_batch_and_run(tmp_path: Path) -> None:
    dates = [land_day(tmp_path, n, 60 + 5 * (n % 3)) for n in range(7)] + [land_day(tmp_path, 7, 4)]
    instance = dg.DagsterInstance.ephemeral()
    outcomes = run_arrival_dates(settings_for(tmp_path), dates, instance=instance)
    assert all(o.ok for o in outcomes)  # warning, not blocking: the run stays green, the check says otherwise
    steady, thin = (
        check_evaluations(instance, outcomes[-2].ingest_run_id),
        check_evaluations(instance, outcomes[-1].ingest_run_id),
    )
    assert steady[VOLUME_CHECK].passed
    verdict = thin[VOLUME_CHECK]
    assert not verdict.passed and verdict.severity == dg.AssetCheckSeverity.WARN
    assert verdict.metadata["observed"].value == "4 records" and verdict.metadata["arrival_date"].value == "2025-01-08"
    batch_id = verdict.metadata["batch_id"].value
    logs = [
        entry.user_message
        for entry in instance.all_logs(outcomes[-1].ingest_run_id)
        if entry.dagster_event is None  # the steps' own lines (context.log), not Dagster's events
    ]
    tag = f"batch {batch_id[:12]} run {outcomes[-1].ingest_run_id[:8]}]"
    assert logs and all(tag in line for line in logs), logs
    assert any("warning, record_count_within_recent_range (4 records; expected" in line for line in logs)
