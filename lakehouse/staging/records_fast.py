"""Fast staging paths; every line they do not vouch for takes the exact Python path in records.stage_records.

A path vouches for a line only when the exact parser (lakehouse.staging.parse) is proven to give the same answer.

1. Templates, for a producer's own layout at the least cost. A feed's lines mostly share a few layouts:
   the same keys in the same order, compact or json.dumps' default separators, the same JSON type
   everywhere, only string (no escapes or control characters) and integer (at most 18 digits) values
   varying. A template is the layout of a line Python parsed, as a regex that matches exactly the lines
   of that layout (compact, or with a space after any `,` and `:`); `_shape`, `_extra_fields`, the
   states and where each value sits are worked out once per template in Python (and checked on a
   made-up line against Python's own renderings), and what varies is read from each line split at its
   quotes. Layouts come from a sample of the lines not matched yet, most frequent first; timestamps must
   have the plain form `_TS`, a real date and an offset within +-14:00.
2. msgspec, for any layout (key order, whitespace, escapes, floats, unknown fields, nested payloads).
   msgspec (C) refuses what the reference refuses (bad JSON, NaN and Infinity, numbers beyond the float
   range or of more than 4,300 digits, lone surrogates, invalid UTF-8, trailing garbage), keeps integers
   exact and gives floats for fractions and exponents, parsed by a hook as the reference parses them.
   It accepts two things the reference refuses, so two guards leave such lines out:
   - nesting: a line with more than MAX_NESTING_DEPTH `{` and `[` in all (inside strings included);
   - duplicate keys, at any level: each key is followed by one `:` outside strings, and a `:` inside a
     string is the same character once decoded unless written `\\u003a` (such lines are left out). So the
     line has as many `:` as msgspec's compact re-encoding of what it decoded exactly when no member
     was dropped for a repeated key.
   Then every declared field must be absent, null or plainly of its kind (a string without `"`, `\\` or
   control characters, an integer within int64 and not a bool, a plain timestamp as above, an object),
   and the reference's rules apply column by column: `_shape` from the decoded keys and types in line
   order, `_extra_fields` sorted, payloads in canonical JSON (msgspec's sorted rendering, or
   parse.canonical_json where a float is present, whose repr msgspec does not share).

Both tiers are checked against the Python path on hostile data and on other producers' layouts
(tests/unit/test_records_fast.py, tests/property/test_staging_equivalence.py).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import hashlib
import itertools
import json
import math
import operator
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec
import polars as pl
import pyarrow as pa

from lakehouse.staging.parse import (
    INT64_MAX,
    INT64_MIN,
    MAX_NESTING_DEPTH,
    FieldKind,
    State,
    canonical_json,
    field_value,
    json_type,
    parse_json_object,
)

_STR = r'"[^"\\\x00-\x1f]*"'
# A template matches compact lines and lines as json.dumps writes them by default (`, ` and `: `): a space after a
# separator changes no value, and an integer's piece between quotes is stripped of it as of the punctuation.
_ITEM, _KEY = ", ?", ": ?"
_SEPARATORS = [(",", ":"), (", ", ": ")]  # the two renderings _check reads a template's slots from
_PUNCTUATION = "{}[],: "
_INT = r"(?:0|-?[1-9][0-9]{0,17})"

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
TEMPLATE_SAMPLE = 128  # lines parsed in Python to find the next most frequent layout
TEMPLATE_MIN_ROWS = 256  # a smaller group costs more in fixed Polars overhead than the msgspec tier takes for it
TEMPLATE_MIN_SAMPLED = 2  # a layout seen once in the sample may be a one-off
MAX_TEMPLATES = 16
MAX_TEMPLATE_NODES = 512  # JSON values in one layout: a bigger one is rare, and its regex large
MAX_TEMPLATE_DEPTH = 8
MAX_TEMPLATE_REGEX = 8192  # characters: a longer regex (long keys) takes a while to compile
UTF8_BLOCK_ROWS = 4096  # a chunk with invalid UTF-8 is checked line by line only in the blocks that hold it

_encode = msgspec.json.encode


def stage_fast(raw: pl.Series, fields: Mapping[str, FieldKind], content_fields: list[str]) -> pl.DataFrame:
    """Columns as records.stage_records builds them, plus `_fast` (vouched), in line order; unvouched rows hold nulls."""
    vouched = stage_vouched(raw, fields, content_fields).with_columns(_fast=pl.lit(True))
    index = raw.to_frame("_raw").with_row_index("_row").select("_row")
    full = index.join(vouched, on="_row", how="left", maintain_order="left").with_columns(pl.col("_fast").fill_null(False))
    return full.select("_fast", pl.exclude("_fast", "_row"))


def stage_vouched(raw: pl.Series, fields: Mapping[str, FieldKind], content_fields: list[str]) -> pl.DataFrame:
    """The lines a fast path vouches for, staged: `_row` (position in `raw`, in no particular order) and the
    columns records.stage_records builds. The lines left out are Python's to stage."""
    text = _utf8(raw)
    frames, leftover = _stage_templates(raw, text, fields, content_fields)
    if leftover.len():  # the valid UTF-8 lines no template matched
        whole = leftover.len() == raw.len()
        left_raw, left_text = (raw, text) if whole else (raw.gather(leftover), text.gather(leftover))
        frames.append(_stage_decoded(left_raw, left_text, leftover, fields, content_fields))
    if not frames:
        return pl.DataFrame(schema=_schema(fields))
    return pl.concat(frames, how="vertical")


