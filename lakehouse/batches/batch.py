"""Publish one arrival date from bronze: judge, resolve, gate, then quarantine, ledger and silver.

Write order within a batch: quarantine -> ledger -> silver -> batch record. Every step makes
its scope equal to a state computed from bronze and the *other* batches' accepted deliveries,
so a crash between any two commits is repaired by simply running the batch again.

Memory stays bounded whatever the date's size: bronze is judged a slice of lines at a time, the
deliveries are filed by key slice (`Spill`, on local disk beyond a small budget), and resolution,
the ledger's lookups and silver's comparison work one group of key slices at a time (every rule of
resolution looks at one key's deliveries, and a key's deliveries are all in one slice); the ledger
and silver writes stream their rows into one commit each.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta

import pandera.polars as pa
import polars as pl

from lakehouse.batches.arrivals import notice_missing_deliveries
from lakehouse.batches.gates import Gate, evaluate_gates, volume_gate
from lakehouse.batches.ledger import ledger_matches, ledger_rows
from lakehouse.batches.ops import OpsTables, batch_record, dumps
from lakehouse.batches.quarantine import conflict_rows, validation_rejects, write_quarantine
from lakehouse.batches.resolution import LINEAGE, LINEAGE_WITH_BATCH, OUTCOMES, fingerprint_slices, resolve
from lakehouse.batches.silver_changes import KEY_HASH_SEED, SilverChange, plan_silver
from lakehouse.batches.spill import Spill, owned
from lakehouse.batches.throttle import RowRateLimit
from lakehouse.batches.volume import VOLUME_CHECK, judge_volume
from lakehouse.delta.locking import exclusive_writer
from lakehouse.delta.storage import (
    STREAMED_ROW_GROUP_ROWS,
    CommitInfo,
    FrameStream,
    arrow_stream,
    count_rows,
    ensure_table,
    open_table,
    read_partition_chunks,
    read_table,
    replace_where,
    table_exists,
    table_uri,
    table_version,
    write_table,
)
from lakehouse.faults import crash_point
from lakehouse.feed import BRONZE_SCHEMA, KEY_FINGERPRINT, FeedSpec
from lakehouse.settings import Settings
from lakehouse.staging.contracts import judge
from lakehouse.staging.drift import SchemaDrift, detect_drift, shape_counts
from lakehouse.staging.fingerprint import key_fingerprints
from lakehouse.staging.landing import SYMLINK, landed_arrival_dates, split_recorded
from lakehouse.staging.records import STAGE_CHUNK_ROWS, stage_records

SAMPLE_REJECTS = 5  # rejects shown in the gate's metadata
GROUP_ROWS = 250_000  # deliveries resolved at once, about: resolution's working frames are several times them


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
    missing_deliveries: list[date] = field(default_factory=list)  # arrival dates with no delivery (lakehouse.batches.arrivals)

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


@dataclass(frozen=True)
class _Tables:
    """The feed's tables one batch reads and writes."""

    bronze: str
    silver: str
    quarantine: str
    ledger: str

    @classmethod
    def of(cls, root: str, feed: FeedSpec) -> _Tables:
        return cls(
            table_uri(root, "bronze", feed.dataset),
            table_uri(root, "silver", feed.dataset),
            table_uri(root, "silver", feed.quarantine_table),
            table_uri(root, "ops", feed.ledger_table),
        )


@dataclass(frozen=True)
class _Landed:
    """The one batch bronze holds for the date, and what bronze recorded of it (files and entries not read)."""

    batch_id: str
    recorded_status: str | None
    recorded: list[dict[str, object]]

    @property
    def files(self) -> list[dict[str, object]]:
        return split_recorded(self.recorded)[0]

    @property
    def ignored(self) -> list[dict[str, object]]:
        return split_recorded(self.recorded)[1]


