"""The storage module: URIs and options by root, the writer lock by root, lineage on every commit, schema migration."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import polars as pl
import pytest
from deltalake import DeltaTable

from assets.billing_feed import BILLING_EVENTS, daily_account_revenue
from assets.sample_data import generate_landing
from lakehouse.batches.restatement import refresh_partitions
from lakehouse.delta.locking import DistributedLockRequiredError, exclusive_writer
from lakehouse.delta.storage import CommitInfo, SchemaMigrationError, read_table, storage_options, table_uri
from tests.support import event, land, run_batch, settings_for

GOLD_SCHEMA, GOLD_TABLE = dict(BILLING_EVENTS.gold.schema), BILLING_EVENTS.gold.table
SILVER_COLUMNS = list(BILLING_EVENTS.gold.source_columns)
LINEAGE_KEYS = ("batch_id", "run_id", "code_version", "source_files", "batch_counts")


def test_an_object_store_root_keeps_its_scheme_and_a_local_root_stays_a_path(tmp_path: Path) -> None:
    assert table_uri("s3://bucket/prefix", "silver", "billing_events") == "s3://bucket/prefix/tables/silver/billing_events"
    assert table_uri("s3://bucket/prefix/", "ops", "batches") == "s3://bucket/prefix/tables/ops/batches"
    assert table_uri(tmp_path, "gold", GOLD_TABLE) == str(tmp_path / "tables" / "gold" / GOLD_TABLE)


def test_storage_options_come_from_the_standard_aws_variables_and_only_for_a_remote_uri(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://localhost:9000")
    monkeypatch.setenv("AWS_ALLOW_HTTP", "true")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.setenv("LAKEHOUSE_SECRET", "never-passed")
    assert storage_options("s3://bucket/prefix/tables/silver/billing_events") == {
        "aws_endpoint_url": "http://localhost:9000",
        "aws_allow_http": "true",
        "aws_region": "us-east-1",
    }
    assert storage_options(str(tmp_path)) is None


def test_an_object_store_root_refuses_the_writer_lock_instead_of_writing_unlocked() -> None:
    with (
        pytest.raises(DistributedLockRequiredError, match="object-store roots need the distributed writer lock"),
        exclusive_writer("s3://bucket/prefix", "billing_events", timeout_seconds=1),
    ):
        pytest.fail("the body must not run unlocked")


def test_every_commit_of_every_table_carries_its_batch_lineage_creation_included(tmp_path: Path) -> None:
    summary = generate_landing(tmp_path, date(2025, 1, 1), 5, 200, seed=7)
    for arrival in summary.arrival_dates:
        run_batch(tmp_path, arrival, run_id=f"run-{arrival.isoformat()}")
    land(tmp_path, "2025-01-06", "bad.jsonl", ["{not json", event("e-late", ts="2025-01-05T12:00:00Z")])
    assert not run_batch(tmp_path, "2025-01-06", run_id="run-gated").published  # opens an incident
    tables = sorted(log.parent for log in (tmp_path / "tables").glob("*/*/_delta_log"))
    assert {str(t.relative_to(tmp_path / "tables")) for t in tables} >= {
        "bronze/billing_events",
        "silver/billing_events",
        "silver/billing_events_quarantine",
        f"gold/{GOLD_TABLE}",
        "ops/billing_events_ledger",
        "ops/batches",
        "ops/incidents",
        "ops/restatements",
    }
    for table in tables:
        history = DeltaTable(str(table)).history()
        assert history[-1]["lakehouse_operation"] == "create table", table
        for commit in history:
            where = f"{table.name} v{commit['version']} ({commit['operation']})"
            assert all(key in commit for key in LINEAGE_KEYS), where
            assert commit["batch_id"] and commit["run_id"].startswith("run-") and commit["code_version"], where
            assert json.loads(commit["source_files"]), where  # every batch of the demo landed files
            assert json.loads(commit["batch_counts"])["records_in"] > 0, where


def _with_largest_charge(silver: pl.DataFrame) -> pl.DataFrame:
    """The gold aggregate as the next release might define it: one more measure."""
    keys = ["event_date", "account_id", "currency"]
    largest = silver.group_by(keys).agg(largest_charge_minor=pl.col("amount_minor").max())
    return daily_account_revenue(silver).join(largest, on=keys, how="left")


def _refresh(root: Path, schema: dict[str, pl.DataType], dates: list[date]) -> None:
    refresh_partitions(
        settings_for(root),
        source_uri=table_uri(root, "silver", "billing_events"),
        target_uri=table_uri(root, "gold", GOLD_TABLE),
        target_schema=schema,
        partition="event_date",
        dates=dates,
        aggregate=_with_largest_charge,
        source_columns=SILVER_COLUMNS,
        measure=BILLING_EVENTS.gold.measure,
        caused_by="schema-change",
        commit=CommitInfo("billing_events", "schema-change", "run-2", "next", source_files=({"file": "x"},)),
        table_name=f"gold/{GOLD_TABLE}",
    )


def test_a_new_gold_measure_migrates_the_table_and_old_partitions_read_null_until_refreshed(tmp_path: Path) -> None:
    land(
        tmp_path,
        "2025-01-11",
        "a.jsonl",
        [event("e1", ts="2025-01-10T12:00:00Z"), event("e2", ts="2025-01-11T08:00:00Z", amount=50)],
    )
    run_batch(tmp_path, "2025-01-11")
    gold_uri = table_uri(tmp_path, "gold", GOLD_TABLE)

    _refresh(tmp_path, {**GOLD_SCHEMA, "largest_charge_minor": pl.Int64()}, [date(2025, 1, 11)])

    gold = read_table(gold_uri).sort("event_date")
    assert gold.select("event_date", "net_minor", "largest_charge_minor").rows() == [
        (date(2025, 1, 10), 100, None),  # not refreshed: the added column reads null
        (date(2025, 1, 11), 50, 50),
    ]
    add_column = next(c for c in DeltaTable(gold_uri).history() if c["operation"] == "ADD COLUMN")
    assert add_column["batch_id"] == "schema-change" and add_column["lakehouse_operation"] == "add columns"


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ({k: v for k, v in GOLD_SCHEMA.items() if k != "event_count"}, r"drops columns \['event_count'\]"),
        ({**GOLD_SCHEMA, "net_minor": pl.Float64()}, "retypes net_minor"),
    ],
    ids=["dropped", "retyped"],
)
def test_a_dropped_or_retyped_gold_column_stops_with_a_clear_error_and_writes_nothing(
    tmp_path: Path, schema: dict[str, pl.DataType], message: str
) -> None:
    land(tmp_path, "2025-01-11", "a.jsonl", [event("e1", ts="2025-01-10T12:00:00Z")])
    run_batch(tmp_path, "2025-01-11")
    gold_uri = table_uri(tmp_path, "gold", GOLD_TABLE)
    before = DeltaTable(gold_uri).version()
    with pytest.raises(SchemaMigrationError, match=message):
        _refresh(tmp_path, schema, [date(2025, 1, 10)])
    assert DeltaTable(gold_uri).version() == before


def test_a_partition_is_read_back_in_bounded_slices_file_by_file_and_equals_the_whole_read(tmp_path: Path) -> None:
    """Silver reads bronze's day in slices (bounded memory): every slice holds at most the asked rows, the
    partition column is filled in, no other partition leaks in, and together they are exactly the partition."""
    import pyarrow.parquet as pq

    from lakehouse.delta.storage import read_partition_chunks, write_table

    uri = str(tmp_path / "t")
    commit = CommitInfo("d", "b", "r", "c")
    day, other = date(2025, 6, 1), date(2025, 6, 2)
    rows = pl.DataFrame(
        {"_raw": [f"line {n}".encode() for n in range(23)], "_source_line": list(range(23)), "day": [day] * 20 + [other] * 3}
    )
    for half in (rows.head(11), rows.tail(12)):  # two commits: the partition spans two files
        write_table(uri, half.to_arrow(), commit, "test", partition_by=["day"], max_row_group_rows=4)
    files = DeltaTable(uri).file_uris(file_pruning_predicate=[("day", "=", day.isoformat())])
    assert len(files) == 2
    groups = [pq.ParquetFile(f).metadata for f in files]
    assert max(m.row_group(i).num_rows for m in groups for i in range(m.num_row_groups)) == 4  # the writer's cap held
    chunks = list(read_partition_chunks(uri, "day", day, ["day", "_source_line", "_raw"], 3))
    assert max(chunk.height for chunk in chunks) == 3
    assert all(chunk.columns == ["day", "_source_line", "_raw"] for chunk in chunks)
    whole = read_table(uri, pl.col("day") == day, ["day", "_source_line", "_raw"])
    assert pl.concat(chunks).sort("_source_line").equals(whole.sort("_source_line"))
    assert list(read_partition_chunks(str(tmp_path / "missing"), "day", day, ["_raw"], 3)) == []


def test_a_partition_read_in_slices_gives_a_column_added_later_as_null_in_older_files(tmp_path: Path) -> None:
    """A table migrated to a new column (ensure_table) reads it as null from the files written before, slice by slice too."""
    from lakehouse.delta.storage import ensure_table, read_partition_chunks, write_table

    uri, commit, day = str(tmp_path / "t"), CommitInfo("d", "b", "r", "c"), date(2025, 6, 1)
    old: dict[str, pl.DataType] = {"_source_line": pl.Int64(), "day": pl.Date()}
    ensure_table(uri, old, ["day"], commit)
    write_table(uri, pl.DataFrame({"_source_line": [1], "day": [day]}, schema=old).to_arrow(), commit, "old file")
    new = {**old, "added": pl.String()}
    ensure_table(uri, new, ["day"], commit)  # a metadata-only migration: the old file lacks the column
    write_table(uri, pl.DataFrame({"_source_line": [2], "day": [day], "added": ["x"]}, schema=new).to_arrow(), commit, "new")
    chunks = list(read_partition_chunks(uri, "day", day, ["_source_line", "added"], 10, new))
    assert sorted(pl.concat(chunks).rows()) == [(1, None), (2, "x")]
