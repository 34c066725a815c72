"""Missing deliveries: an expected arrival date with no delivery while a later date has one.

A feed delivers every `cadence_days` days (`FeedSpec.cadence_days`). The expected arrival dates are
its first delivered date (on or after the partitions start: nothing before the first delivery is
missing) and every `cadence_days` after it; an expected date is missing when no delivery falls in
[date, date + cadence) while a later date has one. "Delivered" is a date with files in the landing
folder or a recorded batch, so the verdict depends only on what landed, never on the wall clock or
the order dates are run in. A feed that stops altogether has no later delivery: that is what the
freshness policies of silver and gold show (assets/), not an incident.

Detection is an operational record only: it writes incidents, never table content. It runs with
every batch the feed publishes or gates (under the feed's writer lock) and reconciles: it opens an
incident for a newly missing date (keyed by dataset and date, so once) and resolves the open ones
whose date has since been delivered.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta

import polars as pl

from lakehouse.batches.ops import INCIDENTS_SCHEMA, OpsTables, now_utc
from lakehouse.delta.storage import CommitInfo, read_table

MISSING_DELIVERY = "missing_delivery"


def missing_arrival_dates(delivered: Iterable[date], cadence_days: int, start: date) -> list[date]:
    """Expected arrival dates (from the first delivery on or after `start`, every `cadence_days`) with no
    delivery within their cadence while a later date has one."""
    days = sorted({d for d in delivered if d >= start})
    if not days:
        return []
    step, missing, expected = timedelta(days=cadence_days), [], days[0]
    while expected + step <= days[-1]:
        at = bisect_left(days, expected)  # the first delivery on or after the expected date
        if days[at] >= expected + step:
            missing.append(expected)
        expected += step
    return missing


def incident_id(dataset: str, missing: date) -> str:
    """Keyed by dataset and date (not by a batch): every batch that notices the gap names the same incident."""
    return hashlib.sha256(f"{dataset}:{missing.isoformat()}:{MISSING_DELIVERY}".encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Noticed:
    missing: list[date]  # every arrival date missing now
    opened: list[str]  # incidents opened by this call
    resolved: list[str]  # incidents resolved by this call (their date has since been delivered)


def notice_missing_deliveries(
    ops: OpsTables, dataset: str, cadence_days: int, delivered: Iterable[date], start: date, commit: CommitInfo
) -> Noticed:
    """Open an incident for each missing arrival date not yet open, resolve the open ones now delivered."""
    delivered = sorted(set(delivered))
    missing = missing_arrival_dates(delivered, cadence_days, start)
    scope = (pl.col("dataset") == dataset) & (pl.col("failure_mode") == MISSING_DELIVERY) & (pl.col("status") == "open")
    still_open = read_table(ops.incidents, scope, empty_schema=INCIDENTS_SCHEMA)
    open_ids = set(still_open.get_column("incident_id").to_list())
    stamp = {"_run_id": commit.run_id, "_recorded_at": now_utc()}
    opened = [
        _row(dataset, d, delivered, cadence_days, commit.batch_id) | stamp
        for d in missing
        if incident_id(dataset, d) not in open_ids
    ]
    resolved = [
        row | {"status": "resolved", "resolved_by_batch_id": commit.batch_id, **stamp}
        for row in still_open.iter_rows(named=True)
        if row["arrival_date"] not in missing
    ]
    if opened or resolved:  # nothing to say writes nothing (a replay commits nothing, creates no table)
        ops.upsert(ops.incidents, INCIDENTS_SCHEMA, opened + resolved, ["incident_id"], commit)
    return Noticed(missing, [str(r["incident_id"]) for r in opened], [str(r["incident_id"]) for r in resolved])


def _row(dataset: str, missing: date, delivered: list[date], cadence_days: int, noticed_by: str) -> dict[str, object]:
    later = delivered[bisect_left(delivered, missing + timedelta(days=cadence_days))]
    every = "day" if cadence_days == 1 else f"{cadence_days} days"
    return {
        "incident_id": incident_id(dataset, missing),
        "pipeline": f"{dataset}_ingest",
        "dataset": dataset,
        "arrival_date": missing,
        "idempotency_key": f"{dataset}:{missing.isoformat()}",
        "failure_mode": MISSING_DELIVERY,
        "guardrail": f"a delivery every {every} between the first and the latest delivered arrival date",
        "observed": f"no files for arrival date {missing.isoformat()}; {later.isoformat()} has a delivery",
        "affected_rows": 0,
        "detail": f"no delivery for arrival date {missing.isoformat()} (noticed by batch {noticed_by[:12]}): ask the upstream "
        f"to deliver it into landing/{dataset}/{missing.isoformat()}/; the incident resolves once its files land",
        "status": "open",
        "resolved_by_batch_id": None,
    }
