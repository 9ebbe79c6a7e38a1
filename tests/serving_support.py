"""A registry with a real champion and the serving bundle made from it, for the serving tests."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import pandas as pd

from tracseq_dagster.automl import prepare_study_storage
from tracseq_dagster.features import compute_features
from tracseq_dagster.generator import generate_samples
from tracseq_dagster.models.sample_quality import training_set_from_features
from tracseq_dagster.promotion import GatePolicy
from tracseq_dagster.registry import ModelRegistry
from tracseq_dagster.tracking import ensure_experiment, open_client, parent_run
from tracseq_dagster.training import SweepSettings, rank_families, register_winner, run_promotion_gate, sweep_one_family

optuna.logging.set_verbosity(optuna.logging.WARNING)
#: Lenient enough that any trained model is promoted: the tests are about serving, not the gate.
PROMOTE_ANY = GatePolicy(min_improvement=-1.0, max_slice_regression=1.0, max_brier=2.0, max_ece=1.0)


@dataclass
class TrainedRegistry:
    registry: ModelRegistry
    samples: pd.DataFrame  # every accepted sample (the history)
    features: pd.DataFrame  # the offline feature table
    uri: str
    folder: Path

    def train(self, family: str, run: str, *, promote: bool = True) -> str:
        """Sweep one family briefly, register it as challenger, and (by default) promote it."""
        client = self.registry.client
        experiment = ensure_experiment(client, "sample_quality", (self.folder / "artifacts").as_uri())
        storage = f"sqlite:///{self.folder / 'optuna.db'}"
        prepare_study_storage(storage)
        training_set = training_set_from_features(self.features, ("export-a",))
        parent = parent_run(client, experiment, run)
        outcome = sweep_one_family(training_set, family, SweepSettings(time_budget_s=15, max_trials=2, cv_folds=3),
                                   storage=storage, client=client, experiment_id=experiment, parent_run_id=parent,
                                   dagster_run_id=run)  # fmt: skip
        ranked = rank_families([outcome], training_set.fingerprint)
        registered = register_winner(training_set, ranked[0], ranked, seed=0, storage=storage, registry=self.registry,
                                     experiment_id=experiment, parent_run_id=parent, dagster_run_id=run)  # fmt: skip
        if promote:
            run_promotion_gate(training_set, PROMOTE_ANY, registry=self.registry, metric="roc_auc_ovr",
                               experiment_id=experiment, parent_run_id=parent, dagster_run_id=run)  # fmt: skip
        return registered.version


def recent_samples(rows: int, seed: int, id_offset: int = 0) -> pd.DataFrame:
    """Generated samples of the last months, so that "now" is a realistic moment to score them."""
    start = pd.Timestamp.now(tz="UTC").normalize() - pd.Timedelta(days=400)
    return generate_samples(rows, seed=seed, start=start, id_offset=id_offset)


def trained_registry(folder: Path, rows: int = 2500) -> TrainedRegistry:
    folder.mkdir(parents=True, exist_ok=True)
    samples = recent_samples(rows, seed=21)
    features = compute_features(samples, samples, as_of=None).reset_index()
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    return TrainedRegistry(ModelRegistry(open_client(uri), "sample_quality"), samples, features, uri, folder)


def request_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Sample rows as the JSON a LIMS would post (no label)."""
    return json.loads(frame.drop(columns=["qc_status"]).to_json(orient="records", date_format="iso"))