def _schema(fields: Mapping[str, FieldKind]) -> dict[str, Any]:
    schema: dict[str, Any] = {"_row": pl.get_index_type()}  # what arg_true gives
    for name, kind in fields.items():
        schema[name] = pl.Datetime("us", "UTC") if kind is FieldKind.TIMESTAMP else kind.polars_type
        schema[f"{name}__state"] = pl.String()
    return schema | {
        "_parse_error": pl.String(),
        "_extra_fields": pl.String(),
        "_shape": pl.List(pl.String),
        "_content_hash": pl.String(),
    }


# ---------------------------------------------------------------------------------------------------------------
# Tier 1: templates


class _Unsupported(Exception):
    pass


@dataclass(frozen=True)
class _Slot:
    """A varying string or integer value: piece `piece` of the line split at `"` (a string's content, or the
    text between two strings that holds this integer and nothing else but punctuation)."""

    piece: int
    integer: bool


@dataclass(frozen=True)
class _Micros:
    """The epoch microseconds of timestamp field `name`, parsed per line."""

    name: str


_Part = str | _Slot | _Micros  # literal text, a slot's text (a string's content, an integer's digits), a timestamp


@dataclass(frozen=True)
class _Layout:
    """What a line Python parsed looks like: its keys, types and literals, every string and integer a _Slot."""

    regex: str  # matches exactly the lines of this layout (compact, or a space after any `,` and `:`)
    obj: dict[str, Any]  # the line as Python parsed it
    layout: dict[str, Any]  # obj with each string and integer value replaced by its _Slot
    tokens: Counter[int]  # non-string values in each piece between strings
    quotes: int  # `"` in every line of the layout


@dataclass(frozen=True)
class _Template:
    regex: str
    quotes: int
    columns: dict[str, list[_Part] | None]  # per field: its value's text, as parts; None when null
    states: dict[str, str]  # per field; a timestamp's `ok` holds only for the lines it vouches for
    timestamps: dict[str, _Slot]  # fields parsed per line: a line is vouched only when each is OK
    hash_text: list[_Part] | None  # canonical_json of the content list; None when a content field is never OK
    extra_fields: str | None
    shape: list[str]
    slots: list[_Slot]  # every slot any column reads


def _layout_of(line: bytes) -> _Layout | None:
    """The layout of `line`, or None when Python refuses the line or no template can express it."""
    obj, _ = parse_json_object(line)
    if obj is None:
        return None
    regex: list[str] = []
    strings = 0  # quote pairs before the current position
    tokens: Counter[int] = Counter()
    nodes = 0

    def walk(value: Any, depth: int) -> Any:
        nonlocal strings, nodes
        nodes += 1
        if nodes > MAX_TEMPLATE_NODES or depth > MAX_TEMPLATE_DEPTH:
            raise _Unsupported
        if isinstance(value, dict):
            regex.append(r"\{")
            members = {}
            for index, (key, item) in enumerate(value.items()):
                regex.append((_ITEM if index else "") + '"' + _regex_literal(_plain(key)) + '"' + _KEY)
                strings += 1
                members[key] = walk(item, depth + 1)
            regex.append(r"\}")
            return members
        if isinstance(value, list):
            regex.append(r"\[")
            items = []
            for index, item in enumerate(value):
                regex.append(_ITEM if index else "")
                items.append(walk(item, depth + 1))
            regex.append(r"\]")
            return items
        if isinstance(value, str):
            regex.append(_STR)
            strings += 1
            return _Slot(2 * strings - 1, integer=False)
        tokens[2 * strings] += 1
        if value is True or value is False or value is None:
            regex.append(json.dumps(value))
            return value
        if isinstance(value, int):
            regex.append(_INT)
            return _Slot(2 * strings, integer=True)
        raise _Unsupported  # a float

    try:
        layout = walk(obj, 1)
    except _Unsupported:
        return None
    pattern = "^" + "".join(regex) + "$"
    return _Layout(pattern, obj, layout, tokens, 2 * strings) if len(pattern) <= MAX_TEMPLATE_REGEX else None


