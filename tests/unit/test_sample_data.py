"""The landing-file generator: reproducible, immutable output whose faults are exactly what it reports.

An independent oracle of the event contract (written from the spec, not from the generator)
classifies every record, so the tests check the generator against the contract rather than
against itself.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from assets.sample_data import (
    FAULT_KINDS,
    REJECTED_FAULT_KINDS,
    VALID_FAULT_KINDS,
    GenerateSummary,
    generate_landing,
)

START = date(2025, 1, 1)
DAYS = 5
EVENTS_PER_DAY = 300
SEED = 7
REQUIRED = ("event_id", "source_version", "account_id", "event_type", "event_ts", "amount_minor", "currency")
QUALITY_GATE = 0.05
BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class Record:
    arrival: date
    file: Path
    raw: bytes


@pytest.fixture(scope="module")
def landed(tmp_path_factory: pytest.TempPathFactory) -> GenerateSummary:
    return generate_landing(tmp_path_factory.mktemp("landed"), START, DAYS, EVENTS_PER_DAY, SEED)


@pytest.fixture(scope="module")
def records(landed: GenerateSummary) -> list[Record]:
    return list(read_records(landed))


@pytest.fixture(scope="module")
def verdicts(records: list[Record]) -> list[str | None]:
    return ContractOracle().judge_all(records)


# ---------------------------------------------------------------- helpers


def file_bytes(path: Path) -> bytes:
    raw = path.read_bytes()
    return gzip.decompress(raw) if path.name.endswith(".gz") else raw


def physical_lines(content: bytes) -> list[bytes]:
    if content.startswith(BOM):
        content = content[len(BOM) :]
    lines = content.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return [line.removesuffix(b"\r") for line in lines]


def read_records(summary: GenerateSummary) -> Iterator[Record]:
    """Records in delivery order: arrival folders, then file names, then lines."""
    base = summary.root / "landing" / "billing_events"
    for folder in sorted(base.iterdir()):
        for path in sorted(folder.iterdir()):
            for line in physical_lines(file_bytes(path)):
                if line.strip():
                    yield Record(date.fromisoformat(folder.name), path, line)


def digests(summary: GenerateSummary) -> dict[str, str]:
    return {str(p.relative_to(summary.root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in summary.files}


def midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


class ContractOracle:
    """Downstream's accept/reject rules, applied in delivery order (version_conflict needs history)."""

    def __init__(self) -> None:
        self.amount_by_version: dict[tuple[str, int], int] = {}

    def judge_all(self, records: list[Record]) -> list[str | None]:
        return [self.judge(record) for record in records]

    def judge(self, record: Record) -> str | None:
        try:
            text = record.raw.decode("utf-8")
        except UnicodeDecodeError:
            return "invalid_utf8"
        try:
            obj = json.loads(text)
        except json.JSONDecodeError:
            return "malformed_json"
        if not isinstance(obj, dict):
            return "not_an_object"
        reason = self._field_reason(obj, record.arrival)
        if reason is None:
            key = (obj["event_id"], obj["source_version"])
            if self.amount_by_version.setdefault(key, obj["amount_minor"]) != obj["amount_minor"]:
                return "version_conflict"
        return reason

    @staticmethod
    def _field_reason(obj: dict[str, Any], arrival: date) -> str | None:
        if any(obj.get(name) is None for name in REQUIRED):
            return "missing_field"
        strings = ("event_id", "account_id", "event_type", "event_ts", "currency")
        integers = ("source_version", "amount_minor")
        if not all(isinstance(obj[name], str) for name in strings) or not all(
            isinstance(obj[name], int) and not isinstance(obj[name], bool) for name in integers
        ):
            return "invalid_type"
        event_ts = datetime.fromisoformat(obj["event_ts"])
        if event_ts.tzinfo is None:
            return "naive_timestamp"
        if (
            not 1 <= len(obj["event_id"]) <= 128
            or not obj["account_id"]
            or obj["source_version"] < 1
            or obj["event_type"] not in ("charge", "refund", "credit", "adjustment")
            or obj["currency"] not in ("USD", "EUR", "GBP", "JPY", "CAD", "AUD")
        ):
            return "invalid_value"
        amount, event_type = obj["amount_minor"], obj["event_type"]
        if (event_type == "charge" and amount <= 0) or (event_type in ("refund", "credit") and amount >= 0) or amount == 0:
            return "sign_mismatch"
        if event_ts >= midnight(arrival + timedelta(days=2)):
            return "future_event"
        if (arrival - event_ts.astimezone(UTC).date()).days > 7:
            return "too_late"
        return None


