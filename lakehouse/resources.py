"""The Dagster resource every asset reads its settings through."""

from __future__ import annotations

from datetime import date, timedelta

import dagster as dg

from lakehouse import __version__
from lakehouse.settings import Settings

BATCH_TAG = "lakehouse/batch_id"
TOUCHED_DATES_TAG = "lakehouse/event_dates"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
CODE_VERSION = __version__


class LakehouseResource(dg.ConfigurableResource):
    """Storage root and data policies; build it with `from_settings` so env and CLI agree."""

    root: str
    allowed_lateness_days: int = 7
    max_rejected_fraction: float = 0.05
    lock_timeout_seconds: float = 600.0

    @classmethod
    def from_settings(cls, settings: Settings) -> LakehouseResource:
        return cls(
            root=settings.root,
            allowed_lateness_days=settings.allowed_lateness_days,
            max_rejected_fraction=settings.max_rejected_fraction,
            lock_timeout_seconds=settings.lock_timeout_seconds,
        )

    def settings(self) -> Settings:
        settings = Settings(
            root=self.root,
            allowed_lateness_days=self.allowed_lateness_days,
            max_rejected_fraction=self.max_rejected_fraction,
            lock_timeout_seconds=self.lock_timeout_seconds,
        )
        settings.validate()
        return settings


def run_partition_keys(context: dg.OpExecutionContext | dg.AssetCheckExecutionContext) -> list[str]:
    """The partition keys a run targets, from its tags (works for asset checks too)."""
    tags = context.run.tags
    if RANGE_START_TAG in tags:
        start, end = tags[RANGE_START_TAG], tags[RANGE_END_TAG]
        first, last = date.fromisoformat(start), date.fromisoformat(end)
        return [(first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]
    return [tags["dagster/partition"]] if "dagster/partition" in tags else []
