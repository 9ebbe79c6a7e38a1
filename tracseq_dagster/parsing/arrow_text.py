"""Small Arrow helpers for raw cells: as text, trimmed, null tokens, boolean masks.

Every format hands the cell typers Arrow arrays of different types (CSV text, JSON numbers,
Parquet natives, dictionaries); these helpers turn them into the one shape the typers need,
and say which spellings of "no value" a numeric or timestamp cell may hold.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# Text that means "no value" in a numeric or timestamp cell (compared case-insensitively).
NULL_TOKENS = frozenset({"na", "n/a", "n.a.", "nan", "null", "none", "nat", "-", "--", "#n/a", "?"})


def _np_bool(x: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Boolean Arrow data as a numpy bool array, null -> False."""
    return np.asarray(pc.fill_null(x, False).to_numpy(zero_copy_only=False), dtype=bool)


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def _plain(arr: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Decode dictionaries, turn the null type into null strings, large_string into string."""
    if pa.types.is_dictionary(arr.type):
        arr = (
            arr.dictionary_decode()
            if isinstance(arr, pa.Array)
            else pa.chunked_array([c.dictionary_decode() for c in arr.chunks], type=arr.type.value_type)
        )
    if pa.types.is_null(arr.type) or pa.types.is_large_string(arr.type):
        arr = arr.cast(pa.string())
    return arr


def _as_text(arr: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Any Arrow array as strings (the raw text a person would see)."""
    if _is_text(arr.type):
        return arr.cast(pa.string())
    try:
        return pc.cast(arr, pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        values = arr.to_pylist()
        return pa.array(
            [None if v is None else json.dumps(v, default=str) if isinstance(v, (dict, list)) else str(v) for v in values],
            pa.string(),
        )


def _clean_text(arr: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Strip whitespace; empty -> null."""
    trimmed = pc.utf8_trim_whitespace(arr)
    return pc.if_else(pc.equal(trimmed, ""), pa.scalar(None, pa.string()), trimmed)