def _template(layout: _Layout, fields: Mapping[str, FieldKind], content_fields: list[str]) -> _Template:
    """How to stage every line of `layout`: what is constant, worked out here by Python; where the rest is."""
    obj, tokens = layout.obj, layout.tokens
    node: Any
    columns: dict[str, list[_Part] | None] = {}
    states: dict[str, str] = {}
    timestamps: dict[str, _Slot] = {}
    contents: dict[str, list[_Part] | None] = {}  # each content field as json.dumps renders it in the content list
    for name, kind in fields.items():
        value, node = obj.get(name), layout.layout.get(name)  # node: a _Slot where value is a string or integer
        state = field_value(kind, value)[1]
        if value is None:
            expected, columns[name], contents[name] = State.MISSING, None, ["null"]
        elif kind is FieldKind.STRING and isinstance(value, str):
            expected, columns[name], contents[name] = State.OK, [node], ['"', node, '"']
        elif kind is FieldKind.INTEGER and type(value) is int:
            state = State.OK  # the line's value, not this one, counts: a slot holds at most 18 digits
            expected, columns[name], contents[name] = State.OK, [node], [node]
        elif kind is FieldKind.TIMESTAMP and isinstance(value, str):
            state = State.OK  # the line's value, not this one, counts: each line is parsed
            expected, columns[name], contents[name] = State.OK, [_Micros(name)], [_Micros(name)]
            timestamps[name] = node
        elif kind is FieldKind.OBJECT and isinstance(value, dict):
            canonical = _canonical(node)
            expected, columns[name], contents[name] = State.OK, canonical, ['"', *map(_escaped, canonical), '"']
        else:
            expected, columns[name], contents[name] = State.WRONG_TYPE, None, None
        if state != expected:
            raise _Unsupported  # cannot happen: the state these parts stand for is not Python's
        states[name] = state
    if all(contents[name] is not None for name in content_fields):
        items = [[","] * (index > 0) + (contents[name] or []) for index, name in enumerate(content_fields)]
        hash_text: list[_Part] | None = _joined(["["], *items, ["]"])
    else:
        hash_text = None  # Python hashes only lines whose content fields are all OK or missing
    slots = {
        p for parts in [*columns.values(), hash_text, list(timestamps.values())] if parts for p in parts if isinstance(p, _Slot)
    }
    if any(slot.integer and tokens[slot.piece] != 1 for slot in slots):
        raise _Unsupported  # an integer sharing its piece with another value: not one strip away
    unknown = sorted(set(obj) - set(fields))
    template = _Template(
        regex=layout.regex,
        quotes=layout.quotes,
        columns=columns,
        states=states,
        timestamps=timestamps,
        hash_text=hash_text,
        extra_fields=",".join(unknown) if unknown else None,
        shape=[f"{key}:{json_type(value)}" for key, value in obj.items()],
        slots=sorted(slots, key=lambda slot: slot.piece),
    )
    _check(template, layout.layout, fields, content_fields)
    return template


def _plain(key: str) -> str:
    """A key as it appears in a line without escapes (a key that needs one cannot be matched)."""
    if any(c in '"\\' or c < " " for c in key):
        raise _Unsupported
    return key


@functools.lru_cache(maxsize=4096)
def _regex_literal(text: str) -> str:
    return "".join(c if c.isascii() and (c.isalnum() or c == "_") else f"\\x{{{ord(c):X}}}" for c in text)


