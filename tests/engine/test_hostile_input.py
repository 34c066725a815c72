"""Hostile and odd input, one table, through the real engine: every line is accepted or quarantined with its reason.

The record-level cases land together as one arrival date (the publish threshold raised so the
batch publishes) and are judged in one run; each case then asserts where its line ended up.
File-level faults (damaged gzip, files changing or vanishing mid-read) each get their own batch.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from lakehouse.delta.storage import read_table, table_uri
from lakehouse.staging import landing
from tests.support import event, gold, land, quarantine, run_batch, silver

D1 = "2025-01-10"
ACCEPTED = "accepted"
TEN_MB = 10 * 1024 * 1024


def line(event_id: str, **overrides: Any) -> bytes:
    """A valid event's JSON line with fields replaced; a value of `...` removes the field."""
    record = event(event_id)
    for name, value in overrides.items():
        if value is ...:
            record.pop(name, None)
        else:
            record[name] = value
    return json.dumps(record).encode()


def splice(event_id: str, field: str, literal: str) -> bytes:
    """A valid event whose `field` is the raw JSON text `literal` (for what json.dumps would never write)."""
    return line(event_id, **{field: "@@"}).replace(b'"@@"', literal.encode())


def nested(depth: int) -> str:
    """A payload that makes the whole record `depth` levels deep (the record itself is level 1)."""
    return '{"a":' * (depth - 1) + "1" + "}" * (depth - 1)


