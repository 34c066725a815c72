"""The fast staging path, for any producer's layout: msgspec decodes each line (C), Polars types the columns.

A line is vouched for only when the exact parser (lakehouse.parse) is proven to give the same answer,
so every line this path leaves out takes the exact Python path in records.stage_records:

- msgspec decodes it to a JSON object. msgspec refuses what the reference refuses (bad JSON, NaN and
  Infinity, numbers beyond the float range or of more than 4,300 digits, lone surrogates, invalid
  UTF-8, trailing garbage), keeps integers exact and gives floats for fractions and exponents as
  Python's `json` does. It accepts two things the reference refuses, so two guards run per line:
  - nesting: a line with more than MAX_NESTING_DEPTH `{` and `[` in all (inside strings included)
    is left out, so any line deeper than the limit is;
  - duplicate keys, at any level: each key is followed by one `:` outside strings, and a `:` inside
    a string is the same character once decoded unless written `\\u003a` (such lines are left out).
    So the line has as many `:` as msgspec's compact re-encoding of what it decoded exactly when no
    member was dropped for a repeated key.
- The line is valid UTF-8 as Polars checks it (what Python's strict decode accepts); msgspec checks it
  too, this is belt and braces for a rule that is not negotiable.
- Every declared field is absent, null or plainly of its kind: a string without `"`, `\\` or control
  characters (so the content hash can be built as text), an integer within int64 (not a bool), a
  timestamp in the plain form `_TS` with a real date and an offset within +-14:00, an object.

The rest of a line's staging is the reference's own rules on the decoded values, column by column:
`_shape` from the decoded keys and types in line order, `_extra_fields` sorted, payloads rendered by
parse.canonical_json, and the content hash built as the same text canonical_json would write.
tests/unit/test_records_fast.py checks the outcome against the Python path on hostile and varied data.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from typing import Any

import msgspec
import polars as pl
import pyarrow as pa

from lakehouse.parse import INT64_MAX, INT64_MIN, MAX_NESTING_DEPTH, FieldKind, State, canonical_json

_TS = r"^(?:19|2[0-9])[0-9]{2}-[0-9]{2}-[0-9]{2}T(?:[0-1][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,9})?(?:Z|[+-][0-9]{2}:[0-5][0-9])$"
_PLAIN_TEXT = r'^[^"\\\x00-\x1f]*$'  # json.dumps writes it between quotes as it is
_JSON_TYPES: dict[type, str] = {
    type(None): "null",
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    list: "array",
    dict: "object",
}
UTF8_BLOCK_ROWS = 4096  # a chunk with invalid UTF-8 is checked line by line only in the blocks that hold it

_encode = msgspec.json.encode


def stage_fast(raw: pl.Series, fields: Mapping[str, FieldKind], content_fields: list[str]) -> pl.DataFrame:
    """Columns as records.stage_records builds them, plus `_fast` (vouched), in line order; unvouched rows hold nulls."""
    vouched = stage_vouched(raw, fields, content_fields).with_columns(_fast=pl.lit(True))
    index = raw.to_frame("_raw").with_row_index("_row").select("_row")
    full = index.join(vouched, on="_row", how="left", maintain_order="left").with_columns(pl.col("_fast").fill_null(False))
    return full.select("_fast", pl.exclude("_fast", "_row"))


def stage_vouched(raw: pl.Series, fields: Mapping[str, FieldKind], content_fields: list[str]) -> pl.DataFrame:
    """The lines this path vouches for, staged: `_row` (position in `raw`, ascending) and the columns
    records.stage_records builds. The lines left out are Python's to stage."""
    text = _utf8(raw)
    plain = text.is_not_null() & ~text.str.contains("\\u003", literal=True)  # no `\u003a` can hide a `:`
    brackets = text.str.count_matches("{", literal=True) + text.str.count_matches("[", literal=True)
    plain &= brackets <= MAX_NESTING_DEPTH  # so no line deeper than the limit is decoded here
    colons = text.str.count_matches(":", literal=True).fill_null(0).to_list()
    decoder = _Decoder()
    rows: list[int] = []
    objects: list[dict[str, Any]] = []
    with_floats: list[bool] = []
    for row, line in enumerate(raw.to_list()) if plain.all() else ((r, raw[r]) for r in plain.arg_true().to_list()):
        obj = decoder.decoded(line, colons[row])
        if obj is not None:
            rows.append(row)
            objects.append(obj)
            with_floats.append(decoder.floats)
    frame = pl.DataFrame({"_row": pl.Series(rows, dtype=pl.get_index_type())})
    ok = pl.Series([True] * len(objects), dtype=pl.Boolean)
    columns: dict[str, pl.Series] = {}
    for name, kind in fields.items():
        typed, fine = _column(name, kind, [obj.get(name) for obj in objects], with_floats)
        columns[name], ok = typed, ok & fine
    frame = frame.with_columns(
        **{name: columns[name] for name in fields},
        _extra_fields=_extra_fields(objects, fields),
        _shape=_shapes(objects),
        _ok=ok,
    ).filter("_ok")
    states = {
        f"{name}__state": pl.when(pl.col(name).is_null()).then(pl.lit(State.MISSING)).otherwise(pl.lit(State.OK))
        for name in fields
    }
    frame = frame.with_columns(**states, _parse_error=pl.lit(None, dtype=pl.String))
    hash_text = frame.with_columns(_content_text(fields, content_fields)).get_column("_hash_text")
    frame = frame.with_columns(_content_hash=_sha256_hex(hash_text))
    selected = ["_row"] + [c for name in fields for c in (name, f"{name}__state")]
    return frame.select(*selected, "_parse_error", "_extra_fields", "_shape", "_content_hash")


