"""A feed's silver table (current state) and its quarantine, published together behind the batch's gates."""

from datetime import date
from typing import Any

import dagster as dg

from checks.silver_checks import silver_has_one_row_per_key, silver_rows_match_contract, table_checks
from lakehouse.app.resources import CODE_VERSION, LakehouseResource
from lakehouse.batches.batch import SilverReport, publish_silver
from lakehouse.batches.gates import GATE_NAMES, Gate
from lakehouse.batches.runlog import BatchLog, batch_log
from lakehouse.batches.volume import VOLUME_CHECK
from lakehouse.delta.storage import table_uri
from lakehouse.feed import FeedSpec


class SilverConfig(dg.Config):
    """Set max_rejected_fraction to accept a gated batch explicitly (recorded with the batch)."""

    max_rejected_fraction: float | None = None
    accept_damaged_files: bool = False  # publish what could be read of a corrupt or truncated file
    accept_volume_anomaly: bool = False  # publish a record count outside the feed's recent range (and resolve its incident)


def _batch_metadata(report: SilverReport) -> dict[str, Any]:
    return {
        "batch_id": report.batch_id,
        "arrival_date": report.arrival_date.isoformat(),
        "records_in": dg.MetadataValue.int(report.records_in),
        **{name: dg.MetadataValue.int(count) for name, count in report.counts.items() if name != "records_in"},
        "rejected_fraction": dg.MetadataValue.float(report.rejected_fraction),
        "quarantine_reasons": dg.MetadataValue.json(report.reasons),
        "schema_drift_fields": dg.MetadataValue.json(report.added_fields),
        "contract_version": dg.MetadataValue.int(report.drift.contract_version),
        "schema_compatibility": report.drift.policy.value,
        "schema_drift": dg.MetadataValue.json(report.drift.as_dict()),
        "touched_event_dates": dg.MetadataValue.json([d.isoformat() for d in report.touched_event_dates]),
        "rows_out_silver_written": dg.MetadataValue.int(report.silver_rows_written),
        "rows_out_silver_deleted": dg.MetadataValue.int(report.silver_rows_deleted),
        "newest_event_ts": report.newest_event_ts or "",
        # Freshness: how far the newest event time is from the end of its arrival date (negative = skewed ahead).
        "freshness_lag_hours": dg.MetadataValue.float(report.freshness_lag_hours)
        if report.freshness_lag_hours is not None
        else None,
        "table_versions": dg.MetadataValue.json(report.table_versions),
    }


def _batches(reports: list[SilverReport]) -> dict[str, Any]:
    """Per-date summary when one backfill run carries several arrival dates (empty for a single date)."""
    if len(reports) < 2:
        return {}
    return {
        "batches": dg.MetadataValue.json(
            [
                {"arrival_date": r.arrival_date.isoformat(), "batch_id": r.batch_id, "published": r.published, **r.counts}
                for r in reports
            ]
        ),
        "records_in": dg.MetadataValue.int(sum(r.records_in for r in reports)),
    }


def _log_outcome(log: BatchLog, report: SilverReport) -> None:
    """One line per batch saying what happened to it, and the incidents an on-call should open."""
    held = [g.name for g in report.gates if not g.passed and g.blocking]
    warned = [f"{g.name} ({g.observed}; {g.guardrail})" for g in report.gates if not g.passed and not g.blocking]
    counts = ", ".join(f"{k}={v}" for k, v in report.counts.items())
    if report.published:
        log.info(f"published: {counts}")
    else:
        log.error(f"not published, held by {', '.join(held)}: {counts}; incidents {', '.join(report.incident_ids)}")
    if warned:
        log.warning(f"warning, {'; '.join(warned)}; incidents {', '.join(report.incident_ids)}")
    if report.missing_deliveries:
        missing = ", ".join(d.isoformat() for d in report.missing_deliveries)
        log.warning(f"no delivery for arrival date(s) {missing} while later dates have one (missing_delivery incidents)")


def _shown_gates(reports: list[SilverReport]) -> list[tuple[SilverReport, Gate]]:
    """The deciding (last) batch's gates, but a warning an earlier batch of the run raised is not hidden by a later pass."""
    shown = []
    for gate in reports[-1].gates:
        earlier = next(
            (r for r in reports if not gate.blocking and any(g.name == gate.name and not g.passed for g in r.gates)), None
        )
        chosen = earlier or reports[-1]
        shown.append((chosen, next(g for g in chosen.gates if g.name == gate.name)))
    return shown


