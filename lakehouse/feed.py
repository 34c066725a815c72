"""What the engine needs to know about a feed; a new feed is one FeedSpec plus its contract and gold."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import pandera.polars as pa
import polars as pl

from lakehouse.drift import Compatibility
from lakehouse.records import FieldKind

LINEAGE_SCHEMA: dict[str, pl.DataType] = {
    "_batch_id": pl.String(),
    "_arrival_date": pl.Date(),
    "_source_file": pl.String(),
    "_source_line": pl.Int64(),
}
KEY_FINGERPRINT = "_key_fp"  # the ledger's stable int64 fingerprint of the key


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
        drift_share: the share of a batch's parsed objects at which a change is systematic (see lakehouse.drift).
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
    compatibility: Compatibility = Compatibility.BACKWARD
    drift_share: float = 0.5
    partition: str = "event_date"

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
        """Silver's columns plus the key's fingerprint, which the ledger lookup scans (lakehouse.fingerprint)."""
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