@dataclass(frozen=True)
class _Verdict:
    """Everything decided about the batch before any write: its resolution, rejects, counts and gates."""

    groups: list[list[int]]  # the groups of key slices resolved together, in order
    kept: Spill  # silver's target rows of the batch's keys, filed by group number
    key_hashes: pl.Series  # the batch's keys' hashes (silver_changes.KEY_HASH_SEED): 8 bytes each, not the key
    candidate_dates: set[date]  # the event dates silver may hold a row of the batch's keys in
    ledger_unchanged: bool  # the ledger already holds exactly this batch's deliveries for the date (a replay)
    displaced: pl.DataFrame  # deliveries of other batches that now lose a conflict, with `_kept_*` lineage
    touched: list[date]  # event dates whose silver rows the batch's keys had or will have
    rejects: pl.DataFrame  # the batch's own quarantine rows: contract rejects and conflict losers
    counts: dict[str, int]
    drift: SchemaDrift
    gates: list[Gate]

    @property
    def passed(self) -> bool:
        """Every blocking gate passed (a warning gate's failure, a volume anomaly, still publishes)."""
        return all(gate.passed for gate in self.gates if gate.blocking)

    @property
    def rejected_fraction(self) -> float:
        return self.counts["quarantined"] / self.counts["records_in"] if self.counts["records_in"] else 0.0

    @property
    def reasons(self) -> dict[str, int]:
        return dict(sorted(self.rejects.get_column("_reason").value_counts().iter_rows()))


def publish_silver(
    settings: Settings,
    feed: FeedSpec,
    arrival_date: date,
    run_id: str,
    code_version: str,
    max_rejected_fraction: float | None = None,
    accept_damaged_files: bool = False,
    rate_limit: RowRateLimit | None = None,
    accept_volume_anomaly: bool = False,
) -> SilverReport:
    """Judge bronze's arrival date, gate it, and publish it to quarantine, the ledger and silver.

    `max_rejected_fraction` and `accept_damaged_files` are the operator's explicit acceptance of a
    batch its gates would hold back (a raised threshold; files readable only in part); `accept_volume_anomaly`
    accepts a record count outside the feed's recent range (lakehouse.batches.volume).
    """
    threshold = settings.max_rejected_fraction if max_rejected_fraction is None else max_rejected_fraction
    tables, ops = _Tables.of(settings.root, feed), OpsTables(settings.root)
    if rate_limit is not None:  # a backfill's cap, paid before the writer lock so pacing never blocks other writers
        rate_limit.acquire(count_rows(tables.bronze, pl.col("_arrival_date") == arrival_date))
    with (
        exclusive_writer(settings.root, feed.dataset, settings.lock_timeout_seconds, settings.lock_dsn),
        Spill(feed.silver_schema) as deliveries,
        Spill(feed.silver_schema) as kept,
    ):
        contract = feed.contract(settings.allowed_lateness_days)
        slices = key_slice_count(count_rows(tables.bronze, pl.col("_arrival_date") == arrival_date))
        judged = _judge_bronze(tables.bronze, arrival_date, feed, contract, run_id, deliveries, slices)
        recorded_batches = ops.batch_rows(feed.dataset)
        landed = _landed_batch(recorded_batches, feed, arrival_date, judged)
        lineage = CommitInfo(feed.dataset, landed.batch_id, run_id, code_version, arrival_date, tuple(landed.files))
        _fingerprint_old_ledger(tables.ledger, feed, lineage)
        acceptance = _Acceptance(threshold, accept_damaged_files, accept_volume_anomaly)
        verdict = _decide(settings, feed, tables, arrival_date, judged, landed, recorded_batches, acceptance, run_id, kept)
        commit = replace(lineage, counts=verdict.counts)
        # Created (or migrated) only now, so that commit too carries the batch's counts.
        for uri, schema, partition in (
            (tables.silver, feed.silver_schema, feed.partition),
            (tables.ledger, feed.ledger_schema, "_arrival_date"),
            (tables.quarantine, feed.quarantine_schema, "_arrival_date"),
        ):
            ensure_table(uri, schema, [partition], commit)
        # What did not arrive: an operational record only, judged from what landed and what was recorded.
        delivered = [
            arrival_date,
            *recorded_batches.get_column("arrival_date"),
            *landed_arrival_dates(settings.root, feed.dataset),
        ]
        noticed = notice_missing_deliveries(ops, feed.dataset, feed.cadence_days, delivered, settings.partitions_start, commit)
        facts = {
            **verdict.counts,
            "rejected_fraction": verdict.rejected_fraction,
            "max_rejected_fraction": threshold,
            "gates": dumps({g.name: g.passed for g in verdict.gates}),
            "reasons": dumps(verdict.reasons),
            "schema_drift": dumps(verdict.drift.as_dict()),
        }
        if not verdict.passed:
            incident_ids = _hold(ops, feed, tables, arrival_date, landed, verdict, facts, commit)
            return _report(feed, arrival_date, judged, landed, verdict, tables, noticed.missing, False, incident_ids)
        touched, change, warned = _publish(ops, feed, tables, arrival_date, judged, landed, verdict, facts, commit, run_id)
        return _report(
            feed, arrival_date, judged, landed, verdict, tables, noticed.missing, True, warned, touched=touched, change=change
        )


