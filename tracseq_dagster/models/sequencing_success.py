"""``sequencing_success``: will this sample's sequencing run pass QC? Predicted at its library prep.

One row per (run, sample): the sample's point-in-time features as of its ``library_prep_ts``
plus the run context known then (the instrument's and the library kit's recent failures, the
sequencing queue, the instrument's load, whether this is a re-run); see
:mod:`tracseq_dagster.run_features` for every feature and its point-in-time rule. The label,
``run_status``, becomes known at ``run_end_ts``, after the prediction time by construction.

Rows of one sample (a sample sequenced again after a failure) are held out together, so the
gate never scores a re-run whose first run the model trained on. The gate looks at each
instrument: a challenger that is better overall but worse on one instrument is not promoted.
"""

from __future__ import annotations

import pandas as pd

from tracseq_dagster.features import FEATURE_CODE_VERSION
from tracseq_dagster.lake import Lake
from tracseq_dagster.models.spec import HOLDOUT_GROUP, ModelSpec
from tracseq_dagster.run_features import SEQUENCING_SUCCESS_FEATURE_NAMES, SEQUENCING_SUCCESS_LABEL, sequencing_success_frame

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
    feature_code_version=FEATURE_CODE_VERSION,
)
