"""The whole pipeline on object storage, with a PostgreSQL instance and writer lock, against a local run of the same files."""

from __future__ import annotations

import time
from datetime import date
from pathlib import Path

import dagster as dg
import polars as pl
import pyarrow.fs as pafs
import pytest

from assets.billing_feed import BILLING_EVENTS
from assets.sample_data import generate_landing
from lakehouse.app.runner import instance_for, run_arrival_dates
from lakehouse.app.status import collect_status
from lakehouse.delta.maintenance import maintain
from lakehouse.delta.storage import CommitInfo, UnsafeObjectStoreError, filesystem, read_table, table_uri, write_table
from lakehouse.settings import Settings
from lakehouse.staging.landing import read_batch, scan_landing
from tests.scaleout.conftest import s3_client, upload
from tests.support import WALL_CLOCK_AND_RUN, assert_same_content, event, land

START = date(2025, 1, 1)


def content(root: str | Path) -> dict[str, pl.DataFrame]:
    """silver, quarantine and gold without wall-clock and run-id columns, in a canonical order (any root)."""
    frames = {
        "silver": read_table(table_uri(root, "silver", "billing_events")).sort("event_id"),
        "quarantine": read_table(table_uri(root, "silver", "billing_events_quarantine")).sort(
            "_arrival_date", "_source_file", "_source_line"
        ),
        "gold": read_table(table_uri(root, "gold", BILLING_EVENTS.gold.table)).sort("event_date", "account_id", "currency"),
    }
    return {name: f.drop([c for c in WALL_CLOCK_AND_RUN if c in f.columns]) for name, f in frames.items()}


def data_versions(root: str) -> dict[str, object]:
    tables = collect_status(root, BILLING_EVENTS)["tables"]
    return {name: facts["version"] for name, facts in tables.items() if not name.startswith("ops.")}


def local_reference(tmp_path: Path, days: int = 2) -> tuple[Path, list[date], float]:
    local = tmp_path / "local"
    summary = generate_landing(local, START, days, 12, seed=5)
    started = time.perf_counter()
    outcomes = run_arrival_dates(Settings(root=str(local)), summary.arrival_dates, instance=dg.DagsterInstance.ephemeral())
    assert all(o.ok for o in outcomes), [o.message for o in outcomes]
    return local, summary.arrival_dates, time.perf_counter() - started


def test_the_pipeline_on_object_storage_with_a_postgres_instance_equals_a_local_run(
    tmp_path: Path, s3_root: str, pg_instance: str
) -> None:
    local, dates, local_seconds = local_reference(tmp_path)
    upload(local / "landing", f"{s3_root}/landing")
    settings = Settings.from_env(root=s3_root)
    assert settings.uses_postgres_instance
    instance = instance_for(settings)
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    started = time.perf_counter()
    outcomes = run_arrival_dates(settings, dates, instance=instance)
    remote_seconds = time.perf_counter() - started
    assert all(o.ok for o in outcomes), [o.message for o in outcomes]
    assert_same_content(content(local), content(s3_root))
    print(f"\n{len(dates)} arrival dates end to end: local disk {local_seconds:.2f}s, object store {remote_seconds:.2f}s")

    # Re-running published dates commits nothing to a data table, and status and maintain work on the object store.
    versions = data_versions(s3_root)
    assert all(o.ok for o in run_arrival_dates(settings, dates, instance=instance))
    assert data_versions(s3_root) == versions
    assert maintain(s3_root, 168, ["billing_events", f"gold_{BILLING_EVENTS.gold.table}"], 10, dry_run=True) is not None


