"""The billing events feed as the engine sees it: contract, identity, and its gold aggregate."""

import polars as pl

from checks.billing_contract import (
    CONTENT_FIELDS,
    CONTRACT_VERSION,
    FIELDS,
    FUTURE_SKEW_DAYS,
    REASONS,
    REQUIRED_FIELDS,
    billing_event_contract,
    silver_row_contract,
)
from lakehouse.batches.volume import VolumeRule
from lakehouse.feed import FeedSpec, GoldSpec
from lakehouse.staging.drift import Compatibility

DAILY_ACCOUNT_REVENUE_SCHEMA: dict[str, pl.DataType] = {
    "event_date": pl.Date(),
    "account_id": pl.String(),
    "currency": pl.String(),
    "charges_minor": pl.Int64(),
    "refunds_minor": pl.Int64(),
    "adjustments_minor": pl.Int64(),
    "net_minor": pl.Int64(),
    "event_count": pl.Int64(),
}


def daily_account_revenue(silver: pl.DataFrame) -> pl.DataFrame:
    """One row per (event_date, account_id, currency); refunds_minor sums refunds and credits."""
    if silver.is_empty():
        return pl.DataFrame(schema=DAILY_ACCOUNT_REVENUE_SCHEMA)
    amount, kind = pl.col("amount_minor"), pl.col("event_type")
    return (
        silver.group_by("event_date", "account_id", "currency")
        .agg(
            charges_minor=amount.filter(kind == "charge").sum(),
            refunds_minor=amount.filter(kind.is_in(["refund", "credit"])).sum(),
            adjustments_minor=amount.filter(kind == "adjustment").sum(),
            net_minor=amount.sum(),
            event_count=pl.len(),
        )
        .select([pl.col(name).cast(dtype) for name, dtype in DAILY_ACCOUNT_REVENUE_SCHEMA.items()])
        .sort("event_date", "account_id", "currency")
    )


BILLING_EVENTS = FeedSpec(
    dataset="billing_events",
    key="event_id",
    version="source_version",
    event_time="event_ts",
    fields=FIELDS,
    content_fields=CONTENT_FIELDS,
    reasons=REASONS,
    contract=billing_event_contract,
    required=REQUIRED_FIELDS,
    contract_version=CONTRACT_VERSION,
    gold=GoldSpec(
        table="daily_account_revenue",
        schema=DAILY_ACCOUNT_REVENUE_SCHEMA,
        aggregate=daily_account_revenue,
        source_columns=["event_date", "account_id", "currency", "event_type", "amount_minor"],
        measure="net_minor",
        description="Daily revenue per account and currency, by event date.",
    ),
    row_contract=silver_row_contract,
    future_skew_days=FUTURE_SKEW_DAYS,
    # The upstream may add fields (kept in bronze, reported); losing, renaming or retyping one we read stops the batch.
    compatibility=Compatibility.BACKWARD,
    drift_share=0.5,
    # A daily export: a silent date between delivered ones is a missing_delivery incident; silver and gold
    # show overdue in the UI after 36 h without a materialization (one day and a half).
    cadence_days=1,
    freshness_hours=36,
    # A batch outside [median/3, median*3] of the last 14 published dates warns (incident, WARN check); it
    # never blocks: a real holiday or a promotion must still publish, and the operator reads the incident.
    volume=VolumeRule(window=14, min_history=7, factor=3.0, floor=10, blocking=False),
)
