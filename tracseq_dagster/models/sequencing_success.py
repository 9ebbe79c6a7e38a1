"""``sequencing_success``: will this sample's sequencing run pass QC? Predicted at its library prep.

One row per (run, sample): the sample's point-in-time features as of its ``library_prep_ts``
plus the run context known then (the instrument's and the library kit's recent failures, the
sequencing queue, the instrument's load, whether this is a re-run); see
:mod:`tracseq_dagster.run_features` for every feature and its point-in-time rule. The label,
``run_status``, becomes known at ``run_end_ts``, after the prediction time by construction.

Rows of one sample (a sample sequenced again after a failure) are held out together, so the
gate never scores a re-run whose first run the model trained on. The gate looks at each
instrument: a challenger that is better overall but worse on one instrument is not promoted.

Serving: a request is the sample record plus the library's run context (``instrument_id``,
``library_kit``, ``library_prep_ts``, optionally ``run_id``), predicted as of its library prep
with :func:`sequencing_success_frame` against the samples and runs packed into the Bento;
risk factors are worded as the lab says them ("instrument SEQ-02 failed 4 of the 37 libraries
of its last 20 runs").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from tracseq_dagster.features import SAMPLE_ID
from tracseq_dagster.lake import Lake
from tracseq_dagster.models import sample_quality
from tracseq_dagster.models.spec import HOLDOUT_GROUP, ModelSpec, ServingRows, ServingSpec, distinct_actions
from tracseq_dagster.run_features import (
    RUN_FEATURE_CODE_VERSION,
    RUN_ID,
    SEQUENCING_SUCCESS_FEATURE_NAMES,
    SEQUENCING_SUCCESS_FEATURE_SPECS,
    SEQUENCING_SUCCESS_LABEL,
    sequencing_success_frame,
)
from tracseq_dagster.run_history import RunHistorySnapshot, serving_history

ENTITY = ("run_id", "sample_id")


def labelled_rows_from_exports(samples: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """The labelled (run, sample) rows of accepted samples and runs, keyed ``RUN-…/TS-…``."""
    frame = sequencing_success_frame(samples, runs)
    frame = frame[frame[SEQUENCING_SUCCESS_LABEL].notna()]
    run_ids, sample_ids = (frame.index.get_level_values(level).astype(str) for level in ENTITY)
    rows = frame[[*SEQUENCING_SUCCESS_FEATURE_NAMES, SEQUENCING_SUCCESS_LABEL]].assign(
        **{SEQUENCING_SUCCESS_LABEL: frame[SEQUENCING_SUCCESS_LABEL].astype(str), HOLDOUT_GROUP: sample_ids}
    )
    return rows.set_axis(pd.Index(run_ids + "/" + sample_ids, name="/".join(ENTITY)))


def labelled_runs(lake: Lake) -> pd.DataFrame:
    return labelled_rows_from_exports(lake.read_validated(), lake.read_validated_runs())


RUN_CONTEXT = ("instrument_id", "library_kit", "library_prep_ts")


def serving_features(rows: ServingRows) -> pd.DataFrame:
    """Features of request libraries, as of their prep, against the packed samples and runs.

    A request without a ``run_id`` is a library not yet on a run: it gets a placeholder id of
    its own, so two such libraries of one sample stay two rows. Against the history snapshot
    (``rows.history``) when every prediction time is after its cutoff, else the packed frames:
    the same features either way.
    """
    requests = rows.requests.reset_index(drop=True)
    given = requests[RUN_ID] if RUN_ID in requests.columns else pd.Series(pd.NA, index=requests.index, dtype="string")
    run_ids = given.astype("string").fillna(pd.Series([f"request-{i}" for i in range(len(requests))], dtype="string"))
    runs = pd.DataFrame({RUN_ID: run_ids, SAMPLE_ID: requests[SAMPLE_ID].astype("string"),
                         **{c: requests[c] for c in RUN_CONTEXT},
                         "run_start_ts": pd.Series(pd.NaT, index=requests.index, dtype="datetime64[ns, UTC]")})  # fmt: skip
    samples = requests.drop(columns=[c for c in (*RUN_CONTEXT, RUN_ID) if c in requests.columns]).drop_duplicates(SAMPLE_ID)
    history_runs, history_samples = serving_history(rows.history, rows.samples, rows.runs, rows.as_of)
    frame = sequencing_success_frame(samples, runs, history_runs, history_samples=history_samples, as_of=rows.as_of.to_numpy())
    keys = pd.MultiIndex.from_arrays([runs[RUN_ID], runs[SAMPLE_ID]], names=[RUN_ID, SAMPLE_ID])
    return frame.reindex(keys)[list(SEQUENCING_SUCCESS_FEATURE_NAMES)].reset_index(drop=True)


def _count(value: Any) -> str:
    return "?" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:.0f}"


def word_factor(feature: str, record: Mapping[str, Any], features: Mapping[str, Any]) -> str | None:
    """The run-context factors in the lab's words; the sample's own factors keep the generic wording."""
    for who, key, what in (("instrument", "instrument_id", "instrument"), ("kit", "library_kit", "library kit")):
        if feature.startswith(f"{who}_"):
            failures, libraries, runs = (features.get(f"{who}_recent_{n}") for n in ("failures", "libraries", "runs"))
            return (f"{what} {record.get(key)} failed {_count(failures)} of the {_count(libraries)} libraries "
                    f"of its last {_count(runs)} runs")  # fmt: skip
    if feature in ("queue_length", "sequencing_queue", "sequencing_queue_days"):
        return (
            f"{_count(features.get('queue_length'))} libraries wait for a run; {_count(features.get('sequencing_queue'))} "
            f"extracted samples wait for their first run (about {features.get('sequencing_queue_days', 0):.1f} days at the recent pace)"
        )
    if feature == "instrument_load_7d":
        return f"instrument {record.get('instrument_id')} started {_count(features.get('instrument_load_7d'))} runs in the last 7 days"
    if feature in ("is_rerun", "previous_run_failures"):
        return f"a re-run: {_count(features.get('previous_run_failures'))} earlier runs of this sample failed"
    return None


def recommend(factors: list[str], record: Mapping[str, Any], features: Mapping[str, Any]) -> list[str]:
    """One action per run-context factor, then the bench actions of the sample's own factors (as sample_quality words them)."""
    actions = {
        "instrument": f"Consider another sequencer than {record.get('instrument_id')}, or have it serviced before this run.",
        "kit": f"Check the lot of library kit {record.get('library_kit')} (recent failures) or use another kit.",
        "queue": "Sequence soon: the library waits in a long queue.",
        "load": f"Spread the load: {record.get('instrument_id')} is busy this week.",
        "rerun": "Review why the earlier run failed (input amount, library QC) before sequencing again.",
    }
    kinds = {"queue_length": "queue", "sequencing_queue": "queue", "sequencing_queue_days": "queue",
             "instrument_load_7d": "load", "is_rerun": "rerun", "previous_run_failures": "rerun"}  # fmt: skip

    def action(feature: str) -> str | None:
        kind = kinds.get(feature) or next((k for k in ("instrument", "kit") if feature.startswith(f"{k}_")), None)
        return actions[kind] if kind is not None else None

    return distinct_actions([*(action(f) for f in factors), *sample_quality.recommend(factors, record, features)])


MODEL = ModelSpec(
    name="sequencing_success",
    description="Will the sample's sequencing run pass QC? P(pass) before the run, with the run context that drives it.",
    label=SEQUENCING_SUCCESS_LABEL,
    label_known_at="run_end_ts (the run's QC is done when it ends)",
    entity=ENTITY,
    predicted_at="library_prep_ts (before the run starts)",
    features=SEQUENCING_SUCCESS_FEATURE_NAMES,
    labelled_rows=labelled_runs,
    sources=("sample_features", "validated_runs"),
    task="binary",
    metric="roc_auc",
    slice_column="instrument_id",
    feature_code_version=RUN_FEATURE_CODE_VERSION,
    serving=ServingSpec(
        run_context=RUN_CONTEXT,
        optional_run_context=(RUN_ID,),
        features=serving_features,
        needs_runs=True,
        history_snapshot=RunHistorySnapshot.build,
        prediction_time="library_prep_ts",
        factor_wording=word_factor,
        recommend=recommend,
        feature_specs=SEQUENCING_SUCCESS_FEATURE_SPECS,
    ),
)