@dataclass(frozen=True)
class _Acceptance:
    """What the operator accepted explicitly for this run of the batch."""

    max_rejected_fraction: float
    damaged_files: bool
    volume_anomaly: bool


def _landed_batch(recorded_batches: pl.DataFrame, feed: FeedSpec, arrival_date: date, judged: _Judged) -> _Landed:
    """The batch bronze holds for the date: exactly one, or bronze must be materialized first."""
    batch_ids = sorted(judged.batch_ids)
    landed = recorded_batches.filter(pl.col("arrival_date") == arrival_date).sort("_recorded_at")
    if not batch_ids and landed.height:  # files with only blank lines: an empty batch, still recorded
        batch_ids = [landed.item(-1, "batch_id")]
    if len(batch_ids) != 1:
        raise RuntimeError(
            f"bronze holds {len(batch_ids)} batches for {feed.dataset} {arrival_date}; materialize bronze for it first"
        )
    record = landed.filter(pl.col("batch_id") == batch_ids[0])
    if record.is_empty():
        return _Landed(batch_ids[0], None, [])
    return _Landed(batch_ids[0], record.item(0, "status"), json.loads(record.item(0, "files")))


def _decide(
    settings: Settings,
    feed: FeedSpec,
    tables: _Tables,
    arrival_date: date,
    judged: _Judged,
    landed: _Landed,
    recorded_batches: pl.DataFrame,
    accepted: _Acceptance,
    run_id: str,
    kept: Spill,
) -> _Verdict:
    """Resolve the batch against the ledger's other batches, count every record once, and evaluate the gates.
    Each group's target silver rows go to `kept`."""
    resolved = _resolve_by_group(feed, tables, arrival_date, judged, kept)
    tally, losers = resolved.tally, resolved.losers
    rejects = pl.concat([judged.rejects, conflict_rows(feed, losers, _raw_lines(tables.bronze, arrival_date, losers), run_id)])
    counts = {
        "records_in": judged.records_in,
        "inserted": tally["inserted"],
        "updated": tally["updated"],
        "duplicates": tally["duplicate"],
        "stale": tally["stale"],
        "quarantined": rejects.height,
        "displaced": resolved.displaced.height,
    }
    drift = detect_drift(
        judged.shapes,
        feed.fields,
        feed.required,
        contract_version=feed.contract_version,
        policy=settings.compatibility_for(feed.compatibility),
        share=feed.drift_share,
    )
    files = landed.files
    gates = evaluate_gates(
        feed,
        judged.records_in,
        counts,
        resolved.duplicate_keys,
        accepted.max_rejected_fraction,
        [f for f in files if f.get("damage")],
        accepted.damaged_files,
        [f for f in files if f.get("changed")],
        [e for e in landed.ignored if e["ignored"] == SYMLINK],
        drift,
    )
    volume = judge_volume(feed.volume, recorded_batches, arrival_date, judged.records_in, accepted.volume_anomaly)
    gates.append(volume_gate(volume, feed.volume))  # holds the batch only when the feed makes it blocking
    return _Verdict(
        resolved.groups,
        kept,
        resolved.key_hashes,
        resolved.candidate_dates,
        resolved.ledger_unchanged,
        resolved.displaced,
        sorted(resolved.touched),
        rejects,
        counts,
        drift,
        gates,
    )


@dataclass(frozen=True)
class _Resolved:
    """What resolving the batch's groups of key slices gathered; the target silver rows went to a spill."""

    groups: list[list[int]]
    tally: dict[str, int]  # every delivery's outcome, counted
    losers: pl.DataFrame  # the batch's deliveries that lose a version conflict, with the kept lineage
    displaced: pl.DataFrame  # deliveries of other batches that now lose a conflict
    key_hashes: pl.Series
    touched: set[date]
    candidate_dates: set[date]
    ledger_unchanged: bool
    duplicate_keys: int


