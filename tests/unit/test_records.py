"""Parsing raw lines: exact integers, strict timestamps, and no silent coercion."""

from datetime import UTC, datetime

import pytest

from lakehouse.staging.parse import State, parse_json_object, parse_timestamp


def epoch_us(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1_000_000)


@pytest.mark.parametrize(
    ("value", "expected_utc"),
    [
        ("2025-01-10T01:00:00+01:00", "2025-01-10T00:00:00"),
        ("2025-01-10T00:00:00Z", "2025-01-10T00:00:00"),
        ("2025-01-10t00:00:00z", "2025-01-10T00:00:00"),
        ("2025-01-09T20:00:00-04:00", "2025-01-10T00:00:00"),
        ("2025-01-10T00:00:00.123456789Z", "2025-01-10T00:00:00.123456"),
        ("2025-01-10T00:00:00+14:00", "2025-01-09T10:00:00"),
    ],
)
def test_offsets_are_normalised_to_the_same_utc_instant(value: str, expected_utc: str) -> None:
    assert parse_timestamp(value) == (epoch_us(expected_utc), State.OK)


@pytest.mark.parametrize(
    ("value", "state"),
    [
        ("2025-01-10T00:00:00", State.NAIVE),
        ("2025-01-10T00:00:00+14:01", State.OUT_OF_RANGE),
        ("2025-01-10T00:00:00-15:00", State.OUT_OF_RANGE),
        ("2025-13-10T00:00:00Z", State.UNPARSEABLE),
        ("2025-02-30T00:00:00Z", State.UNPARSEABLE),
        ("2016-12-31T23:59:60Z", State.UNPARSEABLE),  # a leap second has no instant in UTC-SLS-free time
        ("2025-01-10T00:00:00 Europe/Paris", State.UNPARSEABLE),
        ("1736467200", State.UNPARSEABLE),
        ("", State.UNPARSEABLE),
    ],
)
def test_timestamps_without_a_valid_offset_are_not_guessed(value: str, state: str) -> None:
    assert parse_timestamp(value) == (None, state)


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"\xff\xfe{}", "invalid UTF-8"),
        (b"{not json", "invalid JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'"text"', "not a JSON object"),
        (b'{"a": NaN}', "non-standard JSON literal NaN"),
        (b'{"a": Infinity}', "non-standard JSON literal Infinity"),
        (b'{"a": 1, "a": 2}', "duplicate key 'a'"),
        (b"[" * 100_000 + b"]" * 100_000, "nested deeper than"),
    ],
)
def test_lines_that_are_not_one_unambiguous_json_object_are_malformed(raw: bytes, why: str) -> None:
    obj, error = parse_json_object(raw)
    assert obj is None and error is not None and why in error


def test_integers_stay_exact_beyond_float_precision() -> None:
    obj, _ = parse_json_object(b'{"amount_minor": 9007199254740993}')
    assert obj == {"amount_minor": 9007199254740993}
