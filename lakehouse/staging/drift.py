"""Schema drift as policy: tell a systematic change of the upstream's schema from a few bad records, and judge it.

The upstream is the writer; the feed's contract is the reader. The compatibility modes are
Confluent Schema Registry's, with the contract as the newer schema (its consumer, this
pipeline, is upgraded first) and the batch's observed shape as the schema its data was written with:

- backward: the contract can read the upstream's data. Extra upstream fields are ignored (and
  reported); a required contract field the upstream no longer sends, a rename, or a changed
  JSON type breaks it.
- forward: data shaped like the contract could be read with the upstream's schema. A field the
  upstream now always sends (required for it, unknown to the contract), a rename or a changed
  type breaks it; a missing contract field does not (per-record rules still quarantine it).
- full: both. none: nothing is gated; drift is only reported.

A change is *systematic* when it shows in at least `share` of the batch's parsed JSON objects
(lines that are not objects are malformed records, not schema evidence). Below that share the
records keep their per-record quarantine reasons and the schema is unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import polars as pl

from lakehouse.staging.parse import FieldKind

# The JSON types a contract field accepts (a timestamp is a string the contract parses).
EXPECTED_JSON_TYPE = {
    FieldKind.STRING: "string",
    FieldKind.INTEGER: "integer",
    FieldKind.TIMESTAMP: "string",
    FieldKind.OBJECT: "object",
}


class Compatibility(StrEnum):
    BACKWARD = "backward"
    FORWARD = "forward"
    FULL = "full"
    NONE = "none"


# Which systematic changes each policy refuses.
REFUSED: dict[Compatibility, frozenset[str]] = {
    Compatibility.BACKWARD: frozenset({"removed", "renamed", "type_changed"}),
    Compatibility.FORWARD: frozenset({"added_required", "renamed", "type_changed"}),
    Compatibility.FULL: frozenset({"removed", "added_required", "renamed", "type_changed"}),
    Compatibility.NONE: frozenset(),
}


@dataclass(frozen=True)
class FieldChange:
    """One observed difference between the batch's objects and the contract.

    `change` is `added` (an unknown field in fewer than `share` of the objects), `added_required`
    (in at least that share: the upstream now always sends it), `removed` (a required field absent
    or null in at least that share), `renamed` (a removed field whose objects carry one new field
    instead, named in `renamed_to`) or `type_changed` (a field of another JSON type in at least that share).
    """

    change: str
    field: str
    objects: int
    detail: str
    renamed_to: str | None = None


@dataclass(frozen=True)
class SchemaDrift:
    contract_version: int
    policy: Compatibility
    parsed_objects: int
    share: float
    changes: tuple[FieldChange, ...]

    @property
    def violations(self) -> tuple[FieldChange, ...]:
        return tuple(c for c in self.changes if c.change in REFUSED[self.policy])

    @property
    def compatible(self) -> bool:
        return not self.violations

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: what batches record, status shows and Dagster metadata carries."""
        return {
            "contract_version": self.contract_version,
            "policy": self.policy.value,
            "compatible": self.compatible,
            "parsed_objects": self.parsed_objects,
            "share": self.share,
            "changes": [
                {k: v for k, v in c.__dict__.items() if v is not None} | {"violates_policy": c in self.violations}
                for c in self.changes
            ],
        }


def shape_counts(staged: pl.DataFrame) -> pl.DataFrame:
    """Each distinct top-level shape of the parsed objects (`_shape`) and how many objects have it (`_objects`);
    the counts of a batch's chunks, concatenated, are the batch's."""
    return (
        staged.lazy()  # the lazy engine groups a list column several times faster than the eager one
        .select("_shape")
        .drop_nulls()
        .group_by("_shape")
        .len("_objects")
        .collect()
    )


