"""The semantics DESIGN promises, driven through the engine against a temporary root."""

import json
from datetime import date
from pathlib import Path

import polars as pl
from deltalake import DeltaTable, write_deltalake

from lakehouse.delta.storage import read_table, table_uri
from tests.support import event, gold, land, quarantine, run_batch, silver

D1, D2, D3 = "2025-01-10", "2025-01-11", "2025-01-12"


def versions(root: Path) -> dict[str, int]:
    tables = [
        "bronze/billing_events",
        "silver/billing_events",
        "silver/billing_events_quarantine",
        "gold/daily_account_revenue",
        "ops/billing_events_ledger",
        "ops/restatements",
        "ops/batches",
    ]
    return {
        t: DeltaTable(str(root / "tables" / t)).version() for t in tables if DeltaTable.is_deltatable(str(root / "tables" / t))
    }


def test_a_replayed_duplicate_is_counted_not_quarantined_and_not_duplicated(tmp_path: Path) -> None:
    land(tmp_path, D1, "a.jsonl", [event("e1"), event("e1"), event("e2")])
    report = run_batch(tmp_path, D1)
    assert report.counts | {"displaced": 0} == {
        "records_in": 3,
        "inserted": 2,
        "updated": 0,
        "duplicates": 1,
        "stale": 0,
        "quarantined": 0,
        "displaced": 0,
    }
    assert silver(tmp_path).get_column("event_id").to_list() == ["e1", "e2"]
    assert quarantine(tmp_path).is_empty()


def test_a_correction_replaces_the_row_moves_its_event_date_and_restates_gold(tmp_path: Path) -> None:
    land(
        tmp_path,
        D1,
        "a.jsonl",
        [event("e1", ts="2025-01-10T10:00:00Z", amount=100), event("e2", ts="2025-01-10T11:00:00Z", amount=7)],
    )
    run_batch(tmp_path, D1)
    land(tmp_path, D2, "a.jsonl", [event("e1", 2, ts="2025-01-09T23:30:00Z", amount=250)])
    report = run_batch(tmp_path, D2)
    assert report.counts["updated"] == 1
    row = silver(tmp_path).filter(pl.col("event_id") == "e1").row(0, named=True)
    assert (row["source_version"], row["amount_minor"], row["event_date"]) == (2, 250, date(2025, 1, 9))
    assert gold(tmp_path).select("event_date", "net_minor").rows() == [(date(2025, 1, 9), 250), (date(2025, 1, 10), 7)]
    restated = read_table(table_uri(tmp_path, "ops", "restatements"))
    assert restated.select(
        "event_date", "caused_by_batch_id", "rows_before", "rows_after", "net_minor_before", "net_minor_after"
    ).rows() == [
        (date(2025, 1, 10), report.batch_id, 1, 1, 107, 7)
    ]  # 2025-01-09 was first published by this batch: not a restatement


def test_a_lower_version_arriving_after_a_higher_one_is_stale_and_changes_nothing(tmp_path: Path) -> None:
    land(tmp_path, D1, "a.jsonl", [event("e1", 2, amount=200)])
    run_batch(tmp_path, D1)
    before = silver(tmp_path)
    land(tmp_path, D2, "a.jsonl", [event("e1", 1, amount=100), event("e9")])
    report = run_batch(tmp_path, D2, max_rejected_fraction=1.0)
    assert report.counts["stale"] == 1
    assert silver(tmp_path).filter(pl.col("event_id") == "e1").equals(before)


def test_a_conflict_keeps_the_smallest_content_hash_and_quarantines_every_other_delivery(tmp_path: Path) -> None:
    first, second = event("e1", amount=100), event("e1", amount=101)
    land(tmp_path, D1, "a.jsonl", [first, event("e2"), event("e3"), event("e4")])
    run_batch(tmp_path, D1)
    land(tmp_path, D2, "a.jsonl", [second, event("e5"), event("e6"), event("e7")])
    report = run_batch(tmp_path, D2, max_rejected_fraction=0.5)
    kept = silver(tmp_path).filter(pl.col("event_id") == "e1").row(0, named=True)
    conflicts = quarantine(tmp_path).filter(pl.col("_reason") == "version_conflict")
    assert conflicts.height == 1  # exactly one loser, whichever delivery it was
    loser = conflicts.row(0, named=True)
    delivered_hashes = read_table(table_uri(tmp_path, "ops", "billing_events_ledger"), pl.col("event_id") == "e1").get_column(
        "_content_hash"
    )
    assert delivered_hashes.n_unique() == 2 and kept["_content_hash"] == delivered_hashes.min()
    assert {kept["_arrival_date"].isoformat(), loser["_arrival_date"].isoformat()} == {D1, D2}
    assert (loser["_kept_arrival_date"], loser["_kept_source_file"], loser["_kept_source_line"]) == (
        kept["_arrival_date"],
        kept["_source_file"],
        kept["_source_line"],
    )
    assert kept["_source_file"] in loser["_detail"]
    # The earlier delivery lost: it was accepted, and is now displaced into quarantine.
    assert report.counts["displaced"] == (1 if loser["_arrival_date"].isoformat() == D1 else 0)


