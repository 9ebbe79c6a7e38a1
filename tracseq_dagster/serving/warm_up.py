"""Real training rows packed in a bundle, scored once at load: every kernel compiled before the first request.

The compiled scorers choose their kernel by batch size: a node walk below
``BITVECTOR_MIN_ROWS`` rows, the leaf bit vectors from there, and the parallel variants of
both from ``PARALLEL_ROWS``. numba compiles a kernel the first time it is called (a few
seconds each), and the one-time checks against the model's own answers run on the first
batch. Left to the traffic, that happened in the middle of serving: the first burst that
micro-batched 32 requests stalled its worker for seconds while the bit-vector kernel
compiled, and every request queued behind it (a 1.7 s p99 at 1,000 requests/s, measured).

So the bundle carries up to ``WARM_UP_ROWS`` rows of the model's own training features, and
the predictor scores them at load in the sizes that select each kernel, largest first (the
checks then run on real, varied rows, as they would on the first real batch). The service
reports ready only after that.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from tracseq_dagster.serving.compiled_trees import BITVECTOR_MIN_ROWS
from tracseq_dagster.serving.threshold_bins import PARALLEL_ROWS

WARM_UP_FILE = "warm_up.parquet"
#: Enough rows for the parallel kernels (``PARALLEL_ROWS``) and the one-time checks.
WARM_UP_ROWS = PARALLEL_ROWS
#: Batch sizes that select, in turn, the parallel kernels, the serial bit vectors and the serial node walk.
WARM_UP_SIZES = (WARM_UP_ROWS, BITVECTOR_MIN_ROWS, 1)


class _Scorer(Protocol):
    def score(self, features: pd.DataFrame) -> Any: ...


def write_warm_up_rows(features: pd.DataFrame, columns: Iterable[str], folder: Path, seed: int = 0) -> int:
    """Save up to ``WARM_UP_ROWS`` rows of ``features`` (only ``columns``) into ``folder``; the rows written."""
    columns = list(columns)
    if features.empty:
        return 0
    rows = features[columns].sample(n=min(len(features), WARM_UP_ROWS), random_state=seed)
    rows.reset_index(drop=True).to_parquet(folder / WARM_UP_FILE, index=False)
    return len(rows)


def warm_up(scorers: Iterable[_Scorer], folder: Path) -> float:
    """Score the bundle's warm-up rows with each scorer in every kernel-selecting size; seconds spent.

    A bundle without warm-up rows (packed before they existed) is served cold, as before.
    """
    path = folder / WARM_UP_FILE
    if not path.exists():
        return 0.0
    started = time.perf_counter()
    rows = pd.read_parquet(path)
    if len(rows) < WARM_UP_ROWS:  # a small training set: repeat its rows up to the parallel kernels' size
        rows = rows.iloc[np.resize(np.arange(len(rows)), WARM_UP_ROWS)].reset_index(drop=True)
    for scorer in scorers:
        for size in WARM_UP_SIZES:
            scorer.score(rows.iloc[:size])
    return time.perf_counter() - started