# (case, raw line, documented outcome: "accepted" or the quarantine reason)
RECORD_CASES: list[tuple[str, bytes, str]] = [
    ("plain valid event", line("ok"), ACCEPTED),
    ("NUL byte outside a string", line("nul_raw")[:-1] + b"\x00}", "malformed_record"),
    ("NUL byte raw inside a string", line("nul_in").replace(b"acct_1", b"acct\x001"), "malformed_record"),
    ("NUL escaped inside a string", splice("nul_escaped", "account_id", '"acct\\u0000x"'), ACCEPTED),
    ("invalid UTF-8", line("bad_utf8").replace(b"acct_1", b"acct\xff\xfe"), "malformed_record"),
    ("a 10 MB single line", line("ten_mb", payload={"blob": "x" * TEN_MB}), ACCEPTED),
    ("payload nested to the depth limit", splice("deep_100", "payload", nested(100)), ACCEPTED),
    ("payload nested beyond the depth limit", splice("deep_101", "payload", nested(101)), "malformed_record"),
    ("payload nested 100,000 deep", splice("deep_100k", "payload", "[" * 100_000 + "]" * 100_000), "malformed_record"),
    ("huge payload: 50,000 keys", line("wide", payload={f"k{i}": i for i in range(50_000)}), ACCEPTED),
    ("duplicate top-level key", line("dup_key")[:-1] + b', "event_id": "other"}', "malformed_record"),
    ("duplicate key inside payload", splice("dup_payload", "payload", '{"a": 1, "a": 2}'), "malformed_record"),
    ("amount_minor beyond int64", line("big_amount", amount_minor=2**63), "invalid_value"),
    ("amount_minor below int64", line("small_amount", event_type="refund", amount_minor=-(2**63) - 1), "invalid_value"),
    ("source_version beyond int64", line("big_version", source_version=2**64), "invalid_value"),
    ("an integer of 5,000 digits", splice("huge_int", "amount_minor", "9" * 5000), "malformed_record"),
    ("int beyond int64 inside payload", line("payload_bigint", payload={"n": 2**70}), ACCEPTED),
    ("float beyond range inside payload", splice("payload_1e400", "payload", '{"x": 1e400}'), "malformed_record"),
    ("NaN literal", splice("nan", "amount_minor", "NaN"), "malformed_record"),
    ("Infinity literal", splice("inf", "amount_minor", "Infinity"), "malformed_record"),
    ("-Infinity inside payload", splice("neg_inf", "payload", '{"x": -Infinity}'), "malformed_record"),
    ("lone UTF-16 surrogate escape", splice("surrogate", "account_id", '"acct\\ud800"'), "malformed_record"),
    ("a valid surrogate pair (emoji)", splice("emoji", "account_id", '"acct\\ud83d\\ude00"'), ACCEPTED),
    ("a byte order mark not at file start", b"\xef\xbb\xbf" + line("bom_mid"), "malformed_record"),
    ("a form feed alone (not JSON whitespace)", b"\x0c", "malformed_record"),
    ("a JSON array", b"[1, 2]", "malformed_record"),
    ("a JSON null", b"null", "malformed_record"),
    ("an empty object", b"{}", "missing_field"),
    ("a required field null", line("null_account", account_id=None), "missing_field"),
    ("a required field absent", line("no_currency", currency=...), "missing_field"),
    ("true is not an integer", line("bool_amount", amount_minor=True), "invalid_type"),
    ("1.0 is not an integer", line("float_amount", amount_minor=100.0), "invalid_type"),
    ('"100" is not an integer', line("str_amount", amount_minor="100"), "invalid_type"),
    ("payload not an object", line("payload_list", payload=[1]), "invalid_type"),
    ("event_ts with a leap second", line("leap", event_ts="2016-12-31T23:59:60Z"), "invalid_type"),
    ("event_ts month 13", line("month13", event_ts="2025-13-01T00:00:00Z"), "invalid_type"),
    ("event_ts with non-ASCII digits", line("fullwidth", event_ts="２０２５-01-10T00:00:00Z"), "invalid_type"),
    ("event_ts with a trailing newline", line("newline", event_ts="2025-01-10T00:00:00Z\n"), "invalid_type"),
    ("event_ts February 30", line("feb30", event_ts="2025-02-30T00:00:00Z"), "invalid_type"),
    ("event_ts year 0000", line("year0", event_ts="0000-01-01T00:00:00Z"), "invalid_type"),
    ("event_ts before year 1 in UTC", line("before1", event_ts="0001-01-01T00:00:00+01:00"), "invalid_type"),
    ("event_ts after year 9999 in UTC", line("after9999", event_ts="9999-12-31T23:59:59-01:00"), "invalid_type"),
    ("event_ts in year 9999", line("year9999", event_ts="9999-12-31T23:59:59Z"), "future_event"),
    ("event_ts in year 1900", line("year1900", event_ts="1900-01-01T00:00:00Z"), "too_late"),
    ("event_ts epoch seconds as text", line("epoch", event_ts="1736510400"), "invalid_type"),
    ("event_ts as an integer", line("epoch_int", event_ts=1736510400), "invalid_type"),
    ("event_ts with a zone name", line("zone", event_ts="2025-01-10T12:00:00 Europe/Paris"), "invalid_type"),
    ("event_ts with a bracketed zone", line("zone_br", event_ts="2025-01-10T12:00:00[Europe/Paris]"), "invalid_type"),
    ("event_ts with UTC spelled out", line("zone_utc", event_ts="2025-01-10T12:00:00 UTC"), "invalid_type"),
    ("event_ts naive", line("naive", event_ts="2025-01-10T12:00:00"), "naive_timestamp"),
    ("offset +14:00 (the limit)", line("off14", event_ts="2025-01-11T02:00:00+14:00"), ACCEPTED),
    ("offset +14:01", line("off1401", event_ts="2025-01-10T12:00:00+14:01"), "invalid_value"),
    ("offset -15:00", line("off_m15", event_ts="2025-01-10T12:00:00-15:00"), "invalid_value"),
    ("offset minutes 60", line("off0560", event_ts="2025-01-10T12:00:00+05:60"), "invalid_value"),
    ("unknown extra field", line("extra", channel="web"), ACCEPTED),
]

# File-level oddities that still deliver records: (file name, bytes, [(line number, event_id)] expected accepted).
ODD_FILES: list[tuple[str, bytes, list[tuple[int, str]]]] = [
    ("b_empty.jsonl", b"", []),
    (
        "c_bom_crlf_no_final_newline.jsonl",
        b"\xef\xbb\xbf" + line("bom1") + b"\r\n" + line("crlf2") + b"\r\n" + line("last3"),
        [(1, "bom1"), (2, "crlf2"), (3, "last3")],
    ),
    ("d_blank_lines.jsonl", b"\n \t\n" + line("after_blanks") + b"\r\n\r\n\n", [(3, "after_blanks")]),
    ("e_gzip_bom.jsonl.gz", gzip.compress(b"\xef\xbb\xbf" + line("gz1") + b"\n"), [(1, "gz1")]),
]


