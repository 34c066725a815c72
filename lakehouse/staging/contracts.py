"""Run a Pandera contract over staged records and turn its failures into one quarantine reason per record.

Contract checks are named `<reason>: <human rule>`. Pandera validates the collected DataFrame
with `lazy=True`, so every rule a record breaks is reported, not just the first; the record's
`_reason` is the first broken rule in the feed's precedence order and `_detail` lists them all.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pandera.polars as pa
import polars as pl
from pandera.api.polars.types import PolarsData


def rule(reason: str, description: str, passes: pl.Expr, column: str | None = None) -> pa.Check:
    """A row-wise contract rule; `passes` must be true (or null-safe true) for a good record."""
    fn: Callable[[PolarsData], pl.LazyFrame] = lambda data: data.lazyframe.select(passes.fill_null(True))  # noqa: E731
    return pa.Check(fn, name=f"{reason}: {description}", element_wise=False)


def judge(staged: pl.DataFrame, schema: pa.DataFrameSchema, reason_order: Sequence[str]) -> pl.DataFrame:
    """Add `_reason` (first broken rule's reason, null if none) and `_detail` (every broken rule)."""
    indexed = staged.with_row_index("_row")
    try:
        # Binary and list columns (the raw line, its shape) are not rule inputs, and Pandera cannot JSON-encode them
        # in failure cases.
        schema.validate(indexed.select(pl.exclude(pl.Binary, pl.List(pl.String))), lazy=True)
        failures = pl.DataFrame(schema={"index": pl.Int64, "check": pl.String})
    except pa.errors.SchemaErrors as errors:
        failures = errors.failure_cases.select(pl.col("index").cast(pl.Int64), pl.col("check").cast(pl.String))
    if failures.get_column("index").null_count():
        # A schema-level failure (a staged column missing or mistyped) is a bug here, not bad data.
        raise RuntimeError(f"contract could not run on staged records: {failures.filter(pl.col('index').is_null())}")
    rank = {reason: position for position, reason in enumerate(reason_order)}
    verdicts = (
        failures.unique()
        .with_columns(
            _reason=pl.col("check").str.split(":").list.first(),
        )
        .with_columns(_rank=pl.col("_reason").replace_strict(rank, return_dtype=pl.Int64))
        .sort("index", "_rank", "check")
        .group_by("index", maintain_order=True)
        .agg(pl.col("_reason").first(), _detail=pl.col("check").str.join("; "))
    )
    # Only the two verdict columns are aligned to the rows and added: joining the whole frame would copy every column.
    aligned = indexed.select("_row").join(verdicts, left_on="_row", right_on="index", how="left", maintain_order="left")
    return staged.hstack(aligned.select("_reason", "_detail"))
