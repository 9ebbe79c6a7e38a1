"""The platform's training builds the families' ensemble after their sweeps, registers it only when it
wins on the holdout, and records the choice; the registry and the gate treat it like any model."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import optuna
import pandas as pd
import pytest

from tracseq_dagster.automl import fit_final, prepare_problem
from tracseq_dagster.automl.ensemble import WeightedEnsemble
from tracseq_dagster.automl.out_of_fold import OutOfFold, aligned
from tracseq_dagster.evaluation import Evaluation, evaluate
from tracseq_dagster.promotion import GatePolicy
from tracseq_dagster.registry import CHAMPION, ModelRegistry
from tracseq_dagster.tracking import ensure_experiment, fluent_api, open_client, parent_run
from tracseq_dagster.training import (
    SweepSettings,
    automl_config,
    rank_families,
    register_winner,
    run_promotion_gate,
    sweep_one_family,
)
from tracseq_dagster.training_ensemble import choose_model
from tracseq_dagster.training_set import TrainingSet, frame_fingerprint, stable_holdout

optuna.logging.set_verbosity(optuna.logging.WARNING)
FAMILIES = ("logistic", "lightgbm")
PROMOTE_ANY = GatePolicy(min_improvement=-1.0, max_slice_regression=1.0, max_brier=2.0, max_ece=1.0)


def linear_plus_interaction(rows: int = 2_500, seed: int = 0, *, regression: bool = False) -> TrainingSet:
    """A label driven by an additive part over ten features (the linear family's strength: trees
    need many splits for it) and an interaction (the boosters': invisible to a linear model),
    balanced so that the two families score alike with different errors: their average wins
    (out of fold: AUC 0.946 against 0.940; on the holdout: 0.939 against 0.933, measured; as a
    regression of the signal itself: holdout rmse 1.33 against the CV winner's 1.42)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 12))
    signal = x[:, :10].sum(axis=1) * (3 / np.sqrt(10)) + np.sign(x[:, 10] * x[:, 11]) + rng.normal(0, 1, rows)
    ids = pd.Index([f"row-{i}" for i in range(rows)], name="id")
    frame = pd.DataFrame(x, columns=[f"x{i}" for i in range(12)], index=ids)
    frame["qc"] = signal if regression else np.where(signal > 0, "pass", "fail")
    holdout = pd.Series(stable_holdout(frame.index), index=frame.index, name="holdout")
    return TrainingSet("toy_ensemble", "qc", None, "auto", None, frame, holdout, ("export-a",), "v1", frame_fingerprint(frame))


def _sweep_every_family(training_set, client, experiment: str, parent: str, folder: Path, run_id: str) -> list:  # type: ignore[no-untyped-def, type-arg]
    """Each of FAMILIES swept as an automl_trials partition sweeps it, its out-of-fold predictions kept in ``folder``."""
    settings = SweepSettings(time_budget_s=20, max_trials=4, cv_folds=3)
    return [
        sweep_one_family(
            training_set,
            f,
            settings,
            storage=None,
            client=client,
            experiment_id=experiment,
            parent_run_id=parent,
            dagster_run_id=run_id,
            oof_path=folder / f"{f}.oof.npz",
        )  # fmt: skip
        for f in FAMILIES
    ]


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> dict:  # type: ignore[type-arg]
    """Both families swept as the automl_trials partitions sweep them, out-of-fold predictions kept."""
    folder = tmp_path_factory.mktemp("ensemble")
    client = open_client(f"sqlite:///{folder / 'mlflow.db'}")
    experiment = ensure_experiment(client, "toy_ensemble", (folder / "artifacts").as_uri())
    training_set = linear_plus_interaction()
    parent = parent_run(client, experiment, "sweep-run")
    outcomes = _sweep_every_family(training_set, client, experiment, parent, folder, "sweep-run")
    return {"client": client, "experiment": experiment, "training_set": training_set, "outcomes": outcomes, "folder": folder}


def test_sweeps_keep_their_best_trials_out_of_fold_predictions(swept) -> None:  # type: ignore[no-untyped-def]
    training_set = swept["training_set"]
    parts = [OutOfFold.load(Path(o.oof_path)) for o in swept["outcomes"]]
    assert [p.family for p in parts] == list(FAMILIES) and {p.fingerprint for p in parts} == {training_set.fingerprint}
    train_rows = int((~training_set.holdout).sum())
    for part, outcome in zip(parts, swept["outcomes"], strict=True):
        assert part.predictions.shape == (train_rows, 2)  # every training row once, class probabilities
        np.testing.assert_allclose(part.predictions.sum(axis=1), 1.0, atol=1e-9)
        # no holdout row among them, and each row's label is its own
        assert not training_set.holdout.to_numpy()[part.index].any()
        labels = training_set.frame["qc"].to_numpy()[part.index]
        assert set(zip(labels, part.y, strict=True)) == {("fail", 0), ("pass", 1)}
        # the saved predictions are the family's best trial's: they score its CV mean (per fold) closely
        from sklearn.metrics import roc_auc_score

        assert roc_auc_score(part.y, part.predictions[:, 1]) == pytest.approx(outcome.leaderboard["cv_mean"], abs=0.02)
    predictions, y = aligned(parts[::-1])
    assert len(y) == train_rows and predictions[0].shape == predictions[1].shape


def test_registration_keeps_the_ensemble_when_it_wins_on_the_holdout(swept) -> None:  # type: ignore[no-untyped-def]
    client, experiment, training_set = swept["client"], swept["experiment"], swept["training_set"]
    registry = ModelRegistry(client, "toy_ensemble")
    ranked = rank_families(swept["outcomes"], training_set.fingerprint)
    parent = parent_run(client, experiment, "register-run")
    registered = register_winner(training_set, ranked[0], ranked, seed=0, storage=None, registry=registry,
                                 experiment_id=experiment, parent_run_id=parent, dagster_run_id="register-run")  # fmt: skip
    choice = registered.ensemble
    assert choice is not None and choice["chosen"], choice
    assert registered.family == "ensemble" and set(choice["weights"]) == set(FAMILIES)
    assert sum(choice["weights"].values()) == pytest.approx(1.0)
    assert choice["ensemble_holdout"] > choice["single_holdout"] and choice["single_family"] == ranked[0].family
    assert registered.evaluation["score"] == pytest.approx(choice["ensemble_holdout"])
    assert choice["ensemble_oof"] > choice["single_oof"]

    # MLflow: tags, metrics, parameters and the choice as an artifact on the registered run and version.
    run = client.get_run(registered.mlflow_run_id)
    assert run.data.tags["family"] == "ensemble" and run.data.tags["ensemble_chosen"] == "true"
    assert json.loads(run.data.tags["ensemble_weights"]) == pytest.approx(choice["weights"], abs=1e-6)
    assert run.data.metrics["ensemble_holdout_score"] == pytest.approx(choice["ensemble_holdout"])
    assert run.data.metrics["single_holdout_score"] == pytest.approx(choice["single_holdout"])
    assert {f"weight.{f}" for f in FAMILIES} <= set(run.data.params)
    logged = mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/ensemble_choice.json")
    assert logged["chosen"] is True and logged["weights"] == pytest.approx(choice["weights"])
    version = client.get_model_version("toy_ensemble", registered.version)
    assert version.tags["family"] == "ensemble" and version.tags["ensemble_chosen"] == "true"

    # The registry and the gate treat it like any model: loaded back, it is the ensemble and scores the same.
    with fluent_api(client):
        loaded = mlflow.sklearn.load_model(registered.model_uri)
    assert isinstance(loaded.estimator_, WeightedEnsemble) and len(loaded.estimator_.members) == 2
    again = evaluate(loaded, training_set.holdout_frame(), "qc", registered.evaluation["metric"], None)
    assert again.score == pytest.approx(choice["ensemble_holdout"])
    gate = run_promotion_gate(training_set, PROMOTE_ANY, registry=registry, metric=registered.evaluation["metric"],
                              experiment_id=experiment, parent_run_id=parent, dagster_run_id="register-run")  # fmt: skip
    assert gate.promoted and str(registry.version(CHAMPION).version) == registered.version  # type: ignore[union-attr]


def test_the_ensemble_can_be_switched_off(swept) -> None:  # type: ignore[no-untyped-def]
    client, experiment, training_set = swept["client"], swept["experiment"], swept["training_set"]
    registry = ModelRegistry(client, "toy_ensemble_off")
    ranked = rank_families(swept["outcomes"], training_set.fingerprint)
    registered = register_winner(training_set, ranked[0], ranked, seed=0, storage=None, registry=registry,
                                 experiment_id=experiment, parent_run_id=parent_run(client, experiment, "off"),
                                 dagster_run_id="off", ensemble=False)  # fmt: skip
    assert registered.ensemble is None and registered.family == ranked[0].family
    assert "ensemble_chosen" not in client.get_run(registered.mlflow_run_id).data.tags


def test_the_winner_stays_when_the_ensemble_does_not_beat_it_on_the_holdout(swept) -> None:  # type: ignore[no-untyped-def]
    """The out-of-fold gain alone does not decide: against a winner scored perfect on the holdout
    the ensemble (built and scored) is not kept, and the record says why."""
    training_set = swept["training_set"]
    ranked = rank_families(swept["outcomes"], training_set.fingerprint)
    config = automl_config(SweepSettings(), family=ranked[0].family, storage=None, training_set=training_set)
    problem = prepare_problem(training_set.frame, config, holdout=training_set.holdout)
    winner, _ = fit_final(problem, ranked[0].family, ranked[0].best_params or {}, 0)
    perfect = Evaluation("roc_auc", True, 1.0, 500)
    model, evaluation, choice = choose_model(training_set, ranked, problem, winner, perfect, seed=0)
    assert model is winner and evaluation is perfect and not choice.chosen
    assert choice.ensemble_holdout is not None and choice.ensemble_holdout < 1.0
    assert set(choice.weights) == set(FAMILIES) and "is not better than" in choice.reason


def test_without_out_of_fold_predictions_the_winner_is_registered(swept) -> None:  # type: ignore[no-untyped-def]
    training_set = swept["training_set"]
    ranked = rank_families(swept["outcomes"], training_set.fingerprint)
    stale = [o.__class__(**{**o.__dict__, "oof_path": None}) for o in ranked]
    config = automl_config(SweepSettings(), family=ranked[0].family, storage=None, training_set=training_set)
    problem = prepare_problem(training_set.frame, config, holdout=training_set.holdout)
    _, _, choice = choose_model(training_set, stale, problem, object(), Evaluation("roc_auc", True, 0.5, 500), seed=0)
    assert not choice.chosen and not choice.weights and "fewer than two families" in choice.reason


def test_a_regression_ensemble_is_registered_with_its_conformal_interval(tmp_path: Path) -> None:
    """rmse (smaller is better) decides the same way, and the interval is the ensemble's own."""
    client = open_client(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = ensure_experiment(client, "toy_ensemble", (tmp_path / "artifacts").as_uri())
    training_set = linear_plus_interaction(regression=True)
    parent = parent_run(client, experiment, "regression")
    outcomes = _sweep_every_family(training_set, client, experiment, parent, tmp_path, "regression")
    ranked = rank_families(outcomes, training_set.fingerprint)
    registered = register_winner(training_set, ranked[0], ranked, seed=0, storage=None,
                                 registry=ModelRegistry(client, "toy_ensemble_regression"), experiment_id=experiment,
                                 parent_run_id=parent, dagster_run_id="regression")  # fmt: skip
    choice = registered.ensemble
    assert choice is not None and choice["chosen"] and registered.evaluation["metric"] == "rmse", choice
    assert choice["ensemble_holdout"] < choice["single_holdout"] and choice["ensemble_oof"] < choice["single_oof"]
    with fluent_api(client):
        loaded = mlflow.sklearn.load_model(registered.model_uri)
    assert isinstance(loaded, WeightedEnsemble)
    holdout = training_set.holdout_frame()
    residuals = np.abs(holdout["qc"].to_numpy() - loaded.predict(holdout.drop(columns=["qc"])))
    half_width = registered.evaluation["interval_half_width"]
    assert half_width is not None and np.mean(residuals <= half_width) >= 0.85  # the ensemble's own residuals
