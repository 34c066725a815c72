"""Publish gates: evaluated on a batch before silver's commit, so a failure leaves silver and gold untouched."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lakehouse.batches.volume import VOLUME_ANOMALY, VOLUME_CHECK, VolumeRule, VolumeVerdict
from lakehouse.feed import FeedSpec
from lakehouse.staging.drift import SchemaDrift

COUNTED = ("inserted", "updated", "duplicates", "stale", "quarantined")
# Every gate evaluate_gates returns, in its order: each is a blocking asset check on silver.
GATE_NAMES = (
    "rejected_fraction_within_threshold",
    "silver_keys_are_unique",
    "batch_counts_are_conserved",
    "landed_files_are_readable",
    "landed_files_are_unchanged",
    "landing_has_no_symlinks",
    "schema_drift_is_compatible",
)


@dataclass(frozen=True)
class Gate:
    """A publish gate, evaluated before silver's commit; names read as predicates."""

    name: str
    passed: bool
    observed: str
    guardrail: str
    metadata: dict[str, Any] = field(default_factory=dict)
    remedy: str = "re-run after the upstream re-delivers, or accept it with run config max_rejected_fraction"
    blocking: bool = True  # False: a failure warns (an incident, a WARN check) but the batch still publishes
    incident: str | None = None  # its incident's failure mode, when not `gate_failed:<name>`

    @property
    def failure_mode(self) -> str:
        return self.incident or f"gate_failed:{self.name}"


def evaluate_gates(
    feed: FeedSpec,
    records_in: int,
    counts: dict[str, int],
    duplicate_keys: int,  # the batch's target silver rows whose key another of them also has
    threshold: float,
    damaged_files: list[dict[str, Any]],
    accept_damaged_files: bool,
    changed_files: list[dict[str, Any]],
    symlinks: list[dict[str, Any]],
    drift: SchemaDrift,
) -> list[Gate]:
    quarantined = counts["quarantined"]
    fraction = quarantined / records_in if records_in else 0.0
    accounted = sum(counts[k] for k in COUNTED)
    return [
        Gate(
            "rejected_fraction_within_threshold",
            fraction <= threshold,
            f"{fraction:.4%} ({quarantined}/{records_in})",
            f"quarantined/records <= {threshold:.2%}",
            {"rejected_fraction": fraction, "max_rejected_fraction": threshold},
        ),
        Gate(
            "silver_keys_are_unique",
            duplicate_keys == 0,
            f"{duplicate_keys} duplicate {feed.key} in the batch's silver rows",
            f"one silver row per {feed.key}",
            {"duplicate_keys": duplicate_keys},
        ),
        Gate(
            "batch_counts_are_conserved",
            accounted == records_in,
            f"records_in={records_in}, inserted+updated+duplicates+stale+quarantined={accounted}",
            "records in = inserted + updated + duplicates + stale + quarantined",
            {"records_in": records_in, "accounted": accounted},
        ),
        Gate(
            "landed_files_are_readable",
            not damaged_files or accept_damaged_files,
            "; ".join(f"{f['file']}: {f['damage']}" for f in damaged_files) or "every file read to its end",
            "every landed file is readable to its end" + (" (damage accepted by the operator)" if accept_damaged_files else ""),
            {"damaged_files": damaged_files, "damage_accepted": accept_damaged_files},
            "re-run after the upstream re-delivers the file, or accept what was read with run config accept_damaged_files",
        ),
        Gate(
            # Not acceptable by the operator: what was read may be a torn mix of two versions of a file.
            "landed_files_are_unchanged",
            not changed_files,
            "; ".join(f"{f['file']}: {f['changed']}" for f in changed_files) or "every file unchanged while read",
            "landing files are immutable: none changes or vanishes while its batch is read",
            {"changed_files": changed_files},
            "re-run once the upstream has finished writing",
        ),
        Gate(
            # Not acceptable by the operator: a symlink is never followed, so the fix is removing it.
            "landing_has_no_symlinks",
            not symlinks,
            "; ".join(f"{e['file']} is a symlink" for e in symlinks) or "no symlink in the arrival-date folder",
            "no symlink in an arrival-date folder (a symlink is never followed)",
            {"symlinks": symlinks},
            "remove the symlink (copy the file in instead), then re-run",
        ),
        schema_gate(drift),
    ]


def schema_gate(drift: SchemaDrift) -> Gate:
    """The feed's compatibility policy over the batch's systematic schema changes (lakehouse.staging.drift)."""
    violations = drift.violations
    changes = ", ".join(f"{c.change} {c.field}" for c in drift.changes) or "none"
    return Gate(
        "schema_drift_is_compatible",
        not violations,
        "; ".join(f"{c.change}: {c.field} {c.detail}" for c in violations) or f"no incompatible change (drift: {changes})",
        f"{drift.policy.value} compatibility with contract v{drift.contract_version}"
        + (" (drift reported, never gated)" if drift.policy.value == "none" else ""),
        {"schema_drift": drift.as_dict()},
        "re-run after the upstream re-delivers in the contract's shape, or change LAKEHOUSE_SCHEMA_COMPATIBILITY",
    )


def volume_gate(verdict: VolumeVerdict, rule: VolumeRule) -> Gate:
    """The batch's record count against the feed's recent history (lakehouse.batches.volume): blocking only if the feed says so."""
    return Gate(
        VOLUME_CHECK,
        verdict.passed,
        verdict.observed,
        verdict.guardrail,
        verdict.metadata(),
        "re-run after the upstream re-delivers the whole export, or accept the count with run config accept_volume_anomaly",
        blocking=rule.blocking,
        incident=VOLUME_ANOMALY,
    )
