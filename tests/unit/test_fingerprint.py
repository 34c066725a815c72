"""The ledger's key fingerprint: persisted, so it must be stable, and only ever a function of the key."""

import polars as pl

from lakehouse.staging.fingerprint import key_fingerprints


def test_fingerprints_are_pinned_values_because_ledgers_on_disk_hold_them() -> None:
    keys = pl.Series(["evt_0000000000000000001", "a", "", "é" * 40])
    assert key_fingerprints(keys).to_list() == [
        7551434416582188276,
        3516428948214732180,
        -5115162479779449349,
        2894228624427302780,
    ]


def test_a_fingerprint_depends_on_the_key_alone_not_on_its_batch_or_chunk() -> None:
    keys = pl.Series([f"k{i}" * (i % 50) for i in range(3_000)])
    whole = key_fingerprints(keys)
    assert key_fingerprints(keys.slice(1_000, 10)).to_list() == whole.slice(1_000, 10).to_list()
    assert key_fingerprints(keys.reverse()).to_list() == whole.reverse().to_list()


def test_near_identical_keys_get_distinct_fingerprints_and_nulls_stay_null() -> None:
    keys = pl.Series(["a", "a\0", "b", "", "ab", "ba", "abcdefgh", "abcdefgh\0", None])
    prints = key_fingerprints(keys)
    assert prints[-1] is None
    assert prints.head(8).n_unique() == 8
