"""The real Dagster definitions, run in process against a temporary root and an ephemeral instance."""

import json
import warnings
from datetime import date
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from assets.billing_feed import BILLING_EVENTS
from lakehouse.app.runner import run_arrival_dates
from lakehouse.definitions import build_definitions
from lakehouse.delta.storage import read_table, table_uri
from tests.support import event, gold, land, settings_for, silver

D1, D2 = "2025-01-10", "2025-01-11"


def check_evaluations(instance: dg.DagsterInstance, run_id: str) -> dict[str, dg.AssetCheckEvaluation]:
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
    return {
        r.event_log_entry.dagster_event.event_specific_data.check_name: r.event_log_entry.dagster_event.event_specific_data
        for r in records
    }


def test_definitions_load_without_warnings_and_show_layers_checks_and_sensors(tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        defs = build_definitions(settings_for(tmp_path))
        repository = defs.get_repository_def()
    keys = {key.to_user_string() for key in repository.asset_graph.get_all_asset_keys()}
    assert keys == {
        "bronze/billing_events",
        "silver/billing_events",
        "silver/billing_events_quarantine",
        "gold/daily_account_revenue",
    }
    checks = {key.name for key in repository.asset_graph.asset_check_keys}
    assert {
        "rejected_fraction_within_threshold",
        "landed_files_are_readable",
        "silver_keys_are_unique",
        "batch_counts_are_conserved",
        "silver_has_one_row_per_event_id",
        "silver_rows_match_contract",
        "gold_matches_silver_aggregate",
    } <= checks
    assert {s.name for s in repository.sensor_defs} == {"billing_events_landing_sensor", "billing_events_gold_refresh_sensor"}


def test_a_run_publishes_with_passing_checks_and_batch_metadata(tmp_path: Path) -> None:
    land(tmp_path, D1, "a.jsonl", [event("e1"), event("e2", kind="refund", amount=-40)])
    instance = dg.DagsterInstance.ephemeral()
    [outcome] = run_arrival_dates(settings_for(tmp_path), [date(2025, 1, 10)], instance=instance)
    assert outcome.ok
    evaluations = check_evaluations(instance, outcome.ingest_run_id)
    assert all(e.passed for e in evaluations.values()) and len(evaluations) == 10  # 7 gates, volume, 2 table checks
    materialization = instance.get_latest_materialization_event(BILLING_EVENTS.silver_key).asset_materialization
    assert materialization.partition == D1
    metadata = materialization.metadata
    assert metadata["inserted"].value == 2 and metadata["records_in"].value == 2 and len(metadata["batch_id"].value) == 64
    assert metadata["rows_out_silver_written"].value == 2 and metadata["touched_event_dates"].value == [D1]
    assert metadata["freshness_lag_hours"].value == 12.0  # newest event at noon of its arrival date
    assert metadata["contract_version"].value == 1 and metadata["schema_compatibility"].value == "backward"
    assert metadata["schema_drift"].value["compatible"] is True
    gold_event = instance.get_latest_materialization_event(BILLING_EVENTS.gold_key).asset_materialization
    assert gold_event.partition == D1 and gold_event.metadata["changed_event_dates"].value == [D1]
    assert gold(tmp_path).select("net_minor").item() == 60


def test_a_failed_gate_fails_the_run_shows_the_check_and_leaves_silver_and_gold_unchanged(tmp_path: Path) -> None:
    land(tmp_path, D1, "a.jsonl", [event(f"e{i}") for i in range(10)])
    instance = dg.DagsterInstance.ephemeral()
    run_arrival_dates(settings_for(tmp_path), [date(2025, 1, 10)], instance=instance)
    silver_before, gold_before = silver(tmp_path), gold(tmp_path)
    land(tmp_path, D2, "a.jsonl", [event("e1", 2, amount=5), b"{", b"[]", event("e2", ts="2025-01-11T00:00:00")])
    [outcome] = run_arrival_dates(settings_for(tmp_path), [date(2025, 1, 11)], instance=instance)
    assert not outcome.ok and "was not published" in outcome.message
    gate = check_evaluations(instance, outcome.ingest_run_id)["rejected_fraction_within_threshold"]
    assert not gate.passed and gate.metadata["rejected_fraction"].value == 0.75
    assert gate.metadata["quarantine_reasons"].value == {"malformed_record": 2, "naive_timestamp": 1}
    assert silver(tmp_path).equals(silver_before) and gold(tmp_path).equals(gold_before)
    assert (
        instance.get_latest_materialization_event(BILLING_EVENTS.silver_key).asset_materialization.partition == D1
    )  # no new silver materialization
    assert (
        instance.get_latest_materialization_event(BILLING_EVENTS.quarantine_key).asset_materialization.partition == D2
    )  # evidence published
    incidents = read_table(table_uri(tmp_path, "ops", "incidents"))
    assert incidents.select("status", "arrival_date").rows() == [("open", date(2025, 1, 11))]
    assert incidents.item(0, "_run_id") == outcome.ingest_run_id
    # The operator accepts it explicitly: the raised threshold is recorded with the batch.
    [accepted] = run_arrival_dates(settings_for(tmp_path), [date(2025, 1, 11)], max_rejected_fraction=0.8, instance=instance)
    assert accepted.ok
    batch = (
        read_table(table_uri(tmp_path, "ops", "batches")).filter(pl.col("arrival_date") == date(2025, 1, 11)).row(0, named=True)
    )
    assert batch["status"] == "complete" and batch["max_rejected_fraction"] == 0.8


def sensor_result(defs: dg.Definitions, name: str, instance: dg.DagsterInstance, cursor: str | None = None) -> dg.SensorResult:
    sensor = defs.resolve_sensor_def(name)
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"lakehouse": defs.resources["lakehouse"]}, definitions=defs
    )
    return sensor(context)


