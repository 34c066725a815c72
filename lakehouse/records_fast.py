"""A vectorised Polars path for the common, plainly well-formed line; every other line takes the exact Python path.

It vouches for a line only when a strict grammar proves Python's strict parse would give the same
answer: compact JSON (no whitespace), strings without escapes or control characters, integers of
at most 18 digits (so within int64, no `-0`), `true`/`false`/`null`, objects nested one level with
`[A-Za-z0-9_]` keys, no duplicate key at any level, every declared field absent, null or of its
kind, and timestamps in the plain `YYYY-MM-DDTHH:MM:SS[.f](Z|+hh:mm)` form with a real calendar
date, seconds below 60 and an offset within +-14:00. Anything else (whitespace, escapes, floats,
wrong types, leap seconds, naive or odd timestamps, invalid UTF-8, deep nesting...) is not vouched
for, and records.stage_records parses it line by line as before. The outputs are identical by
construction; tests/unit/test_records_fast.py checks it against the Python path on faulty data.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import polars as pl

from lakehouse.records import FieldKind, State

_STR = r'"[^"\\\x00-\x1f]*"'
_INT = r"(?:0|-?[1-9][0-9]{0,17})"
_SCALAR = rf"(?:{_STR}|{_INT}|true|false|null)"
_KEY = r'"[^"\\\x00-\x1f]*"'
_NESTED = rf"\{{(?:\"[A-Za-z0-9_]+\":{_SCALAR}(?:,\"[A-Za-z0-9_]+\":{_SCALAR})*)?\}}"
_VALUE = rf"(?:{_SCALAR}|{_NESTED})"
LINE = rf"^\{{(?:{_KEY}:{_VALUE}(?:,{_KEY}:{_VALUE})*)?\}}$"
_TS = r"^((?:19|2[0-9])[0-9]{2}-[0-9]{2}-[0-9]{2})T([0-1][0-9]|2[0-3]):([0-5][0-9]):([0-5][0-9])(?:\.([0-9]{1,9}))?(?:(Z)|([+-])([0-9]{2}):([0-5][0-9]))$"
_JSON_TYPES = {'"': "string", "{": "object", "t": "boolean", "f": "boolean", "n": "null"}  # else a digit or `-`
_KINDS = {
    FieldKind.STRING: rf"^{_STR}$",
    FieldKind.INTEGER: rf"^{_INT}$",
    FieldKind.TIMESTAMP: rf"^{_STR}$",
    FieldKind.OBJECT: rf"^{_NESTED}$",
}


def _value_of(name: str, kind: FieldKind) -> pl.Expr:
    """The raw JSON text of top-level field `name`, or null when absent.

    Nested objects are flat here and hold only `[A-Za-z0-9_]` keys and scalars, so a `"name":`
    preceded by `{` or `,` in the line with nested objects blanked out is the top-level key.
    """
    scalar = pl.col("_flat").str.extract(rf'[{{,]"{_escape(name)}":({_SCALAR}|\{{\}})', 1)
    if kind is not FieldKind.OBJECT:
        return scalar
    nested = pl.col("_fast_text").str.extract(rf'[{{,]"{_escape(name)}":({_NESTED})', 1)
    return pl.when(scalar == "{}").then(nested).otherwise(scalar)


def _flat(line: pl.Expr) -> pl.Expr:
    """The line with each nested object blanked to `{}` (the line itself, when flat, matches _NESTED too)."""
    inner = line.str.strip_prefix("{").str.strip_suffix("}")
    return pl.lit("{") + inner.str.replace_all(_NESTED, "{}") + pl.lit("}")


def _escape(name: str) -> str:
    return "".join(f"\\{c}" if not c.isalnum() and c != "_" else c for c in name)


def _is_utf8(line: bytes) -> bool:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _timestamp(value: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    """(epoch microseconds in UTC, vouched) for a JSON string value holding a plain RFC 3339 instant."""
    text = value.str.strip_chars('"')
    parts = text.str.extract_groups(_TS)
    day = parts.struct.field("1").str.to_date("%Y-%m-%d", strict=False)
    fraction = parts.struct.field("5").fill_null("").str.slice(0, 6).str.pad_end(6, "0").cast(pl.Int64)
    sign = pl.when(parts.struct.field("7") == "-").then(-1).otherwise(1)
    offset_minutes = sign * (parts.struct.field("8").cast(pl.Int64) * 60 + parts.struct.field("9").cast(pl.Int64))
    offset_minutes = pl.when(parts.struct.field("6") == "Z").then(0).otherwise(offset_minutes)
    micros = (
        day.cast(pl.Datetime("us")).cast(pl.Int64)
        + (
            parts.struct.field("2").cast(pl.Int64) * 3600
            + parts.struct.field("3").cast(pl.Int64) * 60
            + parts.struct.field("4").cast(pl.Int64)
        )
        * 1_000_000
        + fraction
        - offset_minutes * 60_000_000
    )
    vouched = day.is_not_null() & (offset_minutes.abs() <= 14 * 60)
    return micros, vouched.fill_null(False)


def _keys_unique() -> pl.Expr:
    """No duplicate key at the top level (`_keys`), nor inside any nested object."""
    unique = pl.col("_keys").list.len() == pl.col("_keys").list.unique().list.len()
    nested = pl.col("_fast_text").str.strip_prefix("{").str.strip_suffix("}").str.extract_all(_NESTED)
    keys = pl.element().str.extract_all(r'"[A-Za-z0-9_]+":')
    nested_ok = nested.list.eval(keys.list.len() == keys.list.unique().list.len()).list.all()
    return unique & nested_ok.fill_null(True)


def _canonical_object(value: pl.Expr) -> pl.Expr:
    """Sorted keys, compact: the members of a flat object sort as text because keys are [A-Za-z0-9_]."""
    members = value.str.strip_prefix("{").str.strip_suffix("}").str.extract_all(rf'"[A-Za-z0-9_]+":{_SCALAR}')
    return pl.lit("{") + members.list.sort().list.join(",") + pl.lit("}")


def stage_fast(raw: pl.Series, fields: Mapping[str, FieldKind], content_fields: list[str]) -> pl.DataFrame:
    """Columns as records.stage_records builds them, plus `_fast` (vouched); unvouched rows hold junk to replace."""
    valid = pl.Series([line.isascii() or _is_utf8(line) for line in raw.to_list()], dtype=pl.Boolean)
    text = raw.zip_with(valid, pl.Series([None], dtype=pl.Binary).extend_constant(None, raw.len() - 1)).cast(pl.String)
    frame = pl.DataFrame({"_fast_text": text}).with_columns(_fast=pl.col("_fast_text").str.contains(LINE).fill_null(False))
    frame = frame.with_columns(_fast_text=pl.when("_fast").then("_fast_text"))  # the rest is Python's: skip it
    frame = frame.with_columns(_flat=_flat(pl.col("_fast_text")))
    # Each top-level member as `"key":` plus its value's first character, which names its JSON type here.
    members = pl.col("_flat").str.extract_all(rf"[{{,]{_KEY}:.")
    frame = frame.with_columns(
        _keys=members.list.eval(pl.element().str.slice(2).str.head(-3)),
        _shape=members.list.eval(
            pl.element().str.slice(2).str.head(-3)
            + pl.lit(":")
            + pl.element().str.tail(1).replace_strict(_JSON_TYPES, default="integer", return_dtype=pl.String)
        ),
    )
    frame = frame.with_columns(_fast=pl.col("_fast") & _keys_unique().fill_null(False))
    frame = frame.with_columns(**{f"_json_{name}": _value_of(name, kind) for name, kind in fields.items()})
    columns: dict[str, pl.Expr] = {}
    vouched = pl.col("_fast")
    for name, kind in fields.items():
        value = pl.col(f"_json_{name}")
        missing = value.is_null() | (value == "null")
        kind_ok = value.str.contains(_KINDS[kind]).fill_null(False)
        if kind is FieldKind.STRING:
            typed = value.str.strip_prefix('"').str.strip_suffix('"')
        elif kind is FieldKind.INTEGER:
            typed = value.cast(pl.Int64, strict=False)
        elif kind is FieldKind.TIMESTAMP:
            typed, ts_ok = _timestamp(value)
            kind_ok = kind_ok & ts_ok
        else:
            typed = _canonical_object(value)
        vouched = vouched & (missing | kind_ok)
        columns[name] = pl.when(missing).then(None).otherwise(typed)
        columns[f"{name}__state"] = pl.when(missing).then(pl.lit(State.MISSING)).otherwise(pl.lit(State.OK))
    frame = frame.with_columns(_fast=vouched).with_columns(**columns)
    known = list(fields)
    keys = pl.col("_keys")
    extra = keys.list.set_difference(pl.lit(known, dtype=pl.List(pl.String))).list.sort()
    frame = frame.with_columns(_extra_fields=pl.when(extra.list.len() > 0).then(extra.list.join(",")))
    content = [_content_literal(name, fields[name]) for name in content_fields]
    listed = pl.concat_str(content, separator=",") if content else pl.lit("")  # no content fields: the hash of []
    frame = frame.with_columns(_hash_text=pl.lit("[") + listed + pl.lit("]"))
    hashes = [
        hashlib.sha256(text.encode()).hexdigest() if fast else None
        for text, fast in zip(frame.get_column("_hash_text").to_list(), frame.get_column("_fast").to_list(), strict=True)
    ]
    out = frame.with_columns(_content_hash=pl.Series(hashes, dtype=pl.String), _parse_error=pl.lit(None, dtype=pl.String))
    selected = [pl.col("_fast")]
    for name, kind in fields.items():
        column = pl.col(name).cast(kind.polars_type)
        selected += [column.cast(pl.Datetime("us", "UTC")) if kind is FieldKind.TIMESTAMP else column, pl.col(f"{name}__state")]
    return out.select(*selected, "_parse_error", "_extra_fields", "_shape", "_content_hash")


def _content_literal(name: str, kind: FieldKind) -> pl.Expr:
    """The field's value as json.dumps renders it inside records.canonical_json's list."""
    value = pl.col(name)
    if kind is FieldKind.STRING:
        text = pl.lit('"') + value + pl.lit('"')  # no escapes or control characters: dumps adds none
    elif kind is FieldKind.OBJECT:
        text = pl.lit('"') + value.str.replace_all('"', '\\"', literal=True) + pl.lit('"')
    else:
        text = value.cast(pl.String)
    return text.fill_null("null")
