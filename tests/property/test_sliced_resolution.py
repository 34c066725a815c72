"""Resolving a batch in key slices gives exactly the rows resolving it whole gives (bounded memory must not move a verdict).

Hypothesis draws small universes where few keys get many deliveries: corrections (higher versions), duplicates
(the same content again, in the batch or earlier), moves (a version whose event lands on another event date),
version conflicts (same version, other content; in the batch, earlier, or both) and stale versions.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from assets.billing_feed import BILLING_EVENTS
from lakehouse.batches.resolution import RESOLVE_SLICES, key_slices, resolve, resolve_in_slices
from tests.property.test_reference_model import EXAMPLES

KEY, VERSION = BILLING_EVENTS.key, BILLING_EVENTS.version
BATCH_DAY = date(2025, 1, 10)
OTHER_DAYS = [date(2025, 1, 8), date(2025, 1, 9), date(2025, 1, 11)]  # earlier and later arrivals (a re-run's view)
KEYS = [f"ev-{n}" for n in range(12)]

delivery = st.tuples(
    st.sampled_from(KEYS),
    st.integers(1, 3),  # version: corrections and stale versions
    st.sampled_from(["a", "b", "c"]),  # content hash: the same again is a duplicate, another is a conflict
    st.integers(0, 2),  # event date offset: a new version may move the event to another date
    st.sampled_from(["x.jsonl", "y.jsonl"]),
)


def frame(rows: list[tuple[str, int, str, int, str]], arrivals: list[date]) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {
                KEY: key,
                VERSION: version,
                "account_id": "a1",
                "event_type": "charge",
                "event_ts": datetime(2025, 1, 7, tzinfo=UTC) + timedelta(days=moved),
                "amount_minor": 100 * version,
                "currency": "EUR",
                "payload": None,
                "event_date": date(2025, 1, 7) + timedelta(days=moved),
                "_content_hash": f"{content}{version}",
                "_batch_id": f"batch-{arrival}",
                "_arrival_date": arrival,
                "_source_file": file,
                "_source_line": line,
            }
            for line, ((key, version, content, moved, file), arrival) in enumerate(zip(rows, arrivals, strict=True), start=1)
        ],
        schema=BILLING_EVENTS.silver_schema,
    )


def as_set(rows: pl.DataFrame) -> list[tuple[object, ...]]:
    return sorted(rows.iter_rows(), key=repr)


@settings(max_examples=max(EXAMPLES * 4, 50), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    batch_rows=st.lists(delivery, max_size=30),
    prior_rows=st.lists(st.tuples(delivery, st.sampled_from(OTHER_DAYS)), max_size=30),
    slices=st.sampled_from([2, 3, RESOLVE_SLICES, 64]),
)
def test_sliced_resolution_equals_whole_resolution(
    batch_rows: list[tuple[str, int, str, int, str]], prior_rows: list[tuple[tuple[str, int, str, int, str], date]], slices: int
) -> None:
    batch = frame(batch_rows, [BATCH_DAY] * len(batch_rows))
    prior = frame([row for row, _ in prior_rows], [day for _, day in prior_rows])
    whole = resolve(batch, prior, KEY, VERSION)
    sliced = resolve_in_slices(batch, prior, KEY, VERSION, slices)
    assert whole.counts() == sliced.counts()
    for name in ("outcomes", "kept", "prior_kept", "displaced"):
        expected, got = getattr(whole, name), getattr(sliced, name)
        assert got.schema == expected.schema, name
        assert as_set(got) == as_set(expected), name
    conflicts = pl.col("_outcome") == "version_conflict"
    only_conflicts = resolve_in_slices(batch, prior, KEY, VERSION, slices, outcomes_kept=conflicts)
    assert only_conflicts.counts() == whole.counts()
    assert as_set(only_conflicts.outcomes) == as_set(whole.outcomes.filter(conflicts))


def test_a_key_falls_in_one_slice_whatever_else_is_resolved() -> None:
    keys = pl.Series(KEY, KEYS)
    alone = [key_slices(pl.Series(KEY, [key]), RESOLVE_SLICES).item() for key in KEYS]
    assert key_slices(keys, RESOLVE_SLICES).to_list() == alone
    assert len(set(alone)) > 1, "the keys must spread over several slices for the equivalence test to mean anything"
