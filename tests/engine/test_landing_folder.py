"""The landing folder is shared with other systems: hidden entries, symlinks and strays are never read by accident, never silent."""

from __future__ import annotations

import json
import os
from datetime import date
from pathlib import Path

import pytest

from assets.billing_feed import BILLING_EVENTS
from lakehouse.app.status import collect_status, render_status
from lakehouse.delta.storage import read_table, table_uri
from lakehouse.staging import landing as landing_module
from lakehouse.staging.landing import LandingError, read_batch, scan_landing
from tests.support import bronze_rows, event, gold, land, quarantine, run_batch, silver

D1, D2 = "2025-01-10", "2025-01-11"
FEED = "billing_events"


def landing(root: Path) -> Path:
    return root / "landing" / FEED


def all_table_text(root: Path) -> str:
    """Every table's content as text, to prove a value never reached any of them."""
    frames = [bronze_rows(root), silver(root), quarantine(root), gold(root)]
    return "".join(str(frame.to_dicts()) for frame in frames)


def test_hidden_files_and_folders_are_never_read_and_are_listed(tmp_path: Path) -> None:
    land(tmp_path, D1, "part-0001.jsonl", [event("e1")])
    land(tmp_path, D1, ".part-0002.jsonl", [event("half_written")])  # an upload still being written
    land(tmp_path, D1, "_tmp-0003.jsonl", [event("temporary")])
    (landing(tmp_path) / D1 / "_SUCCESS").touch()
    land(tmp_path, f"{D1}/_staging", "inner.jsonl", [event("staged")])
    land(tmp_path, ".2025-01-11", "a.jsonl", [event("hidden_date")])
    report = run_batch(tmp_path, D1)
    assert report.published and silver(tmp_path).get_column("event_id").to_list() == ["e1"]
    assert bronze_rows(tmp_path).get_column("_source_file").to_list() == [f"{D1}/part-0001.jsonl"]
    ignored = {(e.path, e.reason) for e in scan_landing(tmp_path, FEED).ignored}
    assert ignored == {
        (f"{D1}/.part-0002.jsonl", "hidden"),
        (f"{D1}/_tmp-0003.jsonl", "hidden"),
        (f"{D1}/_SUCCESS", "hidden"),
        (f"{D1}/_staging", "hidden"),
        (".2025-01-11", "hidden"),
    }
    assert scan_landing(tmp_path, FEED).arrival_dates == [report.arrival_date]  # a hidden date folder is no date


def test_a_hidden_file_appearing_does_not_change_the_batch(tmp_path: Path) -> None:
    land(tmp_path, D1, "a.jsonl", [event("e1")])
    before = read_batch(tmp_path, FEED, run_batch(tmp_path, D1).arrival_date).batch_id
    land(tmp_path, D1, ".b.jsonl.uploading", [event("e2")])
    assert read_batch(tmp_path, FEED, run_batch(tmp_path, D1).arrival_date).batch_id == before


def test_a_symlink_out_of_the_landing_folder_holds_the_date_and_nothing_it_points_to_reaches_a_table(tmp_path: Path) -> None:
    secret = tmp_path / "outside" / "secret.jsonl"
    secret.parent.mkdir()
    secret.write_text(json.dumps(event("from_outside", account="stolen")) + "\n")
    land(tmp_path, D1, "a.jsonl", [event("e1")])
    (landing(tmp_path) / D1 / "link.jsonl").symlink_to(secret)
    report = run_batch(tmp_path, D1)
    gate = next(g for g in report.gates if g.name == "landing_has_no_symlinks")
    assert not report.published and not gate.passed and f"{D1}/link.jsonl is a symlink" in gate.observed
    assert silver(tmp_path).is_empty() and gold(tmp_path).is_empty()
    assert "from_outside" not in all_table_text(tmp_path) and "stolen" not in all_table_text(tmp_path)
    incidents = read_table(table_uri(tmp_path, "ops", "incidents"))
    assert incidents.select("failure_mode", "status").rows() == [("gate_failed:landing_has_no_symlinks", "open")]
    assert f"{D1}/link.jsonl" in incidents.item(0, "detail")
    # Removing the link is a new batch: it publishes the proper file and resolves the incident.
    (landing(tmp_path) / D1 / "link.jsonl").unlink()
    rerun = run_batch(tmp_path, D1)
    assert rerun.published and rerun.batch_id != report.batch_id
    assert silver(tmp_path).get_column("event_id").to_list() == ["e1"]
    assert read_table(table_uri(tmp_path, "ops", "incidents")).item(0, "status") == "resolved"


