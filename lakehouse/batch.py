"""Publish one arrival date from bronze: judge, resolve, gate, then quarantine, ledger and silver.

Write order within a batch: quarantine -> ledger -> silver -> batch record. Every step makes
its scope equal to a state computed from bronze and the *other* batches' accepted deliveries,
so a crash between any two commits is repaired by simply running the batch again.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import pandera.polars as pa
import polars as pl

from lakehouse.contracts import judge
from lakehouse.drift import SchemaDrift, detect_drift, shape_counts
from lakehouse.faults import crash_point
from lakehouse.feed import BRONZE_SCHEMA, KEY_FINGERPRINT, FeedSpec
from lakehouse.fingerprint import key_fingerprints
from lakehouse.gates import Gate, evaluate_gates
from lakehouse.landing import SYMLINK, split_recorded
from lakehouse.locking import exclusive_writer
from lakehouse.merge import MergeStats, apply_changes
from lakehouse.ops import OpsTables, batch_record, dumps
from lakehouse.quarantine import conflict_rows, validation_rejects, write_quarantine
from lakehouse.records import STAGE_CHUNK_ROWS, stage_records
from lakehouse.resolution import LINEAGE, LINEAGE_WITH_BATCH, Resolution, resolve
from lakehouse.settings import Settings
from lakehouse.storage import (
    CommitInfo,
    arrow_stream,
    ensure_table,
    open_table,
    read_partition_chunks,
    read_table,
    replace_where,
    scan_data_files,
    table_exists,
    table_uri,
    table_version,
    write_table,
)
from lakehouse.throttle import RowRateLimit

SAMPLE_REJECTS = 5  # rejects shown in the gate's metadata


@dataclass(frozen=True)
class SilverReport:
    batch_id: str
    arrival_date: date
    published: bool
    records_in: int
    counts: dict[str, int]
    reasons: dict[str, int]
    drift: SchemaDrift  # the batch's shape against the contract, judged by the feed's policy
    added_fields: dict[str, int]  # unknown fields -> records carrying them
    gates: list[Gate]
    touched_event_dates: list[date]
    sample_rejects: list[dict[str, object]]
    table_versions: dict[str, int | None]
    newest_event_ts: str | None
    incident_ids: list[str]
    silver_rows_written: int = 0  # rows inserted or updated by the MERGE (a move counts once)
    silver_rows_deleted: int = 0  # rows removed from their old event_date by a move

    @property
    def freshness_lag_hours(self) -> float | None:
        if self.newest_event_ts is None:
            return None
        arrival_end = datetime.combine(self.arrival_date + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
        return round((arrival_end - datetime.fromisoformat(self.newest_event_ts)).total_seconds() / 3600, 3)

    @property
    def rejected_fraction(self) -> float:
        return self.counts["quarantined"] / self.records_in if self.records_in else 0.0


def _deliveries(feed: FeedSpec, judged: pl.DataFrame) -> pl.DataFrame:
    """Validated records in silver's schema: typed fields, event date, content hash, lineage."""
    schema = feed.silver_schema
    return (
        judged.lazy()  # lazy: the filter then copies only silver's columns, not the raw lines and states
        .filter(pl.col("_reason").is_null())
        .with_columns(pl.col(feed.event_time).dt.date().alias(feed.partition))
        .select([pl.col(name).cast(dtype) for name, dtype in schema.items()])
        .collect()
    )


