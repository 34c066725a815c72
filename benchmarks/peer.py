"""A hand-built peer pipeline on the same packages: the speed yardstick a careful engineer would write in an
afternoon, against which the real pipeline's extra guarantees are priced.

It does what the issue's peer did, and no more: bronze append of the raw lines, a per-line C JSON decode
(msgspec, the project's own), Pandera row checks with failing rows set aside, the latest version per id, a
pruned version-guarded MERGE into silver, and gold re-aggregated for the touched dates. No conflicts, moves,
duplicate detection, lineage, gates, locks, ledger or Dagster.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import msgspec
import pandera.polars as pa
import polars as pl

from benchmarks import data
from benchmarks.measures import Result, measure
from lakehouse.delta.storage import merge_into, write_table

FIELDS = ("event_id", "source_version", "account_id", "event_type", "event_ts", "amount_minor", "currency")
SIGN_OK = (
    pl.when(pl.col("event_type") == "charge")
    .then(pl.col("amount_minor") > 0)
    .when(pl.col("event_type") == "adjustment")
    .then(pl.col("amount_minor") != 0)
    .otherwise(pl.col("amount_minor") < 0)
)


class PeerEvent(pa.DataFrameModel):
    event_id: str = pa.Field(str_length={"min_value": 1, "max_value": 128})
    source_version: int = pa.Field(ge=1)
    account_id: str = pa.Field(str_length={"min_value": 1})
    event_type: str = pa.Field(isin=list(data.EVENT_TYPES))
    amount_minor: int
    currency: str = pa.Field(isin=list(data.CURRENCIES))

    @pa.dataframe_check
    @classmethod
    def sign_matches_type(cls, frame: pa.PolarsData) -> pl.LazyFrame:
        return frame.lazyframe.select(SIGN_OK)


def _decode(lines: list[bytes]) -> tuple[pl.DataFrame, int]:
    """Each line decoded on its own; a line that is not a JSON object is counted as rejected."""
    decode, rows, bad = msgspec.json.Decoder().decode, [], 0
    for line in lines:
        try:
            record = decode(line)
        except msgspec.DecodeError:
            bad += 1
            continue
        if not isinstance(record, dict):
            bad += 1
            continue
        rows.append(tuple(record.get(name) for name in FIELDS))
    frame = pl.DataFrame(
        rows, schema=dict.fromkeys(FIELDS, pl.String) | {"source_version": pl.Int64, "amount_minor": pl.Int64}, orient="row"
    )
    return frame.with_columns(pl.col("event_ts").str.to_datetime("%Y-%m-%dT%H:%M:%S%#z", time_zone="UTC", strict=False)), bad


def _checked(frame: pl.DataFrame) -> tuple[pl.DataFrame, int]:
    """Pandera's row checks; rows any check names are set aside (the peer's quarantine)."""
    try:
        PeerEvent.validate(frame, lazy=True)
        return frame, 0
    except pa.errors.SchemaErrors as errors:
        failing = errors.failure_cases.get_column("index").drop_nulls().unique()
        kept = frame.with_row_index("_i").filter(~pl.col("_i").is_in(failing.implode())).drop("_i")
        return kept, frame.height - kept.height


@measure("peer")
def peer(work: Path, scratch: Path, params: dict[str, Any]) -> Result:
    """The hand-built peer over one arrival date's landing files, into empty tables as `e2e` starts."""
    files = sorted((work / params["landing"] / "landing" / "billing_events").rglob("*.jsonl"))
    tables = scratch / "peer"
    start = time.perf_counter()
    lines: list[bytes] = []
    names: list[str] = []
    numbers: list[int] = []
    for path in files:
        chunk = path.read_bytes().splitlines()
        lines += chunk
        names += [path.name] * len(chunk)
        numbers += range(1, len(chunk) + 1)
    bronze = pl.DataFrame({"_raw": lines, "_source_file": names, "_source_line": numbers}, schema_overrides={"_raw": pl.Binary})
    write_table(
        str(tables / "bronze"),
        bronze.with_columns(_arrival_date=pl.lit(data.ARRIVAL)).to_arrow(),
        data.BENCH_COMMIT,
        "peer: bronze",
    )
    decoded, malformed = _decode(lines)
    valid, rejected = _checked(decoded.drop_nulls(["event_id", "event_ts"]))
    latest = (
        valid.sort("source_version", descending=True)
        .unique("event_id", keep="first", maintain_order=True)
        .with_columns(event_date=pl.col("event_ts").dt.date())
    )
    silver = str(tables / "silver")
    write_table(silver, latest.head(0).to_arrow(), data.BENCH_COMMIT, "peer: create", partition_by=["event_date"])
    dates = sorted(latest.get_column("event_date").unique().to_list())
    literals = ", ".join(f"'{d.isoformat()}'" for d in dates)
    (
        merge_into(
            silver,
            latest.to_arrow(),
            f"t.event_id = s.event_id AND t.event_date IN ({literals})",
            data.BENCH_COMMIT,
            "peer: merge",
        )
        .when_matched_update_all(predicate="s.source_version > t.source_version")
        .when_not_matched_insert_all()
        .execute()
    )
    gold = (
        pl.read_delta(silver)
        .filter(pl.col("event_date").is_in(dates))
        .group_by("event_date", "account_id", "currency")
        .agg(net_minor=pl.col("amount_minor").sum(), event_count=pl.len())
    )
    write_table(
        str(tables / "gold"), gold.to_arrow(), data.BENCH_COMMIT, "peer: gold", mode="overwrite", partition_by=["event_date"]
    )
    seconds = time.perf_counter() - start
    return seconds, len(lines), {"silver_rows": latest.height, "rejected": malformed + rejected}
