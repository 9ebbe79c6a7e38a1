"""``sample_quality``: will a sample pass QC? (pass / borderline / fail), predicted for each sample.

The first model of the catalog. It learns ``qc_status`` from the point-in-time sample
features of :mod:`tracseq_dagster.features`, exactly as the offline store (the
``sample_features`` asset) holds them: each sample as of its own ``label_ts``, the moment
just before its QC label becomes known, with operator and site failure rates from labels
known strictly before that moment.

Serving: the default request (the sample record) and features (the sample features, as of
now); recommendations are the bench actions of :mod:`tracseq_dagster.serving.advice`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from tracseq_dagster.features import FEATURE_CODE_VERSION, FEATURE_NAMES, FEATURE_SPECS, LABEL_COLUMN, SAMPLE_ID
from tracseq_dagster.lake import Lake
from tracseq_dagster.models.spec import ModelSpec, ServingSpec
from tracseq_dagster.training_set import TrainingSet, build_training_set


def labelled_rows_from_features(features: pd.DataFrame) -> pd.DataFrame:
    """The labelled rows of a ``sample_features`` table: features and ``qc_status``, by ``sample_id``."""
    missing = [c for c in (SAMPLE_ID, LABEL_COLUMN, *FEATURE_NAMES) if c not in features.columns]
    if missing:
        raise ValueError(f"the feature table lacks {', '.join(missing)}: rebuild sample_features")
    labelled = features[features[LABEL_COLUMN].notna()]
    frame = labelled.set_index(SAMPLE_ID)[[*FEATURE_NAMES, LABEL_COLUMN]]
    return frame.assign(**{LABEL_COLUMN: frame[LABEL_COLUMN].astype(str)})


def labelled_samples(lake: Lake) -> pd.DataFrame:
    return labelled_rows_from_features(lake.read_features())


def recommend(factors: list[str], record: Mapping[str, Any], features: Mapping[str, Any]) -> list[str]:
    """The bench actions of the ``/predict`` route (:func:`tracseq_dagster.serving.advice.recommendations`)."""
    from tracseq_dagster.serving.advice import RiskFactor, recommendations

    return recommendations([RiskFactor(f, None, "", 0.0) for f in factors], record, features)


MODEL = ModelSpec(
    name="sample_quality",
    description="Will the sample pass QC? Probabilities of pass, borderline and fail, with risk factors.",
    label=LABEL_COLUMN,
    label_known_at="when QC is done on the last processing step the sample reached: "
    "coalesce(sequencing_ts, extraction_ts, received_ts)",
    entity=(SAMPLE_ID,),
    predicted_at="label_ts, the instant just before the label is known (training); any instant at serving",
    features=FEATURE_NAMES,
    labelled_rows=labelled_samples,
    sources=("sample_features",),
    slice_column="sample_type",
    feature_code_version=FEATURE_CODE_VERSION,
    serving=ServingSpec(recommend=recommend, feature_specs=FEATURE_SPECS),
)


def training_set_from_features(features: pd.DataFrame, export_hashes: tuple[str, ...] = ()) -> TrainingSet:
    """This model's training set straight from a ``sample_features`` table (tests, notebooks)."""
    return build_training_set(MODEL, labelled_rows_from_features(features), export_hashes)
