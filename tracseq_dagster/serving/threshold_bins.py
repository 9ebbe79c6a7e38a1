"""Where a value falls among a feature's split thresholds: what both tree kernels compare instead of floats."""

from __future__ import annotations

import numba
import numpy as np

#: LightGBM's kZeroThreshold (1e-35 as a float): its predictor reads any smaller magnitude as 0.0.
ZERO_THRESHOLD = float(np.float32(1e-35))


@numba.njit(inline="always")
def cuts_below(cuts, cut_count, j, value, zero):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    """How many of feature ``j``'s thresholds (``cuts[j]``, ascending, ``cut_count[j]`` of them) lie
    below ``value``, a magnitude up to ``zero`` read as 0 (LightGBM's ``ZERO_THRESHOLD``; 0.0 for
    models that read values as they are): ``value <= cuts[j, k]`` exactly when that count is at
    most ``k``. Not for NaN."""
    if abs(value) <= zero:
        value = 0.0
    low, high = 0, cut_count[j]
    while low < high:
        middle = (low + high) >> 1
        if cuts[j, middle] < value:
            low = middle + 1
        else:
            high = middle
    return low


#: Below this many rows the compiled kernels run on the calling thread: waking numba's thread
#: pool costs more than walking a micro-batch.
PARALLEL_ROWS = 1024

#: ``bin_rows`` pads its rows with zeros (NaN's bin) to a multiple of this: the kernels' blocks divide it.
PAD_ROWS = 64


@numba.njit(cache=True, nogil=True)
def bin_rows(x, cuts, cut_count, zero):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    """uint16 (rows rounded up to ``PAD_ROWS``, features): 0 for NaN, else 1 + ``cuts_below``.
    A split ``x <= cuts[j, k]`` is then ``bin <= k + 1``, and NaN is below every limit."""
    n, width = x.shape
    bins = np.zeros(((n + PAD_ROWS - 1) // PAD_ROWS * PAD_ROWS, width), dtype=np.uint16)
    for r in range(n):
        for j in range(width):
            value = x[r, j]
            if not np.isnan(value):
                bins[r, j] = cuts_below(cuts, cut_count, j, value, zero) + 1
    return bins
