"""Every tunable of the pipeline, read from the environment in one place."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from datetime import date, timedelta

from lakehouse.drift import Compatibility

DEFAULT_ROOT = ".lakehouse"
SCHEMA_COMPATIBILITIES = tuple(c.value for c in Compatibility)


@dataclass(frozen=True)
class Settings:
    """Pipeline settings. Data-affecting ones (lateness) must stay stable for replays to be exact.

    Attributes:
        root: storage root; a local path (object-store URIs are accepted by Delta but the
            advisory lock is local-only, see README).
        allowed_lateness_days: a record whose arrival_date - event_date exceeds this is `too_late`.
        max_rejected_fraction: the publish gate; a batch whose quarantined/records is strictly
            above it is not published.
        partitions_start: first arrival/event date of the Dagster partitions.
        partitions_end: an arrival date the partitions must reach although the calendar has not
            (the CLI sets it to the last date it runs); partitions otherwise end today.
        lock_timeout_seconds: how long a second writer waits for the first before giving up.
        schema_compatibility: overrides the feed's schema drift policy (backward, forward, full, none).
        backfill_max_runs: backfill runs in flight at once (the run queue's `dagster/backfill` tag limit).
        regular_max_runs: room the run queue keeps for every other run, whatever backfills are running.
        backfill_partitions_per_run: arrival dates one backfill run of bronze/silver processes (BackfillPolicy).
        backfill_rows_per_second: records per second that all backfill runs together may write
            (bronze rows plus silver records; 0 = no cap). Regular runs are never throttled.
        backfill_step_concurrency: steps one backfill run may execute at once, each in its own process.
        regular_step_concurrency: the same for every other run launched by the daemon.
        retention_hours: the time-travel window: `lakehouse maintain` keeps every file a version
            younger than this needs, and any unreferenced file younger than this.
    """

    root: str = DEFAULT_ROOT
    allowed_lateness_days: int = 7
    max_rejected_fraction: float = 0.05
    partitions_start: date = date(2025, 1, 1)
    partitions_end: date | None = None  # an arrival date the partitions must reach even if it is in the future
    lock_timeout_seconds: float = 600.0
    schema_compatibility: str | None = None  # None: the feed's own policy
    backfill_max_runs: int = 2
    regular_max_runs: int = 2
    backfill_partitions_per_run: int = 5
    backfill_rows_per_second: float = 0.0
    backfill_step_concurrency: int = 1
    regular_step_concurrency: int = 2
    retention_hours: float = 168.0

    @property
    def event_partitions_start(self) -> date:
        """The earliest event date an arrival on `partitions_start` can accept (one lateness window back)."""
        return self.partitions_start - timedelta(days=self.allowed_lateness_days)

    def compatibility_for(self, feed_default: Compatibility) -> Compatibility:
        """The schema drift policy in force: the setting when given, else the feed's own."""
        return feed_default if self.schema_compatibility is None else Compatibility(self.schema_compatibility)

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        env = os.environ
        settings = cls(
            root=env.get("LAKEHOUSE_ROOT", DEFAULT_ROOT),
            allowed_lateness_days=int(env.get("LAKEHOUSE_ALLOWED_LATENESS_DAYS", "7")),
            max_rejected_fraction=float(env.get("LAKEHOUSE_MAX_REJECTED_FRACTION", "0.05")),
            partitions_start=date.fromisoformat(env.get("LAKEHOUSE_PARTITIONS_START", "2025-01-01")),
            lock_timeout_seconds=float(env.get("LAKEHOUSE_LOCK_TIMEOUT_SECONDS", "600")),
            schema_compatibility=env.get("LAKEHOUSE_SCHEMA_COMPATIBILITY") or None,
            backfill_max_runs=int(env.get("LAKEHOUSE_BACKFILL_MAX_RUNS", "2")),
            regular_max_runs=int(env.get("LAKEHOUSE_REGULAR_MAX_RUNS", "2")),
            backfill_partitions_per_run=int(env.get("LAKEHOUSE_BACKFILL_PARTITIONS_PER_RUN", "5")),
            backfill_rows_per_second=float(env.get("LAKEHOUSE_BACKFILL_ROWS_PER_SECOND", "0")),
            backfill_step_concurrency=int(env.get("LAKEHOUSE_BACKFILL_STEP_CONCURRENCY", "1")),
            regular_step_concurrency=int(env.get("LAKEHOUSE_REGULAR_STEP_CONCURRENCY", "2")),
            retention_hours=float(env.get("LAKEHOUSE_RETENTION_HOURS", "168")),
        )
        settings = replace(settings, **{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]
        settings.validate()
        return settings

    def validate(self) -> None:
        if self.allowed_lateness_days < 0:
            raise ValueError(f"allowed_lateness_days must be >= 0, got {self.allowed_lateness_days}")
        if not 0.0 <= self.max_rejected_fraction <= 1.0:
            raise ValueError(f"max_rejected_fraction must be within [0, 1], got {self.max_rejected_fraction}")
        if self.schema_compatibility is not None and self.schema_compatibility not in SCHEMA_COMPATIBILITIES:
            raise ValueError(
                f"schema_compatibility must be one of {', '.join(SCHEMA_COMPATIBILITIES)}, got {self.schema_compatibility!r}"
            )
        for name in (
            "backfill_max_runs",
            "regular_max_runs",
            "backfill_partitions_per_run",
            "backfill_step_concurrency",
            "regular_step_concurrency",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.backfill_rows_per_second < 0:
            raise ValueError(f"backfill_rows_per_second must be >= 0 (0 = no cap), got {self.backfill_rows_per_second}")
        if self.retention_hours < 0:
            raise ValueError(f"retention_hours must be >= 0, got {self.retention_hours}")
