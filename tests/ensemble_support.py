"""A sample_quality ensemble fitted by the engine's own pipelines, and a serving bundle holding it as champion."""

from __future__ import annotations

import json
import pickle
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from serving_support import recent_samples

from tracseq_dagster.automl import FAMILIES, fit_final, prepare_problem
from tracseq_dagster.automl.ensemble import WeightedEnsemble
from tracseq_dagster.automl.model import LabelDecodingClassifier
from tracseq_dagster.features import FEATURE_CODE_VERSION, FEATURE_NAMES, HistorySnapshot, compute_features
from tracseq_dagster.models.sample_quality import training_set_from_features
from tracseq_dagster.serving.bundle import BundleInfo, ModelCard
from tracseq_dagster.serving.scoring import reference_values
from tracseq_dagster.serving.warm_up import write_warm_up_rows
from tracseq_dagster.training import SweepSettings, automl_config

#: Three members whose attributions come in both units: log-odds (logistic, LightGBM) and probability (forest).
MEMBERS = {"logistic": 0.5, "lightgbm": 0.3, "random_forest": 0.2}


def fitted_ensemble(rows: int = 2000, seed: int = 5) -> dict[str, Any]:
    """Generated samples, their features, the ensemble of :data:`MEMBERS` (each at its family's
    default configuration, refit on the training rows) and the features' reference values."""
    samples = recent_samples(rows, seed=seed)
    features = compute_features(samples, samples, as_of=None).reset_index()
    training_set = training_set_from_features(features, ("export-a",))
    config = automl_config(SweepSettings(), family="logistic", storage=None, training_set=training_set)
    problem = prepare_problem(training_set.frame, config, holdout=training_set.holdout)
    pipelines = []
    for family in MEMBERS:
        decoded, _ = fit_final(problem, family, FAMILIES[family].default_params(problem.task, problem.columns), 0)
        pipelines.append(decoded.estimator_)
    ensemble = WeightedEnsemble(pipelines, list(MEMBERS.values()), problem.task)
    model = LabelDecodingClassifier.from_fitted(ensemble, np.asarray(problem.classes))
    return {"samples": samples, "features": features, "model": model, "reference": reference_values(features)}


def ensemble_bundle(folder: Path, trained: dict[str, Any], tag: str = "v7-ensemble") -> tuple[Path, BundleInfo]:
    """A serving bundle with the ensemble as champion, laid out as ``export_bundle`` writes one."""
    samples: pd.DataFrame = trained["samples"]
    (folder / "champion").mkdir(parents=True)
    (folder / "champion" / "model.pkl").write_bytes(pickle.dumps(trained["model"]))
    card = ModelCard("sample_quality", "7", "champion", "ensemble", "run", {"roc_auc_ovr": 0.8}, FEATURE_CODE_VERSION, "fp",
                     len(trained["features"]))  # fmt: skip
    (folder / "champion" / "card.json").write_text(json.dumps(asdict(card)))
    snapshot = HistorySnapshot.build(samples)
    snapshot.save(folder / "history")
    (folder / "reference.json").write_text(json.dumps(trained["reference"]))
    write_warm_up_rows(trained["features"], FEATURE_NAMES, folder)
    info = BundleInfo(tag, card, None, snapshot.cutoff.isoformat(), len(samples), "now")
    (folder / "bundle.json").write_text(json.dumps(asdict(info)))
    return folder, info