@pytest.fixture(scope="module")
def hostile_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Any]]:
    root = tmp_path_factory.mktemp("hostile")
    land(root, D1, "a_cases.jsonl", [raw for _, raw, _ in RECORD_CASES])
    folder = root / "landing" / "billing_events" / D1
    for name, content, _ in ODD_FILES:
        (folder / name).write_bytes(content)
    report = run_batch(root, D1, max_rejected_fraction=1.0)
    yield root, report


def outcome_of(root: Path, source_file: str, source_line: int) -> str:
    """Where one landed line ended up: `accepted` (in silver), its quarantine reason, or `lost`."""
    where = (pl.col("_source_file") == f"{D1}/{source_file}") & (pl.col("_source_line") == source_line)
    kept, rejected = silver(root).filter(where), quarantine(root).filter(where)
    assert kept.height + rejected.height <= 1, "a line is in silver and quarantine at once"
    return ACCEPTED if kept.height else (rejected.item(0, "_reason") if rejected.height else "lost")


@pytest.mark.parametrize(
    ("number", "case", "expected"),
    [(n, case, expected) for n, (case, _, expected) in enumerate(RECORD_CASES, start=1)],
    ids=[case for case, _, _ in RECORD_CASES],
)
def test_each_hostile_line_gets_its_documented_outcome(
    hostile_root: tuple[Path, Any], number: int, case: str, expected: str
) -> None:
    root, _ = hostile_root
    assert outcome_of(root, "a_cases.jsonl", number) == expected, case


@pytest.mark.parametrize(("name", "content", "accepted"), ODD_FILES, ids=[name for name, _, _ in ODD_FILES])
def test_odd_but_valid_files_deliver_exactly_their_records(
    hostile_root: tuple[Path, Any], name: str, content: bytes, accepted: list[tuple[int, str]]
) -> None:
    root, _ = hostile_root
    rows = silver(root).filter(pl.col("_source_file") == f"{D1}/{name}")
    assert sorted(zip(rows["_source_line"], rows["event_id"], strict=True)) == accepted


def test_the_hostile_batch_conserves_every_record_and_keeps_exact_bytes(hostile_root: tuple[Path, Any]) -> None:
    root, report = hostile_root
    records = len(RECORD_CASES) + sum(len(accepted) for _, _, accepted in ODD_FILES)
    counts = report.counts
    assert report.published and counts["records_in"] == records
    assert counts["inserted"] + counts["quarantined"] == records  # nothing escapes both silver and quarantine
    bronze = read_table(table_uri(root, "bronze", "billing_events"), pl.col("_source_file") == f"{D1}/a_cases.jsonl")
    assert bronze.sort("_source_line").get_column("_raw").to_list() == [raw for _, raw, _ in RECORD_CASES]
    ten_mb = silver(root).filter(pl.col("event_id") == "ten_mb").item(0, "payload")
    assert len(ten_mb) > TEN_MB and json.loads(ten_mb) == {"blob": "x" * TEN_MB}
    assert silver(root).filter(pl.col("event_id") == "payload_bigint").item(0, "payload") == f'{{"n":{2**70}}}'
    assert report.drift.compatible and {c.field for c in report.drift.changes} == {"channel"}


