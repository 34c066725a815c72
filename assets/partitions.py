"""Arrival-date partitions for bronze and silver, event-date partitions for gold, and the honest mapping between them."""

from datetime import UTC, date, datetime

import dagster as dg

from lakehouse.feed import FeedSpec
from lakehouse.settings import Settings


def _daily(start: date, last: date | None, days_ahead: int) -> dg.DailyPartitionsDefinition:
    """Daily partitions from `start` through today + `days_ahead - 1`, stretched to reach `last` if it is later.

    Dagster caps time partitions at the current time even with an end date, so dates the calendar
    has not reached need a larger end offset; only the window's size reads the clock, never data.
    """
    ahead = days_ahead if last is None else max(days_ahead, (last - datetime.now(UTC).date()).days + days_ahead)
    return dg.DailyPartitionsDefinition(start_date=start.isoformat(), end_offset=ahead)


def arrival_partitions(settings: Settings) -> dg.DailyPartitionsDefinition:
    return _daily(settings.partitions_start, settings.partitions_end, 1)


def event_partitions(settings: Settings, feed: FeedSpec) -> dg.DailyPartitionsDefinition:
    """Event dates start `lateness` days before the first arrival (the earliest it accepts) and run the
    feed's clock skew ahead of the last arrival."""
    return _daily(settings.event_partitions_start, settings.partitions_end, feed.future_skew_days)


def gold_from_arrivals(settings: Settings) -> dg.TimeWindowPartitionMapping:
    """Event date E is fed by arrivals E-1 (skew) through E+lateness: nothing later is accepted for E."""
    return dg.TimeWindowPartitionMapping(
        start_offset=-1, end_offset=settings.allowed_lateness_days, allow_nonexistent_upstream_partitions=True
    )
