"""What did not arrive: missing deliveries and volume anomalies, driven through the engine on a temporary root."""

from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import polars as pl

from assets.billing_feed import BILLING_EVENTS
from lakehouse.app.status import collect_status, render_status
from lakehouse.batches.batch import SilverReport, publish_silver
from lakehouse.batches.bronze import land_bronze
from lakehouse.batches.ops import INCIDENTS_SCHEMA
from lakehouse.batches.volume import VOLUME_CHECK, VolumeRule
from lakehouse.delta.storage import read_table, table_uri
from tests.support import event, land, run_batch, settings_for, silver

START = date(2025, 1, 1)
# About 100 records a day with a spread of up to +-20%, fixed so the tests read the same every time.
STEADY = [100, 84, 117, 96, 110, 88, 103, 119, 81, 99, 108, 92]


def day(n: int) -> str:
    return (START + timedelta(days=n)).isoformat()


def land_day(root: Path, n: int, records: int, name: str = "export.jsonl", prefix: str = "") -> None:
    ts = f"{day(n)}T08:00:00Z"
    land(root, day(n), name, [event(f"{prefix}d{n}-{i}", ts=ts, amount=100 + i) for i in range(records)])


def incidents(root: Path, mode: str) -> pl.DataFrame:
    rows = read_table(table_uri(root, "ops", "incidents"), empty_schema=INCIDENTS_SCHEMA)
    return rows.filter(pl.col("failure_mode") == mode).sort("arrival_date")


def volume_gate(report: SilverReport):  # type: ignore[no-untyped-def]
    return next((g for g in report.gates if g.name == VOLUME_CHECK), None)


def run_steady_history(root: Path, days: int) -> None:
    for n in range(days):
        land_day(root, n, STEADY[n % len(STEADY)])
        gate = volume_gate(run_batch(root, day(n)))
        assert gate.passed and ("not judged" in gate.guardrail) == (n < VolumeRule().min_history)


# Missing deliveries


def test_a_silent_date_between_deliveries_is_a_missing_delivery_incident_until_its_files_land(tmp_path: Path) -> None:
    for n in (0, 1):
        land_day(tmp_path, n, 5)
        assert run_batch(tmp_path, day(n)).missing_deliveries == []
    rows_before = silver(tmp_path).height
    land_day(tmp_path, 3, 5)  # 2025-01-03 stays silent
    report = run_batch(tmp_path, day(3))
    assert report.published and report.missing_deliveries == [date(2025, 1, 3)]
    missing = incidents(tmp_path, "missing_delivery")
    assert missing.select("arrival_date", "status").rows() == [(date(2025, 1, 3), "open")]
    assert "no files for arrival date 2025-01-03" in missing.item(0, "observed")
    # An operational record only: the delivered dates publish exactly their records.
    assert silver(tmp_path).height == rows_before + 5
    # Noticed again by the next batch (or a re-run): the same incident, not a second one.
    land_day(tmp_path, 4, 5)
    run_batch(tmp_path, day(4))
    run_batch(tmp_path, day(4))
    assert incidents(tmp_path, "missing_delivery").height == 1
    # The upstream delivers the date late: its batch publishes and the incident resolves.
    land_day(tmp_path, 2, 5)
    late = run_batch(tmp_path, day(2))
    resolved = incidents(tmp_path, "missing_delivery")
    assert late.published and late.missing_deliveries == []
    assert resolved.select("status", "resolved_by_batch_id").rows() == [("resolved", late.batch_id)]


def test_a_date_landed_but_not_yet_run_is_not_missing_whatever_the_run_order(tmp_path: Path) -> None:
    for n in range(4):
        land_day(tmp_path, n, 5)
    run_batch(tmp_path, day(3))  # a backfill may run the latest date first
    run_batch(tmp_path, day(0))
    assert incidents(tmp_path, "missing_delivery").is_empty()


def test_nothing_before_the_first_delivery_or_the_partitions_start_is_missing(tmp_path: Path) -> None:
    for n in (5, 7):
        land_day(tmp_path, n, 5)
    # Nothing is known before the first delivery (2025-01-06): dates 1..5 are not missing.
    run_batch(tmp_path, day(5), partitions_start=date(2025, 1, 7))
    # The partitions start after 2025-01-06: the first expected date is the first delivery on or after it.
    assert run_batch(tmp_path, day(7), partitions_start=date(2025, 1, 7)).missing_deliveries == []
    assert run_batch(tmp_path, day(7)).missing_deliveries == [date(2025, 1, 7)]


def test_a_weekly_feed_misses_a_week_only_when_no_delivery_falls_in_it(tmp_path: Path) -> None:
    from lakehouse.batches.arrivals import missing_arrival_dates

    weekly = [date(2025, 1, 6), date(2025, 1, 14), date(2025, 1, 27)]  # the second one a day late
    assert missing_arrival_dates(weekly, 7, START) == [date(2025, 1, 20)]
    assert missing_arrival_dates([date(2025, 1, 6)], 1, START) == []