def test_landing_sensor_requests_each_set_of_files_once_keyed_by_batch_id(tmp_path: Path) -> None:
    defs, instance = build_definitions(settings_for(tmp_path)), dg.DagsterInstance.ephemeral()
    land(tmp_path, D1, "a.jsonl", [event("e1")])
    first = sensor_result(defs, "billing_events_landing_sensor", instance)
    [request] = first.run_requests
    assert request.partition_key == D1 and len(request.run_key) == 64
    assert sensor_result(defs, "billing_events_landing_sensor", instance, first.cursor).run_requests == []
    land(tmp_path, D1, "b.jsonl", [event("e2")])
    changed = sensor_result(defs, "billing_events_landing_sensor", instance, first.cursor)
    assert [r.partition_key for r in changed.run_requests] == [D1] and changed.run_requests[0].run_key != request.run_key
    run_arrival_dates(settings_for(tmp_path), [date(2025, 1, 10)], instance=instance)
    assert sensor_result(defs, "billing_events_landing_sensor", instance).run_requests == []  # already complete


def test_gold_refresh_sensor_restates_the_event_dates_a_published_batch_touched(tmp_path: Path) -> None:
    from lakehouse.batches.batch import publish_silver
    from lakehouse.batches.bronze import land_bronze

    settings = settings_for(tmp_path)
    defs, instance = build_definitions(settings), dg.DagsterInstance.ephemeral()
    land(tmp_path, D1, "a.jsonl", [event("e1", ts="2025-01-08T10:00:00Z"), event("e2", ts="2025-01-10T10:00:00Z")])
    land_bronze(settings, BILLING_EVENTS, date(2025, 1, 10), "r", "t")
    report = publish_silver(settings, BILLING_EVENTS, date(2025, 1, 10), "r", "t")
    [request] = sensor_result(defs, "billing_events_gold_refresh_sensor", instance).run_requests
    assert request.tags["lakehouse/batch_id"] == report.batch_id and request.run_key == f"gold:{report.batch_id}"
    assert (request.tags["dagster/asset_partition_range_start"], request.tags["dagster/asset_partition_range_end"]) == (
        "2025-01-08",
        D1,
    )
    result = defs.resolve_job_def(BILLING_EVENTS.gold_job).execute_in_process(instance=instance, tags=request.tags)
    assert result.success
    assert sorted(gold(tmp_path).get_column("event_date").to_list()) == [date(2025, 1, 8), date(2025, 1, 10)]
    assert sensor_result(defs, "billing_events_gold_refresh_sensor", instance).run_requests == []
    batches = read_table(table_uri(tmp_path, "ops", "batches"))
    assert batches.item(0, "status") == "complete" and json.loads(batches.item(0, "touched_event_dates")) == ["2025-01-08", D1]


