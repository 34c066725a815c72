"""The fast staging path gives frames identical to the exact Python path, on any producer's layout.

Lines are valid events and hostile variants rendered the way other producers write them: keys in any
order, Python's default separators or odd JSON whitespace, a nested payload, unknown fields, escapes,
and the cases the decoder accepts but the contract refuses (a key repeated at any level, nesting past
the limit, `\\u003a` colons hiding a repeated key), plus byte damage. Each batch is staged both ways and
the frames must be equal, column for column (`LAKEHOUSE_FUZZ_EXAMPLES` raises the example count).
"""

from __future__ import annotations

import json
import os
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from assets.billing_feed import BILLING_EVENTS
from lakehouse.staging import records_fast
from lakehouse.staging.records import stage_records
from tests.property.test_fuzz_input import NUMBER, NUMBER_LITERALS, hostile_lines, json_values, perturb_fields
from tests.support import event

EXAMPLES = int(os.environ.get("LAKEHOUSE_FUZZ_EXAMPLES", "400"))
EQUIVALENCE = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
SEPARATORS = [(",", ":"), (", ", ": "), (" ,", " :"), ("\t,\r", ":\t"), (",\n", ":")]


def render(value: Any, draw: st.DrawFn, item: str, key: str, depth: int = 0) -> str:
    """JSON text of `value` with the given separators, keys in a drawn order, strings with or without escapes."""
    if isinstance(value, dict):
        keys = draw(st.permutations(list(value))) if value else []
        members = [render(k, draw, item, key) + key + render(value[k], draw, item, key, depth + 1) for k in keys]
        return "{" + item.join(members) + "}"
    if isinstance(value, list):
        return "[" + item.join(render(v, draw, item, key, depth + 1) for v in value) + "]"
    if value == NUMBER:
        return draw(st.sampled_from(NUMBER_LITERALS))
    return json.dumps(value, ensure_ascii=draw(st.booleans()))


@st.composite
def foreign_lines(draw: st.DrawFn) -> bytes:
    record: dict[str, Any] = event(
        draw(st.sampled_from(["e1", "e:2", 'e"3', "é4"])),
        draw(st.sampled_from([1, 2, 0, 2**63])),
        amount=draw(st.sampled_from([100, -100, 0, -(2**63) - 1])),
        kind=draw(st.sampled_from(["charge", "refund", "credit", "adjustment"])),
        ts=draw(
            st.sampled_from(
                ["2025-01-10T12:00:00Z", "2025-01-09T23:30:00.5-01:00", "2025-01-10T12:00:00", "2025-02-30T00:00:00Z", "x"]
            )
        ),
    )
    if draw(st.booleans()):
        record["payload"] = draw(st.dictionaries(st.text(max_size=6), json_values, max_size=5))
    perturb_fields(draw, record, [*BILLING_EVENTS.fields, "channel", "x:y"])
    item, key = draw(st.sampled_from(SEPARATORS))
    text = draw(st.sampled_from(["", " ", "\t"])) + render(record, draw, item, key) + draw(st.sampled_from(["", " ", "\r"]))
    trick = draw(st.sampled_from(["none", "none", "repeat", "repeat_nested", "escaped_colon", "deep", "deep_ok"]))
    if trick == "repeat":  # a key repeated at the top level, same or another value
        text = text[:-1].rstrip() + item + '"event_id"' + key + draw(st.sampled_from(['"e1"', '"zz"', "1"])) + "}"
    elif trick == "repeat_nested":
        text = text.replace("{", '{"a":1' + item + '"a"' + key + "2" + item, 2).replace(item + "}", "}")
    elif trick == "escaped_colon":  # `\u003a` in a key: a colon the line shows no `:` for
        text = text[:-1] + item + '"k\\u003ax"' + key + "1" + item + '"k:x"' + key + "2}"
    elif trick in ("deep", "deep_ok"):
        depth = draw(st.integers(95, 105)) if trick == "deep" else draw(st.integers(1, 99))
        text = text[:-1] + item + '"deep"' + key + "[" * depth + "]" * depth + "}"
    raw = text.encode("utf-8", "surrogatepass")
    for _ in range(draw(st.integers(0, 1))):  # byte-level damage: insert, delete or flip
        position = draw(st.integers(0, len(raw)))
        raw = raw[:position] + draw(st.binary(min_size=0, max_size=2)) + raw[position + draw(st.integers(0, 2)) :]
    return raw.replace(b"\n", b" ")