def test_conflict_outcome_does_not_depend_on_arrival_order(tmp_path: Path) -> None:
    left, right = tmp_path / "left", tmp_path / "right"
    for root, amounts in ((left, (100, 101)), (right, (101, 100))):
        land(root, D1, "a.jsonl", [event("e1", amount=amounts[0])])
        land(root, D2, "a.jsonl", [event("e1", amount=amounts[1])])
        run_batch(root, D1, max_rejected_fraction=1.0)
        run_batch(root, D2, max_rejected_fraction=1.0)
    assert silver(left).item(0, "amount_minor") == silver(right).item(0, "amount_minor")


def test_lineage_names_the_earliest_delivery_even_when_it_is_processed_last(tmp_path: Path) -> None:
    land(tmp_path, D1, "a.jsonl", [event("e1")])
    land(tmp_path, D2, "a.jsonl", [event("e2"), event("e1")])
    run_batch(tmp_path, D2)
    assert silver(tmp_path).filter(pl.col("event_id") == "e1").item(0, "_arrival_date") == date(2025, 1, 11)
    run_batch(tmp_path, D1)
    row = silver(tmp_path).filter(pl.col("event_id") == "e1").row(0, named=True)
    assert (row["_arrival_date"], row["_source_file"], row["_source_line"]) == (date(2025, 1, 10), f"{D1}/a.jsonl", 1)


def test_rerunning_a_published_date_with_unchanged_files_commits_nothing(tmp_path: Path) -> None:
    land(tmp_path, D1, "a.jsonl", [event("e1"), b"{bad", event("e2")])
    run_batch(tmp_path, D1, max_rejected_fraction=0.5)
    before = versions(tmp_path)
    run_batch(tmp_path, D1, max_rejected_fraction=0.5, run_id="second-run")
    assert versions(tmp_path) == before


def test_a_gated_batch_changes_neither_silver_nor_gold_and_opens_an_incident(tmp_path: Path) -> None:
    land(tmp_path, D1, "a.jsonl", [event(f"e{i}") for i in range(20)])
    run_batch(tmp_path, D1)
    silver_before, gold_before = silver(tmp_path), gold(tmp_path)
    land(tmp_path, D2, "a.jsonl", [event("e1", 2, amount=999), event("new"), b"{broken", b"[1]"])
    report = run_batch(tmp_path, D2)
    assert not report.published
    assert [g.name for g in report.gates if not g.passed] == ["rejected_fraction_within_threshold"]
    assert silver(tmp_path).equals(silver_before) and gold(tmp_path).equals(gold_before)
    assert quarantine(tmp_path).get_column("_reason").to_list() == ["malformed_record", "malformed_record"]  # evidence kept
    incident = read_table(table_uri(tmp_path, "ops", "incidents")).row(0, named=True)
    assert incident["status"] == "open" and incident["idempotency_key"] == report.batch_id and incident["affected_rows"] == 2
    assert incident["failure_mode"] == "gate_failed:rejected_fraction_within_threshold"
    # Re-running the same gated batch updates the incident rather than adding a second one.
    run_batch(tmp_path, D2)
    assert read_table(table_uri(tmp_path, "ops", "incidents")).height == 1
    # An operator accepts it explicitly with a raised threshold: published, incident resolved.
    accepted = run_batch(tmp_path, D2, max_rejected_fraction=0.6)
    assert accepted.published and silver(tmp_path).filter(pl.col("event_id") == "e1").item(0, "amount_minor") == 999
    assert read_table(table_uri(tmp_path, "ops", "incidents")).item(0, "status") == "resolved"


def test_every_commit_carries_the_batch_lineage(tmp_path: Path) -> None:
    land(tmp_path, D1, "a.jsonl", [event("e1"), b"", event("e2")])
    report = run_batch(tmp_path, D1, run_id="run-42")
    for table in ("bronze/billing_events", "silver/billing_events", "ops/billing_events_ledger", "gold/daily_account_revenue"):
        commit = DeltaTable(str(tmp_path / "tables" / table)).history(1)[0]
        assert commit["batch_id"] == report.batch_id and commit["run_id"] == "run-42" and commit["code_version"], table
        assert json.loads(commit["source_files"])[0]["sha256"] and json.loads(commit["batch_counts"])["records_in"] == 2, table
    silver_commit = DeltaTable(str(tmp_path / "tables/silver/billing_events")).history(1)[0]
    files = json.loads(silver_commit["source_files"])
    assert (
        files[0]["file"] == f"{D1}/a.jsonl"
        and files[0]["lines"] == 3
        and files[0]["records"] == 2
        and len(files[0]["sha256"]) == 64
    )
    assert json.loads(silver_commit["batch_counts"])["inserted"] == 2