def test_gold_check_judges_the_snapshot_its_refresh_read_even_if_silver_moves_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import assets.gold
    from lakehouse.batches.batch import publish_silver
    from lakehouse.batches.bronze import land_bronze

    settings = settings_for(tmp_path)
    instance = dg.DagsterInstance.ephemeral()
    land(tmp_path, D1, "a.jsonl", [event("e1")])
    run_arrival_dates(settings, [date(2025, 1, 10)], instance=instance)
    land(tmp_path, D2, "a.jsonl", [event("e2", ts="2025-01-10T13:00:00Z")])
    real_refresh = assets.gold.refresh_gold

    def refresh_then_another_batch_publishes(*args: object, **kwargs: object) -> object:
        report = real_refresh(*args, **kwargs)  # type: ignore[arg-type]
        # Another arrival date commits to silver between this refresh and its check (as a concurrent run would).
        land_bronze(settings, BILLING_EVENTS, date(2025, 1, 11), "other-run", "t")
        publish_silver(settings, BILLING_EVENTS, date(2025, 1, 11), "other-run", "t")
        return report

    monkeypatch.setattr(assets.gold, "refresh_gold", refresh_then_another_batch_publishes)
    [outcome] = run_arrival_dates(settings, [date(2025, 1, 10)], instance=instance)
    assert outcome.ok, outcome.message
    assert check_evaluations(instance, outcome.gold_run_id)["gold_matches_silver_aggregate"].passed


def test_a_broken_silver_table_fails_its_blocking_table_check_and_gold_is_not_refreshed(tmp_path: Path) -> None:
    from deltalake import write_deltalake

    land(tmp_path, D1, "a.jsonl", [event("e1")])
    instance = dg.DagsterInstance.ephemeral()
    run_arrival_dates(settings_for(tmp_path), [date(2025, 1, 10)], instance=instance)
    # Something outside the pipeline writes a second row for e1 into another event date.
    stray = silver(tmp_path).with_columns(event_date=pl.lit(date(2025, 1, 9)))
    write_deltalake(str(table_uri(tmp_path, "silver", "billing_events")), stray.to_arrow(), mode="append")
    gold_before = gold(tmp_path)
    land(tmp_path, D2, "a.jsonl", [event("e2", ts="2025-01-11T08:00:00Z")])
    [outcome] = run_arrival_dates(settings_for(tmp_path), [date(2025, 1, 11)], instance=instance)
    assert not outcome.ok and outcome.gold_run_id is None
    check = check_evaluations(instance, outcome.ingest_run_id)["silver_has_one_row_per_event_id"]
    assert not check.passed and check.metadata["sample"].value == ["e1"]
    assert gold(tmp_path).equals(gold_before)


def test_a_batch_gold_refresh_is_judged_on_its_own_dates_not_on_a_date_another_batch_changed_meanwhile(
    tmp_path: Path,
) -> None:
    """Batch A touches event dates 8 and 10 (a range holding 9); batch B changes 9 and publishes before A's gold
    run: A's refresh must pass on the dates it refreshed, and B's own refresh then brings 9 up to date."""
    from lakehouse.batches.batch import publish_silver
    from lakehouse.batches.bronze import land_bronze

    settings = settings_for(tmp_path)
    defs, instance = build_definitions(settings), dg.DagsterInstance.ephemeral()
    land(tmp_path, D1, "a.jsonl", [event("a8", ts="2025-01-08T10:00:00Z"), event("a10", ts="2025-01-10T10:00:00Z")])
    land(tmp_path, D2, "b.jsonl", [event("b9", ts="2025-01-09T10:00:00Z")])
    for day in (date(2025, 1, 10), date(2025, 1, 11)):  # both publish before either gold run, as two sensor runs can
        land_bronze(settings, BILLING_EVENTS, day, "r", "t")
        publish_silver(settings, BILLING_EVENTS, day, "r", "t")
    requests = sensor_result(defs, "billing_events_gold_refresh_sensor", instance).run_requests
    by_range = {(r.tags["dagster/asset_partition_range_start"], r.tags["dagster/asset_partition_range_end"]): r for r in requests}
    first = by_range[("2025-01-08", D1)]  # A's range holds 2025-01-09, which only B touched
    result = defs.resolve_job_def(BILLING_EVENTS.gold_job).execute_in_process(
        instance=instance, tags=first.tags, raise_on_error=False
    )
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    assert sorted(gold(tmp_path).get_column("event_date").to_list()) == [date(2025, 1, 8), date(2025, 1, 10)]
    second = by_range[("2025-01-09", "2025-01-09")]
    assert defs.resolve_job_def(BILLING_EVENTS.gold_job).execute_in_process(instance=instance, tags=second.tags).success
    assert sorted(gold(tmp_path).get_column("event_date").to_list()) == [date(2025, 1, d) for d in (8, 9, 10)]