def _resolve_by_group(feed: FeedSpec, tables: _Tables, arrival_date: date, judged: _Judged, kept: Spill) -> _Resolved:
    """Resolve a group of key slices at a time (its deliveries, the ledger's rows of its keys), keeping only
    counts, the conflicts' rows and hashes; each group's target silver rows go to `kept`."""
    key, partition = feed.key, feed.partition
    matches = ledger_matches(tables.ledger, judged.fingerprints)  # one pass over the ledger's fingerprints
    groups = _slice_groups(judged.deliveries, judged.slices)
    tally = dict.fromkeys(OUTCOMES, 0)
    losers, displaced, key_hashes = [], [], []
    touched: set[date] = set()
    candidate_dates: set[date] = set()
    ledger_unchanged, duplicate_keys = True, 0
    for number, group in enumerate(groups):
        deliveries = pl.concat([judged.deliveries.read(n) for n in group])
        ledger = ledger_rows(tables.ledger, feed, deliveries, matches)
        own = ledger.filter(pl.col("_arrival_date") == arrival_date)
        # The content hash covers every contract field, so it and the lineage identify a ledger row.
        ledger_unchanged = (
            ledger_unchanged
            and own.height == deliveries.height
            and own.join(deliveries, on=[key, feed.version, "_content_hash", *LINEAGE_WITH_BATCH], how="anti").is_empty()
        )
        part = resolve(deliveries, ledger.filter(pl.col("_arrival_date") != arrival_date), key, feed.version)
        for outcome, count in part.counts().items():
            tally[outcome] += count
        # Only the conflicts' outcomes are kept (for their quarantine rows); the others are counted, never copied whole.
        losers.append(owned(part.outcomes.filter(pl.col("_outcome") == "version_conflict")))
        displaced.append(owned(part.displaced))
        touched.update(pl.concat([part.kept.get_column(partition), part.prior_kept.get_column(partition)]).unique().to_list())
        candidate_dates.update(
            ledger.get_column(partition).unique().to_list() + deliveries.get_column(partition).unique().to_list()
        )
        duplicate_keys += part.kept.height - part.kept.get_column(key).n_unique()
        key_hashes.append(part.kept.get_column(key).hash(seed=KEY_HASH_SEED))
        kept.add(number, part.kept)
    return _Resolved(
        groups,
        tally,
        pl.concat(losers),
        pl.concat(displaced),
        pl.concat(key_hashes),
        touched,
        candidate_dates,
        ledger_unchanged,
        duplicate_keys,
    )


def key_slice_count(records: int) -> int:
    """How many key slices a date of `records` lines is filed in: a power of two, so a slice holds about
    GROUP_ROWS deliveries at most (one slice, nothing to file, for a small date)."""
    slices = 1
    while slices * GROUP_ROWS < records:
        slices *= 2
    return slices


def _slice_groups(deliveries: Spill, slices: int) -> list[list[int]]:
    """The key slices in order, grouped so a group holds at most GROUP_ROWS deliveries (or one slice)."""
    groups: list[list[int]] = [[]]
    rows = 0
    for number in range(slices):
        if groups[-1] and rows + deliveries.rows(number) > GROUP_ROWS:
            groups.append([])
            rows = 0
        groups[-1].append(number)
        rows += deliveries.rows(number)
    return groups


def _hold(
    ops: OpsTables,
    feed: FeedSpec,
    tables: _Tables,
    arrival_date: date,
    landed: _Landed,
    verdict: _Verdict,
    facts: dict[str, object],
    commit: CommitInfo,
) -> list[str]:
    """A batch its gates hold back: keep its rejects as evidence, open an incident per failed gate; nothing else changes."""
    write_quarantine(tables.quarantine, feed, verdict.rejects, arrival_date, commit)
    incident_ids = _open_incidents(ops, feed, arrival_date, landed.batch_id, verdict, commit, published=False)
    crash_point("after_incident_record")
    record = batch_record(feed.dataset, arrival_date, landed.batch_id, "gated", landed.recorded, commit.code_version, **facts)
    ops.record_batch(record, commit)
    crash_point("after_gated_batch_record")
    return incident_ids


