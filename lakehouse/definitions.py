"""The composition root that workspace.yaml loads: the billing feed's assets, checks, jobs and sensors."""

from __future__ import annotations

import warnings

import dagster as dg

from lakehouse.resources import LakehouseResource
from lakehouse.settings import Settings

INGEST_JOB = "ingest_billing_events"
GOLD_JOB = "refresh_gold_daily_account_revenue"


def build_definitions(settings: Settings) -> dg.Definitions:
    # Imported here so the engine never imports a feed at module level (imports flow assets -> lakehouse).
    from assets.bronze import build_bronze
    from assets.gold import GOLD_KEY, build_gold
    from assets.partitions import arrival_partitions, event_partitions, gold_from_arrivals
    from assets.sensors import build_sensors
    from assets.silver import build_silver
    from checks.gold_checks import gold_matches_silver_aggregate
    from checks.silver_checks import silver_has_one_row_per_event_id, silver_rows_match_contract

    arrivals = arrival_partitions(settings)
    events = event_partitions(settings)
    bronze, silver = build_bronze(arrivals), build_silver(arrivals)
    with warnings.catch_warnings():
        # BackfillPolicy and nonexistent-upstream mappings are beta in 1.13; we use them on purpose and pin the minor version.
        warnings.filterwarnings("ignore", category=dg.BetaWarning)
        gold = build_gold(events, gold_from_arrivals(settings))
    ingest = dg.define_asset_job(
        INGEST_JOB,
        selection=dg.AssetSelection.assets(bronze, silver),
        description="Land one arrival date into bronze, then judge, gate and publish it to silver.",
    )
    refresh = dg.define_asset_job(
        GOLD_JOB, selection=dg.AssetSelection.assets(GOLD_KEY), description="Recompute gold for the event dates a batch touched."
    )
    return dg.Definitions(
        assets=[bronze, silver, gold],
        asset_checks=[silver_has_one_row_per_event_id, silver_rows_match_contract, gold_matches_silver_aggregate],
        jobs=[ingest, refresh],
        sensors=build_sensors(settings, INGEST_JOB, GOLD_JOB),
        resources={"lakehouse": LakehouseResource.from_settings(settings)},
    )


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions(Settings.from_env())
