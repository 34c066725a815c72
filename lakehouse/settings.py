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
    """

    root: str = DEFAULT_ROOT
    allowed_lateness_days: int = 7
    max_rejected_fraction: float = 0.05
    partitions_start: date = date(2025, 1, 1)
    partitions_end: date | None = None  # an arrival date the partitions must reach even if it is in the future
    lock_timeout_seconds: float = 600.0
    schema_compatibility: str | None = None  # None: the feed's own policy

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