class _Decoder:
    """msgspec's decoder, with floats parsed as the reference parses them (`float(text)`, refusing what
    overflows) and counted, so a line's values are known to hold no float when `floats` is False."""

    def __init__(self) -> None:
        self._floats = 0
        self._decode = msgspec.json.Decoder(float_hook=self._float).decode
        self.floats = False

    def _float(self, text: str) -> float:
        value = float(text)
        if not math.isfinite(value):
            raise ValueError(f"number {text[:40]} is beyond the float range")
        self._floats += 1
        return value

    def decoded(self, line: bytes, colons: int) -> dict[str, Any] | None:
        """The JSON object msgspec decodes `line` to, or None when the reference might answer otherwise.
        `colons`: the `:` in the line (the caller checked it has no `\\u003` and few brackets)."""
        before = self._floats
        try:
            obj = self._decode(line)
            if type(obj) is not dict or _encode(obj).count(b":") != colons:
                return None  # not an object, or a member was dropped for a repeated key
        except Exception:  # any refusal (DecodeError, UnicodeDecodeError, RecursionError...) is the reference's to word
            return None
        self.floats = self._floats != before
        return obj


def _column(name: str, kind: FieldKind, values: list[Any], with_floats: list[bool]) -> tuple[pl.Series, pl.Series]:
    """(the typed column, whether each value is null or plainly of its kind); `with_floats`: which lines hold a float."""
    if kind is FieldKind.STRING:
        text = pl.Series(name, [v if type(v) is str else None for v in values], dtype=pl.String)
        strings = pl.Series([v is None or type(v) is str for v in values], dtype=pl.Boolean)
        return text, strings & text.str.contains(_PLAIN_TEXT).fill_null(True)
    if kind is FieldKind.INTEGER:
        in_range = [v is None or (type(v) is int and INT64_MIN <= v <= INT64_MAX) for v in values]
        kept = [v if ok else None for v, ok in zip(values, in_range, strict=True)]
        return pl.Series(name, kept, dtype=pl.Int64), pl.Series(in_range, dtype=pl.Boolean)
    if kind is FieldKind.TIMESTAMP:
        text = pl.Series(name, [v if type(v) is str else None for v in values], dtype=pl.String)
        micros, vouched = _timestamps(text)
        strings = pl.Series([v is None or type(v) is str for v in values], dtype=pl.Boolean)
        return micros.cast(pl.Datetime("us", "UTC")).alias(name), strings & (text.is_null() | vouched)
    # msgspec's sorted compact rendering is canonical_json's but for floats (repr differs: 1e-07, 1e+16).
    objects = [
        (canonical_json(v) if floats else _encode(v, order="sorted").decode()) if type(v) is dict else None
        for v, floats in zip(values, with_floats, strict=True)
    ]
    plain = [v is None or type(v) is dict for v in values]
    return pl.Series(name, objects, dtype=pl.String), pl.Series(plain, dtype=pl.Boolean)


def _timestamps(text: pl.Series) -> tuple[pl.Series, pl.Series]:
    frame = text.to_frame("t").select(*_timestamp(pl.col("t")))
    return frame.to_series(0), frame.to_series(1)


def _extra_fields(objects: list[dict[str, Any]], fields: Mapping[str, FieldKind]) -> pl.Series:
    known = set(fields)
    extras = [None if known.issuperset(obj) else ",".join(sorted(set(obj) - known)) for obj in objects]
    return pl.Series("_extra_fields", extras, dtype=pl.String)