def publish_silver(
    settings: Settings,
    feed: FeedSpec,
    arrival_date: date,
    run_id: str,
    code_version: str,
    max_rejected_fraction: float | None = None,
    accept_damaged_files: bool = False,
    rate_limit: RowRateLimit | None = None,
) -> SilverReport:
    """Judge bronze's arrival date, gate it, and publish it to quarantine, the ledger and silver.

    `max_rejected_fraction` and `accept_damaged_files` are the operator's explicit acceptance of a
    batch its gates would hold back (a raised threshold; files readable only in part).
    """
    threshold = settings.max_rejected_fraction if max_rejected_fraction is None else max_rejected_fraction
    root, key, version = settings.root, feed.key, feed.version
    bronze_uri = table_uri(root, "bronze", feed.dataset)
    silver_uri = table_uri(root, "silver", feed.dataset)
    quarantine_uri = table_uri(root, "silver", f"{feed.dataset}_quarantine")
    ledger_uri = table_uri(root, "ops", f"{feed.dataset}_ledger")
    ops = OpsTables(root)
    if rate_limit is not None:  # a backfill's cap, paid before the writer lock so pacing never blocks other writers
        rate_limit.acquire(read_table(bronze_uri, pl.col("_arrival_date") == arrival_date, ["_batch_id"]).height)
    with exclusive_writer(root, feed.dataset, settings.lock_timeout_seconds, settings.lock_dsn):
        judged = _judge_bronze(bronze_uri, arrival_date, feed, feed.contract(settings.allowed_lateness_days), run_id)
        deliveries, rejects = judged.deliveries, judged.rejects
        batch_ids = sorted(judged.batch_ids)
        landed = ops.batch_rows(feed.dataset).filter(pl.col("arrival_date") == arrival_date).sort("_recorded_at")
        if not batch_ids and landed.height:  # files with only blank lines: an empty batch, still recorded
            batch_ids = [landed.item(-1, "batch_id")]
        if len(batch_ids) != 1:
            raise RuntimeError(
                f"bronze holds {len(batch_ids)} batches for {feed.dataset} {arrival_date}; materialize bronze for it first"
            )
        batch_id = batch_ids[0]
        record = landed.filter(pl.col("batch_id") == batch_id)
        recorded = json.loads(record.item(0, "files")) if record.height else []
        files, ignored = split_recorded(recorded)

        _fingerprint_old_ledger(
            ledger_uri, feed, CommitInfo(feed.dataset, batch_id, run_id, code_version, arrival_date, tuple(files))
        )
        ledger = ledger_rows(ledger_uri, feed, deliveries)
        resolution = resolve(deliveries, ledger.filter(pl.col("_arrival_date") != arrival_date), key, version)
        losers = resolution.outcomes.filter(pl.col("_outcome") == "version_conflict")
        own_quarantine = pl.concat([rejects, conflict_rows(feed, losers, _raw_lines(bronze_uri, arrival_date, losers), run_id)])

        tally = resolution.counts()
        counts = {
            "records_in": judged.records_in,
            "inserted": tally["inserted"],
            "updated": tally["updated"],
            "duplicates": tally["duplicate"],
            "stale": tally["stale"],
            "quarantined": own_quarantine.height,
            "displaced": resolution.displaced.height,
        }
        damaged = [f for f in files if f.get("damage")]
        changed = [f for f in files if f.get("changed")]
        symlinks = [e for e in ignored if e["ignored"] == SYMLINK]
        drift = detect_drift(
            judged.shapes,
            feed.fields,
            feed.required,
            contract_version=feed.contract_version,
            policy=settings.compatibility_for(feed.compatibility),
            share=feed.drift_share,
        )
        gates = evaluate_gates(
            feed, judged.records_in, counts, resolution, threshold, damaged, accept_damaged_files, changed, symlinks, drift
        )
        reasons = dict(sorted(own_quarantine.get_column("_reason").value_counts().iter_rows()))
        added = judged.added_fields
        commit = CommitInfo(
            dataset=feed.dataset,
            batch_id=batch_id,
            run_id=run_id,
            code_version=code_version,
            arrival_date=arrival_date,
            source_files=tuple(files),
            counts=counts,
        )
        # Created (or migrated) only now, so that commit too carries the batch's counts.
        for uri, schema, partition in (
            (silver_uri, feed.silver_schema, feed.partition),
            (ledger_uri, feed.ledger_schema, "_arrival_date"),
            (quarantine_uri, feed.quarantine_schema, "_arrival_date"),
        ):
            ensure_table(uri, schema, [partition], commit)
        facts = {
            **counts,
            "rejected_fraction": counts["quarantined"] / judged.records_in if judged.records_in else 0.0,
            "max_rejected_fraction": threshold,
            "gates": dumps({g.name: g.passed for g in gates}),
            "reasons": dumps(reasons),
            "schema_drift": dumps(drift.as_dict()),
        }
        samples = own_quarantine.head(SAMPLE_REJECTS).select("_source_file", "_source_line", "_reason", "_detail").to_dicts()
        if not all(gate.passed for gate in gates):
            write_quarantine(
                quarantine_uri, feed, own_quarantine, arrival_date, commit
            )  # the evidence is kept; nothing else changes
            incident_ids = [
                ops.open_incident(
                    dataset=feed.dataset,
                    arrival_date=arrival_date,
                    batch_id=batch_id,
                    failure_mode=f"gate_failed:{g.name}",
                    guardrail=g.guardrail,
                    observed=g.observed,
                    affected_rows=counts["quarantined"],
                    detail=f"batch {batch_id[:12]} of {arrival_date} not published: {g.observed} breaks {g.guardrail}",
                    commit=commit,
                )
                for g in gates
                if not g.passed
            ]
            crash_point("after_incident_record")
            ops.record_batch(batch_record(feed.dataset, arrival_date, batch_id, "gated", recorded, code_version, **facts), commit)
            crash_point("after_gated_batch_record")
            return SilverReport(
                batch_id,
                arrival_date,
                False,
                judged.records_in,
                counts,
                reasons,
                drift,
                added,
                gates,
                [],
                samples,
                {"silver": table_version(silver_uri), "quarantine": table_version(quarantine_uri)},
                _newest(deliveries, feed),
                incident_ids,
            )

        displaced_raw = read_table(
            bronze_uri,
            pl.col("_arrival_date").is_in(resolution.displaced.get_column("_arrival_date").unique().implode()),
            ["_raw", *LINEAGE],
            BRONZE_SCHEMA,
        )
        displaced_rows = conflict_rows(feed, resolution.displaced, displaced_raw, run_id)
        write_quarantine(quarantine_uri, feed, pl.concat([own_quarantine, displaced_rows]), arrival_date, commit)

        own_ledger = ledger.filter(pl.col("_arrival_date") == arrival_date)
        if (
            own_ledger.height != deliveries.height
            # The content hash covers every contract field, so it and the lineage identify a ledger row.
            or not own_ledger.join(deliveries, on=[key, version, "_content_hash", *LINEAGE_WITH_BATCH], how="anti").is_empty()
        ):
            replace_where(
                ledger_uri,
                deliveries.with_columns(key_fingerprints(deliveries.get_column(key)).alias(KEY_FINGERPRINT)),
                f"_arrival_date = '{arrival_date.isoformat()}'",
                commit,
                "ledger: replace arrival date",
                "during_ledger_write",
            )
            crash_point("after_ledger_commit")

        silver_change = apply_to_silver(silver_uri, feed, deliveries, ledger, resolution, commit)
        crash_point("after_silver_commit")

        touched = sorted(
            set(resolution.kept.get_column(feed.partition).to_list())
            | set(resolution.prior_kept.get_column(feed.partition).to_list())
        )
        # A complete batch re-run changes nothing downstream (its effect is a pure function), so it stays complete.
        status = "complete" if record.height and record.item(0, "status") == "complete" else "published"
        ops.record_batch(
            batch_record(
                feed.dataset,
                arrival_date,
                batch_id,
                status,
                recorded,
                code_version,
                touched_event_dates=dumps([d.isoformat() for d in touched]),
                **facts,
            ),
            commit,
        )
        crash_point("after_batch_record")
        ops.resolve_incidents(feed.dataset, arrival_date, batch_id, commit)
        return SilverReport(
            batch_id,
            arrival_date,
            True,
            judged.records_in,
            counts,
            reasons,
            drift,
            added,
            gates,
            touched,
            samples,
            {
                "silver": table_version(silver_uri),
                "quarantine": table_version(quarantine_uri),
                "ledger": table_version(ledger_uri),
            },
            _newest(deliveries, feed),
            [],
            silver_rows_written=silver_change.upserted,
            silver_rows_deleted=silver_change.deleted,
        )


