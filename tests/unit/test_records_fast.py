"""The fast staging paths give exactly what the line-by-line Python path gives, faults included.

Each comparison runs with the default thresholds, with templates forced on for every line they can
take (the rest to msgspec), with msgspec alone, and with both and invalid UTF-8 searched block by
block; lines come in the project's compact layout and in other producers' layouts
(tests/property/test_staging_equivalence.py fuzzes the layouts further).
"""

import gc
import gzip
import itertools
import json
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from assets.billing_feed import BILLING_EVENTS
from assets.sample_data import generate_landing
from benchmarks.data import ARRIVAL, LAYOUTS, arrival_batch, json_lines
from lakehouse.staging import records, records_fast
from lakehouse.staging.landing import read_batch
from lakehouse.staging.records import stage_records
from lakehouse.staging.records_fast import stage_fast, stage_vouched

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
TIERS = {
    "default": {},
    "templates": {"TEMPLATE_MIN_ROWS": 1, "TEMPLATE_MIN_SAMPLED": 1, "MAX_TEMPLATES": 10_000},
    "msgspec": {"MAX_TEMPLATES": 0},
    "blocks": {"TEMPLATE_MIN_ROWS": 1, "TEMPLATE_MIN_SAMPLED": 2, "UTF8_BLOCK_ROWS": 2},  # invalid UTF-8 found per block
}
TS = b"2025-01-10T00:00:00Z"
TIMESTAMPS = [
    "2025-01-10T00:00:00.1Z",
    "2025-01-10T00:00:00.123456Z",
    "2025-01-10T00:00:00.1234567Z",
    "2025-01-10T00:00:00.123456789Z",
    "2025-01-10T00:00:00.1234567890Z",  # ten digits
    "2025-01-10T00:00:00.Z",
    "2025-01-10T00:00:00+00:00",
    "2025-01-10T00:00:00-00:00",
    "2025-01-10T00:00:00+14:00",
    "2025-01-10T00:00:00-14:00",
    "2025-01-10T00:00:00-14:01",
    "2025-01-10T00:00:00+05:30",
    "2025-01-10T00:00:00.5-09:45",
    "2025-01-10T00:00:00+0530",
    "2025-01-10T00:00:00+05:60",
    "2025-01-10T00:00:00+99:00",
    "2025-01-10T00:00:00z",
    "2025-01-10T00:00:00ZZ",
    "2025-01-10T24:00:00Z",
    "2025-01-10T23:60:00Z",
    "2025-01-10T23:59:59Z",
    "2024-02-29T12:00:00Z",
    "2023-02-29T12:00:00Z",
    "2000-02-29T12:00:00Z",
    "1900-02-29T12:00:00Z",
    "1900-01-01T00:00:00+14:00",
    "2999-12-31T23:59:59.999999-14:00",
    "1899-12-31T23:59:59Z",
    "3000-01-01T00:00:00Z",
    "0001-01-01T00:00:00Z",
    "2025-04-31T00:00:00Z",
    "2025-00-10T00:00:00Z",
    "2025-01-00T00:00:00Z",
    "2025-1-10T00:00:00Z",
    "2025-01-10T00:00Z",
    "",
]
STRINGS = ["", "é€𝄞", "\u2028", "\x7f", "a,b:c{d}[e]", "x y", "\ufeff", "true", "null", "0", '\\"', "\t"]
INTEGERS = ["0", "-1", "7", "123456789012345678", "-123456789012345678", "1234567890123456789", "-0", "01", "1.5", "1e3", "-"]
PAYLOADS = [
    b'{"seats":3,"plan":"pro"}',  # to sort
    b'{"ab":1,"a":2,"b":{"d":"x","c":null}}',  # a prefix sorts first; nested twice, sorted too
    b'{"lines":[{"sku":"s","qty":2},{"qty":3,"sku":"t"}],"invoice":"inv_1"}',  # objects in an array
    b'{"lines":[],"x":[[]],"y":{}}',
    b'{"n":[1,2,3],"m":[true,false,null]}',  # integers sharing a piece
    b'{"k\xc3\xa9":"v","a b":1,"x-y":-5,"":""}',  # keys of any character
    b'{"big":12345678901234567890}',
    b'{"f":1.5}',
    b'{"e":"a\\"b"}',
    b'{"a":1,"a":1}',
    b"[1]",
    b'"{}"',
    b"7",
    b"true",
]