def detect_drift(
    staged: pl.DataFrame,
    fields: Mapping[str, FieldKind],
    required: Sequence[str],
    *,
    contract_version: int,
    policy: Compatibility,
    share: float,
) -> SchemaDrift:
    """Compare every parsed object's top-level shape with the contract.

    `staged` is staged records (`_shape` from stage_records) or their `shape_counts`, perhaps several concatenated.
    """
    # A batch's objects share very few distinct shapes: judge each shape once, weighted by its objects.
    counts = staged if "_objects" in staged.columns else shape_counts(staged)
    shapes = counts.group_by("_shape").agg(pl.col("_objects").sum()).with_row_index("_shape_id")
    parsed = int(shapes.get_column("_objects").sum())
    cells = (
        shapes.explode("_shape")
        .drop_nulls("_shape")  # an empty object has no keys
        .select(
            "_shape_id",
            "_objects",
            pl.col("_shape").str.extract(r"(?s)^(.*):[a-z]+$").alias("key"),  # a key may hold ":" or a newline
            pl.col("_shape").str.extract(r":([a-z]+)$").alias("type"),
        )
        .filter(pl.col("type") != "null")  # a JSON null counts as missing
    )
    systematic = max(share * parsed, 1e-9)  # a share of nothing is never reached
    changes: list[FieldChange] = []
    for name, kind in fields.items():
        own = cells.filter(pl.col("key") == name)
        expected = EXPECTED_JSON_TYPE[kind]
        wrong = own.filter(pl.col("type") != expected)
        n_wrong = int(wrong.get_column("_objects").sum())
        if n_wrong >= systematic:
            by_type = wrong.group_by("type").agg(pl.col("_objects").sum())
            observed = by_type.sort("_objects", "type", descending=[True, False]).row(0)
            changes.append(
                FieldChange(
                    "type_changed",
                    name,
                    n_wrong,
                    f"is {observed[0]} instead of {expected} in {n_wrong}/{parsed} parsed objects",
                )
            )
        absent = parsed - int(own.get_column("_objects").sum())
        if name in required and absent >= systematic:
            changes.append(FieldChange("removed", name, absent, f"is absent or null in {absent}/{parsed} parsed objects"))
    # Unknown keys count objects, not cells: a key listed twice in one shape counts its objects once.
    unknown = cells.filter(~pl.col("key").is_in(list(fields))).unique(["_shape_id", "key"])
    counts = unknown.group_by("key").agg(pl.col("_objects").sum().alias("n")).sort("key")
    added = {key: n for key, n in counts.iter_rows()}
    changes = _pair_renames(changes, cells, unknown, share)
    renamed_to = {c.renamed_to for c in changes}
    for key, n in added.items():
        if key not in renamed_to:
            kind_of_add = "added_required" if n >= systematic else "added"
            changes.append(FieldChange(kind_of_add, key, n, f"is not in the contract; present in {n}/{parsed} parsed objects"))
    return SchemaDrift(contract_version, policy, parsed, share, tuple(changes))


def _pair_renames(changes: list[FieldChange], cells: pl.DataFrame, unknown: pl.DataFrame, share: float) -> list[FieldChange]:
    """A removed field whose objects, in at least the same share, carry one new field instead was renamed to it.

    Candidates are ranked by how many of those objects carry them, then by name; each new field
    explains one removal at most (contract order first). `cells` and `unknown` hold one row per
    distinct shape and key, weighted by `_objects`, the number of objects of that shape.
    """
    claimed: set[str] = set()
    out = []
    for change in changes:
        if change.change != "removed":
            out.append(change)
            continue
        holders = cells.filter(pl.col("key") == change.field).get_column("_shape_id")
        without = unknown.filter(~pl.col("_shape_id").is_in(holders.implode()) & ~pl.col("key").is_in(list(claimed)))
        ranked = without.group_by("key").agg(pl.col("_objects").sum().alias("n")).sort("n", "key", descending=[True, False])
        if ranked.height and ranked.item(0, "n") >= share * change.objects:
            new = ranked.item(0, "key")
            claimed.add(new)
            out.append(
                FieldChange(
                    "renamed",
                    change.field,
                    change.objects,
                    f"{change.detail}, while {new} (not in the contract) appears in {ranked.item(0, 'n')} of them",
                    renamed_to=new,
                )
            )
        else:
            out.append(change)
    return out
