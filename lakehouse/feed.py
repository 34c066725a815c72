"""What the engine needs to know about a feed: a new feed is one FeedSpec (contract, key, gold aggregate), no engine edit."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

import dagster as dg
import pandera.polars as pa
import polars as pl

from lakehouse.batches.volume import VolumeRule
from lakehouse.staging.drift import Compatibility
from lakehouse.staging.parse import FieldKind

LINEAGE_SCHEMA: dict[str, pl.DataType] = {
    "_batch_id": pl.String(),
    "_arrival_date": pl.Date(),
    "_source_file": pl.String(),
    "_source_line": pl.Int64(),
}
KEY_FINGERPRINT = "_key_fp"  # the ledger's stable int64 fingerprint of the key


@dataclass(frozen=True)
class GoldSpec:
    """A feed's gold aggregate: a pure function of silver's rows, one partition per silver partition.

    Attributes:
        table: the table name (`tables/gold/<table>`, asset key `["gold", table]`).
        schema: its columns, the partition column first among them.
        aggregate: silver rows (of `source_columns`) -> gold rows, for any set of partitions.
        source_columns: the silver columns `aggregate` reads (only these are loaded).
        measure: the total a restatement record carries before and after (`<measure>_before`, `_after`).
        description: what a row is, for the Dagster UI.
    """

    table: str
    schema: Mapping[str, pl.DataType]
    aggregate: Callable[[pl.DataFrame], pl.DataFrame]
    source_columns: Sequence[str]
    measure: str
    description: str


@dataclass(frozen=True)
class FeedSpec:
    """A feed's identity, contract and shape.

    Attributes:
        dataset: table name in every layer (`tables/<layer>/<dataset>`).
        key: the stable identity of a business event.
        version: the upstream's version of an event; higher wins.
        event_time: the timestamp field whose UTC date partitions silver (as `partition`).
        fields: every contract field and how to parse it.
        content_fields: the business content (what duplicates share and conflicts differ in).
        reasons: quarantine reasons in precedence order (the first that applies is recorded).
        contract: builds the Pandera contract from the configured lateness.
        required: the fields a record must carry (the rest of `fields` are optional).
        contract_version: the contract's version, recorded with every batch.
        compatibility: the schema drift policy enforced on every batch (a setting may override it).
        drift_share: the share of a batch's parsed objects at which a change is systematic (see lakehouse.staging.drift).
        gold: the feed's aggregate.
        row_contract: what every published silver row satisfies (the blocking table check after each commit).
        future_skew_days: event time at or after arrival date + this many days is from the future (event
            partitions reach that far ahead of the last arrival date).
        cadence_days: the upstream delivers an arrival date every this many days; an expected date with no
            delivery while a later one has one is a `missing_delivery` incident (lakehouse.batches.arrivals).
        volume: how a batch's record count is judged against the recent ones (lakehouse.batches.volume).
        freshness_hours: silver and gold are overdue in the Dagster UI when not materialized for this long
            (default: the cadence plus half a day, so one late delivery shows before a second is due).
    """

    dataset: str
    key: str
    version: str
    event_time: str
    fields: Mapping[str, FieldKind]
    content_fields: list[str]
    reasons: Sequence[str]
    contract: Callable[[int], pa.DataFrameSchema]
    required: Sequence[str]
    contract_version: int
    gold: GoldSpec
    row_contract: Callable[[], pa.DataFrameSchema]
    future_skew_days: int
    compatibility: Compatibility = Compatibility.BACKWARD
    drift_share: float = 0.5
    partition: str = "event_date"
    cadence_days: int = 1
    volume: VolumeRule = field(default_factory=VolumeRule)
    freshness_hours: float | None = None

    @property
    def freshness_window(self) -> timedelta:
        return timedelta(hours=self.freshness_hours if self.freshness_hours is not None else 24 * self.cadence_days + 12)

    # Names follow storage and the dataset, so the engine finds any feed's jobs, ops and tables without knowing it.
    @property
    def bronze_key(self) -> dg.AssetKey:
        return dg.AssetKey(["bronze", self.dataset])

    @property
    def silver_key(self) -> dg.AssetKey:
        return dg.AssetKey(["silver", self.dataset])

    @property
    def quarantine_table(self) -> str:
        return f"{self.dataset}_quarantine"

    @property
    def quarantine_key(self) -> dg.AssetKey:
        return dg.AssetKey(["silver", self.quarantine_table])

    @property
    def gold_key(self) -> dg.AssetKey:
        return dg.AssetKey(["gold", self.gold.table])

    @property
    def ledger_table(self) -> str:
        return f"{self.dataset}_ledger"

    @property
    def writer_pool(self) -> str:
        """Every asset of the feed writes the ops batches table, so they share one pool (limit 1, see dagster.yaml)."""
        return f"lakehouse_{self.dataset}_writer"

    @property
    def ingest_job(self) -> str:
        return f"ingest_{self.dataset}"

    @property
    def gold_job(self) -> str:
        return f"refresh_gold_{self.gold.table}"

    @property
    def silver_op(self) -> str:
        return f"silver_{self.dataset}"

    @property
    def silver_schema(self) -> dict[str, pl.DataType]:
        """Contract fields (event time as UTC timestamp, objects as JSON text), partition, hash, lineage."""
        typed = {
            FieldKind.STRING: pl.String(),
            FieldKind.INTEGER: pl.Int64(),
            FieldKind.TIMESTAMP: pl.Datetime("us", "UTC"),
            FieldKind.OBJECT: pl.String(),
        }
        schema = {name: typed[kind] for name, kind in self.fields.items()}
        return {**schema, self.partition: pl.Date(), "_content_hash": pl.String(), **LINEAGE_SCHEMA}

    @property
    def ledger_schema(self) -> dict[str, pl.DataType]:
        """Silver's columns plus the key's fingerprint, which the ledger lookup scans (lakehouse.staging.fingerprint)."""
        return {**self.silver_schema, KEY_FINGERPRINT: pl.Int64()}

    @property
    def quarantine_schema(self) -> dict[str, pl.DataType]:
        return {
            **LINEAGE_SCHEMA,
            "_raw": pl.Binary(),
            "_reason": pl.String(),
            "_detail": pl.String(),
            self.key: pl.String(),
            self.version: pl.Int64(),
            "_kept_batch_id": pl.String(),
            "_kept_arrival_date": pl.Date(),
            "_kept_source_file": pl.String(),
            "_kept_source_line": pl.Int64(),
            "_run_id": pl.String(),
            "_quarantined_at": pl.Datetime("us", "UTC"),
        }


BRONZE_SCHEMA: dict[str, pl.DataType] = {
    "_raw": pl.Binary(),
    **LINEAGE_SCHEMA,
    "_run_id": pl.String(),
    "_ingested_at": pl.Datetime("us", "UTC"),
}
