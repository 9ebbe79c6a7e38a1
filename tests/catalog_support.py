"""Catalog bundles for the serving tests: models of each catalog entry fitted on generated data
(one quick fit, no sweep, no registry) and packed the way the Bento packs them."""

from __future__ import annotations

import json
import pickle
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from serving_support import recent_samples

from tracseq_dagster.automl import fit_final, prepare_problem
from tracseq_dagster.conformal import conformal_half_width
from tracseq_dagster.models import get_model
from tracseq_dagster.models.spec import ModelSpec
from tracseq_dagster.registry import CHALLENGER, CHAMPION
from tracseq_dagster.run_generator import generate_runs
from tracseq_dagster.serving.bundle import ModelCard
from tracseq_dagster.serving.catalog_bundle import (
    CATALOG_FOLDER,
    CatalogBundle,
    ModelBundleInfo,
    pack_model_bundle,
    write_catalog,
)
from tracseq_dagster.training import SweepSettings, automl_config
from tracseq_dagster.training_set import build_training_set


def generated_lab(rows: int = 2500, seed: int = 21) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Samples of the last months and their sequencing runs."""
    samples = recent_samples(rows, seed=seed)
    return samples, generate_runs(samples, seed=seed)


def fit(spec: ModelSpec, rows: pd.DataFrame, family: str) -> tuple[Any, float | None]:
    """One fit of ``family`` on ``rows`` (default hyperparameters) and, for a regressor, its holdout half-width."""
    training_set = build_training_set(spec, rows)
    config = automl_config(SweepSettings(time_budget_s=5, max_trials=1, cv_folds=2), family=family, storage=None,
                           training_set=training_set)  # fmt: skip
    problem = prepare_problem(training_set.frame, config, holdout=training_set.holdout, groups=training_set.groups)
    model, _ = fit_final(problem, family, {}, 0)
    if hasattr(model, "classes_"):
        return model, None
    holdout = training_set.holdout_frame()
    predicted = model.predict(holdout.drop(columns=[spec.label]))
    return model, conformal_half_width(holdout[spec.label].to_numpy(), predicted, spec.serving.interval_coverage)


def pack(bundle_dir: Path, name: str, rows: pd.DataFrame, samples: pd.DataFrame, runs: pd.DataFrame | None,
         families: tuple[str, ...] = ("logistic",)) -> None:  # fmt: skip
    """Fit ``name`` (champion: the first family; challenger: the second, if any) and pack it into ``bundle_dir``."""
    spec = get_model(name)
    folder = bundle_dir / CATALOG_FOLDER / name
    cards = {}
    for version, (alias, family) in enumerate(zip((CHAMPION, CHALLENGER), families, strict=False), start=1):
        model, half_width = fit(spec, rows, family)
        (folder / alias).mkdir(parents=True, exist_ok=True)
        (folder / alias / "model.pkl").write_bytes(pickle.dumps(model))
        interval = None if half_width is None else {"half_width": half_width, "coverage": spec.serving.interval_coverage}
        cards[alias] = ModelCard(name, str(version), alias, family, f"run-{version}", {}, spec.feature_code_version, "", len(rows),
                                 interval=interval)  # fmt: skip
        (folder / alias / "card.json").write_text(json.dumps(asdict(cards[alias])))
    pack_model_bundle(spec, cards, samples, runs, rows, folder)
    packed = sorted(p for p in (bundle_dir / CATALOG_FOLDER).iterdir() if (p / "bundle.json").exists())
    write_catalog(CatalogBundle(served={p.name: ModelBundleInfo.load(p / "bundle.json") for p in packed}), bundle_dir)


def pack_catalog(bundle_dir: Path, samples: pd.DataFrame, runs: pd.DataFrame, families: dict[str, tuple[str, ...]]) -> Path:
    """Each model of ``families`` fitted on its labelled rows of the lab and packed into ``bundle_dir``, as the Bento packs them."""
    from tracseq_dagster.features import compute_features
    from tracseq_dagster.models import sequencing_success, turnaround_hours
    from tracseq_dagster.models.sample_quality import labelled_rows_from_features

    for name, chosen in families.items():
        if name == "sample_quality":
            features = compute_features(samples, samples, as_of=None).reset_index()
            pack(bundle_dir, name, labelled_rows_from_features(features), samples, None, chosen)
        else:
            module = {"sequencing_success": sequencing_success, "turnaround_hours": turnaround_hours}[name]
            pack(bundle_dir, name, module.labelled_rows_from_exports(samples, runs), samples, runs, chosen)
    return bundle_dir


def records_of(frame: pd.DataFrame, columns: tuple[str, ...]) -> list[dict[str, Any]]:
    """Rows as the JSON a LIMS would post: the request columns only, ISO timestamps, null for missing."""
    part = frame[[c for c in columns if c in frame.columns]]
    return json.loads(part.to_json(orient="records", date_format="iso"))


def close(a: float, b: float) -> bool:
    return bool(np.isclose(a, b, atol=1e-6))
