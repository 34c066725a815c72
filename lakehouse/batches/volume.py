"""Volume anomalies: a batch's record count against the feed's recent published batches.

The rule (per feed, `FeedSpec.volume`): take the published batches of the `window` latest arrival
dates *before* the batch's own (for a date delivered more than once, its largest record count: landing
files only accumulate, so that is its latest delivery), and their median m. With fewer than
`min_history` such dates the verdict is "not enough history" and passes. Otherwise the expected range
is [m / factor, m * factor], never narrower than m +- `floor` records (so a feed of a handful of records
a day does not alarm on a difference of three). A count outside it is an anomaly.

Why a median and a ratio: a median ignores the odd anomalous day in the window, and a ratio bound
of 3 sits far outside normal day-to-day spread (+-20% spread moves a count at most 1.5x from its
median), so a steady feed never alarms while a tenth of a delivery (or a triple one) always does.
The verdict reads only recorded batches of earlier arrival dates: never the wall clock, nor the run
order of the batch itself, so a replay of a batch gets the verdict it had.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from statistics import median

import polars as pl

VOLUME_CHECK = "record_count_within_recent_range"
VOLUME_ANOMALY = "volume_anomaly"
PUBLISHED = ("published", "complete")


@dataclass(frozen=True)
class VolumeRule:
    """How a feed's batch sizes are judged (see the module docstring).

    Attributes:
        window: published batches of earlier arrival dates the median is taken over.
        min_history: fewer earlier published dates than this never alarm (a new feed's first days).
        factor: the expected range is [median / factor, median * factor].
        floor: the range is never narrower than median +- this many records.
        blocking: an anomaly holds the batch (an ERROR check, not published) instead of warning.
    """

    window: int = 14
    min_history: int = 7
    factor: float = 3.0
    floor: int = 10
    blocking: bool = False

    def __post_init__(self) -> None:
        if self.window < 1 or not 1 <= self.min_history <= self.window or self.factor <= 1 or self.floor < 0:
            raise ValueError(f"a volume rule needs window >= min_history >= 1, factor > 1 and floor >= 0: {self}")

    def expected_range(self, history: list[int]) -> tuple[float, float] | None:
        """The range a count must fall in, given earlier dates' counts (newest last); None: too short a history."""
        recent = history[-self.window :]
        if len(recent) < self.min_history:
            return None
        m = median(recent)
        return min(m / self.factor, m - self.floor), max(m * self.factor, m + self.floor)


@dataclass(frozen=True)
class VolumeVerdict:
    records_in: int
    expected: tuple[float, float] | None  # None: not enough history to judge
    history: int  # earlier published arrival dates the range was taken over
    median: float | None
    accepted: bool = False  # the operator accepted an anomalous count explicitly

    @property
    def anomalous(self) -> bool:
        return self.expected is not None and not self.expected[0] <= self.records_in <= self.expected[1]

    @property
    def passed(self) -> bool:
        return not self.anomalous or self.accepted

    @property
    def observed(self) -> str:
        return f"{self.records_in} records" + (" (accepted by the operator)" if self.anomalous and self.accepted else "")

    @property
    def guardrail(self) -> str:
        if self.expected is None:
            return f"not judged: {self.history} earlier published arrival date(s), fewer than the rule needs"
        low, high = self.expected
        return (
            f"expected {low:.0f}..{high:.0f} records (median {self.median:g} of the last {self.history} published arrival dates)"
        )

    def metadata(self) -> dict[str, object]:
        return {
            "records_in": self.records_in,
            "expected_low": self.expected[0] if self.expected else None,
            "expected_high": self.expected[1] if self.expected else None,
            "median": self.median,
            "history_dates": self.history,
            "accepted": self.accepted,
        }


def recent_counts(batches: pl.DataFrame, arrival_date: date) -> list[int]:
    """Record counts of the published batches of arrival dates before `arrival_date`, oldest first, one per date."""
    earlier = batches.filter(
        (pl.col("arrival_date") < arrival_date) & pl.col("status").is_in(PUBLISHED) & pl.col("records_in").is_not_null()
    )
    per_date = earlier.group_by("arrival_date").agg(pl.col("records_in").max()).sort("arrival_date")
    return per_date.get_column("records_in").to_list()


def judge_volume(rule: VolumeRule, batches: pl.DataFrame, arrival_date: date, records_in: int, accepted: bool) -> VolumeVerdict:
    """The verdict on a batch of `records_in` records for `arrival_date`, from the feed's recorded `batches`."""
    history = recent_counts(batches, arrival_date)[-rule.window :]
    expected = rule.expected_range(history)
    return VolumeVerdict(records_in, expected, len(history), float(median(history)) if expected else None, accepted)
