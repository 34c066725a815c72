"""The contract: each bad record gets the first applicable reason and a detail naming every broken rule."""

import json
from datetime import date

import polars as pl
import pytest

from checks.billing_contract import CONTENT_FIELDS, FIELDS, REASONS, billing_event_contract
from lakehouse.staging.contracts import judge
from lakehouse.staging.records import stage_records
from tests.support import event

ARRIVAL = date(2025, 1, 10)


def verdict(*records: object, lateness: int = 7) -> pl.DataFrame:
    raws = [r if isinstance(r, bytes) else json.dumps(r).encode() for r in records]
    rows = pl.DataFrame(
        {"_raw": raws, "_source_file": "f", "_source_line": list(range(1, len(raws) + 1))},
        schema={"_raw": pl.Binary, "_source_file": pl.String, "_source_line": pl.Int64},
    )
    staged = stage_records(rows.with_columns(_arrival_date=pl.lit(ARRIVAL)), FIELDS, CONTENT_FIELDS)
    return judge(staged, billing_event_contract(lateness), REASONS)


def reason_of(record: object, **kwargs: object) -> str | None:
    return verdict(record, **kwargs).item(0, "_reason")


def without(field: str) -> dict[str, object]:
    record = event("e1", ts="2025-01-10T00:00:00Z")
    del record[field]
    return record


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        (event("e1", ts="2025-01-10T00:00:00Z"), None),
        (event("e1", ts="2025-01-10T00:00:00Z", payload={"b": 1, "a": [1]}, channel="web"), None),
        (b"{oops", "malformed_record"),
        (b"\xff", "malformed_record"),
        (b"[]", "malformed_record"),
        (without("account_id"), "missing_field"),
        (event("e1", ts="2025-01-10T00:00:00Z", currency=None), "missing_field"),
        (event("e1", "2", ts="2025-01-10T00:00:00Z"), "invalid_type"),  # type: ignore[arg-type]
        (event("e1", ts="2025-01-10T00:00:00Z", amount=10.0), "invalid_type"),  # type: ignore[arg-type]
        (event("e1", ts="2025-01-10T00:00:00Z", amount=True), "invalid_type"),  # type: ignore[arg-type]
        (event("e1", ts="2025-01-10T00:00:00Z", payload="x"), "invalid_type"),
        (event("e1", ts="not a time"), "invalid_type"),
        (event("e1", ts="2025-01-10T00:00:00"), "naive_timestamp"),
        (event("e1", ts="2025-01-10T00:00:00+15:00"), "invalid_value"),
        (event("", ts="2025-01-10T00:00:00Z"), "invalid_value"),
        (event("e" * 129, ts="2025-01-10T00:00:00Z"), "invalid_value"),
        (event("e1", 0, ts="2025-01-10T00:00:00Z"), "invalid_value"),
        (event("e1", 2**63, ts="2025-01-10T00:00:00Z"), "invalid_value"),
        (event("e1", ts="2025-01-10T00:00:00Z", kind="chargeback"), "invalid_value"),
        (event("e1", ts="2025-01-10T00:00:00Z", currency="usd"), "invalid_value"),
        (event("e1", ts="2025-01-10T00:00:00Z", amount=-1), "sign_mismatch"),
        (event("e1", ts="2025-01-10T00:00:00Z", kind="refund", amount=1), "sign_mismatch"),
        (event("e1", ts="2025-01-10T00:00:00Z", kind="credit", amount=0), "sign_mismatch"),
        (event("e1", ts="2025-01-10T00:00:00Z", kind="adjustment", amount=0), "sign_mismatch"),
        (event("e1", ts="2025-01-12T00:00:00Z"), "future_event"),
        (event("e1", ts="2025-01-11T23:59:59.999Z"), None),  # one day of clock skew is allowed
        (event("e1", ts="2025-01-02T23:59:59Z"), "too_late"),
        (event("e1", ts="2025-01-03T00:00:00Z"), None),  # exactly 7 days late is accepted
    ],
)
def test_each_record_gets_the_reason_its_first_broken_rule_names(record: object, reason: str | None) -> None:
    assert reason_of(record) == reason


def test_detail_lists_every_broken_rule_not_just_the_first() -> None:
    bad = event("", ts="2025-01-10T00:00:00", kind="refund", amount=5, currency="XYZ")
    row = verdict(bad).row(0, named=True)
    assert row["_reason"] == "naive_timestamp"
    for rule in ("naive_timestamp", "event_id is not empty", "currency is one of", "a refund has amount_minor < 0"):
        assert rule in row["_detail"]


def test_lateness_is_a_configured_policy() -> None:
    late = event("e1", ts="2025-01-05T12:00:00Z")
    assert reason_of(late) is None
    assert reason_of(late, lateness=3) == "too_late"


def test_unknown_fields_are_accepted_and_reported_as_drift() -> None:
    row = verdict(event("e1", ts="2025-01-10T00:00:00Z", channel="web", zeta=1)).row(0, named=True)
    assert row["_reason"] is None and row["_extra_fields"] == "channel,zeta"


def test_content_hash_ignores_key_order_offsets_and_extra_fields() -> None:
    same = (
        verdict(
            event("e1", ts="2025-01-10T01:00:00+01:00", payload={"a": 1, "b": 2}),
            event("e1", ts="2025-01-10T00:00:00Z", payload={"b": 2, "a": 1}, channel="web"),
            event("e1", ts="2025-01-10T00:00:00Z", payload={"b": 2, "a": 2}),
        )
        .get_column("_content_hash")
        .to_list()
    )
    assert same[0] == same[1] != same[2]