# ---------------------------------------------------------------- reproducibility and immutability


def test_same_seed_produces_identical_bytes_in_every_file(tmp_path: Path) -> None:
    first = generate_landing(tmp_path / "a", START, 3, 200, seed=11)
    second = generate_landing(tmp_path / "b", START, 3, 200, seed=11)
    assert digests(first) == digests(second)
    assert first.lines == second.lines and first.faults == second.faults


def test_different_seed_produces_different_data(tmp_path: Path) -> None:
    first = generate_landing(tmp_path / "a", START, 3, 200, seed=11)
    second = generate_landing(tmp_path / "b", START, 3, 200, seed=12)
    assert set(digests(first).values()).isdisjoint(digests(second).values())


def test_refuses_to_overwrite_existing_landing_files(tmp_path: Path) -> None:
    first = generate_landing(tmp_path, START, 2, 50, seed=1)
    before = digests(first)
    with pytest.raises(FileExistsError, match="immutable"):
        generate_landing(tmp_path, START, 2, 50, seed=2)
    assert digests(first) == before


def test_refuses_a_part_that_landed_under_the_other_suffix(tmp_path: Path) -> None:
    folder = tmp_path / "landing" / "billing_events" / START.isoformat()
    folder.mkdir(parents=True)
    (folder / "part-0000.jsonl.gz").write_bytes(b"")
    (folder / "part-0000.jsonl").write_bytes(b"")
    with pytest.raises(FileExistsError, match="part-0000"):
        generate_landing(tmp_path, START, 1, 50, seed=1)


