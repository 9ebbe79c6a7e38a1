"""Per-model feature tables: a catalog model whose features are its own (computed as of its own
prediction time, not the sample's) gets a feature view over a table of its rows.

``sequencing_success`` (one row per run and sample, as of the library prep) and
``turnaround_hours`` (one row per sample, as of its receipt) are computed by
:mod:`tracseq_dagster.run_features`, which already keys its feature specs by these model names
(``MODEL_FEATURE_SPECS``); ``freezer_excursion_risk`` (one row per freezer and day, as of the
day's end) by its model module. Each table holds the entity columns, ``as_of`` (the prediction
time, Feast's event timestamp), every feature, the label and ``label_ts``, and the holdout group
when the model has one (it travels with the entity rows of a point-in-time join, so training
through Feast holds out what training from the lake does). A model of the catalog whose
features are the sample features needs no table: its service reads the ``sample_features`` view.

This mapping is the one place a new model with features of its own is wired into the store;
the lead may prefer a ``ModelSpec.feature_rows`` hook in the catalog instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from tracseq_dagster.models import freezer_excursion_risk
from tracseq_dagster.run_features import sequencing_success_frame, turnaround_frame

#: The timestamp column of every model table (each row's prediction time).
PREDICTION_TIME = "as_of"


@dataclass(frozen=True)
class ModelTable:
    """How a model's table is built from (accepted samples, accepted runs), entity columns as columns."""

    build: Callable[[pd.DataFrame, pd.DataFrame], pd.DataFrame]
    needs_runs: bool = True  # the run models' features need both exports


MODEL_TABLES: dict[str, ModelTable] = {
    "sequencing_success": ModelTable(lambda samples, runs: sequencing_success_frame(samples, runs).reset_index()),
    "turnaround_hours": ModelTable(lambda samples, runs: turnaround_frame(samples, runs).reset_index()),
    "freezer_excursion_risk": ModelTable(lambda samples, runs: freezer_excursion_risk.feature_table(samples), needs_runs=False),
}


def model_table_path(lake_dir: str | Path, model: str) -> Path:
    return Path(lake_dir) / "feast" / "models" / f"{model}.parquet"
