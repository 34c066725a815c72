"""Operational records under tables/ops: the batch ledger, incidents and restatements.

Each record is keyed, so writing it again (a retry, a crash and re-run) updates it in place
instead of adding a second row: every fact is recorded exactly once.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime

import polars as pl

from lakehouse.delta.merge import apply_changes
from lakehouse.delta.storage import CommitInfo, ensure_table, read_table, scan_table, table_exists, table_uri
from lakehouse.faults import crash_point
from lakehouse.staging.landing import split_recorded

WALL_CLOCK = ("_run_id", "_recorded_at")
BATCH_COUNTS = ("records_in", "inserted", "updated", "duplicates", "stale", "quarantined", "displaced")

BATCHES_SCHEMA: dict[str, pl.DataType] = {
    "batch_id": pl.String(),
    "dataset": pl.String(),
    "arrival_date": pl.Date(),
    "status": pl.String(),  # landed -> gated | published -> complete (gold refreshed)
    "files": pl.String(),  # JSON list: file, sha256, bytes, lines, records; entries not read: file, ignored, detail
    "records_in": pl.Int64(),
    "inserted": pl.Int64(),
    "updated": pl.Int64(),
    "duplicates": pl.Int64(),
    "stale": pl.Int64(),
    "quarantined": pl.Int64(),
    "displaced": pl.Int64(),
    "rejected_fraction": pl.Float64(),
    "max_rejected_fraction": pl.Float64(),
    "gates": pl.String(),  # JSON: gate name -> passed
    "reasons": pl.String(),  # JSON: quarantine reason -> count
    "schema_drift": pl.String(),  # JSON: lakehouse.staging.drift.SchemaDrift.as_dict() (policy, contract version, changes)
    "touched_event_dates": pl.String(),  # JSON list of ISO dates gold must refresh
    "code_version": pl.String(),
    "_run_id": pl.String(),
    "_recorded_at": pl.Datetime("us", "UTC"),
}

INCIDENTS_SCHEMA: dict[str, pl.DataType] = {
    "incident_id": pl.String(),
    "pipeline": pl.String(),
    "dataset": pl.String(),
    "arrival_date": pl.Date(),
    "idempotency_key": pl.String(),  # the batch id: re-running the same batch updates, never duplicates
    "failure_mode": pl.String(),
    "guardrail": pl.String(),
    "observed": pl.String(),
    "affected_rows": pl.Int64(),
    "detail": pl.String(),
    "status": pl.String(),  # open | resolved
    "resolved_by_batch_id": pl.String(),
    "_run_id": pl.String(),
    "_recorded_at": pl.Datetime("us", "UTC"),
}

RESTATEMENTS_SCHEMA: dict[str, pl.DataType] = {
    "dataset": pl.String(),
    "table": pl.String(),
    "event_date": pl.Date(),  # the restated partition of the aggregate (billing's gold: the event date)
    "caused_by_batch_id": pl.String(),
    "rows_before": pl.Int64(),
    "rows_after": pl.Int64(),
    "_run_id": pl.String(),
    "_recorded_at": pl.Datetime("us", "UTC"),
}


def restatements_schema(measure: str) -> dict[str, pl.DataType]:
    """The records' columns with a feed's measure totals, e.g. `net_minor_before` and `net_minor_after`."""
    return {**RESTATEMENTS_SCHEMA, f"{measure}_before": pl.Int64(), f"{measure}_after": pl.Int64()}


def now_utc() -> datetime:
    """Wall clock, only ever stored in `_..._at` columns: no data decision reads it."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class OpsTables:
    root: str

    @property
    def batches(self) -> str:
        return table_uri(self.root, "ops", "batches")

    @property
    def incidents(self) -> str:
        return table_uri(self.root, "ops", "incidents")

    @property
    def restatements(self) -> str:
        return table_uri(self.root, "ops", "restatements")

    def upsert(
        self, uri: str, schema: dict[str, pl.DataType], rows: list[dict[str, object]], key: list[str], commit: CommitInfo
    ) -> None:
        ensure_table(uri, schema, [], commit)
        desired = pl.DataFrame(rows, schema=schema)
        keys = desired.select(key)
        current = read_table(uri, empty_schema=schema).join(keys, on=key, how="semi")
        compare = [column for column in schema if column not in WALL_CLOCK]
        apply_changes(
            uri,
            desired,
            current,
            key=key,
            partition=None,
            compare=compare,
            commit=commit,
            operation=f"record {uri.rsplit('/', 1)[-1]}",
            delete_scope=pl.lit(False),
        )

    def record_batch(self, row: dict[str, object], commit: CommitInfo) -> None:
        self.upsert(
            self.batches, BATCHES_SCHEMA, [{**row, "_run_id": commit.run_id, "_recorded_at": now_utc()}], ["batch_id"], commit
        )

    def batch_rows(self, dataset: str) -> pl.DataFrame:
        return read_table(self.batches, pl.col("dataset") == dataset, empty_schema=BATCHES_SCHEMA)

    def batch(self, batch_id: str) -> pl.DataFrame:
        """The batch's record (one row), or no rows if it never landed."""
        return read_table(self.batches, pl.col("batch_id") == batch_id, empty_schema=BATCHES_SCHEMA)

    def commit_for_batch(self, dataset: str, batch_id: str, run_id: str, code_version: str) -> CommitInfo:
        """Commit metadata for work a batch caused later (gold, restatements): its files and counts travel along."""
        rows = self.batch(batch_id)
        if rows.is_empty():
            return CommitInfo(dataset=dataset, batch_id=batch_id, run_id=run_id, code_version=code_version)
        row = rows.row(0, named=True)
        counts = {name: row[name] for name in BATCH_COUNTS if row[name] is not None}
        return CommitInfo(
            dataset=dataset,
            batch_id=batch_id,
            run_id=run_id,
            code_version=code_version,
            arrival_date=row["arrival_date"],
            source_files=tuple(split_recorded(json.loads(row["files"] or "[]"))[0]),
            counts=counts,
        )

    def mark_complete(self, batch_id: str, commit: CommitInfo) -> bool:
        """Gold has been refreshed for a published batch: the batch is complete."""
        rows = self.batch(batch_id)
        if rows.is_empty() or rows.item(0, "status") != "published":
            return False
        row = rows.to_dicts()[0] | {"status": "complete", "_run_id": commit.run_id, "_recorded_at": now_utc()}
        self.upsert(self.batches, BATCHES_SCHEMA, [row], ["batch_id"], commit)
        crash_point("after_batch_complete")
        return True

    def open_incident(
        self,
        *,
        dataset: str,
        arrival_date: date,
        batch_id: str,
        failure_mode: str,
        guardrail: str,
        observed: str,
        affected_rows: int,
        detail: str,
        commit: CommitInfo,
    ) -> str:
        incident_id = hashlib.sha256(f"{batch_id}:{failure_mode}".encode()).hexdigest()[:16]
        row = {
            "incident_id": incident_id,
            "pipeline": f"{dataset}_ingest",
            "dataset": dataset,
            "arrival_date": arrival_date,
            "idempotency_key": batch_id,
            "failure_mode": failure_mode,
            "guardrail": guardrail,
            "observed": observed,
            "affected_rows": affected_rows,
            "detail": detail,
            "status": "open",
            "resolved_by_batch_id": None,
            "_run_id": commit.run_id,
            "_recorded_at": now_utc(),
        }
        self.upsert(self.incidents, INCIDENTS_SCHEMA, [row], ["incident_id"], commit)
        return incident_id

    def open_incidents(self, dataset: str) -> pl.DataFrame:
        """The feed's open incidents, oldest arrival date first."""
        scope = (pl.col("dataset") == dataset) & (pl.col("status") == "open")
        return read_table(self.incidents, scope, empty_schema=INCIDENTS_SCHEMA).sort("arrival_date", "failure_mode")

    def resolve_incidents(
        self, dataset: str, arrival_date: date, batch_id: str, commit: CommitInfo, keep: list[str] | None = None
    ) -> int:
        """A published batch for the same arrival date closes the incidents its earlier attempts opened (but `keep`)."""
        scope = (pl.col("dataset") == dataset) & (pl.col("arrival_date") == arrival_date) & (pl.col("status") == "open")
        scope &= ~pl.col("incident_id").is_in(keep or [])
        still_open = read_table(self.incidents, scope, empty_schema=INCIDENTS_SCHEMA)
        if still_open.is_empty():
            return 0
        resolved = still_open.with_columns(
            status=pl.lit("resolved"),
            resolved_by_batch_id=pl.lit(batch_id),
            _run_id=pl.lit(commit.run_id),
            _recorded_at=pl.lit(now_utc()),
        )
        self.upsert(self.incidents, INCIDENTS_SCHEMA, resolved.to_dicts(), ["incident_id"], commit)
        crash_point("after_incident_resolve")
        return len(resolved)

    def record_restatements(self, rows: list[dict[str, object]], measure: str, commit: CommitInfo) -> None:
        stamped = [{**row, "_run_id": commit.run_id, "_recorded_at": now_utc()} for row in rows]
        # One table for every feed: each adds its own measure's columns, other feeds' read null in its rows.
        held = dict(scan_table(self.restatements).collect_schema()) if table_exists(self.restatements) else {}
        schema = {**held, **restatements_schema(measure)}
        self.upsert(self.restatements, schema, stamped, ["dataset", "table", "event_date", "caused_by_batch_id"], commit)


def dumps(value: object) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def batch_record(
    dataset: str,
    arrival_date: date,
    batch_id: str,
    status: str,
    files: list[dict[str, object]],
    code_version: str,
    **facts: object,
) -> dict[str, object]:
    row: dict[str, object] = {
        "batch_id": batch_id,
        "dataset": dataset,
        "arrival_date": arrival_date,
        "status": status,
        "files": dumps(files),
        "code_version": code_version,
    }
    row.update(facts)
    return row
