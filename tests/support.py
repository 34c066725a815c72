"""Shared test helpers: land files, drive the engine without Dagster, and snapshot deterministic content."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import polars as pl

from assets.billing_feed import BILLING_EVENTS
from lakehouse.batches.batch import SilverReport
from lakehouse.batches.pipeline import run_date
from lakehouse.delta.storage import read_table, table_uri
from lakehouse.feed import BRONZE_SCHEMA
from lakehouse.settings import Settings

WALL_CLOCK_AND_RUN = ("_run_id", "_ingested_at", "_quarantined_at", "_recorded_at")

# One valid, non-default value per field, as its variable would hold it (a new field must be added here).
NON_DEFAULT_TEXTS = {
    "root": "elsewhere",
    "allowed_lateness_days": "9",
    "max_rejected_fraction": "0.2",
    "partitions_start": "2025-01-03",
    "partitions_end": "2025-01-20",
    "lock_timeout_seconds": "45.5",
    "schema_compatibility": "full",
    "backfill_max_runs": "3",
    "regular_max_runs": "4",
    "backfill_partitions_per_run": "2",
    "backfill_rows_per_second": "1000.0",
    "backfill_step_concurrency": "2",
    "regular_step_concurrency": "3",
    "retention_hours": "24.0",
    "lock_dsn": "postgresql://lakehouse@db.example/locks",  # used by object-store roots only: never reached here
    "instance": "sqlite",  # forced: never PostgreSQL, whatever DAGSTER_PG_* say
    "executor": "celery",  # a run under it needs workers and PostgreSQL: in-process tests set it back to local
    "celery_broker": "amqp://guest@broker.example//",
    "celery_queue": "elsewhere",
}


def event(
    event_id: str,
    version: int = 1,
    *,
    ts: str = "2025-01-10T12:00:00Z",
    amount: int = 100,
    kind: str = "charge",
    account: str = "acct_1",
    currency: str = "USD",
    **extra: object,
) -> dict[str, object]:
    """A valid billing event; override any field (None drops nothing: it sets JSON null)."""
    record: dict[str, object] = {
        "event_id": event_id,
        "source_version": version,
        "account_id": account,
        "event_type": kind,
        "event_ts": ts,
        "amount_minor": amount,
        "currency": currency,
    }
    record.update(extra)
    return record


def land(root: Path, arrival: str, name: str, records: list[object]) -> Path:
    """Write one landing file; dicts become JSON lines, bytes and str are written as they are."""
    folder = root / "landing" / "billing_events" / arrival
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for record in records:
        if isinstance(record, bytes):
            lines.append(record)
        elif isinstance(record, str):
            lines.append(record.encode())
        else:
            lines.append(json.dumps(record).encode())
    path = folder / name
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def settings_for(root: Path, **overrides: object) -> Settings:
    return Settings(root=str(root), lock_timeout_seconds=30.0, **overrides)  # type: ignore[arg-type]


def run_batch(root: Path, arrival: str | date, run_id: str = "test-run", **overrides: object) -> SilverReport:
    """Bronze, silver and gold for one arrival date, exactly as the Dagster assets chain them."""
    acceptance = ("max_rejected_fraction", "accept_damaged_files")
    settings = settings_for(root, **{k: v for k, v in overrides.items() if k not in acceptance})
    day = date.fromisoformat(arrival) if isinstance(arrival, str) else arrival
    report, _ = run_date(
        settings,
        BILLING_EVENTS,
        day,
        run_id,
        "test",
        overrides.get("max_rejected_fraction"),  # type: ignore[arg-type]
        bool(overrides.get("accept_damaged_files")),
    )
    return report


def bronze_rows(root: Path) -> pl.DataFrame:
    return read_table(table_uri(root, "bronze", "billing_events"), empty_schema=BRONZE_SCHEMA).sort(
        "_source_file", "_source_line"
    )


def silver(root: Path) -> pl.DataFrame:
    return read_table(table_uri(root, "silver", "billing_events"), empty_schema=BILLING_EVENTS.silver_schema).sort("event_id")


def quarantine(root: Path) -> pl.DataFrame:
    return read_table(table_uri(root, "silver", "billing_events_quarantine"), empty_schema=BILLING_EVENTS.quarantine_schema).sort(
        "_arrival_date", "_source_file", "_source_line"
    )


def gold(root: Path) -> pl.DataFrame:
    return (
        read_table(table_uri(root, "gold", BILLING_EVENTS.gold.table)).sort("event_date", "account_id", "currency")
        if (root / "tables" / "gold").exists()
        else pl.DataFrame()
    )


def snapshot(root: Path) -> dict[str, pl.DataFrame]:
    """Every deterministic column of silver, quarantine and gold, in a canonical order."""
    frames = {"silver": silver(root), "quarantine": quarantine(root), "gold": gold(root)}
    return {name: frame.drop([c for c in WALL_CLOCK_AND_RUN if c in frame.columns]) for name, frame in frames.items()}


def assert_same_content(left: dict[str, pl.DataFrame], right: dict[str, pl.DataFrame]) -> None:
    for name in left:
        assert left[name].equals(right[name]), f"{name} differs:\n{left[name]}\n---\n{right[name]}"
