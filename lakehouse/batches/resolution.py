"""Version resolution: which delivery of each business event silver keeps, decided by content alone.

The rule is a pure function of the set of accepted deliveries, so order, batching, replays and
crashes cannot change it:

- for each (key, version), the winning content is the one with the smallest content hash
  (an arbitrary but order-independent tie-break: a version conflict has no "right" answer,
  only a reproducible one);
- for each key, silver keeps the winning content of the highest version;
- a kept content's lineage is its earliest delivery by (arrival date, file, line).

A batch's deliveries are classified against the deliveries of every *other* arrival date, so a
re-run of the same batch classifies them identically.

Every rule above looks at the deliveries of one key only, so a batch may be resolved in slices of keys:
`key_slices` files a key by its persisted fingerprint, so all deliveries of a key land in the same slice,
and publishing (lakehouse.batches.batch) resolves a group of slices at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from lakehouse.staging.fingerprint import key_fingerprints

LINEAGE = ["_arrival_date", "_source_file", "_source_line"]
LINEAGE_WITH_BATCH = [*LINEAGE, "_batch_id"]
KEPT_LINEAGE = {column: f"_kept{column}" for column in LINEAGE_WITH_BATCH}
ROW = "_row"  # a delivery's place among all rows, to find the resolved ones again
OUTCOMES = ("inserted", "updated", "duplicate", "stale", "version_conflict")


@dataclass(frozen=True)
class Resolution:
    """What a batch does: per-delivery outcomes, silver's target rows, and earlier deliveries it displaces."""

    outcomes: pl.DataFrame  # the batch's deliveries with `_outcome` and, for conflicts, `_kept_*` lineage
    kept: pl.DataFrame  # one target silver row per key the batch delivers
    prior_kept: pl.DataFrame  # the silver rows those keys had before this batch (same columns)
    displaced: pl.DataFrame  # deliveries of other batches that now lose a conflict, with `_kept_*` lineage

    def counts(self) -> dict[str, int]:
        tally = dict(self.outcomes.get_column("_outcome").value_counts().iter_rows())
        return {outcome: int(tally.get(outcome, 0)) for outcome in OUTCOMES}


def _in_lineage_order(deliveries: pl.DataFrame) -> pl.DataFrame:
    # Deliveries come from few files: sorting by each file name's rank among them is the lineage
    # order without comparing the names row by row (about twice as fast).
    files = deliveries.get_column("_source_file").unique().sort()
    rank = pl.col("_source_file").replace_strict(files, pl.int_range(files.len(), eager=True))
    return deliveries.sort(pl.col("_arrival_date"), rank, pl.col("_source_line"))


def _earliest_per_content(deliveries: pl.DataFrame, key: str, version: str) -> pl.DataFrame:
    """One row per (key, version, content): its earliest delivery (`deliveries` are in lineage order)."""
    return deliveries.unique(subset=[key, version, "_content_hash"], keep="first", maintain_order=True)


def _winners(deliveries: pl.DataFrame, key: str, version: str) -> pl.DataFrame:
    return deliveries.group_by(key, version).agg(_winner_hash=pl.col("_content_hash").min())


def _kept(earliest: pl.DataFrame, winners: pl.DataFrame, key: str, version: str) -> pl.DataFrame:
    top = winners.group_by(key).agg(pl.col(version).max())
    return earliest.join(
        winners.join(top, on=[key, version]), left_on=[key, version, "_content_hash"], right_on=[key, version, "_winner_hash"]
    )


def _kept_rows(deliveries: pl.DataFrame, key: str, version: str) -> pl.DataFrame:
    """Each key's row among `deliveries` (in lineage order): the winning content of its highest version."""
    return _kept(_earliest_per_content(deliveries, key, version), _winners(deliveries, key, version), key, version)


def _keep(rows: pl.DataFrame, kept: pl.DataFrame) -> pl.DataFrame:
    """Silver's row for every key in `rows`: an uncontested key's only delivery, else its row in
    `kept`; in the order of `rows`, without helper columns."""
    kept_here = ~pl.col("_contested") | pl.col(ROW).is_in(kept.get_column(ROW).implode())
    return rows.filter(kept_here).drop(ROW, "_contested", "_in_batch")


