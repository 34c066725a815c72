"""Table-level invariants of silver after its commit: blocking, so a broken table never feeds gold."""

from datetime import date

import dagster as dg
import pandera.polars as pa
import polars as pl

from checks.billing_contract import CURRENCIES, EVENT_TYPES
from lakehouse.storage import read_table


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


# Table-level checks silver's step evaluates after its commit: blocking, so a broken table never feeds gold.
# They run inside the step (not as steps of their own): a step costs a Dagster run several processes and events.
TABLE_CHECKS = {
    "silver_has_one_row_per_event_id": "Silver holds at most one row per event_id, across all event dates.",
    "silver_rows_match_contract": "The silver rows of the event dates this run touched satisfy the silver row contract (Pandera).",
}


def silver_has_one_row_per_event_id(silver_uri: str, asset_key: dg.AssetKey) -> dg.AssetCheckResult:
    ids = read_table(silver_uri, columns=["event_id"])
    duplicated = (
        ids.filter(pl.col("event_id").is_duplicated()).get_column("event_id").unique().sort()
        if ids.height
        else pl.Series([], dtype=pl.String)
    )
    return dg.AssetCheckResult(
        asset_key=asset_key,
        check_name="silver_has_one_row_per_event_id",
        passed=duplicated.len() == 0,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "rows": ids.height,
            "duplicated_event_ids": duplicated.len(),
            "sample": dg.MetadataValue.json(duplicated.head(10).to_list()),
        },
    )


def silver_rows_match_contract(
    silver_uri: str, dates: list[date], asset_key: dg.AssetKey, silver_schema: dict[str, pl.DataType]
) -> dg.AssetCheckResult:
    rows = read_table(
        silver_uri, pl.col("event_date").is_in(pl.Series(dates, dtype=pl.Date).implode()), empty_schema=silver_schema
    )
    metadata: dict[str, object] = {
        "rows_checked": rows.height,
        "event_dates": dg.MetadataValue.json([d.isoformat() for d in dates]),
    }
    try:
        silver_row_contract().validate(rows.drop("_content_hash"), lazy=True)
        passed = True
    except pa.errors.SchemaErrors as errors:
        passed = False
        metadata |= {"failures": errors.failure_cases.height, "sample": dg.MetadataValue.md(str(errors.failure_cases.head(10)))}
    return dg.AssetCheckResult(
        asset_key=asset_key,
        check_name="silver_rows_match_contract",
        passed=passed,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata=metadata,  # type: ignore[arg-type]
    )
