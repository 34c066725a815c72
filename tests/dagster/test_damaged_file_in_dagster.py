"""A damaged landing file through the real Dagster definitions: the run fails on its check, with an incident naming it."""

import gzip
from datetime import date
from pathlib import Path

import dagster as dg
import polars as pl

from lakehouse.app.runner import run_arrival_dates
from lakehouse.delta.storage import read_table, table_uri
from tests.engine.test_hostile_input import D1, line
from tests.support import event, gold, land, settings_for, silver


def test_a_truncated_gzip_end_to_end_keeps_its_prefix_fails_the_run_and_names_the_file(tmp_path: Path) -> None:
    """Through the real Dagster definitions: the run fails on the check, with an incident naming the file."""
    land(tmp_path, D1, "a.jsonl", [event("before")])
    body = b"".join(line(f"z{n}", event_ts="2025-01-11T00:00:00Z") + b"\n" for n in range(3000))
    folder = tmp_path / "landing" / "billing_events" / "2025-01-11"
    folder.mkdir(parents=True)
    (folder / "broken.jsonl.gz").write_bytes(gzip.compress(body)[:-2000])
    instance = dg.DagsterInstance.ephemeral()
    first, second = run_arrival_dates(settings_for(tmp_path), [date(2025, 1, 10), date(2025, 1, 11)], instance=instance)
    silver_before, gold_before = silver(tmp_path), gold(tmp_path)
    assert first.ok and not second.ok
    bronze = read_table(table_uri(tmp_path, "bronze", "billing_events"), pl.col("_arrival_date") == date(2025, 1, 11))
    assert 0 < bronze.height < 3000
    assert bronze.sort("_source_line").get_column("_raw").to_list() == [body.split(b"\n")[n] for n in range(bronze.height)]
    incidents = read_table(table_uri(tmp_path, "ops", "incidents"))
    assert incidents.get_column("failure_mode").to_list() == ["gate_failed:landed_files_are_readable"]
    assert "2025-01-11/broken.jsonl.gz" in incidents.item(0, "observed")
    assert silver(tmp_path).equals(silver_before) and gold(tmp_path).equals(gold_before)
    assert silver(tmp_path).get_column("event_id").to_list() == ["before"]
