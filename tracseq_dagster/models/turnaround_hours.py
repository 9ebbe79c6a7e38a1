"""``turnaround_hours``: hours from a sample's receipt to the end of its first sequencing run, predicted at receipt.

One row per sample, computed as of its ``received_ts`` from what the lab knew then: the
sequencing queue (samples received and not yet sequenced), recent arrivals, runs in
progress, recent turnarounds (overall and for the sample's priority), and the sample's
priority, type, site, weekday and hour of receipt (see :mod:`tracseq_dagster.run_features`).
The label becomes known when the first run ends.

Answers carry a split-conformal prediction interval (:func:`conformal_half_width`): the
``INTERVAL_COVERAGE`` quantile of absolute errors on rows the model never trained on, so
that about that share of true turnarounds falls inside ``prediction ± half_width``.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from tracseq_dagster.features import FEATURE_CODE_VERSION
from tracseq_dagster.lake import Lake
from tracseq_dagster.models.spec import ModelSpec
from tracseq_dagster.run_features import SAMPLE_ID, TURNAROUND_FEATURE_NAMES, TURNAROUND_LABEL, turnaround_frame

#: Share of true turnarounds the prediction interval is meant to hold.
INTERVAL_COVERAGE = 0.9


def labelled_rows_from_exports(samples: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """The samples whose first run has ended: features at receipt and the hours it took."""
    frame = turnaround_frame(samples, runs)
    frame = frame[frame[TURNAROUND_LABEL].notna()]
    return frame[[*TURNAROUND_FEATURE_NAMES, TURNAROUND_LABEL]].astype({TURNAROUND_LABEL: "float64"})


def labelled_samples(lake: Lake) -> pd.DataFrame:
    return labelled_rows_from_exports(lake.read_validated(), lake.read_validated_runs())


def conformal_half_width(actual: np.ndarray, predicted: np.ndarray, coverage: float = INTERVAL_COVERAGE) -> float:
    """Split-conformal half-width: the ceil((n+1)·coverage)/n quantile of absolute errors on calibration rows.

    With exchangeable rows, ``prediction ± half_width`` then holds the truth with probability
    at least ``coverage`` (Lei et al., 2018); the finite-sample correction matters for small n.
    """
    errors = np.sort(np.abs(np.asarray(actual, dtype=float) - np.asarray(predicted, dtype=float)))
    if len(errors) == 0:
        raise ValueError("a conformal interval needs calibration rows")
    rank = min(len(errors), math.ceil((len(errors) + 1) * coverage))
    return float(errors[rank - 1])


MODEL = ModelSpec(
    name="turnaround_hours",
    description="Hours from receipt to the end of the first sequencing run, predicted at receipt, with an interval.",
    label=TURNAROUND_LABEL,
    label_known_at="run_end_ts of the sample's first completed run",
    entity=(SAMPLE_ID,),
    predicted_at="received_ts (at receipt)",
    features=TURNAROUND_FEATURE_NAMES,
    labelled_rows=labelled_samples,
    sources=("sample_features", "validated_runs"),
    task="regression",
    metric="mae",
    slice_column="priority",
    feature_code_version=FEATURE_CODE_VERSION,
)
