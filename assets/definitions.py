"""One feed's Dagster definitions, built from its spec: the composition root merges one per feed."""

import warnings

import dagster as dg

from assets.bronze import build_bronze
from assets.gold import build_gold
from assets.partitions import arrival_partitions, event_partitions, gold_from_arrivals
from assets.sensors import build_sensors
from assets.silver import build_silver
from lakehouse.feed import FeedSpec
from lakehouse.settings import Settings


def feed_definitions(feed: FeedSpec, settings: Settings) -> dg.Definitions:
    """The feed's bronze, silver (with quarantine) and gold assets, their checks, its two jobs and two sensors."""
    arrivals = arrival_partitions(settings)
    with warnings.catch_warnings():
        # BackfillPolicy and nonexistent-upstream mappings are beta in 1.13; we use them on purpose and pin the minor version.
        warnings.filterwarnings("ignore", category=dg.BetaWarning)
        # A backfill run of bronze/silver carries at most this many arrival dates (their bodies loop over them in order).
        per_run = dg.BackfillPolicy.multi_run(max_partitions_per_run=settings.backfill_partitions_per_run)
        bronze, silver = build_bronze(feed, arrivals, per_run), build_silver(feed, arrivals, per_run)
        gold = build_gold(feed, event_partitions(settings, feed), gold_from_arrivals(settings))
    ingest = dg.define_asset_job(
        feed.ingest_job,
        selection=dg.AssetSelection.assets(bronze, silver),
        description="Land one arrival date into bronze, then judge, gate and publish it to silver.",
    )
    refresh = dg.define_asset_job(
        feed.gold_job,
        selection=dg.AssetSelection.assets(feed.gold_key),
        description="Recompute gold for the event dates a batch touched.",
    )
    return dg.Definitions(assets=[bronze, silver, gold], jobs=[ingest, refresh], sensors=build_sensors(feed))
