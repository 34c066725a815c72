"""Stage raw JSON lines into typed columns plus a per-field state, so contracts can judge every rule at once.

Lines the fast path (lakehouse.staging.records_fast: msgspec, then Polars, for any key order or whitespace)
vouches for are staged there; the rest by the exact parser (lakehouse.staging.parse), line by line. Staging never raises on data (see lakehouse.staging.parse).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import polars as pl

from lakehouse.staging.parse import FieldKind, State, canonical_json, field_value, json_type, parse_json_object
from lakehouse.staging.records_fast import stage_vouched

STAGE_CHUNK_ROWS = 200_000


def stage_records(
    rows: pl.DataFrame, fields: Mapping[str, FieldKind], content_fields: list[str], vectorised: bool = True
) -> pl.DataFrame:
    """Add, for each declared field, a typed column and a `<field>__state` column, plus:

    `_parse_error` (why the line is not a JSON object, else null), `_extra_fields` (unknown
    top-level keys, comma-separated: schema drift), `_shape` (every top-level `key:json type`, what
    the drift policy judges; null for a line that is not an object) and `_content_hash` (sha256 of
    the canonical content fields, null unless every content field parsed).

    Lines the fast path (lakehouse.staging.records_fast) vouches for are staged there; the rest, line by
    line in Python. `vectorised=False` stages every line in Python (the reference).
    """
    raw = rows.get_column("_raw")
    if not vectorised or raw.is_empty():
        return rows.hstack(_stage_python(raw.to_list(), fields, content_fields))
    # In chunks: the fast path's decoded objects and intermediate columns are several times the raw lines.
    chunks = [
        _stage_chunk(raw.slice(start, STAGE_CHUNK_ROWS), fields, content_fields)
        for start in range(0, raw.len(), STAGE_CHUNK_ROWS)
    ]
    return rows.hstack(pl.concat(chunks))


def _stage_chunk(raw: pl.Series, fields: Mapping[str, FieldKind], content_fields: list[str]) -> pl.DataFrame:
    staged = stage_vouched(raw, fields, content_fields)  # the lines it vouches for, with their `_row`, in any order
    if staged.height < raw.len():
        vouched = pl.repeat(False, raw.len(), eager=True).scatter(staged.get_column("_row"), True)
        slow = (~vouched).arg_true()
        python = _stage_python(raw.gather(slow).to_list(), fields, content_fields).with_columns(_row=slow)
        staged = pl.concat([staged, python.select(staged.columns)])
    if not staged.get_column("_row").is_sorted():
        staged = staged.sort("_row")
    return staged.drop("_row")


def _stage_python(raws: list[bytes], fields: Mapping[str, FieldKind], content_fields: list[str]) -> pl.DataFrame:
    values: dict[str, list[Any]] = {name: [] for name in fields}
    states: dict[str, list[str]] = {name: [] for name in fields}
    parse_errors: list[str | None] = []
    extras: list[str | None] = []
    shapes: list[list[str] | None] = []
    hashes: list[str | None] = []
    known = set(fields)
    for raw in raws:
        obj, error = parse_json_object(raw)
        parse_errors.append(error)
        if obj is None:
            for name in fields:
                values[name].append(None)
                states[name].append(State.NOT_PARSED)
            extras.append(None)
            shapes.append(None)
            hashes.append(None)
            continue
        row = {}
        for name, kind in fields.items():
            value, state = field_value(kind, obj.get(name))
            values[name].append(value)
            states[name].append(state)
            row[name] = (value, state)
        unknown = sorted(set(obj) - known)
        extras.append(",".join(unknown) if unknown else None)
        shapes.append([f"{key}:{json_type(value)}" for key, value in obj.items()])
        content = [row[name][0] for name in content_fields]
        complete = all(row[name][1] in (State.OK, State.MISSING) for name in content_fields)
        hashes.append(hashlib.sha256(canonical_json(content).encode()).hexdigest() if complete else None)
    columns: dict[str, pl.Series] = {}
    for name, kind in fields.items():
        series = pl.Series(name, values[name], dtype=kind.polars_type)
        if kind is FieldKind.TIMESTAMP:
            series = series.cast(pl.Datetime("us", "UTC"))
        columns[name] = series
        columns[f"{name}__state"] = pl.Series(f"{name}__state", states[name], dtype=pl.String)
    columns["_parse_error"] = pl.Series("_parse_error", parse_errors, dtype=pl.String)
    columns["_extra_fields"] = pl.Series("_extra_fields", extras, dtype=pl.String)
    columns["_shape"] = pl.Series("_shape", shapes, dtype=pl.List(pl.String))
    columns["_content_hash"] = pl.Series("_content_hash", hashes, dtype=pl.String)
    return pl.DataFrame(columns)