def test_landing_rules_hold_on_an_object_store_where_a_prefix_is_a_folder(tmp_path: Path, s3_root: str) -> None:
    local = tmp_path / "local"
    land(local, "2025-01-02", "a.jsonl", [event("e1"), event("e2")])
    land(local, "2025-01-02", ".part-b.jsonl", [event("e3")])
    land(local, "2025-01-02", "notes.txt", ["x"])
    land(local, "2025-01-02/nested", "c.jsonl", [event("e4")])
    land(local, "not-a-date", "d.jsonl", [event("e5")])
    land(local, "_tmp", "d.jsonl", [event("e5")])
    upload(local / "landing", f"{s3_root}/landing")
    scan = scan_landing(s3_root, "billing_events")
    assert scan.arrival_dates == [date(2025, 1, 2)]
    assert sorted((e.path, e.reason) for e in scan.ignored) == [
        ("2025-01-02/.part-b.jsonl", "hidden"),
        ("2025-01-02/nested/", "nested_folder"),
        ("2025-01-02/notes.txt", "other_extension"),
        ("_tmp", "hidden"),
        ("not-a-date/", "not_a_date_folder"),
    ]
    remote, same = read_batch(s3_root, "billing_events", date(2025, 1, 2)), read_batch(local, "billing_events", date(2025, 1, 2))
    assert remote.batch_id == same.batch_id and remote.rows.equals(same.rows)


def test_a_configuration_that_disables_conditional_put_is_refused(
    s3_root: str, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The control: the fixture's server honours If-None-Match, as the safety of concurrent commits needs.
    bucket = s3_root.removeprefix("s3://").split("/")[0]
    client = s3_client(s3_endpoint)
    client.put_object(Bucket=bucket, Key="probe", Body=b"1", IfNoneMatch="*")
    with pytest.raises(client.exceptions.ClientError, match="PreconditionFailed|412"):
        client.put_object(Bucket=bucket, Key="probe", Body=b"2", IfNoneMatch="*")
    commit = CommitInfo("billing_events", "b", "r", "test")
    frame = pl.DataFrame({"a": [1]}).to_arrow()
    for name, value in (("AWS_S3_ALLOW_UNSAFE_RENAME", "true"), ("AWS_CONDITIONAL_PUT", "disabled")):
        with monkeypatch.context() as patched:
            patched.setenv(name, value)
            with pytest.raises(UnsafeObjectStoreError, match=f"{name}={value}.*conditional PUT"):
                write_table(table_uri(s3_root, "ops", "probe"), frame, commit, "probe")
    write_table(table_uri(s3_root, "ops", "probe"), frame, commit, "probe")  # unset again: it writes


def test_a_correction_on_object_storage_rewrites_silver_in_one_commit_and_leaves_no_staged_log(
    tmp_path: Path, s3_root: str, pg_instance: str
) -> None:
    """Silver's copy-on-write write on S3: a correction moving an event to another event date replaces its row
    (the file holding the old row is rewritten, the new row added, one commit), as a local run does."""
    local, days = tmp_path / "local", [date(2025, 1, 10), date(2025, 1, 11)]
    land(local, "2025-01-10", "part-0000.jsonl", [event("e1", ts="2025-01-10T12:00:00Z"), event("e2", ts="2025-01-10T13:00:00Z")])
    land(local, "2025-01-11", "part-0000.jsonl", [event("e1", 2, ts="2025-01-09T12:00:00Z", amount=250)])
    upload(local / "landing", f"{s3_root}/landing")
    assert all(o.ok for o in run_arrival_dates(Settings(root=str(local)), days, instance=dg.DagsterInstance.ephemeral()))
    settings = Settings.from_env(root=s3_root)
    outcomes = run_arrival_dates(settings, days, instance=instance_for(settings))
    assert all(o.ok for o in outcomes), [o.message for o in outcomes]

    silver = content(s3_root)["silver"]
    assert silver.select("event_id", "source_version", "event_date").rows() == [
        ("e1", 2, date(2025, 1, 9)),
        ("e2", 1, date(2025, 1, 10)),
    ]
    assert_same_content(content(local), content(s3_root))
    fs, path = filesystem(table_uri(s3_root, "silver", "billing_events"))
    listed = [info.path for info in fs.get_file_info(pafs.FileSelector(path, recursive=True))]
    assert any("/staged-" in p and p.endswith(".parquet") for p in listed)  # the rewrite's files, now the table's
    assert not [p for p in listed if "/staged-" in p and "_delta_log" in p]  # its throwaway log is gone
