"""Split-conformal prediction intervals for the catalog's regression models.

A regression answer is ``prediction ± half_width``: the half-width is measured once, at
registration, on holdout rows the model never trained on (``training.register_winner``), kept
as a tag of the registered version and packed with the model into the Bento. Plain numpy, so
the model modules and the serving code can import it without the training engine.
"""

from __future__ import annotations

import math

import numpy as np

#: Share of true values an interval is meant to hold, unless a model declares another.
DEFAULT_COVERAGE = 0.9
#: Tags of a registered regressor's version: its half-width and the coverage it was measured for.
INTERVAL_HALF_WIDTH_TAG = "interval_half_width"
INTERVAL_COVERAGE_TAG = "interval_coverage"


def conformal_half_width(actual: np.ndarray, predicted: np.ndarray, coverage: float = DEFAULT_COVERAGE) -> float:
    """Split-conformal half-width: the ceil((n+1)·coverage)/n quantile of absolute errors on calibration rows.

    With exchangeable rows, ``prediction ± half_width`` then holds the truth with probability
    at least ``coverage`` (Lei et al., 2018); the finite-sample correction matters for small n.
    """
    errors = np.sort(np.abs(np.asarray(actual, dtype=float) - np.asarray(predicted, dtype=float)))
    if len(errors) == 0:
        raise ValueError("a conformal interval needs calibration rows")
    rank = min(len(errors), math.ceil((len(errors) + 1) * coverage))
    return float(errors[rank - 1])
