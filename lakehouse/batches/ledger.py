"""The delivery ledger's lookups: every accepted delivery of a batch's keys, found in two passes so the part
that grows with history stays small.

The first pass (once per batch) reads only the keys' 8-byte fingerprints in every ledger file, to learn which
arrival-date partitions hold a match (a delivery's key alone says nothing of where it lives); the second (once
per group of key slices) reads whole rows of the group's keys from those partitions only.
"""

from __future__ import annotations

import polars as pl

from lakehouse.delta.storage import read_table, scan_data_files, table_exists
from lakehouse.feed import KEY_FINGERPRINT, FeedSpec
from lakehouse.staging.fingerprint import key_fingerprints

PARTITION = "_arrival_date"


def ledger_matches(ledger_uri: str, fingerprints: pl.Series) -> pl.DataFrame:
    """(fingerprint, arrival date) of the ledger's rows whose key fingerprint is among `fingerprints`."""
    empty = pl.DataFrame(schema={KEY_FINGERPRINT: pl.Int64(), PARTITION: pl.Date()})
    files = scan_data_files(ledger_uri, "_file") if table_exists(ledger_uri) and not fingerprints.is_empty() else None
    if files is None:
        return empty
    matches = (
        files.select(KEY_FINGERPRINT, "_file")
        .filter(pl.col(KEY_FINGERPRINT).is_in(fingerprints.implode()))
        .select(
            KEY_FINGERPRINT,
            pl.col("_file").str.extract(r"_arrival_date=([0-9]{4}-[0-9]{2}-[0-9]{2})", 1).str.to_date().alias(PARTITION),
        )
        .unique()
        .collect()
    )
    if matches.get_column(PARTITION).null_count():
        raise RuntimeError(f"ledger files of {ledger_uri} are not laid out by _arrival_date partitions")
    return matches


def ledger_rows(ledger_uri: str, feed: FeedSpec, deliveries: pl.DataFrame, matches: pl.DataFrame) -> pl.DataFrame:
    """Every delivery the ledger holds of `deliveries`' keys (this arrival date's earlier attempt included), in
    silver's columns; `matches` is `ledger_matches` of (at least) their fingerprints."""
    keys = deliveries.get_column(feed.key).unique()
    fingerprints = key_fingerprints(keys)
    partitions = matches.filter(pl.col(KEY_FINGERPRINT).is_in(fingerprints.implode())).get_column(PARTITION).unique()
    if partitions.is_empty():
        return pl.DataFrame(schema=feed.silver_schema)
    # The fingerprint (8 bytes, decoded first) narrows the read before any key string is decoded.
    scope = pl.col(PARTITION).is_in(partitions.implode()) & pl.col(KEY_FINGERPRINT).is_in(fingerprints.implode())
    rows = read_table(ledger_uri, scope, list(feed.silver_schema), feed.silver_schema)
    return rows.filter(pl.col(feed.key).is_in(keys.implode()))
