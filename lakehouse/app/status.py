"""What an operator needs at 3 a.m.: tables and versions, last batches and their gates, quarantine reasons, incidents."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, date, datetime
from typing import Any

import polars as pl

from lakehouse.batches.arrivals import MISSING_DELIVERY
from lakehouse.batches.ops import BATCH_COUNTS, INCIDENTS_SCHEMA, RESTATEMENTS_SCHEMA, OpsTables
from lakehouse.batches.volume import VOLUME_ANOMALY
from lakehouse.delta.maintenance import survey
from lakehouse.delta.storage import open_table, read_table, scan_table, table_exists, table_uri
from lakehouse.feed import FeedSpec
from lakehouse.settings import Settings
from lakehouse.staging.landing import scan_landing

LAST_BATCHES = 10


def _drift_of(recorded: str | None) -> dict[str, Any]:
    """A batch's recorded drift; rows written before drift became a policy hold only `{field: count}` of added fields."""
    drift = json.loads(recorded) if recorded else {}
    if drift and "changes" not in drift:
        return {"changes": [{"change": "added", "field": k, "objects": v} for k, v in sorted(drift.items())]}
    return drift


def schema_status(batches: pl.DataFrame) -> dict[str, Any]:
    """Contract version and policy as enforced on the newest batch, and every drift seen so far, per field and change."""
    newest = batches.sort("arrival_date", "_recorded_at").tail(1)
    current = _drift_of(newest.item(0, "schema_drift")) if newest.height else {}
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    for row in batches.sort("arrival_date", "_recorded_at").iter_rows(named=True):
        drift = _drift_of(row["schema_drift"])
        for change in drift.get("changes", []):
            entry = seen.setdefault(
                (change["field"], change["change"]),
                {"field": change["field"], "change": change["change"], "batches": 0, "objects": 0, "violated_policy": []},
            )
            entry["batches"] += 1
            entry["objects"] += change["objects"]
            entry["last_arrival_date"] = row["arrival_date"].isoformat()
            if change.get("violates_policy"):
                entry["violated_policy"].append(f"{row['arrival_date'].isoformat()} ({drift['policy']})")
    return {
        "contract_version": current.get("contract_version"),
        "policy": current.get("policy"),
        "drift_seen": sorted(seen.values(), key=lambda e: (e["field"], e["change"])),
    }


def _table_facts(uri: str) -> dict[str, object]:
    if not table_exists(uri):
        return {"exists": False}
    table = open_table(uri)
    last = table.history(1)[0]
    # Row counts from the log's file statistics: reading every file's footer grows with the file count.
    counts = pl.DataFrame(table.get_add_actions(flatten=True)).get_column("num_records")
    rows = int(counts.sum()) if not counts.null_count() else scan_table(uri).select(pl.len()).collect().item()
    return {
        "exists": True,
        "version": table.version(),
        "rows": rows,
        "last_operation": last.get("lakehouse_operation") or last.get("operation"),
        "last_batch_id": last.get("batch_id"),
        "last_commit_at": datetime.fromtimestamp(last["timestamp"] / 1000, UTC).isoformat(timespec="seconds")
        if "timestamp" in last
        else None,
    }