def _variants() -> Iterator[bytes]:
    """PLAIN with one value replaced: mostly the same layouts, so a template meets many values of each slot."""
    for ts in TIMESTAMPS:
        yield PLAIN.replace(TS, ts.encode())
    for text, name in itertools.product(STRINGS, ["event_id", "currency", "payload"]):
        old = b'"e1"' if name == "event_id" else b'"USD"' if name == "currency" else b'"x"'
        yield PLAIN.replace(old, f'"{text}"'.encode("utf-8", "surrogatepass"), 1)
    for integer, old in itertools.product(INTEGERS, [b'"amount_minor":100', b'"source_version":1', b'"z":1']):
        yield PLAIN.replace(old, old.split(b":")[0] + b":" + integer.encode())
    for payload in PAYLOADS:
        yield PLAIN.replace(b'{"z":1,"a":"x","m":null,"t":true}', payload)
    for name, value in itertools.product(BILLING_EVENTS.fields, [b"null", b"true", b"[]", b'{"a":1}', b"12", b'"s"', b"1.0"]):
        start = PLAIN.index(f'"{name}":'.encode()) + len(name) + 3
        end = PLAIN.index(b',"', start) if name != "payload" else len(PLAIN) - 1
        yield PLAIN[:start] + value + PLAIN[end:]
    for name in BILLING_EVENTS.fields:  # each field absent
        start = PLAIN.index(f'"{name}":'.encode())
        end = PLAIN.index(b',"', start) + 1 if name != "payload" else len(PLAIN) - 1
        yield PLAIN[:start] + PLAIN[end:] if name != "payload" else PLAIN[: start - 1] + b"}"
    yield PLAIN + b"\r"
    yield PLAIN.replace(b'{"event_id"', b'{"zz":1,"event_id"')  # an unknown field first
    yield PLAIN.replace(b'"currency":"USD"', b'"currency":"USD","channel":"web","x-y":[{"a":1}]')
    yield PLAIN.replace(b'"currency":"USD"', b'"currency":"USD","\xc3\xa9":1')


VARIANTS = list(_variants())