def test_a_symlink_inside_the_landing_folder_is_not_followed_either(tmp_path: Path) -> None:
    target = land(tmp_path, D2, "a.jsonl", [event("e2", ts="2025-01-11T12:00:00Z")])
    land(tmp_path, D1, "a.jsonl", [event("e1")])
    (landing(tmp_path) / D1 / "copy.jsonl").symlink_to(target)
    report = run_batch(tmp_path, D1)
    assert not report.published and [g.name for g in report.gates if not g.passed] == ["landing_has_no_symlinks"]
    assert bronze_rows(tmp_path).get_column("_source_file").to_list() == [f"{D1}/a.jsonl"]


def test_a_date_folder_that_is_a_symlink_is_held_and_never_read(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "a.jsonl").write_text(json.dumps(event("from_outside")) + "\n")
    landing(tmp_path).mkdir(parents=True)
    (landing(tmp_path) / D1).symlink_to(elsewhere, target_is_directory=True)
    scan = scan_landing(tmp_path, FEED)
    assert [d.isoformat() for d in scan.arrival_dates] == [D1] and [(e.path, e.reason) for e in scan.ignored] == [(D1, "symlink")]
    report = run_batch(tmp_path, D1)
    assert not report.published and report.records_in == 0
    assert "from_outside" not in all_table_text(tmp_path)


def test_a_file_swapped_for_a_symlink_after_the_listing_is_refused_not_followed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "secret.jsonl"
    secret.write_text(json.dumps(event("from_outside")) + "\n")
    land(tmp_path, D1, "a.jsonl", [event("e1")])
    real_open = landing_module._open_landing_file

    def swap_then_open(target: Path) -> object:
        target.unlink()
        target.symlink_to(secret)
        return real_open(target)

    monkeypatch.setattr(landing_module, "_open_landing_file", swap_then_open)
    batch = read_batch(tmp_path, FEED, date.fromisoformat(D1))
    assert batch.rows.is_empty() and batch.files[0].changed == "replaced by a symlink while the batch was being read"


STRAYS = [
    ("not-a-date", "a.jsonl", "not-a-date/", "not_a_date_folder"),
    ("2026-02-30", "a.jsonl", "2026-02-30/", "not_a_date_folder"),
    ("2025-1-10", "a.jsonl", "2025-1-10/", "not_a_date_folder"),
    (D1, "manifest.csv", f"{D1}/manifest.csv", "other_extension"),
    (D1, "part.json", f"{D1}/part.json", "other_extension"),
    (f"{D1}/nested", "a.jsonl", f"{D1}/nested/", "nested_folder"),
]


@pytest.mark.parametrize(("folder", "name", "listed", "reason"), STRAYS, ids=[s[2] for s in STRAYS])
def test_a_stray_is_not_ingested_is_reported_and_the_proper_files_still_publish(
    tmp_path: Path, folder: str, name: str, listed: str, reason: str
) -> None:
    land(tmp_path, D1, "part-0001.jsonl", [event("e1")])
    land(tmp_path, folder, name, [event("stray")])
    report = run_batch(tmp_path, D1)
    assert report.published and silver(tmp_path).get_column("event_id").to_list() == ["e1"]
    assert "stray" not in all_table_text(tmp_path)
    assert [(e.path, e.reason) for e in scan_landing(tmp_path, FEED).ignored] == [(listed, reason)]


def test_a_file_beside_the_date_folders_is_reported(tmp_path: Path) -> None:
    land(tmp_path, D1, "a.jsonl", [event("e1")])
    (landing(tmp_path) / "manifest.csv").write_text("a.jsonl\n")
    assert [(e.path, e.reason) for e in scan_landing(tmp_path, FEED).ignored] == [("manifest.csv", "not_in_a_date_folder")]


