"""The `lakehouse` command as a user runs it: a real process, real files, exit codes that mean something."""

import json
import subprocess
from pathlib import Path

from tests.e2e.harness import lakehouse as run_lakehouse
from tests.support import event, land


def lakehouse(*args: str, root: Path | None = None) -> subprocess.CompletedProcess[str]:
    return run_lakehouse(*args, *(["--root", str(root)] if root else []))


def test_generate_run_status_round_trip_records_runs_in_the_embedded_instance(tmp_path: Path) -> None:
    generated = lakehouse(
        "generate", "--start", "2025-01-01", "--days", "2", "--events-per-day", "200", "--seed", "3", root=tmp_path
    )
    assert generated.returncode == 0, generated.stderr
    run = lakehouse("run", root=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.count(" ok ") == 2
    status = json.loads(lakehouse("status", "--json", root=tmp_path).stdout)
    assert [b["status"] for b in status["last_batches"]] == ["complete", "complete"]
    assert status["tables"]["silver.billing_events"]["rows"] == 400
    assert set(status["quarantine_reasons"]) >= {"malformed_record", "version_conflict", "too_late"}
    assert (tmp_path / "dagster_home" / "history" / "runs.db").exists()  # the runs are in the embedded instance
    again = lakehouse("run", root=tmp_path)
    assert again.returncode == 0 and "nothing to run" in again.stdout


def test_run_exits_non_zero_when_a_gate_fails_and_names_the_date(tmp_path: Path) -> None:
    land(tmp_path, "2025-01-10", "a.jsonl", [event("e1"), b"{", b"{", event("e2")])
    run = lakehouse("run", root=tmp_path)
    assert run.returncode == 1
    assert "2025-01-10  FAILED" in run.stdout and "rejected_fraction_within_threshold" in run.stdout
    status = json.loads(lakehouse("status", "--json", root=tmp_path).stdout)
    assert status["last_batches"][0]["status"] == "gated" and len(status["open_incidents"]) == 1
    accepted = lakehouse("run", "--arrival-date", "2025-01-10", "--max-rejected-fraction", "0.5", root=tmp_path)
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr


def test_demo_refuses_a_folder_it_did_not_make(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    demo = lakehouse("demo", "--root", str(tmp_path), "--days", "1", "--events-per-day", "50")
    assert demo.returncode == 2 and (tmp_path / "precious.txt").exists()


def test_demo_runs_everything_and_prints_a_readable_summary(tmp_path: Path) -> None:
    root = tmp_path / "demo"
    demo = lakehouse("demo", "--root", str(root), "--days", "2", "--events-per-day", "100")
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "Last batches" in demo.stdout and "Quarantine reasons" in demo.stdout and "records/s" in demo.stdout
    assert (
        lakehouse("demo", "--root", str(root), "--days", "1", "--events-per-day", "50").returncode == 0
    )  # re-creates its own folder


def test_run_accepts_arrival_dates_before_the_partitions_start_and_beyond_today(tmp_path: Path) -> None:
    # Data decisions never read the clock: a 2024 backlog and a 2030 test feed run like any other dates.
    land(tmp_path, "2024-03-01", "a.jsonl", [event("old", ts="2024-03-01T08:00:00Z")])
    land(tmp_path, "2030-06-01", "a.jsonl", [event("new", ts="2030-06-02T08:00:00Z")])  # a day of skew ahead
    run = lakehouse("run", root=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    status = json.loads(lakehouse("status", "--json", root=tmp_path).stdout)
    assert sorted(b["status"] for b in status["last_batches"]) == ["complete", "complete"]
    assert status["tables"]["gold.daily_account_revenue"]["rows"] == 2


def test_generate_refuses_to_overwrite_landed_files_with_a_clear_message(tmp_path: Path) -> None:
    args = ("generate", "--start", "2025-01-01", "--days", "1", "--events-per-day", "20", "--seed", "1")
    assert lakehouse(*args, root=tmp_path).returncode == 0
    again = lakehouse(*args, root=tmp_path)
    assert again.returncode == 2 and "immutable" in again.stderr and "Traceback" not in again.stderr


def test_a_bad_setting_is_one_line_with_no_traceback_and_nothing_written(tmp_path: Path) -> None:
    root = tmp_path / "root"
    result = run_lakehouse("run", "--root", str(root), LAKEHOUSE_MAX_REJECTED_FRACTION="abc")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == "lakehouse: LAKEHOUSE_MAX_REJECTED_FRACTION must be a number within [0, 1], got 'abc'\n"
    assert not root.exists() and list(tmp_path.iterdir()) == []


def test_run_names_a_silent_date_and_a_thin_one_with_their_incidents_and_status_lists_them(tmp_path: Path) -> None:
    # The scenario, shortened: steady dates, a date with no delivery, then a date of 7% of the usual volume.
    for n in [*range(1, 8), 9]:
        land(tmp_path, f"2025-01-{n:02d}", "a.jsonl", [event(f"d{n}-{i}", ts=f"2025-01-{n:02d}T08:00:00Z") for i in range(100)])
    land(tmp_path, "2025-01-10", "a.jsonl", [event(f"thin-{i}", ts="2025-01-10T08:00:00Z") for i in range(7)])
    run = lakehouse("run", root=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr  # warnings: the run publishes, the lines say what to look at
    status = json.loads(lakehouse("status", "--json", root=tmp_path).stdout)
    [missing], [anomaly] = status["missing_deliveries"], status["volume_anomalies"]
    assert missing["arrival_date"] == "2025-01-08" and anomaly["arrival_date"] == "2025-01-10" and anomaly["records"] == 7
    assert f"no delivery for arrival date(s) 2025-01-08 (incident {missing['incident_id']})" in run.stdout
    thin_line = next(line for line in run.stdout.splitlines() if line.startswith("2025-01-10"))
    assert f"incident {anomaly['incident_id']} (volume_anomaly)" in thin_line
    text = lakehouse("status", root=tmp_path).stdout
    assert "Missing deliveries: 2025-01-08" in text and "Volume anomalies: 2025-01-10 (7 records" in text
    # A real thin day: the operator accepts it, which resolves the incident.
    accepted = lakehouse("run", "--arrival-date", "2025-01-10", "--accept-volume-anomaly", root=tmp_path)
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    assert json.loads(lakehouse("status", "--json", root=tmp_path).stdout)["volume_anomalies"] == []
