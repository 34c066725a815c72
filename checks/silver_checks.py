"""Table-level invariants of silver after its commit: blocking, so a broken table never feeds gold."""

import json
from datetime import date

import dagster as dg
import pandera.polars as pa
import polars as pl

from assets.billing_feed import BILLING_EVENTS
from assets.silver import SILVER_KEY
from checks.billing_contract import CURRENCIES, EVENT_TYPES
from lakehouse.ops import OpsTables
from lakehouse.resources import LakehouseResource, run_partition_keys
from lakehouse.storage import read_table, table_uri


def silver_row_contract() -> pa.DataFrameSchema:
    """What every published silver row must satisfy, whatever batch wrote it."""
    amount, kind = pl.col("amount_minor"), pl.col("event_type")
    sign_ok = (
        ((kind == "charge") & (amount > 0))
        | (kind.is_in(["refund", "credit"]) & (amount < 0))
        | ((kind == "adjustment") & (amount != 0))
    )
    return pa.DataFrameSchema(
        {
            "event_id": pa.Column(pl.String, pa.Check.str_length(1, 128), nullable=False),
            "source_version": pa.Column(pl.Int64, pa.Check.ge(1), nullable=False),
            "account_id": pa.Column(pl.String, pa.Check.str_length(min_value=1), nullable=False),
            "event_type": pa.Column(pl.String, pa.Check.isin(EVENT_TYPES), nullable=False),
            "event_ts": pa.Column(pl.Datetime("us", "UTC"), nullable=False),
            "amount_minor": pa.Column(pl.Int64, nullable=False),
            "currency": pa.Column(pl.String, pa.Check.isin(CURRENCIES), nullable=False),
            "payload": pa.Column(pl.String, nullable=True),
            "event_date": pa.Column(pl.Date, nullable=False),
            "_batch_id": pa.Column(pl.String, nullable=False),
            "_arrival_date": pa.Column(pl.Date, nullable=False),
            "_source_file": pa.Column(pl.String, nullable=False),
            "_source_line": pa.Column(pl.Int64, pa.Check.ge(1), nullable=False),
        },
        checks=[
            pa.Check(lambda d: d.lazyframe.select(sign_ok), name="amount sign matches event_type"),
            pa.Check(
                lambda d: d.lazyframe.select(pl.col("event_ts").dt.date() == pl.col("event_date")),
                name="event_date is the UTC date of event_ts",
            ),
        ],
        name="silver_billing_events",
    )


def _touched_dates(lakehouse: LakehouseResource, arrival_dates: list[str]) -> list[date]:
    batches = OpsTables(lakehouse.root).batch_rows(BILLING_EVENTS.dataset)
    published = batches.filter(
        pl.col("arrival_date").is_in([date.fromisoformat(d) for d in arrival_dates])
        & pl.col("status").is_in(["published", "complete"])
    )
    return sorted(
        {date.fromisoformat(d) for dates in published.get_column("touched_event_dates").drop_nulls() for d in json.loads(dates)}
    )


@dg.asset_check(asset=SILVER_KEY, blocking=True, description="Silver holds at most one row per event_id, across all event dates.")
def silver_has_one_row_per_event_id(lakehouse: LakehouseResource) -> dg.AssetCheckResult:
    ids = read_table(table_uri(lakehouse.root, "silver", BILLING_EVENTS.dataset), columns=["event_id"])
    duplicated = (
        ids.filter(pl.col("event_id").is_duplicated()).get_column("event_id").unique().sort()
        if ids.height
        else pl.Series([], dtype=pl.String)
    )
    return dg.AssetCheckResult(
        passed=duplicated.len() == 0,
        metadata={
            "rows": ids.height,
            "duplicated_event_ids": duplicated.len(),
            "sample": dg.MetadataValue.json(duplicated.head(10).to_list()),
        },
    )


@dg.asset_check(
    asset=SILVER_KEY,
    blocking=True,
    description="The silver rows of the event dates this run touched satisfy the silver row contract (Pandera).",
)
def silver_rows_match_contract(context: dg.AssetCheckExecutionContext, lakehouse: LakehouseResource) -> dg.AssetCheckResult:
    dates = _touched_dates(lakehouse, run_partition_keys(context))
    rows = read_table(
        table_uri(lakehouse.root, "silver", BILLING_EVENTS.dataset),
        pl.col("event_date").is_in(pl.Series(dates, dtype=pl.Date).implode()),
        empty_schema=BILLING_EVENTS.silver_schema,
    )
    try:
        silver_row_contract().validate(rows.drop("_content_hash"), lazy=True)
    except pa.errors.SchemaErrors as errors:
        cases = errors.failure_cases
        return dg.AssetCheckResult(
            passed=False,
            metadata={"rows_checked": rows.height, "failures": cases.height, "sample": dg.MetadataValue.md(str(cases.head(10)))},
        )
    return dg.AssetCheckResult(
        passed=True, metadata={"rows_checked": rows.height, "event_dates": dg.MetadataValue.json([d.isoformat() for d in dates])}
    )