def collect_status(root: str, feed: FeedSpec, retention_hours: float = Settings.retention_hours) -> dict[str, Any]:
    """One feed's tables, batches, incidents and landing folder, and the root's shared ops tables and orphans."""
    dataset, gold_table = feed.dataset, feed.gold.table
    tables = {
        f"bronze.{dataset}": table_uri(root, "bronze", dataset),
        f"silver.{dataset}": table_uri(root, "silver", dataset),
        f"silver.{dataset}_quarantine": table_uri(root, "silver", f"{dataset}_quarantine"),
        f"gold.{gold_table}": table_uri(root, "gold", gold_table),
        f"ops.{dataset}_ledger": table_uri(root, "ops", f"{dataset}_ledger"),
        "ops.batches": table_uri(root, "ops", "batches"),
        "ops.incidents": table_uri(root, "ops", "incidents"),
        "ops.restatements": table_uri(root, "ops", "restatements"),
    }
    ops = OpsTables(root)
    batches = (
        ops.batch_rows(dataset)
        .sort("arrival_date", "_recorded_at", descending=True)
        .unique("arrival_date", keep="first", maintain_order=True)
    )
    quarantine = read_table(tables[f"silver.{dataset}_quarantine"], columns=["_reason"], empty_schema={"_reason": pl.String()})
    of_feed = pl.col("dataset") == dataset
    incidents = read_table(ops.incidents, of_feed & (pl.col("status") == "open"), empty_schema=INCIDENTS_SCHEMA)
    restatements = read_table(ops.restatements, of_feed, ["dataset"], empty_schema=RESTATEMENTS_SCHEMA)
    return {
        "root": root,
        "feed": dataset,
        "tables": {name: _table_facts(uri) for name, uri in tables.items()},
        "last_batches": [
            {
                "arrival_date": row["arrival_date"].isoformat(),
                "batch_id": row["batch_id"],
                "status": row["status"],
                **{k: row[k] for k in (*BATCH_COUNTS, "rejected_fraction")},
                "gates": json.loads(row["gates"]) if row["gates"] else {},
                "schema_drift": _drift_of(row["schema_drift"]),
            }
            for row in batches.head(LAST_BATCHES).iter_rows(named=True)
        ],
        "quarantine_reasons": dict(sorted(quarantine.get_column("_reason").value_counts().iter_rows()))
        if quarantine.height
        else {},
        "open_incidents": [
            {k: (v.isoformat() if isinstance(v, date | datetime) else v) for k, v in row.items()}
            for row in incidents.iter_rows(named=True)
        ],
        **silence(incidents),
        "restatements": restatements.height,
        "schema": schema_status(ops.batch_rows(dataset)),
        "orphan_files": _orphans(root, retention_hours),
        "landing_not_ingested": [asdict(entry) for entry in scan_landing(root, dataset).ignored],
    }


def silence(open_incidents: pl.DataFrame) -> dict[str, list[dict[str, Any]]]:
    """The open incidents about what did not arrive, by date: missing deliveries and volume anomalies."""
    by_date = open_incidents.sort("arrival_date")
    missing = by_date.filter(pl.col("failure_mode") == MISSING_DELIVERY)
    volume = by_date.filter(pl.col("failure_mode") == VOLUME_ANOMALY)
    return {
        "missing_deliveries": [
            {"arrival_date": row["arrival_date"].isoformat(), "incident_id": row["incident_id"]}
            for row in missing.iter_rows(named=True)
        ],
        "volume_anomalies": [
            {
                "arrival_date": row["arrival_date"].isoformat(),
                "incident_id": row["incident_id"],
                "batch_id": row["idempotency_key"],
                "records": row["affected_rows"],
                "expected": row["guardrail"],
            }
            for row in volume.iter_rows(named=True)
        ],
    }


def render_silence(status: dict[str, Any]) -> list[str]:
    missing, volume = status["missing_deliveries"], status["volume_anomalies"]
    return [
        "Missing deliveries: "
        + (", ".join(f"{m['arrival_date']} (incident {m['incident_id']})" for m in missing) if missing else "none"),
        "Volume anomalies: "
        + (
            "; ".join(
                f"{v['arrival_date']} ({v['records']} records, {v['expected']}; incident {v['incident_id']})" for v in volume
            )
            if volume
            else "none"
        ),
    ]


def _orphans(root: str, retention_hours: float) -> dict[str, dict[str, int]]:
    """Per table with any: files no commit references (killed writes), and what `lakehouse maintain` would remove now."""
    return {
        found.table: {
            "files": len(found.orphans),
            "bytes": found.orphan_bytes,
            "reclaimable_files": len(found.reclaimable),
            "reclaimable_bytes": found.reclaimable_bytes,
        }
        for found in survey(root, retention_hours)
        if found.orphans or found.reclaimable
    }


