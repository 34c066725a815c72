"""A feed's silver table (current state) and its quarantine, published together behind the batch's gates."""

from datetime import date
from typing import Any

import dagster as dg

from checks.silver_checks import silver_has_one_row_per_key, silver_rows_match_contract, table_checks
from lakehouse.batch import SilverReport, publish_silver
from lakehouse.feed import FeedSpec
from lakehouse.gates import GATE_NAMES
from lakehouse.resources import CODE_VERSION, LakehouseResource
from lakehouse.storage import table_uri


class SilverConfig(dg.Config):
    """Set max_rejected_fraction to accept a gated batch explicitly (recorded with the batch)."""

    max_rejected_fraction: float | None = None
    accept_damaged_files: bool = False  # publish what could be read of a corrupt or truncated file


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
            )
            reports.append(report)
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
        for gate in report.gates:
            yield dg.AssetCheckResult(
                asset_key=feed.silver_key,
                check_name=gate.name,
                passed=gate.passed,
                severity=dg.AssetCheckSeverity.ERROR,
                metadata={
                    "observed": gate.observed,
                    "guardrail": gate.guardrail,
                    **gate.metadata,
                    "quarantine_reasons": dg.MetadataValue.json(report.reasons),
                    "sample_rejects": dg.MetadataValue.json(report.sample_rejects),
                    "arrival_dates_judged": dg.MetadataValue.json([r.arrival_date.isoformat() for r in reports]),
                },
            )
        if not report.published:
            failed = [g for g in report.gates if not g.passed]
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
