"""A stable 64-bit fingerprint of a key, so the ledger lookup scans 8 bytes a row instead of the key text.

The lookup only uses it to find candidate partitions, then matches the exact key, so a collision
costs a few extra rows read, never a wrong answer. It is persisted, so it must never change:
our own arithmetic (FNV-style mixing of the key's little-endian 8-byte words, then murmur3's
finaliser), not Polars' `hash`, whose values may change between releases.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa

_PRIME = np.uint64(0x100000001B3)
_SEED = np.uint64(0xCBF29CE484222325)
CHUNK_ROWS = 262_144  # bounds the padded copy (rows x longest key of the chunk)


def key_fingerprints(keys: pl.Series) -> pl.Series:
    """Int64 fingerprint of each UTF-8 key (nulls stay null); a function of the key's bytes alone."""
    parts = [_fingerprint_chunk(keys.slice(start, CHUNK_ROWS)) for start in range(0, keys.len(), CHUNK_ROWS)]
    values = np.concatenate(parts).view(np.int64) if parts else np.array([], dtype=np.int64)
    return pl.Series(keys.name, values, dtype=pl.Int64).set(keys.is_null(), None)  # type: ignore[arg-type]


def _fingerprint_chunk(keys: pl.Series) -> np.ndarray:
    keys = keys.fill_null("")
    lengths = keys.str.len_bytes().to_numpy().astype(np.uint64)
    width = max(8, -(-int(lengths.max(initial=0)) // 8) * 8)
    # Zero-pad every key to `width` bytes, so the Arrow data buffer is a (rows x width) byte matrix.
    padded = pl.select(keys + pl.lit("\0" * width).str.slice(0, width - keys.str.len_bytes())).to_series()
    array = pa.chunked_array([padded.cast(pl.Binary).to_arrow()]).cast(pa.large_binary()).combine_chunks()
    offsets = np.frombuffer(array.buffers()[1], dtype=np.int64)[array.offset : array.offset + len(array) + 1]
    data = np.frombuffer(array.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]]
    words = data.view("<u8").reshape(len(array), width // 8)
    with np.errstate(over="ignore"):  # wrap-around multiplication is the point
        mixed = (_SEED ^ lengths) * _PRIME  # the length keeps "a" and "a\0" apart
        for column in range(words.shape[1]):  # only the key's own words: the padding width never matters
            mixed = np.where(lengths > 8 * column, (mixed ^ words[:, column]) * _PRIME, mixed)
        mixed ^= mixed >> np.uint64(33)
        mixed *= np.uint64(0xFF51AFD7ED558CCD)
        mixed ^= mixed >> np.uint64(33)
        mixed *= np.uint64(0xC4CEB9FE1A85EC53)
        mixed ^= mixed >> np.uint64(33)
    return mixed