def _shapes(objects: list[dict[str, Any]]) -> pl.Series:
    """Every top-level `key:json type`, in line order, built flat and cut into lists (one list per line)."""
    keys: list[str] = []
    types: list[type] = []
    offsets = [0]
    for obj in objects:
        keys.extend(obj)
        types.extend(map(type, obj.values()))
        offsets.append(len(keys))
    names = list(map(_JSON_TYPES.__getitem__, types))
    flat = pl.DataFrame({"k": keys, "t": names}, schema={"k": pl.String, "t": pl.String})
    members = flat.select(pl.concat_str("k", pl.lit(":"), "t")).to_series().to_arrow()
    lists = pa.LargeListArray.from_arrays(pa.array(offsets, pa.int64()), members)
    return pl.Series("_shape", pl.from_arrow(lists), dtype=pl.List(pl.String))


def _content_text(fields: Mapping[str, FieldKind], content_fields: list[str]) -> pl.Expr:
    """canonical_json of the content fields' typed values, as text (strings here need no escape but the payload's)."""
    parts = []
    for name in content_fields:
        value, kind = pl.col(name), fields[name]
        if kind is FieldKind.STRING:
            text = pl.lit('"') + value + pl.lit('"')
        elif kind is FieldKind.OBJECT:  # canonical JSON text in a JSON string: `\` and `"` escaped, no control characters
            escaped = value.str.replace_all("\\", "\\\\", literal=True).str.replace_all('"', '\\"', literal=True)
            text = pl.lit('"') + escaped + pl.lit('"')
        elif kind is FieldKind.TIMESTAMP:
            text = value.dt.epoch("us").cast(pl.String)
        else:
            text = value.cast(pl.String)
        parts.append(text.fill_null("null"))
    listed = pl.concat_str(parts, separator=",") if parts else pl.lit("")
    return (pl.lit("[") + listed + pl.lit("]")).alias("_hash_text")


def _utf8(raw: pl.Series) -> pl.Series:
    """The lines as text, null where not valid UTF-8 (what Python's strict decode refuses: Polars checks the same)."""
    try:
        return raw.cast(pl.String)  # refuses the whole column if any line is invalid
    except pl.exceptions.PolarsError:
        pass
    if raw.len() > UTF8_BLOCK_ROWS:  # invalid lines are rare: find the blocks that hold them
        return pl.concat([_utf8(raw.slice(start, UTF8_BLOCK_ROWS)) for start in range(0, raw.len(), UTF8_BLOCK_ROWS)]).rechunk()
    valid = pl.Series([line.isascii() or _is_utf8(line) for line in raw.to_list()], dtype=pl.Boolean)
    return raw.zip_with(valid, pl.Series([None], dtype=pl.Binary).extend_constant(None, raw.len() - 1)).cast(pl.String)


def _is_utf8(line: bytes) -> bool:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _sha256_hex(texts: pl.Series) -> pl.Series:
    """sha256 hex digest of each text's UTF-8 bytes (null stays null)."""
    sha256 = hashlib.sha256
    return pl.Series([None if b is None else sha256(b).hexdigest() for b in texts.cast(pl.Binary).to_list()], dtype=pl.String)


def _timestamp(text: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    """(epoch microseconds in UTC, vouched) for the text of a plain RFC 3339 instant (see _TS)."""
    day = text.str.slice(0, 10).str.to_date("%Y-%m-%d", strict=False)
    zulu = text.str.ends_with("Z")
    zone = text.str.tail(6)  # `+hh:mm` unless zulu
    fraction = text.str.slice(19).str.head(pl.when(zulu).then(-1).otherwise(-6)).str.slice(1)  # digits after `.`, or ""
    micros_part = fraction.str.slice(0, 6).str.pad_end(6, "0").cast(pl.Int64, strict=False)
    zone_minutes = zone.str.slice(1, 2).cast(pl.Int64, strict=False) * 60 + zone.str.slice(4, 2).cast(pl.Int64, strict=False)
    offset_minutes = pl.when(zulu).then(0).when(zone.str.starts_with("-")).then(-zone_minutes).otherwise(zone_minutes)
    seconds = (
        text.str.slice(11, 2).cast(pl.Int64, strict=False) * 3600
        + text.str.slice(14, 2).cast(pl.Int64, strict=False) * 60
        + text.str.slice(17, 2).cast(pl.Int64, strict=False)
    )
    micros = day.cast(pl.Datetime("us")).cast(pl.Int64) + seconds * 1_000_000 + micros_part - offset_minutes * 60_000_000
    vouched = text.str.contains(_TS) & day.is_not_null() & (offset_minutes.abs() <= 14 * 60)
    return micros.alias("micros"), vouched.fill_null(False).alias("vouched")
