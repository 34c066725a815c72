"""One arrival date end to end through bronze and silver: land, judge, resolve, gate, then publish.

Write order within a batch: quarantine -> ledger -> silver -> batch record. Every step makes
its scope equal to a state computed from bronze and the *other* batches' accepted deliveries,
so a crash between any two commits is repaired by simply running the batch again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import polars as pl

from lakehouse.contracts import judge
from lakehouse.faults import crash_point
from lakehouse.feed import BRONZE_SCHEMA, FeedSpec
from lakehouse.landing import read_batch
from lakehouse.locking import exclusive_writer
from lakehouse.merge import apply_changes
from lakehouse.ops import OpsTables, dumps, now_utc
from lakehouse.records import stage_records
from lakehouse.resolution import LINEAGE, Resolution, resolve
from lakehouse.settings import Settings
from lakehouse.storage import CommitInfo, ensure_table, read_table, replace_where, table_uri, table_version

QUARANTINE_WALL_CLOCK = ("_run_id", "_quarantined_at")
SAMPLE_REJECTS = 5


@dataclass(frozen=True)
class BronzeReport:
    batch_id: str
    files: list[dict[str, object]]
    records: int
    table_version: int | None
    rewritten: bool  # False when bronze already held exactly this batch (a replay)


@dataclass(frozen=True)
class Gate:
    """A publish gate, evaluated before silver's commit; names read as predicates."""

    name: str
    passed: bool
    observed: str
    guardrail: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SilverReport:
    batch_id: str
    arrival_date: date
    published: bool
    records_in: int
    counts: dict[str, int]
    reasons: dict[str, int]
    schema_drift: dict[str, int]
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


def _commit(
    settings: Settings,
    feed: FeedSpec,
    arrival_date: date,
    batch_id: str,
    run_id: str,
    code_version: str,
    files: list[dict[str, object]],
    counts: dict[str, int],
) -> CommitInfo:
    return CommitInfo(
        dataset=feed.dataset,
        batch_id=batch_id,
        run_id=run_id,
        code_version=code_version,
        arrival_date=arrival_date,
        source_files=tuple(files),
        counts=counts,
    )


def land_bronze(settings: Settings, feed: FeedSpec, arrival_date: date, run_id: str, code_version: str) -> BronzeReport:
    """Replace bronze's arrival-date partition with every landed line, atomically; a replay writes nothing."""
    with exclusive_writer(settings.root, feed.dataset, settings.lock_timeout_seconds):
        batch = read_batch(settings.root, feed.dataset, arrival_date)
        files = [f.as_metadata() for f in batch.files]
        uri = table_uri(settings.root, "bronze", feed.dataset)
        ensure_table(uri, BRONZE_SCHEMA, ["_arrival_date"])
        held = read_table(uri, pl.col("_arrival_date") == arrival_date, ["_batch_id"])
        replay = held.height == batch.rows.height > 0 and set(held.get_column("_batch_id").to_list()) == {batch.batch_id}
        commit = _commit(
            settings, feed, arrival_date, batch.batch_id, run_id, code_version, files, {"records_in": batch.rows.height}
        )
        if not replay:
            rows = batch.rows.with_columns(
                _batch_id=pl.lit(batch.batch_id),
                _arrival_date=pl.lit(arrival_date),
                _run_id=pl.lit(run_id),
                _ingested_at=pl.lit(now_utc()).cast(pl.Datetime("us", "UTC")),
            ).select(list(BRONZE_SCHEMA))
            replace_where(uri, rows, f"_arrival_date = '{arrival_date.isoformat()}'", commit, "bronze: replace arrival date")
            crash_point("after_bronze_commit")
        ops = OpsTables(settings.root)
        known = ops.batch_rows(feed.dataset).filter(pl.col("batch_id") == batch.batch_id)
        if known.is_empty():
            ops.record_batch(
                _batch_row(feed, arrival_date, batch.batch_id, "landed", files, code_version, records_in=batch.rows.height),
                commit,
            )
        return BronzeReport(batch.batch_id, files, batch.rows.height, table_version(uri), rewritten=not replay)