def ledger_rows(ledger_uri: str, feed: FeedSpec, deliveries: pl.DataFrame) -> pl.DataFrame:
    """Every delivery the ledger holds of the batch's keys (this arrival date's earlier attempt included).

    Two passes, so the part that grows with history stays small: the first reads only the keys'
    8-byte fingerprints in every file (a delivery's key alone says nothing of where it lives) to
    learn which arrival-date partitions may hold a match; the second reads whole rows of the exact
    keys from those partitions only.
    """
    keys = deliveries.get_column(feed.key).unique()
    if not table_exists(ledger_uri):
        return pl.DataFrame(schema=feed.silver_schema)
    files = scan_data_files(ledger_uri, "_file") if not keys.is_empty() else None
    if files is None:
        return pl.DataFrame(schema=feed.silver_schema)
    partitions = (
        files.select(KEY_FINGERPRINT, "_file")
        .filter(pl.col(KEY_FINGERPRINT).is_in(key_fingerprints(keys).implode()))
        .select(pl.col("_file").unique().str.extract(r"_arrival_date=([0-9]{4}-[0-9]{2}-[0-9]{2})", 1).str.to_date())
        .collect()
        .to_series()
    )
    if partitions.is_empty():
        return pl.DataFrame(schema=feed.silver_schema)
    if partitions.null_count():
        raise RuntimeError(f"ledger files of {ledger_uri} are not laid out by _arrival_date partitions")
    scope = pl.col("_arrival_date").is_in(partitions.implode()) & pl.col(feed.key).is_in(keys.implode())
    return read_table(ledger_uri, scope, list(feed.silver_schema), feed.silver_schema)