def _publish(
    ops: OpsTables,
    feed: FeedSpec,
    tables: _Tables,
    arrival_date: date,
    judged: _Judged,
    landed: _Landed,
    verdict: _Verdict,
    facts: dict[str, object],
    commit: CommitInfo,
    run_id: str,
) -> tuple[list[date], SilverChange, list[str]]:
    """Write the evidence, the ledger, then silver, then the batch record (each a state computed from bronze
    and the other batches, so a crash between two commits is repaired by running the batch again)."""
    displaced = verdict.displaced
    displaced_raw = read_table(
        tables.bronze,
        pl.col("_arrival_date").is_in(displaced.get_column("_arrival_date").unique().implode()),
        ["_raw", *LINEAGE],
        BRONZE_SCHEMA,
    )
    displaced_rows = conflict_rows(feed, displaced, displaced_raw, run_id)
    write_quarantine(tables.quarantine, feed, pl.concat([verdict.rejects, displaced_rows]), arrival_date, commit)

    if not verdict.ledger_unchanged:
        replace_where(
            tables.ledger,
            FrameStream(
                feed.ledger_schema,
                lambda: _ledger_rows_of(judged.deliveries, feed),
                (feed.key, "_content_hash", "_source_line", KEY_FINGERPRINT),
            ),
            f"_arrival_date = '{arrival_date.isoformat()}'",
            commit,
            "ledger: replace arrival date",
            "during_ledger_write",
            max_row_group_rows=STREAMED_ROW_GROUP_ROWS,
        )
        crash_point("after_ledger_commit")

    plan = plan_silver(tables.silver, feed, verdict.key_hashes, verdict.candidate_dates, judged.slices)

    def targets() -> Iterator[tuple[list[int], pl.DataFrame]]:
        for number, group in enumerate(verdict.groups):
            yield group, verdict.kept.read(number)

    for group, target in targets():
        plan.add(group, target)
    silver_change = plan.commit(commit, "silver: apply batch", targets)
    crash_point("after_silver_commit")

    touched = verdict.touched
    # A complete batch re-run changes nothing downstream (its effect is a pure function), so it stays complete.
    status = "complete" if landed.recorded_status == "complete" else "published"
    record = batch_record(
        feed.dataset,
        arrival_date,
        landed.batch_id,
        status,
        landed.recorded,
        commit.code_version,
        touched_event_dates=dumps([d.isoformat() for d in touched]),
        **facts,
    )
    ops.record_batch(record, commit)
    crash_point("after_batch_record")
    # A warning gate's failure (a volume anomaly) is an incident of the published batch; every other open
    # incident of the date (earlier attempts', a missing delivery) is resolved by this publish.
    warned = _open_incidents(ops, feed, arrival_date, landed.batch_id, verdict, commit, published=True)
    ops.resolve_incidents(feed.dataset, arrival_date, landed.batch_id, commit, keep=warned)
    return touched, silver_change, warned


def _ledger_rows_of(deliveries: Spill, feed: FeedSpec) -> Iterator[pl.DataFrame]:
    """The ledger's rows of the batch: its deliveries with their key fingerprints, slice by slice."""
    for number in deliveries.groups:
        for frame in deliveries.frames(number):
            yield frame.with_columns(key_fingerprints(frame.get_column(feed.key)).alias(KEY_FINGERPRINT))


def _open_incidents(
    ops: OpsTables, feed: FeedSpec, arrival_date: date, batch_id: str, verdict: _Verdict, commit: CommitInfo, published: bool
) -> list[str]:
    """An incident per failed gate (keyed by batch and failure mode, so a re-run names the same one)."""
    outcome = "published with a warning" if published else "not published"
    counts = verdict.counts
    return [
        ops.open_incident(
            dataset=feed.dataset,
            arrival_date=arrival_date,
            batch_id=batch_id,
            failure_mode=g.failure_mode,
            guardrail=g.guardrail,
            observed=g.observed,
            affected_rows=counts["records_in"] if g.name == VOLUME_CHECK else counts["quarantined"],
            detail=f"batch {batch_id[:12]} of {arrival_date} {outcome}: {g.observed} breaks {g.guardrail}",
            commit=commit,
        )
        for g in verdict.gates
        if not g.passed
    ]


