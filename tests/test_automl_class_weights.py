"""Class weighting on imbalanced labels acts on the fitted models, not only on the sampled parameters.

``test_automl.py`` checks that ``balance_classes`` is offered to the sampler; these tests check
that a trial which drew it fits weighted models (every fold and the final refit), and that each
classification family's weighted fit really leans towards the minority class.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import optuna
import pandas as pd
import pytest
from sklearn.datasets import make_classification
from sklearn.pipeline import Pipeline

from tracseq_dagster.automl import FAMILIES, AutoMLConfig, prepare_features, run_automl
from tracseq_dagster.automl.engine import BALANCE_PARAM, _fit_all_rows, fit_final, prepare_problem
from tracseq_dagster.automl.families import Logistic
from tracseq_dagster.automl.tasks import TaskType

optuna.logging.set_verbosity(optuna.logging.WARNING)

CLASSIFIERS = ("logistic", "random_forest", "gradient_boosting", "xgboost", "lightgbm", "mlp")


def imbalanced_frame(rows: int = 1200, seed: int = 3) -> pd.DataFrame:
    """A binary target at about 9:1 with overlapping classes, so that weighting changes the fit."""
    x, y = make_classification(
        n_samples=rows, n_features=6, n_informative=3, n_redundant=1, weights=[0.9, 0.1],
        class_sep=0.6, flip_y=0.02, random_state=seed,
    )  # fmt: skip
    frame = pd.DataFrame(x, columns=[f"x{i}" for i in range(x.shape[1])])
    frame["site"] = np.where(x[:, 0] > 0, "north", "south")
    frame["label"] = y
    return frame


def _fit(family: str, frame: pd.DataFrame, balance: bool) -> Pipeline:
    x, columns = prepare_features(frame, "label")
    y = frame["label"].to_numpy()
    model = FAMILIES[family]
    params: dict[str, Any] = {
        "logistic": {"C": 1.0},
        "random_forest": {"n_estimators": 60, "max_depth": 6, "min_samples_leaf": 5, "max_features": 0.8},
        "gradient_boosting": {"learning_rate": 0.1, "max_iter": 60, "max_leaf_nodes": 15},
        "xgboost": {"n_estimators": 60, "max_depth": 3, "learning_rate": 0.1},
        "lightgbm": {"n_estimators": 60, "num_leaves": 8, "learning_rate": 0.1},
        "mlp": {"hidden_layer_sizes": (32,), "learning_rate_init": 1e-3},
    }[family]
    pipeline = model.build(params, "binary", columns, seed=0, balance=balance)
    pipeline.fit(x, y, **model.fit_params(y, "binary", balance=balance))
    return pipeline


def test_every_family_name_here_is_a_classification_family() -> None:
    assert set(CLASSIFIERS) == set(FAMILIES)


@pytest.mark.parametrize("family", CLASSIFIERS)
def test_a_weighted_fit_leans_towards_the_minority_class(family: str) -> None:
    frame = imbalanced_frame()
    x, _ = prepare_features(frame, "label")
    y = frame["label"].to_numpy()
    plain = _fit(family, frame, balance=False).predict_proba(x)[:, 1]
    weighted = _fit(family, frame, balance=True).predict_proba(x)[:, 1]
    # Unweighted, the mean minority probability sits near its 10% prior (the MLP's at 25%);
    # balanced weights treat both classes as equally frequent, which lifts it 1.8-3.9 times here.
    assert weighted.mean() > 1.5 * plain.mean(), (plain.mean(), weighted.mean())
    recall_plain = (plain[y == 1] >= 0.5).mean()
    recall_weighted = (weighted[y == 1] >= 0.5).mean()
    assert recall_weighted > recall_plain + 0.1, (recall_plain, recall_weighted)


def test_logistic_weighting_is_the_balanced_class_weight() -> None:
    frame = imbalanced_frame()
    assert _fit("logistic", frame, balance=True).named_steps["model"].class_weight == "balanced"
    assert _fit("logistic", frame, balance=False).named_steps["model"].class_weight is None
    # A logistic model with an intercept matches its training prior on average; a balanced one
    # matches the prior of equally weighted classes.
    x, _ = prepare_features(frame, "label")
    prior = frame["label"].mean()
    assert _fit("logistic", frame, balance=False).predict_proba(x)[:, 1].mean() == pytest.approx(prior, abs=0.01)
    assert _fit("logistic", frame, balance=True).predict_proba(x)[:, 1].mean() > 0.35


class _RecordingLogistic(Logistic):
    """The logistic family, noting which ``C`` was built and fitted with which weighting."""

    def __init__(self) -> None:
        self.builds: list[tuple[float, bool]] = []
        self.fits: list[tuple[int, bool]] = []

    def build(self, params: dict[str, Any], task: TaskType, columns: Any, *, seed: int, balance: bool) -> Pipeline:
        self.builds.append((params["C"], balance))
        return super().build(params, task, columns, seed=seed, balance=balance)

    def fit_params(self, y: np.ndarray, task: TaskType, *, balance: bool) -> dict[str, Any]:
        self.fits.append((len(y), balance))
        return super().fit_params(y, task, balance=balance)


def test_the_sampled_weighting_reaches_every_fold_and_the_final_model(monkeypatch: pytest.MonkeyPatch) -> None:
    family = _RecordingLogistic()
    monkeypatch.setitem(FAMILIES, "logistic", family)
    config = AutoMLConfig(target="label", families=("logistic",), max_trials=10, time_budget_s=120, cv_folds=3)
    result = run_automl(imbalanced_frame(), config)
    drawn = {t.params["C"]: t.params[BALANCE_PARAM] for t in result.trials}
    assert set(drawn.values()) == {False, True}  # both were tried, so both paths are checked below
    for c, balance in family.builds:
        assert balance == drawn[c], (c, balance, drawn[c])  # each fold fitted as its trial drew it
    assert {balance for _, balance in family.fits} == {False, True}
    final = result.model.estimator.named_steps["model"]
    assert result.best_params["C"] == final.C
    assert final.class_weight == ("balanced" if result.best_params[BALANCE_PARAM] else None)
    # Whichever the sweep picked, the final refit (and the one on all rows) honours both choices.
    problem = prepare_problem(imbalanced_frame(), config)
    for balance in (False, True):
        refit, _ = fit_final(problem, "logistic", {"C": 1.0, BALANCE_PARAM: balance}, seed=0)
        assert refit.estimator.named_steps["model"].class_weight == ("balanced" if balance else None)
        everything = _fit_all_rows(family, {"C": 1.0, BALANCE_PARAM: balance}, problem, seed=0)
        assert everything.named_steps["model"].class_weight == ("balanced" if balance else None)