def test_bronze_keeps_every_landed_line_and_is_replaced_not_appended(tmp_path: Path) -> None:
    land(tmp_path, D1, "a.jsonl", [event("e1"), b"\xff\xfe", b"{oops"])
    run_batch(tmp_path, D1, max_rejected_fraction=1.0)
    land(tmp_path, D1, "b.jsonl", [event("e2")])
    report = run_batch(tmp_path, D1, max_rejected_fraction=1.0)
    bronze = read_table(table_uri(tmp_path, "bronze", "billing_events")).sort("_source_file", "_source_line")
    assert bronze.get_column("_raw").to_list()[1:3] == [b"\xff\xfe", b"{oops"]
    assert bronze.height == 4 and set(bronze.get_column("_batch_id")) == {report.batch_id}
    # Rows already published from this arrival date now name the new batch id.
    assert set(silver(tmp_path).get_column("_batch_id")) == {report.batch_id}


def test_a_file_of_blank_lines_is_an_empty_batch_that_publishes_nothing(tmp_path: Path) -> None:
    land(tmp_path, D1, "a.jsonl", [b"", b"   "])
    report = run_batch(tmp_path, D1)
    assert report.published and report.records_in == 0 and silver(tmp_path).is_empty()


def test_a_truncated_gzip_keeps_its_readable_lines_in_bronze_but_publishes_nothing_until_accepted(tmp_path: Path) -> None:
    import gzip

    land(tmp_path, D1, "a.jsonl", [event("before")])
    run_batch(tmp_path, D1)
    silver_before = silver(tmp_path)
    body = b"".join(json.dumps(event(f"z{n}")).encode() + b"\n" for n in range(3000))
    folder = tmp_path / "landing" / "billing_events" / D2
    folder.mkdir(parents=True)
    (folder / "broken.jsonl.gz").write_bytes(gzip.compress(body)[:-2000])
    report = run_batch(tmp_path, D2)
    bronze = read_table(table_uri(tmp_path, "bronze", "billing_events"), pl.col("_arrival_date") == date(2025, 1, 11))
    assert 0 < bronze.height < 3000  # what could be read landed in bronze
    assert not report.published and [g.name for g in report.gates if not g.passed] == ["landed_files_are_readable"]
    assert silver(tmp_path).equals(silver_before)
    incident = read_table(table_uri(tmp_path, "ops", "incidents")).row(0, named=True)
    assert incident["failure_mode"] == "gate_failed:landed_files_are_readable" and "broken.jsonl.gz" in incident["observed"]
    accepted = run_batch(tmp_path, D2, accept_damaged_files=True)
    assert accepted.published and silver(tmp_path).height == 1 + bronze.height


def test_a_ledger_from_before_key_fingerprints_gets_them_once_and_still_finds_earlier_deliveries(tmp_path: Path) -> None:
    land(tmp_path, D1, "a.jsonl", [event("e1", ts="2025-01-10T10:00:00Z", amount=100), event("e2")])
    run_batch(tmp_path, D1)
    ledger_uri = table_uri(tmp_path, "ops", "billing_events_ledger")
    old = read_table(ledger_uri).drop("_key_fp")  # the ledger as an earlier release wrote it
    write_deltalake(ledger_uri, old.to_arrow(), mode="overwrite", schema_mode="overwrite", partition_by=["_arrival_date"])
    land(tmp_path, D2, "a.jsonl", [event("e1", 2, ts="2025-01-09T23:30:00Z", amount=250)])
    report = run_batch(tmp_path, D2)
    assert report.counts["updated"] == 1  # found through the new fingerprints, not mistaken for a new event
    assert silver(tmp_path).filter(pl.col("event_id") == "e1").select("source_version", "event_date").rows() == [
        (2, date(2025, 1, 9))
    ]
    assert read_table(ledger_uri).get_column("_key_fp").null_count() == 0


def test_a_conflict_loser_in_the_same_batch_is_quarantined_with_its_exact_raw_line(tmp_path: Path) -> None:
    lines = [json.dumps(event("e1", amount=100)).encode(), json.dumps(event("e1", amount=101)).encode()]
    land(tmp_path, D1, "a.jsonl", [*lines, event("e2"), event("e3"), event("e4")])
    run_batch(tmp_path, D1, max_rejected_fraction=0.5)
    [loser] = quarantine(tmp_path).filter(pl.col("_reason") == "version_conflict").rows(named=True)
    assert loser["_raw"] == lines[loser["_source_line"] - 1]