def test_rejects_non_positive_sizes(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        generate_landing(tmp_path, START, 0, 10, seed=1)
    with pytest.raises(ValueError):
        generate_landing(tmp_path, START, 1, 0, seed=1)


# ---------------------------------------------------------------- layout


def test_arrival_folders_are_consecutive_iso_dates(landed: GenerateSummary) -> None:
    expected = [START + timedelta(days=i) for i in range(DAYS)]
    assert landed.arrival_dates == expected
    folders = sorted(p.name for p in (landed.root / "landing" / "billing_events").iterdir())
    assert folders == [d.isoformat() for d in expected]


def test_each_arrival_date_has_one_to_three_numbered_parts(landed: GenerateSummary) -> None:
    by_folder = Counter(p.parent.name for p in landed.files)
    assert all(1 <= count <= 3 for count in by_folder.values())
    for path in landed.files:
        stem = path.name.removesuffix(".gz").removesuffix(".jsonl")
        assert path.name.endswith((".jsonl", ".jsonl.gz")) and stem.startswith("part-") and stem[5:].isdigit()
    assert sorted(landed.files) == sorted(p for p in landed.root.rglob("*") if p.is_file())


def test_gz_files_decompress(landed: GenerateSummary) -> None:
    gzipped = [p for p in landed.files if p.name.endswith(".gz")]
    assert gzipped and len(gzipped) == landed.faults["gzip_file"]
    for path in gzipped:
        assert physical_lines(gzip.decompress(path.read_bytes()))


def test_file_level_oddities_are_present(landed: GenerateSummary) -> None:
    contents = [file_bytes(p) for p in landed.files]
    assert sum(c.startswith(BOM) for c in contents) == landed.faults["bom_file"] >= 1
    assert sum(b"\r\n" in c for c in contents) == landed.faults["crlf_file"] >= 1
    assert sum(not c.endswith(b"\n") for c in contents) == landed.faults["no_trailing_newline"] >= 1
    blanks = sum(1 for c in contents for line in physical_lines(c) if not line.strip())
    assert blanks == landed.faults["blank_line"] >= 1


def test_summary_lines_count_non_blank_records(landed: GenerateSummary, records: list[Record]) -> None:
    assert landed.lines == len(records)


# ---------------------------------------------------------------- faults


def test_every_fault_kind_is_injected(landed: GenerateSummary) -> None:
    assert list(landed.faults) == list(FAULT_KINDS)
    assert {kind for kind, count in landed.faults.items() if count <= 0} == set()


def test_every_fault_kind_appears_at_the_smallest_promised_size(tmp_path: Path) -> None:
    summary = generate_landing(tmp_path, START, days=3, events_per_day=100, seed=3)
    assert {kind for kind, count in summary.faults.items() if count <= 0} == set()


def test_rejected_lines_stay_below_the_daily_quality_gate(records: list[Record], verdicts: list[str | None]) -> None:
    totals = Counter(r.arrival for r in records)
    rejected = Counter(r.arrival for r, verdict in zip(records, verdicts, strict=True) if verdict)
    for arrival, total in totals.items():
        assert rejected[arrival] / total < QUALITY_GATE, arrival


def test_rejected_lines_match_the_reported_fault_kinds(landed: GenerateSummary, verdicts: list[str | None]) -> None:
    observed = Counter(verdict for verdict in verdicts if verdict)
    assert dict(observed) == {kind: landed.faults[kind] for kind in REJECTED_FAULT_KINDS}


def test_every_valid_line_is_an_object_with_all_required_fields(
    landed: GenerateSummary, records: list[Record], verdicts: list[str | None]
) -> None:
    complete = 0
    for record in records:
        try:
            obj = json.loads(record.raw)
        except ValueError:  # UnicodeDecodeError included
            continue
        complete += isinstance(obj, dict) and all(obj.get(name) is not None for name in REQUIRED)
    unreadable = ("malformed_json", "invalid_utf8", "not_an_object", "missing_field")
    assert complete == landed.lines - sum(landed.faults[kind] for kind in unreadable)
    assert verdicts.count(None) == landed.lines - sum(landed.faults[kind] for kind in REJECTED_FAULT_KINDS)


def test_valid_tricky_records_are_visible_in_accepted_data(records: list[Record], verdicts: list[str | None]) -> None:
    seen: Counter[str] = Counter()
    contents: set[tuple[str, int, int]] = set()
    highest: dict[str, tuple[int, date]] = {}
    for record, verdict in zip(records, verdicts, strict=True):
        if verdict:
            continue
        obj = json.loads(record.raw)
        event_id, version = obj["event_id"], obj["source_version"]
        content = (event_id, version, obj["amount_minor"])
        seen["duplicate"] += content in contents
        contents.add(content)
        top_version, top_arrival = highest.get(event_id, (0, record.arrival))
        seen["correction"] += 0 < top_version < version
        seen["out_of_order"] += version < top_version and record.arrival > top_arrival
        if version > top_version:
            highest[event_id] = (version, record.arrival)
        event_date = datetime.fromisoformat(obj["event_ts"]).astimezone(UTC).date()
        seen["late"] += 2 <= (record.arrival - event_date).days <= 7
        seen["schema_drift"] += bool(set(obj) - {*REQUIRED, "payload"})
    assert {kind for kind in VALID_FAULT_KINDS if seen[kind] == 0} == set()


def test_timestamps_mix_offsets_and_fractional_seconds(records: list[Record], verdicts: list[str | None]) -> None:
    stamps = [json.loads(r.raw)["event_ts"] for r, verdict in zip(records, verdicts, strict=True) if verdict is None]
    assert any(s.endswith("Z") for s in stamps)
    assert any(s[-6] in "+-" for s in stamps)
    assert any("." in s for s in stamps)


def test_most_events_happen_on_or_the_day_before_arrival(records: list[Record], verdicts: list[str | None]) -> None:
    lags = Counter(
        (r.arrival - datetime.fromisoformat(json.loads(r.raw)["event_ts"]).astimezone(UTC).date()).days
        for r, verdict in zip(records, verdicts, strict=True)
        if verdict is None
    )
    assert (lags[0] + lags[1]) / sum(lags.values()) > 0.9
