"""A second feed, defined only here: parcel scans with their own key, version, partition and gold measures.

It exists to prove that a new feed is one spec and no engine edit (tests/dagster/test_second_feed.py).
"""

import pandera.polars as pa
import polars as pl

from lakehouse.feed import FeedSpec, GoldSpec
from lakehouse.staging.contracts import rule
from lakehouse.staging.parse import FieldKind, State

STATUSES = ("received", "sorted", "loaded", "delivered")
FIELDS = {
    "scan_id": FieldKind.STRING,
    "revision": FieldKind.INTEGER,
    "depot": FieldKind.STRING,
    "status": FieldKind.STRING,
    "scanned_at": FieldKind.TIMESTAMP,
    "weight_grams": FieldKind.INTEGER,
}
REASONS = (
    "malformed_record",
    "missing_field",
    "invalid_type",
    "naive_timestamp",
    "invalid_value",
    "too_late",
    "version_conflict",
)


def scan_contract(allowed_lateness_days: int) -> pa.DataFrameSchema:
    state = {field: pl.col(f"{field}__state") for field in FIELDS}
    rules = [rule("malformed_record", "line is a JSON object", pl.col("_parse_error").is_null())]
    rules += [rule("missing_field", f"{f} is present", state[f] != State.MISSING) for f in FIELDS]
    rules += [rule("invalid_type", f"{f} has its type", ~state[f].is_in([State.WRONG_TYPE, State.UNPARSEABLE])) for f in FIELDS]
    rules += [
        rule("naive_timestamp", "scanned_at has a UTC offset", state["scanned_at"] != State.NAIVE),
        rule("invalid_value", "revision >= 1", pl.col("revision") >= 1),
        rule("invalid_value", f"status is one of {', '.join(STATUSES)}", pl.col("status").is_in(STATUSES)),
        rule("invalid_value", "weight_grams >= 0", pl.col("weight_grams") >= 0),
        rule(
            "too_late",
            f"arrival - scan date is at most {allowed_lateness_days} days",
            (pl.col("_arrival_date") - pl.col("scanned_at").dt.date()).dt.total_days() <= allowed_lateness_days,
        ),
    ]
    return pa.DataFrameSchema(checks=rules, name="parcel_scans_v1")


def scan_row_contract() -> pa.DataFrameSchema:
    return pa.DataFrameSchema(
        {
            "scan_id": pa.Column(pl.String, nullable=False),
            "revision": pa.Column(pl.Int64, pa.Check.ge(1), nullable=False),
            "status": pa.Column(pl.String, pa.Check.isin(STATUSES), nullable=False),
            "weight_grams": pa.Column(pl.Int64, pa.Check.ge(0), nullable=False),
            "scan_date": pa.Column(pl.Date, nullable=False),
        },
        name="silver_parcel_scans",
    )


DEPOT_SCHEMA: dict[str, pl.DataType] = {
    "scan_date": pl.Date(),
    "depot": pl.String(),
    "parcels": pl.Int64(),
    "delivered": pl.Int64(),
    "total_weight_grams": pl.Int64(),
}


def daily_depot_load(silver: pl.DataFrame) -> pl.DataFrame:
    if silver.is_empty():
        return pl.DataFrame(schema=DEPOT_SCHEMA)
    return (
        silver.group_by("scan_date", "depot")
        .agg(
            parcels=pl.len(),
            delivered=(pl.col("status") == "delivered").sum(),
            total_weight_grams=pl.col("weight_grams").sum(),
        )
        .select([pl.col(name).cast(dtype) for name, dtype in DEPOT_SCHEMA.items()])
        .sort("scan_date", "depot")
    )


PARCEL_SCANS = FeedSpec(
    dataset="parcel_scans",
    key="scan_id",
    version="revision",
    event_time="scanned_at",
    partition="scan_date",
    fields=FIELDS,
    content_fields=list(FIELDS),
    reasons=REASONS,
    contract=scan_contract,
    required=list(FIELDS),
    contract_version=1,
    gold=GoldSpec(
        table="daily_depot_load",
        schema=DEPOT_SCHEMA,
        aggregate=daily_depot_load,
        source_columns=["scan_date", "depot", "status", "weight_grams"],
        measure="total_weight_grams",
        description="Parcels scanned, delivered and their weight per depot and scan date.",
    ),
    row_contract=scan_row_contract,
    future_skew_days=1,
)
