"""One arrival date through the engine alone, chained as the Dagster assets chain it: bronze, silver, gold.

Tests and benchmarks drive the engine through this one function; Dagster runs the same three calls, one
per asset step (assets/), with its checks around them.
"""

from __future__ import annotations

from datetime import date

from lakehouse.batches.batch import SilverReport, publish_silver
from lakehouse.batches.bronze import land_bronze
from lakehouse.batches.restatement import RefreshReport, refresh_gold
from lakehouse.feed import FeedSpec
from lakehouse.settings import Settings


def run_date(
    settings: Settings,
    feed: FeedSpec,
    arrival_date: date,
    run_id: str,
    code_version: str,
    max_rejected_fraction: float | None = None,
    accept_damaged_files: bool = False,
) -> tuple[SilverReport, RefreshReport | None]:
    """Land, judge and publish one arrival date; refresh gold for what it touched when it published."""
    land_bronze(settings, feed, arrival_date, run_id, code_version)
    report = publish_silver(settings, feed, arrival_date, run_id, code_version, max_rejected_fraction, accept_damaged_files)
    if not report.published:
        return report, None
    return report, refresh_gold(settings, feed, report.touched_event_dates, report.batch_id, run_id)