def build_silver(feed: FeedSpec, partitions: dg.PartitionsDefinition, backfill_policy: dg.BackfillPolicy) -> dg.AssetsDefinition:
    @dg.multi_asset(
        specs=[
            dg.AssetSpec(
                feed.silver_key,
                deps=[feed.bronze_key],
                partitions_def=partitions,
                code_version=CODE_VERSION,
                group_name=feed.dataset,
                kinds={"deltalake", "polars"},
                description=f"One row per {feed.key}: the winning content of its highest {feed.version}.",
                # Overdue in the asset graph when no batch has published for this long (the daemon evaluates it).
                freshness_policy=dg.FreshnessPolicy.time_window(fail_window=feed.freshness_window),
            ),
            dg.AssetSpec(
                feed.quarantine_key,
                deps=[feed.bronze_key],
                partitions_def=partitions,
                code_version=CODE_VERSION,
                group_name=feed.dataset,
                kinds={"deltalake"},
                description="Every rejected delivery with its reason, detail and lineage.",
            ),
        ],
        check_specs=[
            dg.AssetCheckSpec(
                name, asset=feed.silver_key, blocking=True, description="publish gate, evaluated before silver's commit"
            )
            for name in GATE_NAMES
        ]
        + [
            dg.AssetCheckSpec(
                VOLUME_CHECK,
                asset=feed.silver_key,
                blocking=feed.volume.blocking,
                description="the batch's record count against the feed's recent published batches (WARN unless the feed blocks)",
            )
        ]
        + [
            dg.AssetCheckSpec(name, asset=feed.silver_key, blocking=True, description=text)
            for name, text in table_checks(feed).items()
        ],
        partitions_def=partitions,
        backfill_policy=backfill_policy,
        pool=feed.writer_pool,
        can_subset=False,
        name=feed.silver_op,
    )
    def silver(context: dg.AssetExecutionContext, config: SilverConfig, lakehouse: LakehouseResource):
        settings, rate_limit = lakehouse.settings(), lakehouse.rate_limit(context.run.tags)
        reports: list[SilverReport] = []
        run_log = batch_log(context.log, feed.dataset, context.run.run_id)
        # A backfill run may carry several arrival dates: published one by one in date order, stopping at the first held back.
        for key in sorted(context.partition_keys):
            report = publish_silver(
                settings,
                feed,
                date.fromisoformat(key),
                context.run.run_id,
                CODE_VERSION,
                config.max_rejected_fraction,
                config.accept_damaged_files,
                rate_limit,
                config.accept_volume_anomaly,
            )
            reports.append(report)
            _log_outcome(run_log.for_batch(report.batch_id, report.arrival_date), report)
            if not report.published:
                break
        report = reports[-1]  # the date that decides the run: the one held back, else the last one
        metadata = {
            **_batch_metadata(report),
            **_batches(reports),
            **lakehouse.applied_caps(context.run.tags, len(context.partition_keys), rate_limit),
        }
        yield dg.MaterializeResult(
            asset_key=feed.quarantine_key, metadata={**metadata, "sample_rejects": dg.MetadataValue.json(report.sample_rejects)}
        )
        for judged, gate in _shown_gates(reports):
            yield dg.AssetCheckResult(
                asset_key=feed.silver_key,
                check_name=gate.name,
                passed=gate.passed,
                severity=dg.AssetCheckSeverity.ERROR if gate.blocking else dg.AssetCheckSeverity.WARN,
                metadata={
                    "arrival_date": judged.arrival_date.isoformat(),
                    "batch_id": judged.batch_id,
                    "observed": gate.observed,
                    "guardrail": gate.guardrail,
                    **gate.metadata,
                    "quarantine_reasons": dg.MetadataValue.json(report.reasons),
                    "sample_rejects": dg.MetadataValue.json(report.sample_rejects),
                    "arrival_dates_judged": dg.MetadataValue.json([r.arrival_date.isoformat() for r in reports]),
                },
            )
        if not report.published:
            failed = [g for g in report.gates if not g.passed and g.blocking]
            published = [r.arrival_date.isoformat() for r in reports if r.published]
            remedies = "; ".join(dict.fromkeys(f"{g.name}: {g.remedy}" for g in failed))
            raise dg.Failure(
                description=f"batch {report.batch_id[:12]} for {report.arrival_date} was not published: failed "
                f"{', '.join(g.name for g in failed)}. Silver and gold are unchanged; its rejects are in quarantine. "
                f"To publish it: {remedies}." + (f" Published earlier in this run: {', '.join(published)}." if published else ""),
                metadata={**metadata, "incident_ids": dg.MetadataValue.json(report.incident_ids)},
            )
        yield dg.MaterializeResult(asset_key=feed.silver_key, metadata=metadata)
        silver_uri = table_uri(settings.root, "silver", feed.dataset)
        touched = sorted({d for r in reports if r.published for d in r.touched_event_dates})
        table_checks = [
            silver_has_one_row_per_key(silver_uri, feed),
            silver_rows_match_contract(silver_uri, touched, feed),
        ]
        yield from table_checks
        failed_checks = [str(check.check_name) for check in table_checks if not check.passed]
        if failed_checks:  # blocking: gold must not aggregate a broken silver
            raise dg.Failure(description=f"silver failed {', '.join(failed_checks)} after publishing; see the checks' metadata")

    return silver
