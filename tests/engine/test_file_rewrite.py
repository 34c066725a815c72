"""storage.rewrite_files: a copy-on-write change of any size in one commit, as silver's publish uses it."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import polars as pl
import pytest
from deltalake import DeltaTable

from lakehouse.delta.maintenance import table_paths
from lakehouse.delta.storage import (
    STAGED_PREFIX,
    CommitInfo,
    FrameStream,
    data_files,
    ensure_table,
    rewrite_files,
    scan_files,
    write_table,
)

SCHEMA: dict[str, pl.DataType] = {"key": pl.String(), "value": pl.Int64(), "day": pl.Date()}
COMMIT = CommitInfo(dataset="t", batch_id="batch-1", run_id="run-1", code_version="v1")
D1, D2 = date(2025, 1, 1), date(2025, 1, 2)


def _table(tmp_path: Path) -> str:
    uri = str(tmp_path / "tables" / "silver" / "t")
    ensure_table(uri, SCHEMA, ["day"], COMMIT)
    rows = pl.DataFrame({"key": ["a", "b", "c"], "value": [1, 2, 3], "day": [D1, D1, D2]}, schema=SCHEMA)
    write_table(uri, rows.to_arrow(), COMMIT, "seed")
    return uri


def _rows(uri: str) -> list[tuple[object, ...]]:
    return sorted(pl.from_arrow(DeltaTable(uri).to_pyarrow_table()).select(list(SCHEMA)).rows())  # type: ignore[union-attr]


def test_a_rewrite_replaces_a_files_rows_and_adds_new_ones_in_one_commit_with_lineage(tmp_path: Path) -> None:
    uri = _table(tmp_path)
    before = DeltaTable(uri).version()
    [day1] = [f for f in data_files(uri) if f.partition_values == {"day": "2025-01-01"}]
    # b is updated, a is kept (the caller puts a removed file's other rows back), d is new.
    rows = pl.DataFrame({"key": ["b", "a", "d"], "value": [20, 1, 4], "day": [D1, D1, D2]}, schema=SCHEMA)
    rewrite_files(uri, FrameStream(SCHEMA, lambda: [rows]), [day1], ["day"], COMMIT, "apply")

    table = DeltaTable(uri)
    assert table.version() == before + 1
    assert _rows(uri) == [("a", 1, D1), ("b", 20, D1), ("c", 3, D2), ("d", 4, D2)]
    assert sorted(pl.read_delta(uri).get_column("key").to_list()) == ["a", "b", "c", "d"]  # another reader agrees
    metadata = table.history(1)[0]
    assert metadata["batch_id"] == "batch-1" and metadata["lakehouse_operation"] == "apply"
    staged = [p for p in Path(uri).iterdir() if p.name.startswith(STAGED_PREFIX)]
    assert staged and not any((p / "_delta_log").exists() for p in staged)  # the files stay, the throwaway log goes
    assert table_paths(tmp_path) == [uri]


def test_a_rewrite_that_fails_midway_changes_nothing_and_leaves_no_staged_table(tmp_path: Path) -> None:
    uri = _table(tmp_path)
    before, rows_before = DeltaTable(uri).version(), _rows(uri)

    def broken() -> list[pl.DataFrame]:
        raise RuntimeError("the files no longer hold what was read")

    with pytest.raises(Exception, match="no longer hold"):
        rewrite_files(uri, FrameStream(SCHEMA, broken), data_files(uri)[:1], ["day"], COMMIT, "apply")
    assert DeltaTable(uri).version() == before and _rows(uri) == rows_before
    assert not [p for p in Path(uri).iterdir() if p.name.startswith(STAGED_PREFIX)]


def test_a_dead_staged_log_of_a_killed_rewrite_is_cleared_by_the_next_one(tmp_path: Path) -> None:
    uri = _table(tmp_path)
    dead = Path(uri) / f"{STAGED_PREFIX}dead" / "_delta_log"
    dead.mkdir(parents=True)
    (dead / f"{0:020d}.json").write_text(json.dumps({"commitInfo": {}}) + "\n")
    assert table_paths(tmp_path) == [uri]  # never taken for a table of the root
    rows = pl.DataFrame({"key": ["e"], "value": [5], "day": [D2]}, schema=SCHEMA)
    rewrite_files(uri, FrameStream(SCHEMA, lambda: [rows]), [], ["day"], COMMIT, "apply")
    assert not dead.exists()
    assert ("e", 5, D2) in _rows(uri)


def test_files_written_before_a_column_was_added_scan_with_it_as_null_in_any_file_order(tmp_path: Path) -> None:
    """Silver's narrow read of its files: an older file without a migrated column, first or last, reads it as null."""
    uri = _table(tmp_path)
    wider = {**SCHEMA, "added": pl.String()}
    ensure_table(uri, wider, ["day"], COMMIT)  # a metadata-only migration: the seeded files lack the column
    rows = pl.DataFrame({"key": ["e"], "value": [5], "day": [D1], "added": ["x"]}, schema=wider)
    write_table(uri, rows.to_arrow(), COMMIT, "after the migration")
    columns = {name: dtype for name, dtype in wider.items() if name != "day"}
    files = sorted(data_files(uri), key=lambda f: f.path)
    for order in (files, files[::-1]):
        scanned = scan_files(order, uri, "_file", columns).select("key", "added").collect()
        assert sorted(scanned.rows(), key=repr) == sorted([("a", None), ("b", None), ("c", None), ("e", "x")], key=repr)
