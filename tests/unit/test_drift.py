"""Schema drift: a systematic change is told from a few bad records, and each policy refuses what it should."""

from __future__ import annotations

import json
from typing import Any

import polars as pl
import pytest

from assets.billing_feed import BILLING_EVENTS
from lakehouse.settings import Settings
from lakehouse.staging.drift import Compatibility, SchemaDrift, detect_drift
from lakehouse.staging.records import stage_records
from tests.support import event


def drift_of(records: list[Any], policy: Compatibility = Compatibility.BACKWARD) -> SchemaDrift:
    raws = [r if isinstance(r, bytes) else json.dumps(r).encode() for r in records]
    staged = stage_records(pl.DataFrame({"_raw": raws}, schema={"_raw": pl.Binary}), BILLING_EVENTS.fields, [])
    return detect_drift(staged, BILLING_EVENTS.fields, BILLING_EVENTS.required, contract_version=1, policy=policy, share=0.5)


def without(record: dict[str, object], field: str, **added: object) -> dict[str, object]:
    return {k: v for k, v in record.items() if k != field} | added


GOOD = [event(f"e{i}") for i in range(10)]
REMOVED = [without(e, "account_id") for e in GOOD]
RENAMED = [without(e, "amount_minor", amount=e["amount_minor"]) for e in GOOD]
RETYPED = [e | {"amount_minor": str(e["amount_minor"])} for e in GOOD]
ADDED_SOME = [e | {"channel": "web"} if i < 3 else e for i, e in enumerate(GOOD)]
ADDED_ALL = [e | {"channel": "web"} for e in GOOD]


@pytest.mark.parametrize(
    ("records", "changes"),
    [
        (GOOD, set()),
        (REMOVED, {("removed", "account_id")}),
        (RENAMED, {("renamed", "amount_minor")}),
        (RETYPED, {("type_changed", "amount_minor")}),
        (ADDED_SOME, {("added", "channel")}),
        (ADDED_ALL, {("added_required", "channel")}),
        (GOOD[:6] + REMOVED[6:], set()),  # 4 of 10 lack it: bad records, below the share
        (GOOD[:5] + REMOVED[5:], {("removed", "account_id")}),  # 5 of 10: the share is reached
        (GOOD[:9] + RETYPED[9:], set()),
        ([b"{", b"[]", b"not json"] + GOOD, set()),  # malformed lines are not schema evidence
        ([{"payload": None} | e for e in GOOD], set()),  # an optional field absent or null is never drift
    ],
    ids=[
        "none",
        "removed",
        "renamed",
        "retyped",
        "added-some",
        "added-all",
        "few-missing",
        "half-missing",
        "one-retyped",
        "malformed",
        "optional-null",
    ],
)
def test_systematic_changes_are_told_from_a_few_bad_records(records: list[Any], changes: set[tuple[str, str]]) -> None:
    assert {(c.change, c.field) for c in drift_of(records).changes} == changes


def test_a_rename_names_the_new_field_and_does_not_report_it_as_added() -> None:
    [change] = drift_of(RENAMED).changes
    assert change.renamed_to == "amount" and "amount" in change.detail and "10/10" in change.detail


@pytest.mark.parametrize(
    ("records", "refused_by"),
    [
        (ADDED_SOME, set()),
        (ADDED_ALL, {"forward", "full"}),
        (REMOVED, {"backward", "full"}),
        (RENAMED, {"backward", "forward", "full"}),
        (RETYPED, {"backward", "forward", "full"}),
    ],
    ids=["added-optional", "added-required", "removed-required", "renamed", "retyped"],
)
def test_each_policy_refuses_exactly_the_changes_its_definition_forbids(records: list[Any], refused_by: set[str]) -> None:
    refused = {policy.value for policy in Compatibility if not drift_of(records, policy).compatible}
    assert refused == refused_by


def test_the_policy_setting_overrides_the_feed_and_rejects_unknown_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAKEHOUSE_SCHEMA_COMPATIBILITY", "full")
    assert Settings.from_env().compatibility_for(Compatibility.BACKWARD) is Compatibility.FULL
    monkeypatch.delenv("LAKEHOUSE_SCHEMA_COMPATIBILITY")
    assert Settings.from_env().compatibility_for(BILLING_EVENTS.compatibility) is Compatibility.BACKWARD
    monkeypatch.setenv("LAKEHOUSE_SCHEMA_COMPATIBILITY", "transitive")
    with pytest.raises(
        ValueError, match="LAKEHOUSE_SCHEMA_COMPATIBILITY must be one of backward, forward, full, none, got .transitive."
    ):
        Settings.from_env()


def test_an_unknown_key_holding_a_colon_and_a_newline_is_reported_as_itself() -> None:
    assert [(c.change, c.field) for c in drift_of([*GOOD[:3], GOOD[3] | {"a:b\nc": None, "x:y\nz": 1}]).changes] == [
        ("added", "x:y\nz")  # a null counts as missing, so only the key with a value is drift
    ]


def test_counts_are_of_objects_across_shapes_and_the_most_common_new_field_is_the_rename() -> None:
    customer = [without(e, "account_id", customer_id=e["account_id"]) for e in GOOD[:6]]
    client = [without(e, "account_id", client_id=e["account_id"]) for e in GOOD[6:]]
    drift = drift_of([*customer[:3], customer[3] | {"client_id": "c"}, *customer[4:], *client, *GOOD[:2]])
    assert [(c.change, c.field, c.objects, c.renamed_to) for c in drift.changes] == [
        ("renamed", "account_id", 10, "customer_id"),
        ("added", "client_id", 5, None),  # 4 objects of its own shape and 1 that also carries customer_id
    ]
    assert drift.parsed_objects == 12 and "appears in 6 of them" in drift.changes[0].detail