def resolve(batch: pl.DataFrame, prior: pl.DataFrame, key: str, version: str) -> Resolution:
    """Classify `batch` (validated deliveries of one arrival date) against `prior` (all other
    accepted deliveries of the same keys). Both frames share one schema."""
    everything = pl.concat([prior.with_columns(_in_batch=pl.lit(False)), batch.with_columns(_in_batch=pl.lit(True))])
    # Most keys are delivered once: that delivery is inserted, kept as is and displaces nothing, so only
    # the other ("contested") keys are resolved below. One sort serves all: earliest deliveries need
    # lineage order, and the outputs list rows in it.
    contested_key = pl.len().over(key) > 1  # faster than is_duplicated
    rows = _in_lineage_order(everything.with_columns(_contested=contested_key)).with_row_index(ROW)
    contested = rows.filter(pl.col("_contested"))
    contested_prior, contested_batch = contested.filter(~pl.col("_in_batch")), contested.filter(pl.col("_in_batch"))
    winners = _winners(contested, key, version)
    earliest = _earliest_per_content(contested, key, version)  # computed once: both lineage and kept rows use it
    kept_lineage = earliest.join(
        winners, left_on=[key, version, "_content_hash"], right_on=[key, version, "_winner_hash"]
    ).select(key, version, *[pl.col(c).alias(k) for c, k in KEPT_LINEAGE.items()])
    top_versions = contested.group_by(key).agg(_max_version=pl.col(version).max())
    seen_before = contested_prior.select(key, version, "_content_hash").unique().with_columns(_seen_before=pl.lit(True))
    prior_keys = contested_prior.select(key).unique().with_columns(_key_known=pl.lit(True))

    judged = (
        contested_batch.with_columns(_repeat_in_batch=pl.int_range(pl.len()).over(key, version, "_content_hash") > 0)
        .join(winners, on=[key, version], how="left")
        .join(top_versions, on=key, how="left")
        .join(seen_before, on=[key, version, "_content_hash"], how="left")
        .join(prior_keys, on=key, how="left")
        .join(kept_lineage, on=[key, version], how="left")
        .with_columns(
            _outcome=pl.when(pl.col("_content_hash") != pl.col("_winner_hash"))
            .then(pl.lit("version_conflict"))
            .when(pl.col("_seen_before").fill_null(False) | pl.col("_repeat_in_batch"))
            .then(pl.lit("duplicate"))
            .when(pl.col(version) < pl.col("_max_version"))
            .then(pl.lit("stale"))
            .when(pl.col("_key_known").fill_null(False))
            .then(pl.lit("updated"))
            .otherwise(pl.lit("inserted"))
        )
        .select(
            ROW,
            *[pl.when(pl.col("_outcome") == "version_conflict").then(pl.col(k)).alias(k) for k in KEPT_LINEAGE.values()],
            "_outcome",
        )
    )
    outcomes = (
        rows.filter(pl.col("_in_batch"))
        .join(judged, on=ROW, how="left", maintain_order="left")
        .with_columns(pl.col("_outcome").fill_null("inserted"))  # a key's only delivery is new
        .drop(ROW, "_in_batch", "_contested")
    )
    displaced = (
        prior.join(contested_batch.select(key, version).unique(), on=[key, version], maintain_order="left")
        .join(winners, on=[key, version], maintain_order="left")
        .filter(pl.col("_content_hash") != pl.col("_winner_hash"))
        .join(kept_lineage, on=[key, version], maintain_order="left")
        .drop("_winner_hash")
    )
    return Resolution(
        outcomes=outcomes,
        kept=_keep(rows, _kept(earliest, winners, key, version)),
        # A key uncontested overall is uncontested in prior too: only the contested ones are resolved again, on prior alone.
        prior_kept=_keep(rows.filter(~pl.col("_in_batch")), _kept_rows(contested_prior, key, version)),
        displaced=displaced,
    )


def key_slices(keys: pl.Series, slices: int) -> pl.Series:
    """Which of `slices` key slices each key falls in: its persisted fingerprint (lakehouse.staging.fingerprint)
    modulo `slices`, so a key's slice never depends on the batch, the order or the run."""
    return fingerprint_slices(key_fingerprints(keys), slices)


def fingerprint_slices(fingerprints: pl.Series, slices: int) -> pl.Series:
    """`key_slices` of keys whose fingerprints are already at hand."""
    values = fingerprints.fill_null(0).to_numpy().view(np.uint64)
    return pl.Series("_slice", values % np.uint64(slices), dtype=pl.UInt64)
