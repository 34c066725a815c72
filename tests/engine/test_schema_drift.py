"""The schema drift gate through the engine: additive drift publishes and is reported; breaking drift stops the batch."""

from __future__ import annotations

from pathlib import Path

from assets.billing_feed import BILLING_EVENTS
from lakehouse.app.status import collect_status, render_status
from lakehouse.delta.storage import read_table, table_uri
from tests.support import event, gold, land, run_batch, silver

D1, D2, D3 = "2025-01-10", "2025-01-11", "2025-01-12"


def test_an_added_field_publishes_under_backward_and_a_removed_one_stops_the_batch_naming_field_and_policy(
    tmp_path: Path,
) -> None:
    land(tmp_path, D1, "a.jsonl", [event(f"e{i}", channel="web") for i in range(4)] + [event("plain")])
    first = run_batch(tmp_path, D1)
    assert first.published and first.added_fields == {"channel": 4}
    assert [(c.change, c.field) for c in first.drift.changes] == [("added_required", "channel")]  # reported, allowed
    before = {"silver": silver(tmp_path), "gold": gold(tmp_path)}
    ledger_before = read_table(table_uri(tmp_path, "ops", "billing_events_ledger"))

    renamed = [{k: v for k, v in event(f"r{i}", ts="2025-01-11T08:00:00Z").items() if k != "account_id"} for i in range(6)]
    land(tmp_path, D2, "a.jsonl", [r | {"customer_id": "acct_9"} for r in renamed])
    second = run_batch(tmp_path, D2, max_rejected_fraction=1.0)  # the drift gate holds even when rejects are accepted
    failed = [g for g in second.gates if not g.passed]
    assert not second.published and [g.name for g in failed] == ["schema_drift_is_compatible"]
    assert "account_id" in failed[0].observed and "customer_id" in failed[0].observed
    assert failed[0].guardrail == "backward compatibility with contract v1"
    incident = read_table(table_uri(tmp_path, "ops", "incidents")).row(0, named=True)
    assert incident["failure_mode"] == "gate_failed:schema_drift_is_compatible"
    assert "account_id" in incident["detail"] and "backward" in incident["detail"]
    assert silver(tmp_path).equals(before["silver"]) and gold(tmp_path).equals(before["gold"])
    assert read_table(table_uri(tmp_path, "ops", "billing_events_ledger")).equals(ledger_before)

    status = collect_status(str(tmp_path), BILLING_EVENTS)
    assert status["schema"]["contract_version"] == 1 and status["schema"]["policy"] == "backward"
    seen = {(d["change"], d["field"]): d for d in status["schema"]["drift_seen"]}
    assert seen[("added_required", "channel")]["violated_policy"] == []
    assert seen[("renamed", "account_id")]["violated_policy"] == [f"{D2} (backward)"]
    text = render_status(status)
    assert "contract v1, backward compatibility" in text and "renamed" in text and f"refused on {D2} (backward)" in text


def test_the_policy_none_reports_a_removed_field_without_gating_and_forward_refuses_a_field_always_sent(
    tmp_path: Path,
) -> None:
    land(tmp_path, D1, "a.jsonl", [{k: v for k, v in event(f"e{i}").items() if k != "currency"} for i in range(3)])
    report = run_batch(tmp_path, D1, schema_compatibility="none", max_rejected_fraction=1.0)
    assert report.published and next(g for g in report.gates if g.name == "schema_drift_is_compatible").passed
    assert report.reasons == {"missing_field": 3} and report.drift.as_dict()["changes"][0]["field"] == "currency"
    land(tmp_path, D3, "a.jsonl", [event(f"f{i}", ts="2025-01-12T08:00:00Z", channel="web") for i in range(3)])
    forward = run_batch(tmp_path, D3, schema_compatibility="forward")
    assert not forward.published and [g.name for g in forward.gates if not g.passed] == ["schema_drift_is_compatible"]
