"""A second feed, defined only under tests/, runs end to end through the real definitions with no engine edit."""

import json
from datetime import date
from pathlib import Path

import dagster as dg
import polars as pl

from assets.billing_feed import BILLING_EVENTS
from lakehouse.app.runner import pending_arrival_dates, run_arrival_dates
from lakehouse.app.status import collect_status
from lakehouse.definitions import build_definitions
from lakehouse.delta.storage import read_table, table_uri
from tests.dagster.test_definitions import check_evaluations
from tests.feeds.parcel_scans import PARCEL_SCANS
from tests.support import event, land, settings_for

D1, D2 = date(2025, 1, 10), date(2025, 1, 11)


def scan(
    scan_id: str,
    revision: int = 1,
    *,
    depot: str = "north",
    status: str = "sorted",
    at: str = "2025-01-10T08:00:00Z",
    grams: int = 500,
) -> dict[str, object]:
    return {"scan_id": scan_id, "revision": revision, "depot": depot, "status": status, "scanned_at": at, "weight_grams": grams}


def land_scans(root: Path, arrival: date, name: str, lines: list[object]) -> None:
    folder = root / "landing" / PARCEL_SCANS.dataset / arrival.isoformat()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))


def table(root: Path, layer: str, name: str) -> pl.DataFrame:
    return read_table(table_uri(root, layer, name))


def test_both_feeds_load_side_by_side_with_their_own_assets_checks_jobs_and_sensors(tmp_path: Path) -> None:
    repository = build_definitions(settings_for(tmp_path), [BILLING_EVENTS, PARCEL_SCANS]).get_repository_def()
    keys = {key.to_user_string() for key in repository.asset_graph.get_all_asset_keys()}
    assert {"bronze/parcel_scans", "silver/parcel_scans", "silver/parcel_scans_quarantine", "gold/daily_depot_load"} <= keys
    assert "gold/daily_account_revenue" in keys
    checks = {key.name for key in repository.asset_graph.asset_check_keys if key.asset_key.path[-1] == "parcel_scans"}
    assert {"silver_has_one_row_per_scan_id", "silver_rows_match_contract", "landing_has_no_symlinks"} <= checks
    assert {"ingest_parcel_scans", "refresh_gold_daily_depot_load"} <= {job.name for job in repository.get_all_jobs()}
    assert {"parcel_scans_landing_sensor", "parcel_scans_gold_refresh_sensor"} <= {s.name for s in repository.sensor_defs}


def test_the_second_feed_publishes_restates_its_own_measure_and_replays_exactly(tmp_path: Path) -> None:
    settings, instance = settings_for(tmp_path), dg.DagsterInstance.ephemeral()
    land_scans(tmp_path, D1, "a.jsonl", [scan("s1"), scan("s2", grams=250, depot="south"), scan("s3", status="lost"), "{"])
    land_scans(tmp_path, D2, "a.jsonl", [scan("s1", 2, status="delivered", grams=600), scan("s1", 1)])
    # The billing feed lands in the same root: the feeds share the ops tables, never each other's data.
    land(tmp_path, D1.isoformat(), "a.jsonl", [event("e1")])
    assert pending_arrival_dates(settings, PARCEL_SCANS.dataset) == [D1, D2]
    [first] = run_arrival_dates(settings, [D1], feed=PARCEL_SCANS, instance=instance, max_rejected_fraction=0.6)
    assert first.ok, first.message
    assert all(e.passed for e in check_evaluations(instance, first.ingest_run_id).values())
    [billing] = run_arrival_dates(settings, [D1], instance=instance)
    assert billing.ok, billing.message
    [second] = run_arrival_dates(settings, [D2], feed=PARCEL_SCANS, instance=instance)
    assert second.ok, second.message

    silver = table(tmp_path, "silver", "parcel_scans").sort("scan_id")
    assert silver.select("scan_id", "revision", "status", "scan_date").rows() == [
        ("s1", 2, "delivered", D1),  # the correction won; the stale revision 1 re-delivered on D2 changed nothing
        ("s2", 1, "sorted", D1),
    ]
    reasons = table(tmp_path, "silver", "parcel_scans_quarantine").sort("_source_line").get_column("_reason").to_list()
    assert reasons == ["invalid_value", "malformed_record"]
    gold = table(tmp_path, "gold", "daily_depot_load").sort("depot")
    assert gold.select("depot", "parcels", "delivered", "total_weight_grams").rows() == [
        ("north", 1, 1, 600),
        ("south", 1, 0, 250),
    ]
    restated = table(tmp_path, "ops", "restatements").filter(pl.col("dataset") == "parcel_scans")
    assert restated.select(
        "table", "event_date", "rows_before", "total_weight_grams_before", "total_weight_grams_after"
    ).rows() == [("gold/daily_depot_load", D1, 2, 750, 850)]
    assert table(tmp_path, "silver", "billing_events").get_column("event_id").to_list() == ["e1"]
    status = collect_status(str(tmp_path), PARCEL_SCANS)
    assert status["tables"]["gold.daily_depot_load"]["rows"] == 2 and status["restatements"] == 1
    assert [b["status"] for b in status["last_batches"]] == ["complete", "complete"]

    # Replaying both dates changes no data table: the same files are the same batches.
    data_tables = ("bronze.parcel_scans", "silver.parcel_scans", "silver.parcel_scans_quarantine", "gold.daily_depot_load")
    versions = {name: status["tables"][name]["version"] for name in data_tables}
    for day in (D1, D2):
        [again] = run_arrival_dates(settings, [day], feed=PARCEL_SCANS, instance=instance, max_rejected_fraction=0.6)
        assert again.ok, again.message
    replayed = collect_status(str(tmp_path), PARCEL_SCANS)
    assert {name: replayed["tables"][name]["version"] for name in data_tables} == versions
    assert pending_arrival_dates(settings, PARCEL_SCANS.dataset) == []
