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
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

LINEAGE = ["_arrival_date", "_source_file", "_source_line"]
LINEAGE_WITH_BATCH = [*LINEAGE, "_batch_id"]
KEPT_LINEAGE = {column: f"_kept{column}" for column in LINEAGE_WITH_BATCH}
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


def _earliest_per_content(deliveries: pl.DataFrame, key: str, version: str) -> pl.DataFrame:
    """One row per (key, version, content): the content and its earliest delivery's lineage."""
    return deliveries.sort(LINEAGE).unique(subset=[key, version, "_content_hash"], keep="first", maintain_order=True)


def _winners(deliveries: pl.DataFrame, key: str, version: str) -> pl.DataFrame:
    return deliveries.group_by(key, version).agg(_winner_hash=pl.col("_content_hash").min())


def kept_rows(deliveries: pl.DataFrame, key: str, version: str) -> pl.DataFrame:
    """Silver's row for every key in `deliveries`: the winning content of the highest version."""
    if deliveries.is_empty():
        return deliveries
    return _kept(_earliest_per_content(deliveries, key, version), _winners(deliveries, key, version), key, version)


def _kept(earliest: pl.DataFrame, winners: pl.DataFrame, key: str, version: str) -> pl.DataFrame:
    top = winners.group_by(key).agg(pl.col(version).max())
    return earliest.join(
        winners.join(top, on=[key, version]), left_on=[key, version, "_content_hash"], right_on=[key, version, "_winner_hash"]
    )


def resolve(batch: pl.DataFrame, prior: pl.DataFrame, key: str, version: str) -> Resolution:
    """Classify `batch` (validated deliveries of one arrival date) against `prior` (all other
    accepted deliveries of the same keys). Both frames share one schema."""
    everything = pl.concat([prior.with_columns(_in_batch=pl.lit(False)), batch.with_columns(_in_batch=pl.lit(True))])
    winners = _winners(everything, key, version)
    earliest = _earliest_per_content(everything, key, version)  # computed once: both lineage and kept rows use it
    kept_lineage = earliest.join(
        winners, left_on=[key, version, "_content_hash"], right_on=[key, version, "_winner_hash"]
    ).select(key, version, *[pl.col(c).alias(k) for c, k in KEPT_LINEAGE.items()])
    top_versions = everything.group_by(key).agg(_max_version=pl.col(version).max())
    seen_before = prior.select(key, version, "_content_hash").unique().with_columns(_seen_before=pl.lit(True))
    prior_keys = prior.select(key).unique().with_columns(_key_known=pl.lit(True))

    outcomes = (
        batch.sort(LINEAGE)
        .with_columns(_repeat_in_batch=pl.int_range(pl.len()).over(key, version, "_content_hash") > 0)
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
        .with_columns([pl.when(pl.col("_outcome") == "version_conflict").then(pl.col(k)).alias(k) for k in KEPT_LINEAGE.values()])
        .drop("_repeat_in_batch", "_winner_hash", "_max_version", "_seen_before", "_key_known")
    )
    delivered_versions = batch.select(key, version).unique()
    displaced = (
        prior.join(delivered_versions, on=[key, version])
        .join(winners, on=[key, version])
        .filter(pl.col("_content_hash") != pl.col("_winner_hash"))
        .join(kept_lineage, on=[key, version])
        .drop("_winner_hash")
    )
    return Resolution(
        outcomes=outcomes,
        kept=_kept(earliest.drop("_in_batch"), winners, key, version)
        if not everything.is_empty()
        else everything.drop("_in_batch"),
        prior_kept=kept_rows(prior, key, version),
        displaced=displaced,
    )
