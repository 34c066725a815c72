"""Entries of the landing folder that are not ingested show in Dagster: the sensor's evaluation and bronze's metadata."""

from datetime import date
from pathlib import Path

import dagster as dg

from assets.billing_feed import BILLING_EVENTS
from lakehouse.app.runner import run_arrival_dates
from lakehouse.definitions import build_definitions
from tests.dagster.test_definitions import sensor_result
from tests.support import event, land, settings_for

D1 = "2025-01-10"
SENSOR = "billing_events_landing_sensor"


def test_the_landing_sensor_requests_no_run_for_strays_but_names_them_in_its_evaluation(tmp_path: Path) -> None:
    defs, instance = build_definitions(settings_for(tmp_path)), dg.DagsterInstance.ephemeral()
    land(tmp_path, D1, ".part-0001.jsonl", [event("e1")])
    land(tmp_path, "not-a-date", "a.jsonl", [event("e2")])
    idle = sensor_result(defs, SENSOR, instance)
    assert idle.run_requests == []
    assert idle.skip_reason is not None
    assert f"{D1}/.part-0001.jsonl (hidden)" in idle.skip_reason.skip_message
    assert "not-a-date/ (not_a_date_folder)" in idle.skip_reason.skip_message
    # The upload completes under its final name: only that is a run.
    (tmp_path / "landing" / "billing_events" / D1 / ".part-0001.jsonl").rename(
        tmp_path / "landing" / "billing_events" / D1 / "part-0001.jsonl"
    )
    [request] = sensor_result(defs, SENSOR, instance, idle.cursor).run_requests
    assert request.partition_key == D1


def test_a_symlink_is_a_run_that_its_gate_holds(tmp_path: Path) -> None:
    defs, instance = build_definitions(settings_for(tmp_path)), dg.DagsterInstance.ephemeral()
    land(tmp_path, D1, "a.jsonl", [event("e1")])
    first = sensor_result(defs, SENSOR, instance)
    (tmp_path / "landing" / "billing_events" / D1 / "link.jsonl").symlink_to(
        tmp_path / "landing" / "billing_events" / D1 / "a.jsonl"
    )
    [held] = sensor_result(defs, SENSOR, instance, first.cursor).run_requests  # the set of entries changed: a new batch
    assert held.run_key != first.run_requests[0].run_key
    [outcome] = run_arrival_dates(settings_for(tmp_path), [date(2025, 1, 10)], instance=instance)
    assert not outcome.ok and "landing_has_no_symlinks" in outcome.message and "remove the symlink" in outcome.message


def test_bronze_metadata_lists_the_entries_it_did_not_read(tmp_path: Path) -> None:
    land(tmp_path, D1, "a.jsonl", [event("e1")])
    land(tmp_path, D1, "manifest.csv", ["a.jsonl"])
    land(tmp_path, "2026-02-30", "a.jsonl", [event("e2")])
    instance = dg.DagsterInstance.ephemeral()
    [outcome] = run_arrival_dates(settings_for(tmp_path), [date(2025, 1, 10)], instance=instance)
    assert outcome.ok
    metadata = instance.get_latest_materialization_event(BILLING_EVENTS.bronze_key).asset_materialization.metadata
    assert [(e["file"], e["ignored"]) for e in metadata["ignored_entries"].value] == [
        (f"{D1}/manifest.csv", "other_extension"),
        ("2026-02-30/", "not_a_date_folder"),
    ]
    assert [f["file"] for f in metadata["source_files"].value] == [f"{D1}/a.jsonl"]
