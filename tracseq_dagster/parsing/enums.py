"""Typing enum cells: values in another case or with spaces stored in the contract's spelling.

Values that match no allowed value case-insensitively are left as written, so that the
validator reports them under ``enum:<col>``.
"""

from __future__ import annotations

from collections.abc import Mapping

import pyarrow as pa
import pyarrow.compute as pc


def _contract_spelling(text: pa.Array | pa.ChunkedArray, spellings: Mapping[str, str]) -> tuple[pa.Array | pa.ChunkedArray, int]:
    """Enum text with every case-insensitive match of an allowed value in the contract's spelling,
    and how many values that changed. Values that match nothing are left for ``enum:<col>``."""
    lowered = pa.array(list(spellings), pa.string())
    at = pc.index_in(pc.utf8_lower(text), value_set=lowered)
    canonical = pc.take(pa.array(list(spellings.values()), pa.string()), at)
    changed = pc.sum(pc.fill_null(pc.not_equal(text, canonical), False).cast(pa.int64())).as_py() or 0
    if not changed:
        return text, 0
    return pc.coalesce(canonical, text), changed
