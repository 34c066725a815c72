"""Reproducible benchmark data, generated vectorised (numpy + Polars) so 10M rows take seconds, not minutes.

Every random choice comes from `numpy.random.default_rng(seed)` keyed by what is generated, so the
same size and seed always give the same bytes. Event ids are random 63-bit numbers (like upstream UUIDs):
nothing about a key tells where it lives, which is the hard case for a keyed lookup.
"""

from __future__ import annotations

import hashlib
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from lakehouse.delta.storage import CommitInfo, write_table
from lakehouse.feed import KEY_FINGERPRINT
from lakehouse.staging.fingerprint import key_fingerprints

EVENT_TYPES = ("charge", "refund", "credit", "adjustment")
CURRENCIES = ("USD", "EUR", "GBP", "JPY", "CAD", "AUD")
PLANS = ("starter", "pro", "business", "enterprise")
# The lineage of the benchmarks' own writes: prepared histories and baselines are not batches of a feed.
BENCH_COMMIT = CommitInfo(dataset="billing_events", batch_id="benchmark", run_id="bench", code_version="bench")
ROWS_PER_DAY = 27_397  # 10M rows over 365 days: every history has partitions of the same size
LINES_PER_FILE = 250_000
LAYOUT = "v2"  # names the prepared-data folder: bump it when prepared tables change shape (v2: ledger key fingerprints)
ARRIVAL = date(2025, 6, 1)  # the benchmark batch's arrival date; history ends the day before


def _rng(seed: int, *labels: object) -> np.random.Generator:
    """An independent stream per (seed, label): adding one scenario never shifts another's data."""
    return np.random.default_rng([seed, *[hash_label(str(label)) for label in labels]])


def hash_label(label: str) -> int:
    return int.from_bytes(hashlib.sha256(label.encode()).digest()[:8], "little")  # stable, unlike str hash()


def events(n: int, seed: int, label: str, days: list[date], id_prefix: str = "evt") -> pl.DataFrame:
    """`n` valid version-1 events spread evenly over `days`, with contract-consistent signs."""
    rng = _rng(seed, label, n)
    kind = rng.choice(len(EVENT_TYPES), size=n, p=[0.75, 0.10, 0.08, 0.07])
    magnitude = rng.integers(100, 100_000, size=n)
    sign = np.where(kind == 0, 1, np.where(kind == 3, rng.choice([-1, 1], size=n), -1))
    day_index = np.arange(n) % len(days)
    seconds = rng.integers(0, 86_400, size=n)
    epoch_days = np.array([(d - date(1970, 1, 1)).days for d in days], dtype=np.int64)[day_index]
    ids = rng.integers(0, 2**63 - 1, size=n, dtype=np.int64)
    return pl.DataFrame(
        {
            "event_id": pl.Series(ids).cast(pl.String).str.zfill(19),
            "source_version": np.ones(n, dtype=np.int64),
            "account_id": pl.Series(rng.integers(0, 50_000, size=n)).cast(pl.String).str.zfill(6),
            "event_type": pl.Series(np.array(EVENT_TYPES)[kind]),
            "event_ts": pl.Series((epoch_days * 86_400 + seconds) * 1_000_000).cast(pl.Datetime("us", "UTC")),
            "amount_minor": magnitude * sign,
            "currency": pl.Series(np.array(CURRENCIES)[rng.integers(0, len(CURRENCIES), size=n)]),
            "plan": pl.Series(np.array(PLANS)[rng.integers(0, len(PLANS), size=n)]),
            "seats": rng.integers(1, 500, size=n),
        }
    ).with_columns(event_id=pl.lit(id_prefix + "_") + pl.col("event_id"), account_id=pl.lit("acct_") + pl.col("account_id"))


def correct(frame: pl.DataFrame, seed: int, label: str) -> pl.DataFrame:
    """Version + 1 with a new amount: what an upstream correction looks like."""
    rng = _rng(seed, label, frame.height)
    bump = pl.Series(rng.integers(1, 1_000, size=frame.height))
    return frame.with_columns(
        source_version=pl.col("source_version") + 1,
        amount_minor=pl.when(pl.col("amount_minor") > 0)
        .then(pl.col("amount_minor") + bump)
        .otherwise(pl.col("amount_minor") - bump),
    )


LAYOUTS = ("compact", "python_default", "varied", "mixed")  # how producers write the same records (see json_lines)