def _canonical(node: Any) -> list[_Part]:
    """canonical_json of a value of the layout, as parts: sorted keys, compact separators."""
    if isinstance(node, dict):
        members = [
            [","] * (i > 0) + [json.dumps(key, ensure_ascii=False) + ":", *_canonical(node[key])]
            for i, key in enumerate(sorted(node))
        ]
        return _joined(["{"], *members, ["}"])
    if isinstance(node, list):
        return _joined(["["], *[[","] * (i > 0) + _canonical(item) for i, item in enumerate(node)], ["]"])
    if isinstance(node, _Slot):
        return [node] if node.integer else ['"', node, '"']  # contents without escapes or control characters
    return [json.dumps(node)]


def _escaped(part: _Part) -> _Part:
    """A part of canonical JSON text as json.dumps renders it inside a string (a slot's text needs no escape)."""
    return json.dumps(part, ensure_ascii=False)[1:-1] if isinstance(part, str) else part


def _joined(*groups: list[_Part]) -> list[_Part]:
    """The parts in order, adjacent literals merged."""
    parts: list[_Part] = []
    for part in (p for group in groups for p in group):
        if isinstance(part, str) and parts and isinstance(parts[-1], str):
            parts[-1] += part
        elif part != "":
            parts.append(part)
    return parts


def _check(template: _Template, layout: Any, fields: Mapping[str, FieldKind], content_fields: list[str]) -> None:
    """Fill the layout with made-up values and stage that line both ways, by Python and by the template's parts:
    they must agree (a guard against a template builder bug, not against the data)."""
    made_up = {slot: slot.piece if slot.integer else f"v{slot.piece}\u00e9,:{{}}[]" for slot in template.slots}
    micros = 1_700_000_000_123_456

    def fill(node: Any) -> Any:
        if isinstance(node, dict):
            return {key: fill(item) for key, item in node.items()}
        if isinstance(node, list):
            return [fill(item) for item in node]
        if isinstance(node, _Slot):
            return made_up.get(node, node.piece if node.integer else "x")
        return node

    line = fill(layout)
    for separators in _SEPARATORS:
        pieces = json.dumps(line, ensure_ascii=False, separators=separators).split('"')
        for slot in template.slots:
            if (pieces[slot.piece].strip(_PUNCTUATION) if slot.integer else pieces[slot.piece]) != str(made_up[slot]):
                raise _Unsupported

    def render(parts: list[_Part]) -> str:
        return "".join(p if isinstance(p, str) else str(micros) if isinstance(p, _Micros) else str(made_up[p]) for p in parts)

    typed: dict[str, Any] = {}
    for name, kind in fields.items():
        parts = template.columns[name]
        value, state = field_value(kind, line.get(name))
        if kind is FieldKind.TIMESTAMP and parts is not None:
            value = micros  # the parse of a line's own timestamp is checked per line
        if (render(parts) if parts is not None else None) != (None if value is None else str(value)):
            raise _Unsupported
        typed[name] = value
    if template.hash_text is not None and render(template.hash_text) != canonical_json([typed[name] for name in content_fields]):
        raise _Unsupported


