"""Where a value falls among a feature's split thresholds: what both tree kernels compare instead of floats."""

from __future__ import annotations

import numba


@numba.njit(inline="always")
def cuts_below(cuts, cut_count, j, value):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    """How many of feature ``j``'s thresholds (``cuts[j]``, ascending, ``cut_count[j]`` of them) lie
    below ``value``: ``value <= cuts[j, k]`` exactly when that count is at most ``k``. Not for NaN."""
    low, high = 0, cut_count[j]
    while low < high:
        middle = (low + high) >> 1
        if cuts[j, middle] < value:
            low = middle + 1
        else:
            high = middle
    return low