# Volume anomalies


def test_a_thin_date_warns_with_an_incident_naming_count_and_range_and_a_full_redelivery_resolves_it(tmp_path: Path) -> None:
    run_steady_history(tmp_path, 10)
    land_day(tmp_path, 10, 7)  # 7% of the usual volume
    thin = run_batch(tmp_path, day(10))
    gate = volume_gate(thin)
    # Warning by default: the batch publishes, the check fails with WARN, an incident names date, count and range.
    assert thin.published and not gate.passed and not gate.blocking
    assert gate.observed == "7 records" and gate.guardrail.startswith("expected 33..298 records (median 99.5 of the last 10")
    [anomaly] = incidents(tmp_path, "volume_anomaly").rows(named=True)
    assert (anomaly["arrival_date"], anomaly["status"], anomaly["affected_rows"]) == (date(2025, 1, 11), "open", 7)
    assert thin.incident_ids == [anomaly["incident_id"]]
    # Re-running the same batch keeps the one incident open (the verdict reads earlier dates only).
    again = run_batch(tmp_path, day(10))
    assert volume_gate(again).guardrail == gate.guardrail and incidents(tmp_path, "volume_anomaly").height == 1
    # The upstream re-delivers its whole export (a new file): a new batch with a normal count resolves it.
    land_day(tmp_path, 10, 100, name="export-full.jsonl")
    full = run_batch(tmp_path, day(10))
    assert volume_gate(full).passed and full.incident_ids == []
    assert incidents(tmp_path, "volume_anomaly").select("status", "resolved_by_batch_id").rows() == [("resolved", full.batch_id)]


def test_a_surge_warns_and_the_operators_acceptance_resolves_it(tmp_path: Path) -> None:
    run_steady_history(tmp_path, 8)
    land_day(tmp_path, 8, 400)
    surge = run_batch(tmp_path, day(8))
    assert surge.published and not volume_gate(surge).passed
    assert incidents(tmp_path, "volume_anomaly").get_column("status").to_list() == ["open"]
    settings = settings_for(tmp_path)
    accepted = publish_silver(settings, BILLING_EVENTS, date.fromisoformat(day(8)), "accept", "test", accept_volume_anomaly=True)
    assert volume_gate(accepted).passed and "accepted by the operator" in volume_gate(accepted).observed
    assert incidents(tmp_path, "volume_anomaly").get_column("status").to_list() == ["resolved"]


def test_a_feed_that_blocks_on_volume_holds_the_batch_until_accepted(tmp_path: Path) -> None:
    strict = replace(BILLING_EVENTS, volume=VolumeRule(blocking=True))
    settings = settings_for(tmp_path)
    run_steady_history(tmp_path, 8)
    land_day(tmp_path, 8, 7)
    arrival = date.fromisoformat(day(8))
    land_bronze(settings, strict, arrival, "strict", "test")
    before = silver(tmp_path)
    held = publish_silver(settings, strict, arrival, "strict", "test")
    assert not held.published and silver(tmp_path).equals(before)
    assert incidents(tmp_path, "volume_anomaly").get_column("status").to_list() == ["open"]
    accepted = publish_silver(settings, strict, arrival, "strict", "test", accept_volume_anomaly=True)
    assert accepted.published and silver(tmp_path).height == before.height + 7
    assert incidents(tmp_path, "volume_anomaly").get_column("status").to_list() == ["resolved"]


def test_a_short_history_never_alarms(tmp_path: Path) -> None:
    run_steady_history(tmp_path, 6)  # fewer published dates than min_history (7)
    land_day(tmp_path, 6, 3)
    report = run_batch(tmp_path, day(6))
    assert report.published and volume_gate(report).passed and "not judged" in volume_gate(report).guardrail
    assert incidents(tmp_path, "volume_anomaly").is_empty()


def test_status_lists_open_missing_deliveries_and_volume_anomalies_with_their_dates(tmp_path: Path) -> None:
    run_steady_history(tmp_path, 8)
    land_day(tmp_path, 9, 7)
    run_batch(tmp_path, day(9))
    status = collect_status(str(tmp_path), BILLING_EVENTS)
    assert [m["arrival_date"] for m in status["missing_deliveries"]] == ["2025-01-09"]
    [anomaly] = status["volume_anomalies"]
    assert anomaly["arrival_date"] == "2025-01-10" and anomaly["records"] == 7 and "expected" in anomaly["expected"]
    text = render_status(status)
    assert "Missing deliveries: 2025-01-09" in text and "Volume anomalies: 2025-01-10 (7 records" in text