def json_lines(frame: pl.DataFrame, layout: str = "compact", seed: int = 0) -> pl.Series:
    """The upstream's JSONL rendering of events (RFC 3339 UTC timestamps, a small payload object), in a layout:

    - `compact`: keys in the contract's order, `,` and `:` (the project's own generator);
    - `python_default`: the same order, Python's `json.dumps` separators `, ` and `: `;
    - `varied`: `json.dumps` separators, top-level keys and the payload's in a random order per line;
    - `mixed`: each line in one of the three, drawn at random (several producers in one feed).
    """
    if layout == "mixed":
        pick = pl.Series(_rng(seed, "layout-mix", frame.height).integers(0, 3, size=frame.height))
        rendered = [json_lines(frame, name, seed) for name in LAYOUTS[:3]]
        return pl.select(
            pl.when(pick == 0).then(rendered[0]).when(pick == 1).then(rendered[1]).otherwise(rendered[2]).alias("line")
        ).to_series()
    item, key = (",", ":") if layout == "compact" else (", ", ": ")
    q = '"'

    def text(expr: pl.Expr) -> pl.Expr:
        return pl.lit(q) + expr + pl.lit(q)

    payload_members = [
        pl.lit(f'"plan"{key}') + text(pl.col("plan")),
        pl.lit(f'"seats"{key}') + pl.col("seats").cast(pl.String),
    ]
    members = [
        pl.lit(f'"event_id"{key}') + text(pl.col("event_id")),
        pl.lit(f'"source_version"{key}') + pl.col("source_version").cast(pl.String),
        pl.lit(f'"account_id"{key}') + text(pl.col("account_id")),
        pl.lit(f'"event_type"{key}') + text(pl.col("event_type")),
        pl.lit(f'"event_ts"{key}') + text(pl.col("event_ts").dt.strftime("%Y-%m-%dT%H:%M:%SZ")),
        pl.lit(f'"amount_minor"{key}') + pl.col("amount_minor").cast(pl.String),
        pl.lit(f'"currency"{key}') + text(pl.col("currency")),
    ]
    if layout != "varied":
        payload = pl.lit("{") + pl.concat_str(payload_members, separator=item) + pl.lit("}")
        line = pl.lit("{") + pl.concat_str([*members, pl.lit(f'"payload"{key}') + payload], separator=item) + pl.lit("}")
        return frame.select(line.alias("line")).to_series()
    rng = _rng(seed, "layout-varied", frame.height)
    swap = pl.Series(rng.integers(0, 2, size=frame.height)).cast(pl.Boolean)
    first, second = payload_members
    payload = (
        pl.lit("{") + pl.when(swap).then(second + pl.lit(item) + first).otherwise(first + pl.lit(item) + second) + pl.lit("}")
    )
    order = np.argsort(rng.random((frame.height, len(members) + 1)), axis=1)  # a random permutation per line
    listed = pl.concat_list([*members, pl.lit(f'"payload"{key}') + payload])
    shuffled = listed.list.gather(pl.Series("order", order).cast(pl.List(pl.Int64)))
    return frame.select((pl.lit("{") + shuffled.list.join(item) + pl.lit("}")).alias("line")).to_series()


