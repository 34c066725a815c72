"""The vectorised staging path gives exactly what the line-by-line Python path gives, faults included."""

from datetime import date
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from assets.billing_feed import BILLING_EVENTS
from assets.sample_data import generate_landing
from lakehouse import records
from lakehouse.landing import read_batch
from lakehouse.records import stage_records
from lakehouse.records_fast import stage_fast

PLAIN = (
    b'{"event_id":"e1","source_version":1,"account_id":"a","event_type":"charge","event_ts":"2025-01-10T00:00:00Z",'
    b'"amount_minor":100,"currency":"USD","payload":{"z":1,"a":"x","m":null,"t":true}}'
)
TRICKY = [
    PLAIN,
    PLAIN.replace(b'"event_id":"e1"', b'"event_id":"e1","event_id":"e2"'),  # duplicate top-level key
    PLAIN.replace(b'"z":1', b'"z":1,"z":2'),  # duplicate nested key
    PLAIN.replace(b"2025-01-10T00:00:00Z", b"2024-02-29T23:59:59.1234567-14:00"),
    PLAIN.replace(b"2025-01-10T00:00:00Z", b"2025-02-30T00:00:00Z"),  # no such date
    PLAIN.replace(b"2025-01-10T00:00:00Z", b"2025-06-30T23:59:60Z"),  # leap second
    PLAIN.replace(b"2025-01-10T00:00:00Z", b"2025-01-10T00:00:00+14:01"),  # offset beyond 14:00
    PLAIN.replace(b"2025-01-10T00:00:00Z", b"2025-01-10T00:00:00"),  # naive
    PLAIN.replace(b"2025-01-10T00:00:00Z", b"2025-01-10 00:00:00z"),
    PLAIN.replace(b'"amount_minor":100', b'"amount_minor":-0'),
    PLAIN.replace(b'"amount_minor":100', b'"amount_minor":9223372036854775808'),  # beyond int64
    PLAIN.replace(b'"amount_minor":100', b'"amount_minor":123456789012345678'),
    PLAIN.replace(b'"amount_minor":100', b'"amount_minor":1.0'),
    PLAIN.replace(b'"amount_minor":100', b'"amount_minor":"100"'),
    PLAIN.replace(b'"amount_minor":100', b'"amount_minor":null'),
    PLAIN.replace(b'"amount_minor":100,', b""),  # missing
    PLAIN.replace(b'"currency":"USD"', b'"currency":"US\\u0044"'),  # an escape
    PLAIN.replace(b'"currency":"USD"', '"currency":"€"'.encode()),
    PLAIN.replace(b'"payload":{', b'"payload":{"n":{"deep":1},'),  # nested twice
    PLAIN.replace(b'"payload":{"z":1,"a":"x","m":null,"t":true}', b'"payload":{}'),
    PLAIN.replace(b'"payload":{"z":1,"a":"x","m":null,"t":true}', b'"payload":"text"'),
    PLAIN.replace(b'"currency":"USD"', b'"currency":"USD","zeta":{"q":1},"alpha":[1]'),  # drift, an array
    PLAIN.replace(b'"currency":"USD"', b'"currency":"USD","x,":"a,","y":{"event_id":"no"}'),  # decoys
    PLAIN.replace(b"}}", b"} }"),  # whitespace
    b'{"a":NaN}',
    b"[1,2]",
    b'{"event_id":"\xff"}',
    b"{}",
]


def _both(raws: list[bytes]) -> tuple[pl.DataFrame, pl.DataFrame]:
    rows = pl.DataFrame({"_raw": raws}, schema={"_raw": pl.Binary})
    fields, content = BILLING_EVENTS.fields, BILLING_EVENTS.content_fields
    return stage_records(rows, fields, content), stage_records(rows, fields, content, vectorised=False)


def test_tricky_lines_stage_exactly_as_the_python_path() -> None:
    fast, reference = _both(TRICKY)
    assert_frame_equal(fast, reference)


def test_the_vectorised_path_vouches_for_plain_lines_only() -> None:
    vouched = stage_fast(pl.Series(TRICKY, dtype=pl.Binary), BILLING_EVENTS.fields, BILLING_EVENTS.content_fields)
    assert vouched.get_column("_fast").to_list()[:4] == [True, False, False, True]
    assert vouched.get_column("_fast").sum() < len(TRICKY) - 10  # the odd ones are left to Python


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_generated_landing_with_every_fault_stages_exactly_as_the_python_path(tmp_path: Path, seed: int) -> None:
    generate_landing(tmp_path, date(2025, 1, 1), days=2, events_per_day=400, seed=seed)
    raws = []
    for day in (date(2025, 1, 1), date(2025, 1, 2)):
        raws += read_batch(tmp_path, "billing_events", day).rows.get_column("_raw").to_list()
    fast, reference = _both(raws)
    assert_frame_equal(fast, reference)


def test_staging_in_chunks_keeps_every_line_in_its_place(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(records, "STAGE_CHUNK_ROWS", 4)  # chunk edges fall between fast and slow lines
    fast, reference = _both(TRICKY)
    assert_frame_equal(fast, reference)


def test_a_feed_without_content_fields_hashes_the_empty_list_on_both_paths() -> None:
    rows = pl.DataFrame({"_raw": TRICKY}, schema={"_raw": pl.Binary})
    fast = stage_records(rows, BILLING_EVENTS.fields, [])
    assert_frame_equal(fast, stage_records(rows, BILLING_EVENTS.fields, [], vectorised=False))