@pytest.fixture(params=list(TIERS))
def tier(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    for name, value in TIERS[request.param].items():
        monkeypatch.setattr(records_fast, name, value)
    return str(request.param)


def _both(raws: list[bytes]) -> tuple[pl.DataFrame, pl.DataFrame]:
    rows = pl.DataFrame({"_raw": raws}, schema={"_raw": pl.Binary})
    fields, content = BILLING_EVENTS.fields, BILLING_EVENTS.content_fields
    return stage_records(rows, fields, content), stage_records(rows, fields, content, vectorised=False)


def test_tricky_lines_stage_exactly_as_the_python_path(tier: str) -> None:
    fast, reference = _both(TRICKY)
    assert_frame_equal(fast, reference)


def test_tricky_values_in_shared_layouts_stage_exactly_as_the_python_path(tier: str) -> None:
    fast, reference = _both(VARIANTS + TRICKY + [PLAIN.replace(b'"e1"', f'"e{n}"'.encode()) for n in range(300)])
    assert_frame_equal(fast, reference)


@pytest.mark.parametrize("tier", ["templates", "msgspec"], indirect=True)
def test_the_vectorised_path_vouches_for_plain_lines_only(tier: str) -> None:
    vouched = stage_fast(pl.Series(TRICKY, dtype=pl.Binary), BILLING_EVENTS.fields, BILLING_EVENTS.content_fields)
    assert vouched.get_column("_fast").to_list()[:4] == [True, False, False, True]
    assert vouched.get_column("_fast").sum() < len(TRICKY) - 10  # the odd ones are left to Python


def test_a_feed_of_one_layout_is_vouched_for_by_a_template_with_the_default_thresholds() -> None:
    raws = [PLAIN.replace(b'"e1"', f'"e{n}"'.encode()).replace(b":100,", f":{n - 500},".encode()) for n in range(1000)]
    raws[7] = PLAIN.replace(TS, b"2025-01-10T00:00:60Z")  # a leap second, in the template's layout: Python's
    staged = stage_vouched(pl.Series(raws, dtype=pl.Binary), BILLING_EVENTS.fields, BILLING_EVENTS.content_fields)
    assert sorted(staged.get_column("_row").to_list()) == [n for n in range(1000) if n != 7]
    fast, reference = _both(raws)
    assert_frame_equal(fast, reference)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_generated_landing_with_every_fault_stages_exactly_as_the_python_path(tier: str, tmp_path: Path, seed: int) -> None:
    generate_landing(tmp_path, date(2025, 1, 1), days=2, events_per_day=400, seed=seed)
    raws = []
    for day in (date(2025, 1, 1), date(2025, 1, 2)):
        raws += read_batch(tmp_path, "billing_events", day).rows.get_column("_raw").to_list()
    fast, reference = _both(raws)
    assert_frame_equal(fast, reference)


def test_staging_in_chunks_keeps_every_line_in_its_place(tier: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(records, "STAGE_CHUNK_ROWS", 4)  # chunk edges fall between fast and slow lines
    fast, reference = _both(TRICKY)
    assert_frame_equal(fast, reference)


def test_a_feed_without_content_fields_hashes_the_empty_list_on_both_paths(tier: str) -> None:
    rows = pl.DataFrame({"_raw": TRICKY + VARIANTS}, schema={"_raw": pl.Binary})
    fast = stage_records(rows, BILLING_EVENTS.fields, [])
    assert_frame_equal(fast, stage_records(rows, BILLING_EVENTS.fields, [], vectorised=False))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_producer_layout_is_vouched_for_whole_and_stages_exactly_as_the_python_path(tmp_path: Path, layout: str) -> None:
    frame = arrival_batch(600, seed=3)
    folder = tmp_path / "landing" / "billing_events" / ARRIVAL.isoformat()
    folder.mkdir(parents=True)
    lines = json_lines(frame, layout, seed=3).to_list()
    (folder / "a.jsonl.gz").write_bytes(gzip.compress(("\r\n".join(lines[:300]) + "\r\n").encode()))
    (folder / "b.jsonl").write_bytes(("\n".join(lines[300:])).encode())
    raws = read_batch(tmp_path, "billing_events", ARRIVAL).rows.get_column("_raw").to_list()
    assert len(raws) == 600
    staged = stage_vouched(pl.Series(raws, dtype=pl.Binary), BILLING_EVENTS.fields, BILLING_EVENTS.content_fields)
    assert staged.height == 600  # no line of any layout is left to the per-line path
    fast, reference = _both(raws)
    assert_frame_equal(fast, reference)


def test_float_payloads_unknown_fields_and_escapes_in_any_order_stage_exactly_as_the_python_path() -> None:
    base = json.loads(PLAIN)
    payloads = [{"rate": 0.15, "n": 1e-07, "big": 1e16, "x": [1.5, {"y": -0.0}]}, {"k": 'é\\"\n\u2028', "é": 2**70}, {}]
    raws = []
    for n, payload in enumerate(payloads * 20):
        record = dict(
            sorted({**base, "payload": payload, "extra": n, "event_id": f"e{n}"}.items(), key=lambda kv: hash(kv[0]) % 7)
        )
        raws.append(json.dumps(record, ensure_ascii=n % 2 == 0, indent=None if n % 3 else 1).replace("\n", " ").encode())
    staged = stage_vouched(pl.Series(raws, dtype=pl.Binary), BILLING_EVENTS.fields, BILLING_EVENTS.content_fields)
    assert staged.height == len(raws)
    fast, reference = _both(raws)
    assert_frame_equal(fast, reference)


def test_msgspec_tier_works_column_by_column_yet_answers_per_line_as_the_python_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The msgspec tier checks a whole chunk at once (types per column, repeated keys on the chunk's re-encoding,
    plain strings only on lines with a backslash, shapes per key layout): one odd line among many plain ones in
    varying key order must still be left to Python, or staged as Python stages it, and its neighbours kept."""
    monkeypatch.setattr(records_fast, "MAX_TEMPLATES", 0)
    plain = json_lines(arrival_batch(400, seed=5), "varied", seed=5).to_list()
    record = json.loads(plain[0])
    odd = {
        10: PLAIN.replace(b'"z":1', b'"z":1,"z":2'),  # a nested repeated key: the chunk's count is off by one
        11: PLAIN.replace(b'"payload":{', b'"payload":{"rate":0.15,'),  # a float after a line Python takes
        20: b'{"a":NaN}',  # refused by msgspec
        21: PLAIN.replace(b'"payload":{', b'"payload":{"n":1e-07,'),  # a float after a refused line
        30: PLAIN.replace(b'"currency":"USD"', b'"currency":"U\\"SD"'),  # an escaped quote in a declared string
        31: PLAIN.replace(b'"a":"x"', b'"a":"x\\\\y"'),  # a backslash only in the payload
        40: PLAIN.replace(b'"amount_minor":100', b'"amount_minor":9223372036854775808'),  # beyond int64
        41: PLAIN.replace(b'"amount_minor":100', b'"amount_minor":true'),  # a bool is no integer
        50: PLAIN.replace(b'"currency":"USD"', b'"currency":"U\x01SD"'),  # a raw control character
        51: PLAIN.replace(b'"event_id":"e1"', b'"event_id":"e1","event_id":"e1"'),  # repeated, same value
        60: PLAIN.replace(b'"currency":"USD"', b'"currency":null'),  # the same key layout as PLAIN, a null
        61: PLAIN.replace(b'"currency":"USD"', b'"currency":"USD","n":null,"f":1.5,"b":false,"l":[],"o":{}'),
        62: json.dumps({**record, "currency": None, "event_type": None}).encode(),  # nulls, the varied order
        63: json.dumps(dict(reversed(list({**record, "extra": [1]}.items())))).encode(),  # unknown key, reversed
        70: PLAIN.replace(b'"currency":"USD"', b'"currency":"\\u003aUSD"'),  # an escaped colon: left out
    }
    raws = [odd.get(n, line.encode()) for n, line in enumerate(plain)]
    staged = stage_vouched(pl.Series(raws, dtype=pl.Binary), BILLING_EVENTS.fields, BILLING_EVENTS.content_fields)
    left_out = sorted(set(range(len(raws))) - set(staged.get_column("_row").to_list()))
    assert left_out == [10, 20, 30, 40, 41, 50, 51, 70]
    fast, reference = _both(raws)
    assert_frame_equal(fast, reference)


def test_the_collector_is_left_as_the_msgspec_tier_found_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(records_fast, "MAX_TEMPLATES", 0)
    raws = pl.Series([PLAIN] * 3, dtype=pl.Binary)
    stage_vouched(raws, BILLING_EVENTS.fields, BILLING_EVENTS.content_fields)
    assert gc.isenabled()
    gc.disable()
    try:
        stage_vouched(raws, BILLING_EVENTS.fields, BILLING_EVENTS.content_fields)
        assert not gc.isenabled()  # paused by someone else: not resumed by staging
    finally:
        gc.enable()
    with pytest.raises(ZeroDivisionError), records_fast._gc_paused():
        1 / 0  # noqa: B018
    assert gc.isenabled()