def arrival_batch(n: int, seed: int, arrival: date = ARRIVAL, label: str = "arrival") -> pl.DataFrame:
    """One arrival date's deliveries: ~96% new events over the last 3 days, 2% corrections of them,
    1% exact duplicates and 1% sign-mismatched (quarantined) records, in a shuffled order."""
    days = [arrival - timedelta(days=k) for k in (2, 1, 0)]
    n_corr, n_dup, n_broken = 2 * (n // 100), n // 100, n // 100
    base = events(n - n_corr - n_dup - n_broken, seed, label, days)
    picks = base.sample(n_corr + n_dup + n_broken, seed=seed, shuffle=True)
    corrections = correct(picks.slice(0, n_corr), seed, f"{label}-corr")
    duplicates = picks.slice(n_corr, n_dup)
    broken = picks.slice(n_corr + n_dup).with_columns(
        event_id=pl.col("event_id") + "x", amount_minor=-pl.col("amount_minor").abs(), event_type=pl.lit("charge")
    )
    return pl.concat([base, corrections, duplicates, broken]).sample(fraction=1.0, seed=seed, shuffle=True)


def write_landing(
    root: Path, frame: pl.DataFrame, arrival: date, dataset: str = "billing_events", layout: str = "compact", seed: int = 0
) -> list[Path]:
    """Write the frame as `<root>/landing/<dataset>/<arrival>/part-NNNN.jsonl`, LINES_PER_FILE lines each."""
    folder = root / "landing" / dataset / arrival.isoformat()
    folder.mkdir(parents=True, exist_ok=True)
    lines = json_lines(frame, layout, seed)
    paths = []
    for index, start in enumerate(range(0, max(lines.len(), 1), LINES_PER_FILE)):
        path = folder / f"part-{index:04d}.jsonl"
        chunk = lines.slice(start, LINES_PER_FILE)
        path.write_bytes(("\n".join(chunk.to_list()) + "\n").encode() if chunk.len() else b"")
        paths.append(path)
    return paths


def content_hash() -> pl.Expr:
    """A 60-hex-digit stand-in for the engine's sha256 content hash (as long, so joins cost the same):
    the apply step compares it, never recomputes it, so any function of the content will do."""
    content = pl.concat_str(
        [
            pl.col(c).cast(pl.String)
            for c in ("event_id", "source_version", "account_id", "event_type", "event_ts", "amount_minor")
        ]
        + [pl.col("currency"), pl.col("payload")],
        separator="|",
    )
    return pl.concat_str([content.hash(seed=k).cast(pl.String).str.zfill(20) for k in range(3)])


def as_silver_rows(frame: pl.DataFrame, arrival_of: pl.Expr, batch_id: str) -> pl.DataFrame:
    """Events in silver's (and the ledger's) schema, with lineage of the delivery that produced them."""
    return (
        frame.with_columns(
            payload=pl.concat_str(
                pl.lit('{"plan":"'), pl.col("plan"), pl.lit('","seats":'), pl.col("seats").cast(pl.String), pl.lit("}")
            ),
            event_date=pl.col("event_ts").dt.date(),
        )
        .with_columns(
            _content_hash=content_hash(),
            _batch_id=pl.lit(batch_id),
            _arrival_date=arrival_of,
            _source_file=pl.lit("history.jsonl"),
            _source_line=pl.int_range(1, pl.len() + 1, dtype=pl.Int64),
        )
        .select(
            "event_id",
            "source_version",
            "account_id",
            "event_type",
            "event_ts",
            "amount_minor",
            "currency",
            "payload",
            "event_date",
            "_content_hash",
            "_batch_id",
            "_arrival_date",
            "_source_file",
            "_source_line",
        )
    )


def history_days(rows: int, end: date) -> list[date]:
    count = max(3, round(rows / ROWS_PER_DAY))
    return [end - timedelta(days=k) for k in range(count - 1, -1, -1)]


def write_history(root: Path, rows: int, seed: int, end: date = ARRIVAL - timedelta(days=1)) -> None:
    """Silver and its ledger holding `rows` events over rows/ROWS_PER_DAY days ending `end`.

    Each day is generated from its own stream, so the last days (those the batch touches) hold the
    same rows whatever the history's length: histories differ only in how much older data they hold.
    """
    silver, ledger = root / "tables" / "silver" / "billing_events", root / "tables" / "ops" / "billing_events_ledger"
    for day_group in _chunks(history_days(rows, end), 30):
        frame = pl.concat([events(ROWS_PER_DAY, seed, f"history-{day.isoformat()}", [day]) for day in day_group])
        delivered = as_silver_rows(frame, pl.col("event_ts").dt.date(), "history")  # arrived the same day
        write_table(str(silver), delivered.to_arrow(), BENCH_COMMIT, "benchmark: history", partition_by=["event_date"])
        fingerprinted = delivered.with_columns(key_fingerprints(delivered.get_column("event_id")).alias(KEY_FINGERPRINT))
        write_table(str(ledger), fingerprinted.to_arrow(), BENCH_COMMIT, "benchmark: history", partition_by=["_arrival_date"])


def _chunks(items: list[date], size: int) -> list[list[date]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def apply_batch(n: int, seed: int, end: date = ARRIVAL - timedelta(days=1)) -> pl.DataFrame:
    """The issue's 100k batch in silver's schema: 70% new, 20% newer versions, 10% exact duplicates,
    all within the history's last 3 days (rows identical for every history length)."""
    days = [end - timedelta(days=k) for k in (2, 1, 0)]
    recent = pl.concat([events(ROWS_PER_DAY, seed, f"history-{day.isoformat()}", [day]) for day in days])
    picked = recent.sample(3 * n // 10, seed=seed, shuffle=True)
    fresh = events(n - picked.height, seed, "apply-new", days, id_prefix="new")
    newer = correct(picked.slice(0, 2 * n // 10), seed, "apply-newer")
    duplicates = picked.slice(2 * n // 10)
    batch = pl.concat([fresh, newer, duplicates])
    return as_silver_rows(batch, pl.lit(end + timedelta(days=1)), "bench-apply")
