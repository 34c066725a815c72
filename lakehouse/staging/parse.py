"""The exact parser of a JSON line and of an RFC 3339 timestamp, and the types staging gives fields.

Parsing never raises on data: each problem becomes a state (`missing`, `wrong_type`,
`unparseable`, `naive`, `out_of_range`) or an error that a contract turns into a quarantine
reason. Python's `json` is used because it keeps integers exact and lets us refuse NaN/Infinity
and duplicate keys, which Polars' JSON reader would silently accept or coerce. It is the
reference both staging paths (lakehouse.staging.records and lakehouse.staging.records_fast) answer to.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime, timedelta, timezone
from enum import Enum
from typing import Any

import polars as pl

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# ASCII digits only, and the whole string (`\d` would take "２", `$` a trailing newline): RFC 3339 allows neither.
_RFC3339 = re.compile(r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d+)?(?:([Zz])|([+-])(\d{2}):(\d{2}))?", re.ASCII)
MAX_OFFSET_MINUTES = 14 * 60
# Deeper documents are malformed: a fixed limit, so the outcome never depends on the interpreter's stack depth.
MAX_NESTING_DEPTH = 100
_ESCAPED_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")


class FieldKind(Enum):
    STRING = "string"
    INTEGER = "integer"
    TIMESTAMP = "timestamp"  # RFC 3339 with an explicit offset, normalised to UTC microseconds
    OBJECT = "object"  # kept as canonical JSON text

    @property
    def polars_type(self) -> pl.DataType:
        return {
            FieldKind.STRING: pl.String(),
            FieldKind.INTEGER: pl.Int64(),
            FieldKind.TIMESTAMP: pl.Int64(),  # epoch microseconds until the frame is built
            FieldKind.OBJECT: pl.String(),
        }[self]


class State:
    OK = "ok"
    MISSING = "missing"  # absent or JSON null
    WRONG_TYPE = "wrong_type"
    UNPARSEABLE = "unparseable"
    NAIVE = "naive"  # a timestamp without UTC offset
    OUT_OF_RANGE = "out_of_range"  # an integer beyond int64, a UTC offset beyond +-14:00
    NOT_PARSED = "not_parsed"  # the line itself is not a JSON object


class _Malformed(ValueError):
    pass


def _reject_constant(name: str) -> Any:
    raise _Malformed(f"non-standard JSON literal {name}")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise _Malformed(f"duplicate key {key!r}")  # which value is meant is ambiguous
        obj[key] = value
    return obj


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400 would become Infinity: not JSON, and not the number sent
        raise _Malformed(f"number {text[:40]} is beyond the float range")
    return value


def _nesting_depth(value: Any) -> int:
    """Depth of nested arrays/objects, iteratively (no recursion limit to hit)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in (node.values() if isinstance(node, dict) else node))
    return deepest


def _has_lone_surrogate(value: Any) -> bool:
    """A `\\ud800` escape without its pair decodes to a str that no UTF-8 writer (Parquet, Delta) can store."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def parse_json_object(raw: bytes) -> tuple[dict[str, Any] | None, str | None]:
    """Return (object, None) or (None, why the line is not one unambiguous, storable JSON object)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        return None, f"invalid UTF-8 at byte {error.start}"
    too_deep = f"JSON nested deeper than {MAX_NESTING_DEPTH} levels"
    try:
        value = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float, object_pairs_hook=_unique_keys)
    except _Malformed as error:
        return None, str(error)
    except RecursionError:
        return None, too_deep
    except ValueError as error:  # JSONDecodeError, and int() limits on absurdly long numbers
        return None, f"invalid JSON ({error})"
    if not isinstance(value, dict):
        return None, f"not a JSON object (a {type(value).__name__})"
    # Cheap guards first: only text with enough brackets can be too deep, only an escape can hide a surrogate.
    if text.count("{") + text.count("[") > MAX_NESTING_DEPTH and _nesting_depth(value) > MAX_NESTING_DEPTH:
        return None, too_deep
    if _ESCAPED_SURROGATE.search(text) and _has_lone_surrogate(value):
        return None, "a \\u escape encodes a lone UTF-16 surrogate (not a Unicode character)"
    return value, None


def parse_timestamp(value: str) -> tuple[int | None, str]:
    """RFC 3339 to UTC epoch microseconds; digits beyond microseconds are truncated."""
    match = _RFC3339.fullmatch(value)
    if not match:
        return None, State.UNPARSEABLE
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    fraction = (match.group(7) or ".")[1:7].ljust(6, "0")
    try:
        local = datetime(year, month, day, hour, minute, second, int(fraction))  # rejects :60 leap seconds
    except ValueError:
        return None, State.UNPARSEABLE
    if match.group(8) is None and match.group(9) is None:
        return None, State.NAIVE
    offset_minutes = 0
    if match.group(9):
        hours, minutes = int(match.group(10)), int(match.group(11))
        offset_minutes = hours * 60 + minutes
        if minutes > 59 or offset_minutes > MAX_OFFSET_MINUTES:
            return None, State.OUT_OF_RANGE
        offset_minutes *= -1 if match.group(9) == "-" else 1
    try:
        instant = local.replace(tzinfo=timezone(timedelta(minutes=offset_minutes))).astimezone(UTC)
    except (OverflowError, ValueError):
        return None, State.UNPARSEABLE
    return (instant - _EPOCH) // timedelta(microseconds=1), State.OK


def field_value(kind: FieldKind, value: Any) -> tuple[Any, str]:
    if value is None:
        return None, State.MISSING
    if kind is FieldKind.STRING:
        return (value, State.OK) if isinstance(value, str) else (None, State.WRONG_TYPE)
    if kind is FieldKind.INTEGER:
        if not isinstance(value, int) or isinstance(value, bool):  # 1.0, "1" and true are not integers
            return None, State.WRONG_TYPE
        return (value, State.OK) if INT64_MIN <= value <= INT64_MAX else (None, State.OUT_OF_RANGE)
    if kind is FieldKind.TIMESTAMP:
        return parse_timestamp(value) if isinstance(value, str) else (None, State.WRONG_TYPE)
    if isinstance(value, dict):
        return canonical_json(value), State.OK
    return None, State.WRONG_TYPE


def json_type(value: Any) -> str:
    """The JSON type of a parsed value, as schema drift reports it (`integer` and `number` apart)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    return {float: "number", str: "string", list: "array", dict: "object"}[type(value)]


def canonical_json(value: Any) -> str:
    """Key order and whitespace never change content: sorted keys, compact separators."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
