"""``turnaround_hours``: hours from a sample's receipt to the end of its first sequencing run, predicted at receipt.

One row per sample, computed as of its ``received_ts`` from what the lab knew then: the
sequencing queue (samples received and not yet sequenced), recent arrivals, runs in
progress, recent turnarounds (overall and for the sample's priority), and the sample's
priority, type, site, weekday and hour of receipt (see :mod:`tracseq_dagster.run_features`).
The label becomes known when the first run ends.

Answers carry a split-conformal prediction interval (:func:`conformal_half_width`): the
``INTERVAL_COVERAGE`` quantile of absolute errors on rows the model never trained on, so
that about that share of true turnarounds falls inside ``prediction ± half_width``.

Serving: a request is the sample record, predicted as of its ``received_ts`` with
:func:`turnaround_frame` against the samples and runs packed into the Bento; factors that
lengthen the turnaround are worded as the lab says them ("42 extracted samples wait for their
first run").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from tracseq_dagster import conformal
from tracseq_dagster.features import SAMPLE_ID
from tracseq_dagster.lake import Lake
from tracseq_dagster.models.spec import ModelSpec, ServingRows, ServingSpec, distinct_actions
from tracseq_dagster.run_features import (
    RUN_FEATURE_CODE_VERSION,
    TURNAROUND_FEATURE_NAMES,
    TURNAROUND_FEATURE_SPECS,
    TURNAROUND_LABEL,
    turnaround_frame,
)
from tracseq_dagster.run_history import RunHistorySnapshot, serving_history

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
    """This model's split-conformal half-width (:func:`tracseq_dagster.conformal.conformal_half_width`)."""
    return conformal.conformal_half_width(actual, predicted, coverage)


def serving_features(rows: ServingRows) -> pd.DataFrame:
    """Features of request samples, as of their receipt, against the history snapshot
    (``rows.history``) when every receipt is after its cutoff, else the packed samples and runs."""
    requests = rows.requests.reset_index(drop=True)
    history_runs, history_samples = serving_history(rows.history, rows.samples, rows.runs, rows.as_of)
    frame = turnaround_frame(requests, history_runs, history_samples=history_samples, as_of=rows.as_of.to_numpy())
    return frame.reindex(requests[SAMPLE_ID].astype("string"))[list(TURNAROUND_FEATURE_NAMES)].reset_index(drop=True)


def _number(value: Any, digits: int = 0) -> str:
    return "?" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:.{digits}f}"


def word_factor(feature: str, record: Mapping[str, Any], features: Mapping[str, Any]) -> str | None:
    """What lengthens this sample's turnaround, in the lab's words."""
    words = {
        "sequencing_queue": f"{_number(features.get('sequencing_queue'))} extracted samples wait for their first run",
        "sequencing_queue_days": f"the sequencing queue is about {_number(features.get('sequencing_queue_days'), 1)} days long at the recent pace",
        "arrivals_7d": f"{_number(features.get('arrivals_7d'))} samples arrived in the last 7 days",
        "runs_in_progress": f"{_number(features.get('runs_in_progress'))} runs are in progress",
        "recent_median_turnaround_hours": f"recent samples took {_number(features.get('recent_median_turnaround_hours'))} h (median)",
        "priority_recent_median_turnaround_hours": f"recent {record.get('priority')} samples took "
        f"{_number(features.get('priority_recent_median_turnaround_hours'))} h (median)",
        "priority": f"priority {record.get('priority')}",
        "site": f"sent from {record.get('site')}",
    }
    return words.get(feature)


def recommend(factors: list[str], record: Mapping[str, Any], features: Mapping[str, Any]) -> list[str]:
    """What can shorten the wait, for the factors that allow it."""

    def action(feature: str) -> str | None:
        if feature in ("sequencing_queue", "sequencing_queue_days", "runs_in_progress", "arrivals_7d"):
            return "Tell the requester to expect a delay, or mark the sample urgent if it cannot wait."
        if feature == "priority" and record.get("priority") != "urgent":
            return "Mark the sample urgent if the result is needed sooner."
        return None

    return distinct_actions(action(feature) for feature in factors)


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
    feature_code_version=RUN_FEATURE_CODE_VERSION,
    serving=ServingSpec(
        features=serving_features,
        needs_runs=True,
        history_snapshot=RunHistorySnapshot.build,
        prediction_time="received_ts",
        interval_coverage=INTERVAL_COVERAGE,
        minimum=0.0,
        factor_wording=word_factor,
        recommend=recommend,
        feature_specs=TURNAROUND_FEATURE_SPECS,
    ),
)