def render_status(status: dict[str, Any]) -> str:
    lines = [f"Lakehouse at {status['root']}, feed {status['feed']}", "", "Tables:"]
    for name, facts in status["tables"].items():
        if not facts["exists"]:
            lines.append(f"  {name:<40} (not created yet)")
        else:
            lines.append(f"  {name:<40} v{facts['version']:<5} {facts['rows']:>10,} rows   last: {facts['last_operation']}")
    lines += [
        "",
        "Last batches (newest arrival first):",
        f"  {'arrival':<11} {'status':<10} {'batch':<13} {'in':>7} {'ins':>7} {'upd':>6} {'dup':>6} {'stale':>6} {'quar':>6} {'rejected':>9}  gates",
    ]
    if not status["last_batches"]:
        lines.append("  (no batch has run yet: land files, then `lakehouse run`)")
    for b in status["last_batches"]:
        gates = ", ".join(f"{name}={'pass' if ok else 'FAIL'}" for name, ok in b["gates"].items()) or "-"
        fraction = f"{b['rejected_fraction']:.2%}" if b["rejected_fraction"] is not None else "-"
        lines.append(
            f"  {b['arrival_date']:<11} {b['status']:<10} {b['batch_id'][:12]:<13} {b['records_in'] or 0:>7} {b['inserted'] or 0:>7} "
            f"{b['updated'] or 0:>6} {b['duplicates'] or 0:>6} {b['stale'] or 0:>6} {b['quarantined'] or 0:>6} {fraction:>9}  {gates}"
        )
    reasons = status["quarantine_reasons"]
    lines += [
        "",
        "Quarantine reasons: " + (", ".join(f"{k}={v}" for k, v in reasons.items()) if reasons else "none"),
    ]
    incidents = status["open_incidents"]
    lines.append(f"Open incidents: {len(incidents)}")
    for incident in incidents:
        lines.append(f"  {incident['arrival_date']} {incident['failure_mode']}: {incident['detail']}")
    lines += render_silence(status)
    lines.append(f"Restatements recorded: {status['restatements']}")
    lines += render_schema(status["schema"])
    orphans = status["orphan_files"]
    lines.append(
        "Orphan data files (left by killed writes): " + (f"{sum(o['files'] for o in orphans.values())}" if orphans else "none")
    )
    for table, found in orphans.items():
        lines.append(
            f"  {table:<40} {found['files']:>6} files {found['bytes']:>12,} bytes   "
            f"removable now by `lakehouse maintain`: {found['reclaimable_files']} files, {found['reclaimable_bytes']:,} bytes"
        )
    strays = status["landing_not_ingested"]
    lines.append(f"Landing entries not ingested: {len(strays) or 'none'}")
    lines += [f"  {entry['path']:<40} {entry['reason']:<20} {entry['detail']}" for entry in strays]
    return "\n".join(lines)


def render_schema(schema: dict[str, Any]) -> list[str]:
    if schema["policy"] is None:
        return ["Schema: no batch judged yet"]
    lines = [
        f"Schema: contract v{schema['contract_version']}, {schema['policy']} compatibility (as enforced on the newest batch)"
    ]
    if not schema["drift_seen"]:
        return [*lines, "  drift seen so far: none"]
    lines.append("  drift seen so far:")
    for entry in schema["drift_seen"]:
        refused = f"; refused on {', '.join(entry['violated_policy'])}" if entry["violated_policy"] else ""
        lines.append(
            f"    {entry['change']:<14} {entry['field']:<24} {entry['batches']} batch(es), {entry['objects']} objects, "
            f"last {entry['last_arrival_date']}{refused}"
        )
    return lines