def _batch_row(
    feed: FeedSpec,
    arrival_date: date,
    batch_id: str,
    status: str,
    files: list[dict[str, object]],
    code_version: str,
    **facts: object,
) -> dict[str, object]:
    row: dict[str, object] = {
        "batch_id": batch_id,
        "dataset": feed.dataset,
        "arrival_date": arrival_date,
        "status": status,
        "files": dumps(files),
        "code_version": code_version,
    }
    row.update(facts)
    return row


def _deliveries(feed: FeedSpec, judged: pl.DataFrame) -> pl.DataFrame:
    """Validated records in silver's schema: typed fields, event date, content hash, lineage."""
    schema = feed.silver_schema
    return (
        judged.filter(pl.col("_reason").is_null())
        .with_columns(pl.col(feed.event_time).dt.date().alias(feed.partition))
        .select([pl.col(name).cast(dtype) for name, dtype in schema.items()])
    )


def _quarantine_rows(feed: FeedSpec, frame: pl.DataFrame, run_id: str) -> pl.DataFrame:
    schema = feed.quarantine_schema
    stamped = frame.with_columns(_run_id=pl.lit(run_id), _quarantined_at=pl.lit(now_utc()).cast(pl.Datetime("us", "UTC")))
    for name in schema:
        if name not in stamped.columns:
            stamped = stamped.with_columns(pl.lit(None).alias(name))
    return stamped.select([pl.col(name).cast(dtype) for name, dtype in schema.items()])


def _validation_rejects(feed: FeedSpec, judged: pl.DataFrame, run_id: str) -> pl.DataFrame:
    detail = pl.col("_detail") + pl.when(pl.col("_parse_error").is_not_null()).then(
        pl.lit(" (") + pl.col("_parse_error") + pl.lit(")")
    ).otherwise(pl.lit(""))
    return _quarantine_rows(feed, judged.filter(pl.col("_reason").is_not_null()).with_columns(_detail=detail), run_id)


def _conflict_detail(feed: FeedSpec) -> pl.Expr:
    return pl.format(
        "version_conflict: {} {} version {} was delivered with different content; kept the delivery at {} line {} "
        "(arrival {}, batch {}), whose content hash is the smallest",
        pl.lit(feed.key),
        pl.col(feed.key),
        pl.col(feed.version),
        pl.col("_kept_source_file"),
        pl.col("_kept_source_line"),
        pl.col("_kept_arrival_date"),
        pl.col("_kept_batch_id").str.slice(0, 12),
    )


def _conflict_rows(feed: FeedSpec, losers: pl.DataFrame, raw_by_lineage: pl.DataFrame, run_id: str) -> pl.DataFrame:
    with_raw = losers.join(raw_by_lineage, on=LINEAGE, how="left")
    return _quarantine_rows(
        feed, with_raw.with_columns(_reason=pl.lit("version_conflict"), _detail=_conflict_detail(feed)), run_id
    )


def _gates(feed: FeedSpec, records_in: int, counts: dict[str, int], resolution: Resolution, threshold: float) -> list[Gate]:
    quarantined = counts["quarantined"]
    fraction = quarantined / records_in if records_in else 0.0
    accounted = sum(counts[k] for k in ("inserted", "updated", "duplicates", "stale", "quarantined"))
    duplicate_keys = resolution.kept.height - resolution.kept.get_column(feed.key).n_unique() if resolution.kept.height else 0
    return [
        Gate(
            "rejected_fraction_within_threshold",
            fraction <= threshold,
            f"{fraction:.4%} ({quarantined}/{records_in})",
            f"quarantined/records <= {threshold:.2%}",
            {"rejected_fraction": fraction, "max_rejected_fraction": threshold},
        ),
        Gate(
            "silver_keys_are_unique",
            duplicate_keys == 0,
            f"{duplicate_keys} duplicate {feed.key} in the batch's silver rows",
            f"one silver row per {feed.key}",
            {"duplicate_keys": duplicate_keys},
        ),
        Gate(
            "batch_counts_are_conserved",
            accounted == records_in,
            f"records_in={records_in}, inserted+updated+duplicates+stale+quarantined={accounted}",
            "records in = inserted + updated + duplicates + stale + quarantined",
            {"records_in": records_in, "accounted": accounted},
        ),
    ]


