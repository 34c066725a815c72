"""Fuzz the record parser and validator: no input crashes a run or escapes both silver and quarantine.

Lines are grown from valid events by replacing, dropping and adding fields with arbitrary JSON,
re-serialising them in odd ways, and mutating their bytes, plus raw bytes. The parser-level test
judges every line with the real contract; the engine-level test runs whole batches through bronze,
silver and quarantine and checks conservation line by line. Example counts are env knobs (raise
them to search harder); the defaults keep both under about a minute on a 2-core CI machine.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import polars as pl
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from assets.billing_feed import BILLING_EVENTS
from lakehouse.delta.storage import read_table, table_uri
from lakehouse.staging.contracts import judge
from lakehouse.staging.records import stage_records
from tests.support import event, land, run_batch

PARSER_EXAMPLES = int(os.environ.get("LAKEHOUSE_FUZZ_EXAMPLES", "400"))
ENGINE_EXAMPLES = int(os.environ.get("LAKEHOUSE_FUZZ_ENGINE_EXAMPLES", "8"))
VALIDATION_REASONS = set(BILLING_EVENTS.reasons) - {"version_conflict"}
D1 = "2025-01-10"
NUMBER = "@number@"  # replaced by a raw number literal json.dumps would never write
NUMBER_LITERALS = ["1e400", "-1e999", "1E+309", "2e-400", "-0", "1.0", "9" * 25, "9" * 5000]

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["charge", "refund", "USD", "", "2025-01-10T12:00:00Z", "2025-01-10T12:00:00+14:30", "\ud800"]),
    st.just(NUMBER),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def perturb_fields(draw: st.DrawFn, record: dict[str, Any], names: list[str]) -> None:
    """Up to three of `names`, each replaced by any JSON value, dropped or kept: a record a producer got wrong."""
    for name in draw(st.lists(st.sampled_from(names), max_size=3)):
        action = draw(st.sampled_from(["replace", "drop", "keep"]))
        if action == "replace":
            record[name] = draw(json_values)
        elif action == "drop":
            record.pop(name, None)


@st.composite
def hostile_lines(draw: st.DrawFn) -> bytes:
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=60))
    record: dict[str, Any] = event(
        draw(st.sampled_from(["e1", "e2", "e3"])),
        draw(st.integers(1, 3)),
        amount=draw(st.sampled_from([100, -100, 0])),
        kind=draw(st.sampled_from(["charge", "refund", "credit", "adjustment"])),
        ts=draw(st.sampled_from(["2025-01-10T12:00:00Z", "2025-01-09T23:30:00-01:00", "2024-12-01T00:00:00Z"])),
    )
    if draw(st.booleans()):  # a payload of anything: it is stored, so what it holds must survive storage
        record["payload"] = draw(st.dictionaries(st.text(max_size=8), json_values, max_size=4))
    perturb_fields(draw, record, [*BILLING_EVENTS.fields, "channel", "event_id"])
    text = json.dumps(record, ensure_ascii=draw(st.booleans()), indent=draw(st.sampled_from([None, 0])))
    while f'"{NUMBER}"' in text:
        text = text.replace(f'"{NUMBER}"', draw(st.sampled_from(NUMBER_LITERALS)), 1)
    raw = text.replace("\n", " ").encode("utf-8", "surrogatepass")
    for _ in range(draw(st.integers(0, 2))):  # byte-level damage: insert, delete or flip
        position = draw(st.integers(0, len(raw)))
        raw = raw[:position] + draw(st.binary(min_size=0, max_size=3)) + raw[position + draw(st.integers(0, 2)) :]
    return raw.replace(b"\n", b" ")  # one line each: line splitting is the landing reader's job


batches = st.lists(hostile_lines(), min_size=1, max_size=8)
big_batches = st.lists(hostile_lines(), min_size=1, max_size=24)  # the contract's fixed cost is per batch
PARSER = settings(max_examples=PARSER_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
ENGINE = settings(max_examples=ENGINE_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))


def strict_json(text: str) -> Any:
    def refuse(literal: str) -> Any:
        raise AssertionError(f"non-standard JSON literal {literal} stored")

    return json.loads(text, parse_constant=refuse)


@PARSER
@given(lines=big_batches)
def test_every_fuzzed_line_is_accepted_with_typed_fields_or_rejected_with_a_documented_reason(lines: list[bytes]) -> None:
    rows = pl.DataFrame(
        {"_raw": lines, "_source_file": "f", "_source_line": list(range(1, len(lines) + 1))},
        schema={"_raw": pl.Binary, "_source_file": pl.String, "_source_line": pl.Int64},
    ).with_columns(_arrival_date=pl.lit(D1).str.to_date())
    staged = stage_records(rows, BILLING_EVENTS.fields, BILLING_EVENTS.content_fields)
    judged = judge(staged, BILLING_EVENTS.contract(7), BILLING_EVENTS.reasons)
    assert judged.height == len(lines)
    assert set(judged.get_column("_reason").drop_nulls().to_list()) <= VALIDATION_REASONS
    accepted = judged.filter(pl.col("_reason").is_null())
    for name in BILLING_EVENTS.required:  # an accepted record carries every required field, typed
        assert accepted.get_column(name).null_count() == 0
    payloads = accepted.get_column("payload").drop_nulls().to_list()
    assert all(isinstance(strict_json(p), dict) for p in payloads)  # stored payloads are strict JSON objects
    assert accepted.get_column("_content_hash").null_count() == 0


GOOD_LINE = (
    b'{"event_id":"e1","source_version":1,"account_id":"a","event_type":"charge",'
    b'"event_ts":"2025-01-10T12:00:00Z","amount_minor":5,"currency":"USD"}'
)


@ENGINE
@given(lines=batches)
@example(lines=[GOOD_LINE, GOOD_LINE.replace(b'"e1"', b"null")])  # half the objects lack event_id: the drift gate holds it
def test_no_fuzzed_batch_crashes_the_engine_or_loses_a_line(lines: list[bytes]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        land(root, D1, "fuzz.jsonl", list(lines))
        report = run_batch(root, D1, max_rejected_fraction=1.0)
        counts = report.counts
        assert (
            counts["records_in"]
            == counts["inserted"] + counts["updated"] + counts["duplicates"] + counts["stale"] + counts["quarantined"]
        )
        lineage = ["_source_file", "_source_line"]
        bronze = read_table(table_uri(root, "bronze", "billing_events"), columns=lineage)
        ledger = read_table(table_uri(root, "ops", "billing_events_ledger"), columns=lineage)
        rejected = read_table(table_uri(root, "silver", "billing_events_quarantine"), columns=[*lineage, "_reason"])
        assert set(rejected.get_column("_reason").to_list()) <= set(BILLING_EVENTS.reasons)
        assert bronze.height == counts["records_in"]
        if not report.published:
            # Only a gate that no threshold covers holds it (schema drift: a fuzzed batch of a few lines can
            # lack a required field in half its objects): its rejects are evidence, the rest waits in bronze.
            assert [g.name for g in report.gates if not g.passed] == ["schema_drift_is_compatible"]
            assert ledger.is_empty() and rejected.join(bronze, on=lineage, how="anti").is_empty()
            return
        # Every line is a validated delivery (the ledger silver is computed from) or rejected, and only a
        # version-conflict loser is both: validated, then quarantined because another content won.
        assert pl.concat([ledger, rejected.select(lineage)]).unique().sort(lineage).equals(bronze.sort(lineage))
        both = ledger.join(rejected, on=lineage)
        assert set(both.get_column("_reason").to_list()) <= {"version_conflict"}
