"""Billing event contract, version 1, as Pandera rules over staged records (see lakehouse.staging.parse)."""

from __future__ import annotations

import pandera.polars as pa
import polars as pl

from lakehouse.staging.contracts import rule
from lakehouse.staging.parse import FieldKind, State

CONTRACT_VERSION = 1
EVENT_TYPES = ("charge", "refund", "credit", "adjustment")
CURRENCIES = ("USD", "EUR", "GBP", "JPY", "CAD", "AUD")
MAX_EVENT_ID_LENGTH = 128
FUTURE_SKEW_DAYS = 2  # event_ts at or after arrival_date + 2 days 00:00 UTC is from the future

FIELDS: dict[str, FieldKind] = {
    "event_id": FieldKind.STRING,
    "source_version": FieldKind.INTEGER,
    "account_id": FieldKind.STRING,
    "event_type": FieldKind.STRING,
    "event_ts": FieldKind.TIMESTAMP,
    "amount_minor": FieldKind.INTEGER,
    "currency": FieldKind.STRING,
    "payload": FieldKind.OBJECT,
}
REQUIRED_FIELDS = [name for name in FIELDS if name != "payload"]
# Business content: what a duplicate must match and a conflict differs in. Unknown fields are not content.
CONTENT_FIELDS = list(FIELDS)

# The first reason that applies wins; version_conflict is decided later, on records that pass these.
REASONS = (
    "malformed_record",
    "missing_field",
    "invalid_type",
    "naive_timestamp",
    "invalid_value",
    "sign_mismatch",
    "future_event",
    "too_late",
    "version_conflict",
)


def _state(field: str) -> pl.Expr:
    return pl.col(f"{field}__state")


def _type_rules() -> list[pa.Check]:
    rules = [rule("malformed_record", "line is a JSON object", pl.col("_parse_error").is_null())]
    for field in REQUIRED_FIELDS:
        rules.append(rule("missing_field", f"{field} is present and not null", _state(field) != State.MISSING))
    for field, kind in FIELDS.items():
        expected = {FieldKind.STRING: "a string", FieldKind.INTEGER: "an integer", FieldKind.OBJECT: "a JSON object"}
        if kind is FieldKind.TIMESTAMP:
            rules.append(
                rule(
                    "invalid_type",
                    f"{field} is an RFC 3339 timestamp string",
                    ~_state(field).is_in([State.WRONG_TYPE, State.UNPARSEABLE]),
                )
            )
        else:
            rules.append(rule("invalid_type", f"{field} is {expected[kind]}", _state(field) != State.WRONG_TYPE))
    rules.append(rule("naive_timestamp", "event_ts has an explicit UTC offset", _state("event_ts") != State.NAIVE))
    return rules


def _value_rules() -> list[pa.Check]:
    amount, kind = pl.col("amount_minor"), pl.col("event_type")
    return [
        rule("invalid_value", "event_id is not empty", pl.col("event_id").str.len_chars() > 0),
        rule(
            "invalid_value",
            f"event_id has at most {MAX_EVENT_ID_LENGTH} characters",
            pl.col("event_id").str.len_chars() <= MAX_EVENT_ID_LENGTH,
        ),
        rule("invalid_value", "account_id is not empty", pl.col("account_id").str.len_chars() > 0),
        rule("invalid_value", "source_version >= 1", pl.col("source_version") >= 1),
        rule("invalid_value", "source_version fits in int64", _state("source_version") != State.OUT_OF_RANGE),
        rule("invalid_value", "amount_minor fits in int64", _state("amount_minor") != State.OUT_OF_RANGE),
        rule("invalid_value", f"event_type is one of {', '.join(EVENT_TYPES)}", kind.is_in(EVENT_TYPES)),
        rule("invalid_value", f"currency is one of {', '.join(CURRENCIES)}", pl.col("currency").is_in(CURRENCIES)),
        rule("invalid_value", "event_ts UTC offset is within +-14:00", _state("event_ts") != State.OUT_OF_RANGE),
        rule("sign_mismatch", "a charge has amount_minor > 0", (kind != "charge") | (amount > 0)),
        rule("sign_mismatch", "a refund has amount_minor < 0", (kind != "refund") | (amount < 0)),
        rule("sign_mismatch", "a credit has amount_minor < 0", (kind != "credit") | (amount < 0)),
        rule("sign_mismatch", "an adjustment has amount_minor != 0", (kind != "adjustment") | (amount != 0)),
    ]


def _time_rules(allowed_lateness_days: int) -> list[pa.Check]:
    arrival_start = pl.col("_arrival_date").cast(pl.Datetime("us", "UTC"))
    event_date = pl.col("event_ts").dt.date()
    return [
        rule(
            "future_event",
            f"event_ts is before arrival_date + {FUTURE_SKEW_DAYS} days 00:00 UTC",
            pl.col("event_ts") < arrival_start + pl.duration(days=FUTURE_SKEW_DAYS),
        ),
        rule(
            "too_late",
            f"arrival_date - event_date is at most {allowed_lateness_days} days",
            (pl.col("_arrival_date") - event_date).dt.total_days() <= allowed_lateness_days,
        ),
    ]


def billing_event_contract(allowed_lateness_days: int) -> pa.DataFrameSchema:
    """Every rule of contract v1; lateness is a parameter because it is a configured policy."""
    return pa.DataFrameSchema(
        checks=_type_rules() + _value_rules() + _time_rules(allowed_lateness_days),
        name=f"billing_events_v{CONTRACT_VERSION}",
    )


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
