"""The Dagster resource every asset reads its settings through."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dagster as dg

from lakehouse import __version__
from lakehouse.batches.throttle import RowRateLimit, backfill_rate_limit
from lakehouse.settings import Settings

BATCH_TAG = "lakehouse/batch_id"
TOUCHED_DATES_TAG = "lakehouse/event_dates"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
BACKFILL_TAG = "dagster/backfill"  # Dagster puts it on every run of a backfill
PRIORITY_TAG = "dagster/priority"  # the run queue and pool slots serve higher values first
REGULAR_PRIORITY = "10"  # sensor runs go ahead of backfill runs (default 0) in the queue and for pool slots
CODE_VERSION = __version__


class LakehouseResource(dg.ConfigurableResource):
    """Every setting, carried whole: build it with `from_settings`, read it back with `settings()`.

    The settings travel as their texts, keyed by field name, so the resource declares no field of its own
    that could drift from `Settings` (each setting is parsed and checked by its one declaration there).
    """

    settings_texts: dict[str, str]

    @classmethod
    def from_settings(cls, settings: Settings) -> LakehouseResource:
        return cls(settings_texts=settings.texts())

    def settings(self) -> Settings:
        return Settings.from_texts(self.settings_texts)

    def rate_limit(self, run_tags: Mapping[str, str]) -> RowRateLimit | None:
        """The shared rows-per-second cap for a backfill's run; regular runs are never throttled."""
        if BACKFILL_TAG not in run_tags:
            return None
        settings = self.settings()
        return backfill_rate_limit(settings.root, settings.backfill_rows_per_second, settings.lock_dsn)

    def applied_caps(
        self, run_tags: Mapping[str, str], partitions: int, rate_limit: RowRateLimit | None = None
    ) -> dict[str, Any]:
        """The throughput caps a run of `partitions` dates was held to, as materialization metadata (empty for a regular run)."""
        if BACKFILL_TAG not in run_tags:
            return {}
        caps: dict[str, Any] = {
            "backfill_id": run_tags[BACKFILL_TAG],
            "backfill_rows_per_second_cap": self.settings().backfill_rows_per_second or "none",
            "backfill_partitions_in_run": dg.MetadataValue.int(partitions),
        }
        if rate_limit is not None:
            caps["throttle_rows_charged"] = dg.MetadataValue.int(rate_limit.rows)
            caps["throttle_wait_seconds"] = dg.MetadataValue.float(round(rate_limit.waited_seconds, 3))
        return caps