def test_a_pipe_is_not_read_and_does_not_block_the_read(tmp_path: Path) -> None:
    land(tmp_path, D1, "a.jsonl", [event("e1")])
    os.mkfifo(landing(tmp_path) / D1 / "pipe.jsonl")  # opening it to read would block forever
    assert run_batch(tmp_path, D1).published
    assert [(e.path, e.reason) for e in scan_landing(tmp_path, FEED).ignored] == [(f"{D1}/pipe.jsonl", "not_a_regular_file")]


def test_hostile_names_are_ingested_with_exact_lineage_and_shown_on_one_line(tmp_path: Path) -> None:
    names = ["with space.jsonl", "ünïcödé-€.jsonl", "new\nline.jsonl"]
    for i, name in enumerate(names):
        land(tmp_path, D1, name, [event(f"e{i}")])
    undecodable = os.fsencode(landing(tmp_path) / D1) + b"/bad-\xff.jsonl"
    with open(undecodable, "wb") as handle:
        handle.write(json.dumps(event("undecodable")).encode() + b"\n")
    land(tmp_path, D1, "odd\tname.csv", [event("tabbed")])
    report = run_batch(tmp_path, D1)
    assert report.published and report.records_in == 3
    assert sorted(bronze_rows(tmp_path).get_column("_source_file").to_list()) == sorted(f"{D1}/{n}" for n in names)
    listed = {e.path: e.reason for e in scan_landing(tmp_path, FEED).ignored}
    assert listed == {f"{D1}/bad-\\xff.jsonl": "name_not_utf8", f"{D1}/odd\\tname.csv": "other_extension"}
    text = render_status(collect_status(str(tmp_path), BILLING_EVENTS))
    assert f"{D1}/bad-\\xff.jsonl" in text and f"{D1}/odd\\tname.csv" in text  # escaped: each entry on one line


def test_status_lists_every_entry_not_ingested_in_text_and_json(tmp_path: Path) -> None:
    outside = tmp_path / "outside.jsonl"
    outside.write_text(json.dumps(event("x")) + "\n")
    land(tmp_path, D1, "part-0001.jsonl", [event("e1")])
    land(tmp_path, D1, ".part-0002.jsonl", [event("e2")])
    land(tmp_path, D1, "_tmp-0003.jsonl", [event("e3")])
    land(tmp_path, D1, "manifest.csv", ["x"])
    land(tmp_path, f"{D1}/nested", "a.jsonl", [event("e4")])
    land(tmp_path, "not-a-date", "a.jsonl", [event("e5")])
    land(tmp_path, "2026-02-30", "a.jsonl", [event("e6")])
    (landing(tmp_path) / "manifest.csv").write_text("x\n")
    (landing(tmp_path) / D1 / "link.jsonl").symlink_to(outside)
    run_batch(tmp_path, D1)
    status = collect_status(str(tmp_path), BILLING_EVENTS)
    expected = {
        f"{D1}/.part-0002.jsonl": "hidden",
        f"{D1}/_tmp-0003.jsonl": "hidden",
        f"{D1}/link.jsonl": "symlink",
        f"{D1}/manifest.csv": "other_extension",
        f"{D1}/nested/": "nested_folder",
        "2026-02-30/": "not_a_date_folder",
        "manifest.csv": "not_in_a_date_folder",
        "not-a-date/": "not_a_date_folder",
    }
    assert {e["path"]: e["reason"] for e in json.loads(json.dumps(status))["landing_not_ingested"]} == expected
    text = render_status(status)
    assert "Landing entries not ingested: 8" in text
    for path, reason in expected.items():
        assert any(path in line and reason in line for line in text.splitlines()), path
    assert "gate_failed:landing_has_no_symlinks" in text  # the held date's incident


def test_a_date_with_only_strays_is_not_a_batch(tmp_path: Path) -> None:
    land(tmp_path, D1, ".uploading.jsonl", [event("e1")])
    land(tmp_path, D1, "notes.txt", ["x"])
    assert scan_landing(tmp_path, FEED).arrival_dates == []
    with pytest.raises(LandingError, match="no .jsonl/.jsonl.gz files"):
        read_batch(tmp_path, FEED, date.fromisoformat(D1))
