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
from lakehouse.batches.resolution import OUTCOMES, Resolution, key_slices, resolve
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


def resolved_by_slice(batch: pl.DataFrame, prior: pl.DataFrame, slices: int) -> list[Resolution]:
    """What publishing does with each group of key slices: each slice's deliveries and prior deliveries alone."""
    in_batch, in_prior = key_slices(batch.get_column(KEY), slices), key_slices(prior.get_column(KEY), slices)
    return [resolve(batch.filter(in_batch == n), prior.filter(in_prior == n), KEY, VERSION) for n in range(slices)]


@settings(max_examples=max(EXAMPLES * 4, 50), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    batch_rows=st.lists(delivery, max_size=30),
    prior_rows=st.lists(st.tuples(delivery, st.sampled_from(OTHER_DAYS)), max_size=30),
    slices=st.sampled_from([2, 3, 8, 64]),
)
def test_sliced_resolution_equals_whole_resolution(
    batch_rows: list[tuple[str, int, str, int, str]], prior_rows: list[tuple[tuple[str, int, str, int, str], date]], slices: int
) -> None:
    batch = frame(batch_rows, [BATCH_DAY] * len(batch_rows))
    prior = frame([row for row, _ in prior_rows], [day for _, day in prior_rows])
    whole = resolve(batch, prior, KEY, VERSION)
    parts = resolved_by_slice(batch, prior, slices)
    assert {o: sum(part.counts()[o] for part in parts) for o in OUTCOMES} == whole.counts()
    for name in ("outcomes", "kept", "prior_kept", "displaced"):
        expected, got = getattr(whole, name), pl.concat([getattr(part, name) for part in parts])
        assert got.schema == expected.schema, name
        assert as_set(got) == as_set(expected), name


def test_a_key_falls_in_one_slice_whatever_else_is_resolved() -> None:
    keys = pl.Series(KEY, KEYS)
    alone = [key_slices(pl.Series(KEY, [key]), 8).item() for key in KEYS]
    assert key_slices(keys, 8).to_list() == alone
    assert len(set(alone)) > 1, "the keys must spread over several slices for the equivalence test to mean anything"