def publish_silver(
    settings: Settings,
    feed: FeedSpec,
    arrival_date: date,
    run_id: str,
    code_version: str,
    max_rejected_fraction: float | None = None,
) -> SilverReport:
    """Judge bronze's arrival date, gate it, and publish it to quarantine, the ledger and silver."""
    threshold = settings.max_rejected_fraction if max_rejected_fraction is None else max_rejected_fraction
    root, key, version = settings.root, feed.key, feed.version
    bronze_uri = table_uri(root, "bronze", feed.dataset)
    silver_uri = table_uri(root, "silver", feed.dataset)
    quarantine_uri = table_uri(root, "silver", f"{feed.dataset}_quarantine")
    ledger_uri = table_uri(root, "ops", f"{feed.dataset}_ledger")
    ops = OpsTables(root)
    with exclusive_writer(root, feed.dataset, settings.lock_timeout_seconds):
        bronze = read_table(bronze_uri, pl.col("_arrival_date") == arrival_date, ["_raw", *LINEAGE, "_batch_id"], BRONZE_SCHEMA)
        batch_ids = bronze.get_column("_batch_id").unique().to_list()
        landed = ops.batch_rows(feed.dataset).filter(pl.col("arrival_date") == arrival_date).sort("_recorded_at")
        if not batch_ids and landed.height:  # files with only blank lines: an empty batch, still recorded
            batch_ids = [landed.item(-1, "batch_id")]
        if len(batch_ids) != 1:
            raise RuntimeError(
                f"bronze holds {len(batch_ids)} batches for {feed.dataset} {arrival_date}; materialize bronze for it first"
            )
        batch_id = batch_ids[0]
        record = landed.filter(pl.col("batch_id") == batch_id)
        files = json.loads(record.item(0, "files")) if record.height else []

        staged = stage_records(bronze, feed.fields, feed.content_fields)
        judged = judge(staged, feed.contract(settings.allowed_lateness_days), feed.reasons)
        deliveries = _deliveries(feed, judged)
        rejects = _validation_rejects(feed, judged, run_id)

        for uri, schema, partition in (
            (silver_uri, feed.silver_schema, feed.partition),
            (ledger_uri, feed.silver_schema, "_arrival_date"),
            (quarantine_uri, feed.quarantine_schema, "_arrival_date"),
        ):
            ensure_table(uri, schema, [partition])
        keys = deliveries.get_column(key).unique()
        ledger = read_table(ledger_uri, pl.col(key).is_in(keys.implode()), empty_schema=feed.silver_schema)
        prior = ledger.filter(pl.col("_arrival_date") != arrival_date)
        resolution = resolve(deliveries, prior, key, version)
        raw = bronze.select("_raw", *LINEAGE)
        losers = resolution.outcomes.filter(pl.col("_outcome") == "version_conflict")
        own_quarantine = pl.concat([rejects, _conflict_rows(feed, losers, raw, run_id)])

        tally = resolution.counts()
        counts = {
            "records_in": bronze.height,
            "inserted": tally["inserted"],
            "updated": tally["updated"],
            "duplicates": tally["duplicate"],
            "stale": tally["stale"],
            "quarantined": own_quarantine.height,
            "displaced": resolution.displaced.height,
        }
        gates = _gates(feed, bronze.height, counts, resolution, threshold)
        reasons = dict(sorted(own_quarantine.get_column("_reason").value_counts().iter_rows()))
        drift = _schema_drift(judged)
        commit = _commit(settings, feed, arrival_date, batch_id, run_id, code_version, files, counts)
        facts = dict(
            records_in=bronze.height,
            inserted=counts["inserted"],
            updated=counts["updated"],
            duplicates=counts["duplicates"],
            stale=counts["stale"],
            quarantined=counts["quarantined"],
            displaced=counts["displaced"],
            rejected_fraction=counts["quarantined"] / bronze.height if bronze.height else 0.0,
            max_rejected_fraction=threshold,
            gates=dumps({g.name: g.passed for g in gates}),
            reasons=dumps(reasons),
            schema_drift=dumps(drift),
        )
        samples = own_quarantine.head(SAMPLE_REJECTS).select("_source_file", "_source_line", "_reason", "_detail").to_dicts()
        own_scope = pl.col("_arrival_date") == arrival_date
        quarantine_compare = [c for c in feed.quarantine_schema if c not in QUARANTINE_WALL_CLOCK]
        quarantine_key = list(LINEAGE)

        def write_quarantine(desired: pl.DataFrame) -> None:
            displaced_keys = desired.filter(~own_scope).select(quarantine_key)
            current = read_table(
                quarantine_uri,
                pl.col("_arrival_date").is_in(desired.get_column("_arrival_date").unique().implode()) | own_scope,
                empty_schema=feed.quarantine_schema,
            )
            current = pl.concat([current.filter(own_scope), current.join(displaced_keys, on=quarantine_key, how="semi")])
            apply_changes(
                quarantine_uri,
                desired,
                current,
                key=quarantine_key,
                partition="_arrival_date",
                compare=quarantine_compare,
                commit=commit,
                operation="quarantine: batch rejects",
                delete_scope=own_scope,
            )
            crash_point("after_quarantine_commit")

        if not all(gate.passed for gate in gates):
            write_quarantine(own_quarantine)  # the evidence is kept; nothing else changes
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
            ops.record_batch(_batch_row(feed, arrival_date, batch_id, "gated", files, code_version, **facts), commit)
            return SilverReport(
                batch_id,
                arrival_date,
                False,
                bronze.height,
                counts,
                reasons,
                drift,
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
        write_quarantine(pl.concat([own_quarantine, _conflict_rows(feed, resolution.displaced, displaced_raw, run_id)]))

        own_ledger = ledger.filter(pl.col("_arrival_date") == arrival_date)
        if (
            own_ledger.height != deliveries.height
            or not own_ledger.join(deliveries, on=list(feed.silver_schema), how="anti", nulls_equal=True).is_empty()
        ):
            replace_where(
                ledger_uri, deliveries, f"_arrival_date = '{arrival_date.isoformat()}'", commit, "ledger: replace arrival date"
            )
            crash_point("after_ledger_commit")

        candidate_dates = pl.concat([ledger.get_column(feed.partition), deliveries.get_column(feed.partition)]).unique()
        current_silver = read_table(
            silver_uri,
            pl.col(feed.partition).is_in(candidate_dates.implode()) & pl.col(key).is_in(keys.implode()),
            empty_schema=feed.silver_schema,
        )
        silver_change = apply_changes(
            silver_uri,
            resolution.kept.select(list(feed.silver_schema)),
            current_silver,
            key=[key, feed.partition],
            partition=feed.partition,
            compare=list(feed.silver_schema),
            commit=commit,
            operation="silver: apply batch",
            update_guard=f"s.{version} >= t.{version}",
        )
        crash_point("after_silver_commit")

        touched = sorted(
            set(resolution.kept.get_column(feed.partition).to_list())
            | set(resolution.prior_kept.get_column(feed.partition).to_list())
        )
        # A complete batch re-run changes nothing downstream (its effect is a pure function), so it stays complete.
        status = "complete" if record.height and record.item(0, "status") == "complete" else "published"
        ops.record_batch(
            _batch_row(
                feed,
                arrival_date,
                batch_id,
                status,
                files,
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
            bronze.height,
            counts,
            reasons,
            drift,
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


def _schema_drift(judged: pl.DataFrame) -> dict[str, int]:
    extras = judged.get_column("_extra_fields").drop_nulls().str.split(",").explode()
    return dict(sorted(extras.value_counts().iter_rows())) if extras.len() else {}


def _newest(deliveries: pl.DataFrame, feed: FeedSpec) -> str | None:
    newest = deliveries.get_column(feed.event_time).max()
    return newest.isoformat() if newest is not None else None  # type: ignore[union-attr]