def assert_staged_alike(lines: list[bytes]) -> None:
    rows = pl.DataFrame({"_raw": lines}, schema={"_raw": pl.Binary})
    fields, content = BILLING_EVENTS.fields, BILLING_EVENTS.content_fields
    assert_frame_equal(stage_records(rows, fields, content), stage_records(rows, fields, content, vectorised=False))


@EQUIVALENCE
@given(lines=st.lists(foreign_lines(), min_size=1, max_size=24))
@example(lines=[b'{"event_id":"e1","event_id":"e2"}', b'{"p":{"a":1,"a":2}}', b'{"k\\u003a":1,"k:":2}'])
@example(lines=[b'{"payload":' + b"[" * 100 + b"]" * 100 + b"}", b'{"payload":{"a":' + b"[" * 98 + b"]" * 98 + b"}}"])
def test_foreign_layouts_stage_exactly_as_the_python_path(lines: list[bytes]) -> None:
    assert_staged_alike(lines)


@EQUIVALENCE
@given(lines=st.lists(hostile_lines(), min_size=1, max_size=24))
def test_fuzzed_hostile_lines_stage_exactly_as_the_python_path(lines: list[bytes]) -> None:
    assert_staged_alike(lines)


def render_spaced(value: Any, draw: st.DrawFn) -> str:
    """JSON text of `value`, keys in their order, each `,` and `:` followed by a space or not (now and then by other
    whitespace, or preceded by it): lines of one layout that a template may take, and a few it must not."""
    item = st.sampled_from([",", ", ", ", ", ", ", ",  ", " ,", ",\t"])
    key = st.sampled_from([":", ": ", ": ", ": ", ":  ", " :"])
    if isinstance(value, dict):
        members = [json.dumps(k) + draw(key) + render_spaced(v, draw) for k, v in value.items()]
        return "{" + "".join((draw(item) if i else "") + m for i, m in enumerate(members)) + "}"
    if isinstance(value, list):
        return "[" + "".join((draw(item) if i else "") + render_spaced(v, draw) for i, v in enumerate(value)) + "]"
    return json.dumps(value, ensure_ascii=draw(st.booleans()))


@st.composite
def spaced_lines(draw: st.DrawFn) -> bytes:
    record: dict[str, Any] = event(
        draw(st.sampled_from(["e1", "e:2", "e, 3", 'e"4', "é5"])),
        draw(st.sampled_from([1, 2, 0, -7, 2**63])),
        amount=draw(st.sampled_from([100, -100, 0, 12345678901234567890])),
        ts=draw(st.sampled_from(["2025-01-10T12:00:00Z", "2025-01-09T23:30:00.5-01:00", "2025-02-30T00:00:00Z"])),
        payload={
            "plan": draw(st.sampled_from(["pro", "a: b", "x, y"])),
            "seats": draw(st.sampled_from([1, 40, -3])),
            "l": [1, 2],
        },
    )
    if draw(st.integers(0, 9)) == 0:
        record[draw(st.sampled_from(list(record)))] = draw(json_values)
    return render_spaced(record, draw).encode("utf-8", "surrogatepass")


@EQUIVALENCE
@given(lines=st.lists(spaced_lines(), min_size=1, max_size=24))
def test_templates_take_lines_with_or_without_a_space_after_separators_exactly_as_the_python_path(lines: list[bytes]) -> None:
    with pytest.MonkeyPatch.context() as patch:  # a template for every layout seen, however few its lines
        patch.setattr(records_fast, "TEMPLATE_MIN_ROWS", 1)
        patch.setattr(records_fast, "TEMPLATE_MIN_SAMPLED", 1)
        assert_staged_alike(lines)
