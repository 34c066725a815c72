"""Arrival-date partitions for bronze and silver, event-date partitions for gold, and the honest mapping between them."""

from datetime import timedelta

import dagster as dg

from checks.billing_contract import FUTURE_SKEW_DAYS
from lakehouse.settings import Settings


def arrival_partitions(settings: Settings) -> dg.DailyPartitionsDefinition:
    return dg.DailyPartitionsDefinition(start_date=settings.partitions_start.isoformat(), end_offset=1)


def event_partitions(settings: Settings) -> dg.DailyPartitionsDefinition:
    """Event dates start `lateness` days before the first arrival (the earliest it accepts) and run a
    day ahead of today (clock skew)."""
    start = settings.partitions_start - timedelta(days=settings.allowed_lateness_days)
    return dg.DailyPartitionsDefinition(start_date=start.isoformat(), end_offset=FUTURE_SKEW_DAYS)


def gold_from_arrivals(settings: Settings) -> dg.TimeWindowPartitionMapping:
    """Event date E is fed by arrivals E-1 (skew) through E+lateness: nothing later is accepted for E."""
    return dg.TimeWindowPartitionMapping(
        start_offset=-1, end_offset=settings.allowed_lateness_days, allow_nonexistent_upstream_partitions=True
    )