@pytest.mark.parametrize(
    ("name", "content", "damage"),
    [
        ("corrupt.jsonl.gz", b"corrupt", "corrupt gzip"),
        ("empty.jsonl.gz", b"", "the file is empty"),
        ("trailing_garbage.jsonl.gz", b"garbage after a member", "corrupt gzip"),
    ],
)
def test_a_damaged_gzip_gates_the_batch_and_names_the_file(tmp_path: Path, name: str, content: bytes, damage: str) -> None:
    if name.startswith("corrupt"):
        good = gzip.compress(b"".join(line(f"c{n}") + b"\n" for n in range(5000)))
        content = good[:2000] + bytes(b ^ 0xFF for b in good[2000:2100]) + good[2100:]
    elif name.startswith("trailing"):
        content = gzip.compress(line("whole") + b"\n") + content
    land(tmp_path, D1, "a.jsonl", [event("ok")])
    (tmp_path / "landing" / "billing_events" / D1 / name).write_bytes(content)
    report = run_batch(tmp_path, D1)
    gate = next(g for g in report.gates if g.name == "landed_files_are_readable")
    assert not report.published and not gate.passed and name in gate.observed and damage in gate.observed
    assert silver(tmp_path).is_empty()


class _RacingHandle:
    """A real file handle whose read() lets a concurrent upstream act right after the bytes are read."""

    def __init__(self, handle: Any, after_read: Any) -> None:
        self.handle, self.after_read = handle, after_read

    def __enter__(self) -> _RacingHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.handle.close()

    def fileno(self) -> int:
        return int(self.handle.fileno())

    def read(self) -> bytes:
        data = bytes(self.handle.read())
        self.after_read()
        return data


def _append(path: Path) -> None:
    with path.open("ab") as handle:
        handle.write(line("appended") + b"\n")


def _rewrite(path: Path) -> None:
    replacement = path.with_suffix(".tmp")
    replacement.write_bytes(line("rewritten") + b"\n")
    replacement.replace(path)  # a new inode under the same name, as an upstream re-export would do


# (case, file whose opening triggers the upstream, what the upstream does, file named in the gate, its wording)
RACES = [
    ("appended while read", "a.jsonl", _append, "a.jsonl", "changed while being read"),
    ("truncated while read", "a.jsonl", lambda a: a.write_bytes(b""), "a.jsonl", "changed while being read"),
    ("vanished before it was opened", "b.jsonl", None, "b.jsonl", "vanished while the batch was being read"),
    ("replaced after it was read", "b.jsonl", _rewrite, "a.jsonl", "changed (replaced or rewritten) after it was read"),
    ("deleted after it was read", "b.jsonl", Path.unlink, "a.jsonl", "vanished after it was read"),
]


@pytest.mark.parametrize(("case", "trigger", "upstream", "named", "wording"), RACES, ids=[r[0] for r in RACES])
def test_a_landing_file_changing_while_read_fails_the_batch_until_a_clean_rerun(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str, trigger: str, upstream: Any, named: str, wording: str
) -> None:
    land(tmp_path, D1, "a.jsonl", [event("a1"), event("a2")])
    land(tmp_path, D1, "b.jsonl", [event("b1")])
    a_path = tmp_path / "landing" / "billing_events" / D1 / "a.jsonl"
    real_open = landing._open_landing_file

    def racing_open(self: Path) -> Any:
        if self.name != trigger:
            return real_open(self)
        if upstream is None:  # gone between the folder listing and the read
            self.unlink()
            return real_open(self)
        handle = real_open(self)
        if trigger == "a.jsonl":
            return _RacingHandle(handle, lambda: upstream(a_path))
        upstream(a_path)  # a.jsonl was read already: the upstream acts while b.jsonl is being read
        return handle

    with monkeypatch.context() as patch:
        patch.setattr(landing, "_open_landing_file", racing_open)
        report = run_batch(tmp_path, D1)
    gate = next(g for g in report.gates if g.name == "landed_files_are_unchanged")
    assert not report.published and not gate.passed, case
    assert f"{D1}/{named}: {wording}" in gate.observed
    assert silver(tmp_path).is_empty() and gold(tmp_path).is_empty()
    incidents = read_table(table_uri(tmp_path, "ops", "incidents"))
    assert incidents.get_column("failure_mode").to_list() == ["gate_failed:landed_files_are_unchanged"]
    assert named in incidents.item(0, "observed")

    rerun = run_batch(tmp_path, D1)  # the upstream has finished: the files as they are now form a new batch
    assert rerun.published and rerun.batch_id != report.batch_id
    assert read_table(table_uri(tmp_path, "ops", "incidents")).item(0, "status") == "resolved"