def _fingerprint_old_ledger(ledger_uri: str, feed: FeedSpec, commit: CommitInfo) -> None:
    """A ledger written before fingerprints gets them once, in one atomic overwrite (its lookup needs them).

    Runs before `ensure_table`, whose migration would add the column as nulls instead.
    """
    if not table_exists(ledger_uri) or KEY_FINGERPRINT in {f.name for f in open_table(ledger_uri).schema().fields}:
        return
    rows = read_table(ledger_uri, columns=list(feed.silver_schema))
    rows = rows.with_columns(key_fingerprints(rows.get_column(feed.key)).alias(KEY_FINGERPRINT))
    write_table(
        ledger_uri,
        arrow_stream(rows),
        commit,
        "ledger: add key fingerprints",
        mode="overwrite",
        schema_mode="overwrite",
        partition_by=["_arrival_date"],
    )


def apply_to_silver(
    silver_uri: str, feed: FeedSpec, deliveries: pl.DataFrame, ledger: pl.DataFrame, resolution: Resolution, commit: CommitInfo
) -> MergeStats:
    """Make silver hold the resolution's kept rows: read the current rows of the batch's keys in the
    event dates they may live in (pruned by partition), then MERGE only what changed."""
    key, partition = feed.key, feed.partition
    keys = deliveries.get_column(key).unique()
    candidate_dates = pl.concat([ledger.get_column(partition), deliveries.get_column(partition)]).unique()
    current_silver = read_table(
        silver_uri,
        pl.col(partition).is_in(candidate_dates.implode()) & pl.col(key).is_in(keys.implode()),
        empty_schema=feed.silver_schema,
    )
    return apply_changes(
        silver_uri,
        resolution.kept.select(list(feed.silver_schema)),
        current_silver,
        key=[key, partition],
        partition=partition,
        compare=list(feed.silver_schema),
        commit=commit,
        operation="silver: apply batch",
        update_guard=f"s.{feed.version} >= t.{feed.version}",
    )


@dataclass(frozen=True)
class _Judged:
    """What publishing needs of a day's judged lines, gathered chunk by chunk."""

    records_in: int
    batch_ids: set[str]
    deliveries: pl.DataFrame  # validated records in silver's schema
    rejects: pl.DataFrame  # quarantine rows of the records the contract rejects
    shapes: pl.DataFrame  # drift.shape_counts of the parsed objects
    added_fields: dict[str, int]  # unknown fields -> records carrying them


def _judge_bronze(bronze_uri: str, arrival_date: date, feed: FeedSpec, contract: pa.DataFrameSchema, run_id: str) -> _Judged:
    """Stage and judge bronze's lines of a day slice by slice, keeping only what publishing needs: the
    staged columns (several times the raw lines) never exist for the whole day (the rules are per record)."""
    records, batch_ids, deliveries, rejects, shapes, added = 0, set(), [], [], [], Counter[str]()
    columns = ["_raw", *LINEAGE, "_batch_id"]
    for chunk in read_partition_chunks(bronze_uri, "_arrival_date", arrival_date, columns, STAGE_CHUNK_ROWS, BRONZE_SCHEMA):
        judged = judge(stage_records(chunk, feed.fields, feed.content_fields), contract, feed.reasons)
        records += judged.height
        batch_ids.update(judged.get_column("_batch_id").unique().to_list())
        deliveries.append(_deliveries(feed, judged))
        rejects.append(validation_rejects(feed, judged, run_id))
        shapes.append(shape_counts(judged))
        added.update(dict(judged.get_column("_extra_fields").drop_nulls().str.split(",").explode().value_counts().iter_rows()))
    return _Judged(
        records,
        batch_ids,
        pl.concat(deliveries) if deliveries else pl.DataFrame(schema=feed.silver_schema),
        pl.concat(rejects) if rejects else pl.DataFrame(schema=feed.quarantine_schema),
        pl.concat(shapes) if shapes else pl.DataFrame(schema={"_shape": pl.List(pl.String), "_objects": pl.UInt32}),
        dict(sorted(added.items())),
    )


def _raw_lines(bronze_uri: str, arrival_date: date, deliveries: pl.DataFrame) -> pl.DataFrame:
    """The raw lines (with lineage) of some of a day's deliveries: only their lines are kept from bronze's scan."""
    schema: dict[str, pl.DataType] = {c: BRONZE_SCHEMA[c] for c in ["_raw", *LINEAGE]}
    if deliveries.is_empty():
        return pl.DataFrame(schema=schema)
    lines = (pl.col("_arrival_date") == arrival_date) & pl.col("_source_line").is_in(
        deliveries.get_column("_source_line").implode()
    )
    return read_table(bronze_uri, lines, list(schema), schema).join(deliveries.select(LINEAGE), on=LINEAGE, how="semi")


def _newest(deliveries: pl.DataFrame, feed: FeedSpec) -> str | None:
    newest = deliveries.get_column(feed.event_time).max()
    return newest.isoformat() if newest is not None else None  # type: ignore[union-attr]
