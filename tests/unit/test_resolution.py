"""Version resolution: uncontested keys take the short path, contested ones the full rule, outputs in lineage order."""

from __future__ import annotations

from datetime import UTC, date, datetime

import polars as pl

from assets.billing_feed import BILLING_EVENTS
from lakehouse.batches.resolution import LINEAGE, resolve

KEY, VERSION = BILLING_EVENTS.key, BILLING_EVENTS.version
BATCH_DAY, EARLIER, LATER = date(2024, 3, 10), date(2024, 3, 9), date(2024, 3, 11)


def deliveries(*rows: tuple[str, int, str, date, str, int]) -> pl.DataFrame:
    """(key, version, content hash, arrival date, file, line) as validated deliveries in silver's schema."""
    return pl.DataFrame(
        [
            {
                KEY: key,
                VERSION: version,
                "account_id": "a1",
                "event_type": "charge",
                "event_ts": datetime(2024, 3, 9, tzinfo=UTC),
                "amount_minor": 100 * version,
                "currency": "EUR",
                "payload": None,
                "event_date": date(2024, 3, 9),
                "_content_hash": content,
                "_batch_id": f"batch-{arrival}",
                "_arrival_date": arrival,
                "_source_file": file,
                "_source_line": line,
            }
            for key, version, content, arrival, file, line in rows
        ],
        schema=BILLING_EVENTS.silver_schema,
    )


def keys_and_lines(frame: pl.DataFrame) -> list[tuple[str, str, int]]:
    return list(frame.select(KEY, "_source_file", "_source_line").iter_rows())


# Input in no particular order: uncontested keys (new, old) around contested ones.
BATCH = deliveries(
    ("new", 1, "n", BATCH_DAY, "b.jsonl", 1),
    ("conflict", 1, "c2", BATCH_DAY, "b.jsonl", 2),
    ("again", 2, "g", BATCH_DAY, "a.jsonl", 9),
    ("again", 2, "g", BATCH_DAY, "a.jsonl", 3),
    ("newer", 2, "w2", BATCH_DAY, "a.jsonl", 5),
)
PRIOR = deliveries(
    ("newer", 1, "w1", EARLIER, "p.jsonl", 1),
    ("conflict", 1, "c9", LATER, "p.jsonl", 1),
    ("old", 1, "o", EARLIER, "p.jsonl", 2),
)


def test_each_delivery_gets_its_outcome_in_lineage_order() -> None:
    outcomes = resolve(BATCH, PRIOR, KEY, VERSION).outcomes
    assert outcomes.select(KEY, "_source_file", "_source_line", "_outcome").rows() == [
        ("again", "a.jsonl", 3, "inserted"),
        ("newer", "a.jsonl", 5, "updated"),
        ("again", "a.jsonl", 9, "duplicate"),
        ("new", "b.jsonl", 1, "inserted"),
        ("conflict", "b.jsonl", 2, "updated"),  # the smaller hash wins against a delivery of another date
    ]
    assert outcomes.filter(pl.col("_kept_arrival_date").is_not_null()).is_empty()  # no conflict lost in this batch


def test_silver_keeps_one_row_per_key_in_lineage_order_and_the_loser_is_displaced() -> None:
    resolution = resolve(BATCH, PRIOR, KEY, VERSION)
    assert keys_and_lines(resolution.kept) == [
        ("old", "p.jsonl", 2),  # an earlier arrival date comes first
        ("again", "a.jsonl", 3),  # the earliest delivery of the kept content
        ("newer", "a.jsonl", 5),
        ("new", "b.jsonl", 1),
        ("conflict", "b.jsonl", 2),
    ]
    assert resolution.kept.columns == list(BILLING_EVENTS.silver_schema)
    assert keys_and_lines(resolution.prior_kept) == [("newer", "p.jsonl", 1), ("old", "p.jsonl", 2), ("conflict", "p.jsonl", 1)]
    displaced = resolution.displaced
    assert keys_and_lines(displaced) == [("conflict", "p.jsonl", 1)]
    assert displaced.select("_kept_arrival_date", "_kept_source_file", "_kept_source_line").row(0) == (BATCH_DAY, "b.jsonl", 2)


def test_the_result_does_not_depend_on_the_input_order() -> None:
    expected = resolve(BATCH, PRIOR, KEY, VERSION)
    shuffled = resolve(BATCH.reverse(), PRIOR.reverse(), KEY, VERSION)
    for name in ("outcomes", "kept", "prior_kept"):
        assert getattr(shuffled, name).equals(getattr(expected, name)), name
    assert shuffled.outcomes.select(LINEAGE).equals(shuffled.outcomes.select(LINEAGE).sort(LINEAGE))


def test_an_empty_batch_resolves_to_empty_frames_of_the_same_columns() -> None:
    resolution = resolve(BATCH.clear(), PRIOR.clear(), KEY, VERSION)
    assert resolution.counts() == dict.fromkeys(("inserted", "updated", "duplicate", "stale", "version_conflict"), 0)
    assert resolution.kept.schema == BATCH.schema
    assert resolution.outcomes.columns[-1] == "_outcome"