def _stage_templates(
    raw: pl.Series, text: pl.Series, fields: Mapping[str, FieldKind], content_fields: list[str]
) -> tuple[list[pl.DataFrame], pl.Series]:
    """Frames of the lines templates vouch for, and the rows of the valid UTF-8 lines no template matched."""
    frames: list[pl.DataFrame] = []
    pending = text.is_not_null().arg_true()  # rows no template matched yet, in order
    unmatched = text.is_not_null()  # the same, as a mask
    quotes: pl.Series | None = None
    tried: set[str] = set()
    while len(tried) < MAX_TEMPLATES and pending.len() >= TEMPLATE_MIN_ROWS:
        sample = pending.gather_every(-(-pending.len() // TEMPLATE_SAMPLE))
        layouts: dict[str, _Layout] = {}
        counts: Counter[str] = Counter()
        for line in raw.gather(sample).to_list():
            layout = _layout_of(line)
            if layout is not None and layout.regex not in tried:
                counts[layout.regex] += 1
                layouts.setdefault(layout.regex, layout)
        # Layouts seen often enough to pay, most frequent first; the sample is redrawn from what they leave.
        frequent = [
            regex
            for regex, count in counts.most_common()
            if count >= TEMPLATE_MIN_SAMPLED and count * pending.len() >= TEMPLATE_MIN_ROWS * sample.len()
        ]
        if not frequent:
            break
        if len(frequent) > 1 and quotes is None:
            quotes = text.str.count_matches('"', literal=True)  # every line of a layout has its count of quotes
        for regex in frequent[: MAX_TEMPLATES - len(tried)]:
            tried.add(regex)
            try:
                template = _template(layouts[regex], fields, content_fields)
            except _Unsupported:
                continue
            candidates = pending if quotes is None else pending.filter(quotes.gather(pending) == template.quotes)
            candidate_text = text if candidates.len() == text.len() else text.gather(candidates)
            try:
                matched = candidate_text.str.contains(regex)
            except pl.exceptions.PolarsError:  # a regex beyond the engine's limits: its lines are left to the rest
                continue
            group = candidates.filter(matched)
            if group.len() < TEMPLATE_MIN_ROWS:
                continue
            frames.append(_stage_template(template, candidate_text.filter(matched), group, fields))
            unmatched.scatter(group, False)
            pending = pending.filter(unmatched.gather(pending))
    return frames, pending


def _stage_template(template: _Template, text: pl.Series, rows: pl.Series, fields: Mapping[str, FieldKind]) -> pl.DataFrame:
    """Stage lines that all match `template`: what varies is read from their pieces between quotes."""
    pieces = pl.DataFrame({"_row": rows, "_text": text}).select("_row", _pieces=pl.col("_text").str.split('"'))
    piece = pl.col("_pieces").list.get
    frame = pieces.select(
        "_row",
        **{
            f"_slot{s.piece}": piece(s.piece).str.strip_chars(_PUNCTUATION) if s.integer else piece(s.piece)
            for s in template.slots
        },
    )
    del pieces

    def text_of(parts: list[_Part]) -> pl.Expr:
        exprs = [
            pl.lit(p)
            if isinstance(p, str)
            else pl.col(f"_micros_{p.name}").cast(pl.String)
            if isinstance(p, _Micros)
            else pl.col(f"_slot{p.piece}")
            for p in parts
        ]
        return exprs[0] if len(exprs) == 1 else pl.concat_str(exprs)

    if template.timestamps:
        parsed = {name: _timestamp(pl.col(f"_slot{slot.piece}")) for name, slot in template.timestamps.items()}
        frame = frame.with_columns(
            **{f"_micros_{name}": micros for name, (micros, _) in parsed.items()},
            _vouched=pl.all_horizontal([ok for _, ok in parsed.values()]),
        ).filter("_vouched")
    columns: dict[str, pl.Expr] = {}
    for name, kind in fields.items():
        parts = template.columns[name]
        dtype = pl.Datetime("us", "UTC") if kind is FieldKind.TIMESTAMP else kind.polars_type
        if parts is None:
            columns[name] = pl.lit(None, dtype=dtype)
        elif kind is FieldKind.TIMESTAMP:
            columns[name] = pl.col(f"_micros_{name}").cast(dtype)
        else:
            columns[name] = text_of(parts).cast(dtype)  # strict: an integer slot holds digits only
        columns[f"{name}__state"] = pl.lit(template.states[name], dtype=pl.String)
    columns["_parse_error"] = pl.lit(None, dtype=pl.String)
    columns["_extra_fields"] = pl.lit(template.extra_fields, dtype=pl.String)
    columns["_shape"] = pl.lit(template.shape, dtype=pl.List(pl.String))
    columns["_hash_text"] = pl.lit(None, dtype=pl.String) if template.hash_text is None else text_of(template.hash_text)
    out = frame.select("_row", **columns)
    hashes = _sha256_hex(out.get_column("_hash_text")) if template.hash_text is not None else pl.lit(None, dtype=pl.String)
    return out.with_columns(_content_hash=hashes).drop("_hash_text")


# ---------------------------------------------------------------------------------------------------------------
# Tier 2: msgspec


def _stage_decoded(
    raw: pl.Series, text: pl.Series, rows: pl.Series, fields: Mapping[str, FieldKind], content_fields: list[str]
) -> pl.DataFrame:
    """The lines of `raw` (`text`: the same, null where not UTF-8) msgspec's tier vouches for, staged, `_row` from `rows`.

    Per line, Python only calls msgspec; the rest is done column by column (C-level `map`s, Polars), with the
    collector paused (see _gc_paused)."""
    plain = text.is_not_null() & ~text.str.contains("\\u003", literal=True)  # no `\u003a` can hide a `:`
    brackets = text.str.count_matches("{", literal=True) + text.str.count_matches("[", literal=True)
    plain &= brackets <= MAX_NESTING_DEPTH  # so no line deeper than the limit is decoded here
    candidates = pl.Series(range(raw.len()), dtype=pl.get_index_type()) if plain.all() else plain.arg_true()
    whole = candidates.len() == raw.len()
    colons = (text if whole else text.gather(candidates)).str.count_matches(":", literal=True)
    with _gc_paused():
        objects, float_rows = _decode((raw if whole else raw.gather(candidates)).to_list())
        kept = candidates
        if set(map(type, objects)) != {dict}:  # a refused line (None), or JSON that is not an object
            keep = [i for i, obj in enumerate(objects) if type(obj) is dict]
            objects, kept, colons = [objects[i] for i in keep], kept.gather(keep), colons.gather(keep)
            float_rows = {position for position, i in enumerate(keep) if i in float_rows} if float_rows else float_rows
        with_floats = [i in float_rows for i in range(len(objects))] if float_rows else None
        repeated = _repeated_keys(objects, colons)
        if repeated is not None:  # a member was dropped for a repeated key: such lines are left out
            unrepeated = (~repeated).arg_true()
            objects, kept = [objects[i] for i in unrepeated], kept.gather(unrepeated)
            with_floats = [with_floats[i] for i in unrepeated] if with_floats is not None else None
        # msgspec refuses raw control characters in strings, so only a line with a backslash can hold a string that
        # is not plain text (a `"`, a backslash or a control character, all escaped): the others need no look.
        escapes: pl.Series | None = (text if kept.len() == text.len() else text.gather(kept)).str.contains("\\", literal=True)
        escapes = escapes if escapes is not None and escapes.any() else None
        ok = pl.repeat(True, len(objects), eager=True)
        columns: dict[str, pl.Series] = {}
        for name, kind in fields.items():
            values = list(map(dict.get, objects, itertools.repeat(name)))
            typed, fine = _column(name, kind, values, with_floats, escapes)
            columns[name] = typed
            if fine is not None:
                ok &= fine
        layouts, layout_ids = _key_layouts(objects)
        unknown_shapes = _shapes_with_unknown_keys(objects, layouts, layout_ids, fields)
        del objects
    frame = pl.DataFrame({"_row": rows.gather(kept)}).with_columns(**columns, _layout=layout_ids, _ok=ok)
    if unknown_shapes is not None:
        frame = frame.with_columns(_unknown_shape=unknown_shapes)
    if not ok.all():
        frame = frame.filter("_ok")
    frame = _with_shapes(frame, layouts, fields)
    states = {
        f"{name}__state": pl.when(pl.col(name).is_null()).then(pl.lit(State.MISSING)).otherwise(pl.lit(State.OK))
        for name in fields
    }
    frame = frame.with_columns(**states, _parse_error=pl.lit(None, dtype=pl.String))
    hash_text = frame.with_columns(_content_text(fields, content_fields)).get_column("_hash_text")
    frame = frame.with_columns(_content_hash=_sha256_hex(hash_text))
    selected = ["_row"] + [c for name in fields for c in (name, f"{name}__state")]
    return frame.select(*selected, "_parse_error", "_extra_fields", "_shape", "_content_hash")


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """The cyclic garbage collector paused (as it was when this started, once done). Decoding a chunk creates
    hundreds of thousands of containers, none in a reference cycle; every 700 of them would otherwise start a
    collection that walks ever more of them (cProfile, 150k lines: msgspec's decode 0.8 s with, 0.3 s without)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _decode(lines: list[bytes]) -> tuple[list[Any], set[int]]:
    """What msgspec decodes each line to (None where it refuses the line), and the positions of the lines that
    hold a float. Floats are parsed as the reference parses them: `float(text)`, refusing what overflows."""
    objects: list[Any] = []
    float_rows: set[int] = set()

    def finite(number: str) -> float:
        value = float(number)
        if not math.isfinite(value):
            raise ValueError(f"number {number[:40]} is beyond the float range")
        float_rows.add(len(objects))  # the line being decoded: it is appended once decoded
        return value

    decode = msgspec.json.Decoder(float_hook=finite).decode
    append = objects.append
    for line in lines:
        try:
            append(decode(line))
        except Exception:  # any refusal (DecodeError, UnicodeDecodeError, RecursionError...) is the reference's to word
            append(None)
    return objects, float_rows


def _repeated_keys(objects: list[dict[str, Any]], colons: pl.Series) -> pl.Series | None:
    """Which lines lost a member to a repeated key (at any level), or None when none did.

    Each member of a line is written with one `:` outside strings and every `:` inside a string is the same
    character once decoded (the caller left out lines with `\\u003`), so the `:` of msgspec's re-encoding of a
    line are its own `:` less one for each member dropped (and those inside its value): never more. So the
    re-encoding of all the lines has as many `:` as the lines exactly when no line dropped a member, and the
    lines are compared one by one only when some did."""
    if _encode(objects).count(b":") == colons.sum():
        return None
    return pl.Series([_encode(obj).count(b":") for obj in objects], dtype=colons.dtype) != colons


_NONE = type(None)


def _column(
    name: str, kind: FieldKind, values: list[Any], with_floats: list[bool] | None, escapes: pl.Series | None
) -> tuple[pl.Series, pl.Series | None]:
    """(the typed column, whether each value is null or plainly of its kind: None when all are);
    `with_floats`: which lines hold a float (None: no line does); `escapes`: which lines hold a `\\` (None: none)."""
    types = set(map(type, values))  # `bool` is not `int` here
    if kind is FieldKind.STRING or kind is FieldKind.TIMESTAMP:
        strings = types <= {str, _NONE}
        text = pl.Series(name, values if strings else [v if type(v) is str else None for v in values], dtype=pl.String)
        fine = None if strings else pl.Series([v is None or type(v) is str for v in values], dtype=pl.Boolean)
        if kind is FieldKind.STRING:
            if escapes is None:  # no string of these lines holds a `"`, a `\\` or a control character
                return text, fine
            plain_text = ~escapes | text.str.contains(_PLAIN_TEXT).fill_null(True)
            return text, plain_text if fine is None else fine & plain_text
        micros, vouched = _timestamps(text)
        plain_ts = text.is_null() | vouched
        return micros.cast(pl.Datetime("us", "UTC")).alias(name), plain_ts if fine is None else fine & plain_ts
    if kind is FieldKind.INTEGER:
        if types <= {int, _NONE}:
            try:
                return pl.Series(name, values, dtype=pl.Int64), None
            except (TypeError, OverflowError):  # a value beyond int64: the values are checked one by one
                pass
        in_range = [v is None or (type(v) is int and INT64_MIN <= v <= INT64_MAX) for v in values]
        kept = [v if ok else None for v, ok in zip(values, in_range, strict=True)]
        return pl.Series(name, kept, dtype=pl.Int64), pl.Series(in_range, dtype=pl.Boolean)
    # msgspec's sorted compact rendering is canonical_json's but for floats (repr differs: 1e-07, 1e+16).
    render = functools.partial(_encode, order="sorted")
    if types == {dict} and with_floats is None:
        return pl.Series(name, list(map(render, values)), dtype=pl.Binary).cast(pl.String), None
    objects = [
        (canonical_json(v) if with_floats and with_floats[i] else render(v).decode()) if type(v) is dict else None
        for i, v in enumerate(values)
    ]
    fine = None if types <= {dict, _NONE} else pl.Series([v is None or type(v) is dict for v in values], dtype=pl.Boolean)
    return pl.Series(name, objects, dtype=pl.String), fine


def _timestamps(text: pl.Series) -> tuple[pl.Series, pl.Series]:
    frame = text.to_frame("t").select(*_timestamp(pl.col("t")))
    return frame.to_series(0), frame.to_series(1)


def _key_layouts(objects: list[dict[str, Any]]) -> tuple[list[tuple[str, ...]], pl.Series]:
    """The distinct top-level keys in line order, and which of them each line has."""
    keys = list(map(tuple, objects))
    index = dict.fromkeys(keys, 0)
    for position, layout in enumerate(index):
        index[layout] = position
    return list(index), pl.Series("_layout", list(map(index.__getitem__, keys)), dtype=pl.UInt32)


def _shapes_with_unknown_keys(
    objects: list[dict[str, Any]], layouts: list[tuple[str, ...]], layout_ids: pl.Series, fields: Mapping[str, FieldKind]
) -> pl.Series | None:
    """`_shape` of each line with a key outside the contract (its value's type is read from the line), null for the
    rest; None when no line has such a key."""
    known = set(fields)
    unknown = [position for position, keys in enumerate(layouts) if not known.issuperset(keys)]
    if not unknown:
        return None
    rows = layout_ids.is_in(unknown).arg_true()
    members: list[str] = []
    offsets = [0]
    for row in rows.to_list():
        obj = objects[row]
        members += map(_member, obj, map(type, obj.values()))
        offsets.append(len(members))
    shapes = _lists(members, offsets)
    at = pl.Series([None], dtype=pl.UInt32).extend_constant(None, len(objects) - 1).scatter(rows, range(rows.len()))
    return shapes.gather(at)  # a null index gives a null shape


def _with_shapes(frame: pl.DataFrame, layouts: list[tuple[str, ...]], fields: Mapping[str, FieldKind]) -> pl.DataFrame:
    """`_shape` and `_extra_fields` from each line's `_layout` and, for the contract's keys (whose values are null or
    plainly of their kind on every line staged here), which typed columns are null; `_unknown_shape` where present.
    Worked out once per distinct (layout, nulls) and gathered per line."""
    known = set(fields)
    nullable = [name for name in fields if frame.get_column(name).null_count()]  # the rest are never null here
    signatures = frame.select("_layout", *[pl.col(name).is_null().alias(f"_null_{name}") for name in nullable])
    distinct = signatures.unique(maintain_order=True)
    present = {name: f"{name}:{_KIND_TYPES[kind]}" for name, kind in fields.items()}
    absent = {name: f"{name}:null" for name in fields}
    members: list[str] = []
    offsets = [0]
    rows = distinct.iter_rows() if nullable else zip(range(len(layouts)))
    for layout, *nulls in rows:
        keys = layouts[layout]
        if not known.issuperset(keys):
            pass  # a line with a key outside the contract takes its `_unknown_shape`
        elif any(nulls):
            null = dict(zip(nullable, nulls, strict=True))
            members += [absent[key] if null.get(key) else present[key] for key in keys]
        else:
            members += map(present.__getitem__, keys)
        offsets.append(len(members))
    if nullable:
        shape_ids = signatures.join(
            distinct.with_row_index("_shape_id"), on=signatures.columns, how="left", maintain_order="left"
        ).get_column("_shape_id")
    else:
        shape_ids = frame.get_column("_layout")
    shapes = _lists(members, offsets).gather(shape_ids)
    if "_unknown_shape" in frame.columns:
        shapes = frame.get_column("_unknown_shape").fill_null(shapes)
    extras = [None if known.issuperset(keys) else ",".join(sorted(set(keys) - known)) for keys in layouts]
    return frame.with_columns(
        _shape=shapes.alias("_shape"),
        _extra_fields=pl.Series(extras, dtype=pl.String).gather(frame.get_column("_layout")),
    ).drop("_layout", "_unknown_shape", strict=False)


_KIND_TYPES = {
    FieldKind.STRING: "string",
    FieldKind.INTEGER: "integer",
    FieldKind.TIMESTAMP: "string",
    FieldKind.OBJECT: "object",
}


def _lists(members: list[str], offsets: list[int]) -> pl.Series:
    """A List(String) column cut from `members` at `offsets` (built through Arrow: Polars builds a Series from
    Python lists one inner list at a time)."""
    lists = pa.LargeListArray.from_arrays(pa.array(offsets, pa.int64()), pa.array(members, pa.large_string()))
    return pl.Series("_shape", pl.from_arrow(lists), dtype=pl.List(pl.String))


@functools.lru_cache(maxsize=4096)
def _member(key: str, kind: type) -> str:
    """A `_shape` member: `key:json type`."""
    return f"{key}:{_JSON_TYPES[kind]}"


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
    """sha256 hex digest of each text's UTF-8 bytes (null stays null), hashlib's C called through `map`."""
    data = texts.cast(pl.Binary)
    digests = list(map(_hexdigest, map(hashlib.sha256, data.drop_nulls().to_list())))
    hexes = pl.Series(digests, dtype=pl.String)
    if not data.null_count():
        return hexes
    return pl.Series([None], dtype=pl.String).extend_constant(None, data.len() - 1).scatter(data.is_not_null().arg_true(), hexes)


_hexdigest = operator.methodcaller("hexdigest")


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