def _report(
    feed: FeedSpec,
    arrival_date: date,
    judged: _Judged,
    landed: _Landed,
    verdict: _Verdict,
    tables: _Tables,
    missing_deliveries: list[date],
    published: bool,
    incident_ids: list[str],
    *,
    touched: list[date] | None = None,
    change: SilverChange | None = None,
) -> SilverReport:
    versions = {"silver": table_version(tables.silver), "quarantine": table_version(tables.quarantine)}
    if published:
        versions["ledger"] = table_version(tables.ledger)
    samples = verdict.rejects.head(SAMPLE_REJECTS).select("_source_file", "_source_line", "_reason", "_detail").to_dicts()
    return SilverReport(
        batch_id=landed.batch_id,
        arrival_date=arrival_date,
        published=published,
        records_in=judged.records_in,
        counts=verdict.counts,
        reasons=verdict.reasons,
        drift=verdict.drift,
        added_fields=judged.added_fields,
        gates=verdict.gates,
        touched_event_dates=touched or [],
        sample_rejects=samples,
        table_versions=versions,
        newest_event_ts=judged.newest_event_ts,
        incident_ids=incident_ids,
        silver_rows_written=change.upserted if change else 0,
        silver_rows_deleted=change.deleted if change else 0,
        missing_deliveries=missing_deliveries,
    )


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


@dataclass(frozen=True)
class _Judged:
    """What publishing needs of a day's judged lines, gathered chunk by chunk."""

    records_in: int
    batch_ids: set[str]
    deliveries: Spill  # validated records in silver's schema, filed by key slice
    fingerprints: pl.Series  # the delivered keys' fingerprints, each once
    rejects: pl.DataFrame  # quarantine rows of the records the contract rejects
    shapes: pl.DataFrame  # drift.shape_counts of the parsed objects
    added_fields: dict[str, int]  # unknown fields -> records carrying them
    newest_event_ts: str | None
    slices: int  # the key slices `deliveries` are filed in


def _judge_bronze(
    bronze_uri: str,
    arrival_date: date,
    feed: FeedSpec,
    contract: pa.DataFrameSchema,
    run_id: str,
    deliveries: Spill,
    slices: int,
) -> _Judged:
    """Stage and judge bronze's lines of a day slice by slice, keeping only what publishing needs: the
    staged columns (several times the raw lines) never exist for the whole day (the rules are per record),
    and the deliveries go to `deliveries`, filed by key slice."""
    records, batch_ids, fingerprints, rejects, shapes, added = 0, set(), [], [], [], Counter[str]()
    newest: list[datetime] = []  # each chunk's newest event
    columns = ["_raw", *LINEAGE, "_batch_id"]
    for chunk in read_partition_chunks(bronze_uri, "_arrival_date", arrival_date, columns, STAGE_CHUNK_ROWS, BRONZE_SCHEMA):
        judged = judge(stage_records(chunk, feed.fields, feed.content_fields), contract, feed.reasons)
        records += judged.height
        batch_ids.update(judged.get_column("_batch_id").unique().to_list())
        valid = _deliveries(feed, judged)
        keys = key_fingerprints(valid.get_column(feed.key))
        fingerprints.append(keys.unique())
        if slices == 1:
            deliveries.add(0, valid)
        else:
            filed = valid.with_columns(fingerprint_slices(keys, slices))
            for (number,), part in filed.partition_by("_slice", as_dict=True, include_key=False).items():
                deliveries.add(int(number), part)  # type: ignore[call-overload]
        if valid.height:
            newest.append(valid.get_column(feed.event_time).max())  # type: ignore[arg-type]
        rejects.append(owned(validation_rejects(feed, judged, run_id)))  # not a view pinning the chunk's lines
        shapes.append(owned(shape_counts(judged)))
        added.update(dict(judged.get_column("_extra_fields").drop_nulls().str.split(",").explode().value_counts().iter_rows()))
    return _Judged(
        records,
        batch_ids,
        deliveries,
        pl.concat(fingerprints).unique() if fingerprints else pl.Series(KEY_FINGERPRINT, [], dtype=pl.Int64),
        pl.concat(rejects) if rejects else pl.DataFrame(schema=feed.quarantine_schema),
        pl.concat(shapes) if shapes else pl.DataFrame(schema={"_shape": pl.List(pl.String), "_objects": pl.UInt32}),
        dict(sorted(added.items())),
        max(newest).isoformat() if newest else None,
        slices,
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
