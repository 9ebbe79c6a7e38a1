"""The greedy ensemble of the families' best trials: never worse than its best member out of fold,
servable (picklable, predict / predict_proba in the user's labels), and chosen only when it wins."""

from __future__ import annotations

import pickle
from dataclasses import replace

import numpy as np
import optuna
import pandas as pd
from lightgbm import LGBMRegressor
from sklearn.datasets import load_diabetes
from sklearn.linear_model import Ridge

from tracseq_dagster.automl import AutoMLConfig, run_automl
from tracseq_dagster.automl.ensemble import WeightedEnsemble, greedy_ensemble
from tracseq_dagster.automl.tasks import METRICS

optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_greedy_selection_starts_at_the_best_member_and_averages_complementary_errors() -> None:
    rng = np.random.default_rng(0)
    y = rng.normal(size=2_000)
    noisy_a = y + rng.normal(0, 1.0, y.size)  # independent errors: their mean is better than either
    noisy_b = y + rng.normal(0, 1.0, y.size)
    bad = y + rng.normal(0, 3.0, y.size)
    rmse = METRICS["rmse"]
    weights, score = greedy_ensemble([bad, noisy_a, noisy_b], y, rmse)
    assert weights[0] == 0.0 and weights[1] > 0 and weights[2] > 0 and weights.sum() == 1.0
    assert score < min(rmse.score(y, noisy_a), rmse.score(y, noisy_b)) * 0.8
    alone, alone_score = greedy_ensemble([bad, y], y, rmse)  # a perfect member: nothing to add
    assert list(alone) == [0.0, 1.0] and alone_score == 0.0


def linear_plus_interaction(rows: int = 1_500, seed: int = 0) -> pd.DataFrame:
    """A label driven by a linear part (the linear family's strength) and an interaction (the
    boosters'): neither family alone has both, their average has."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 6))
    signal = 3 * x[:, 0] + 2 * x[:, 1] + x[:, 4] - x[:, 5] + 2 * np.sign(x[:, 2] * x[:, 3]) + rng.normal(0, 1, rows)
    frame = pd.DataFrame(x, columns=[f"x{i}" for i in range(6)])
    frame["qc"] = np.where(signal + rng.normal(0, 2, rows) > 0, "pass", "fail")
    return frame


def test_a_winning_ensemble_is_servable_in_the_users_labels() -> None:
    frame = linear_plus_interaction()
    config = AutoMLConfig(target="qc", families=("logistic", "lightgbm"), time_budget_s=20, max_trials=5)
    result = run_automl(frame, config)
    assert result.best_family == "ensemble", result.leaderboard
    assert set(result.ensemble_weights) == {"logistic", "lightgbm"}  # type: ignore[arg-type]
    assert abs(sum(result.ensemble_weights.values()) - 1.0) < 1e-9  # type: ignore[union-attr]
    single = run_automl(frame, replace(config, ensemble=False))
    assert result.holdout_score >= single.holdout_score  # chosen only when it wins on the holdout
    x = frame.drop(columns="qc")
    model = pickle.loads(pickle.dumps(result.model))
    assert set(model.predict(x.head(50))) <= {"pass", "fail"} and list(model.classes_) == ["fail", "pass"]
    proba = model.predict_proba(x.head(50))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-9)
    inner = result.model.estimator_
    assert isinstance(inner, WeightedEnsemble) and len(inner.members) == 2
    expected = sum(w * m.predict_proba(x.head(50)) for w, m in zip(inner.weights, inner.members, strict=True))
    np.testing.assert_allclose(proba, expected)


def test_regression_ensemble_predicts_the_weighted_mean_of_its_members() -> None:
    frame = load_diabetes(as_frame=True).frame
    x, y = frame.drop(columns="target"), frame["target"].to_numpy()
    members = [Ridge().fit(x, y), LGBMRegressor(n_estimators=20, verbose=-1).fit(x, y)]
    ensemble = pickle.loads(pickle.dumps(WeightedEnsemble(members, [0.25, 0.75], "regression")))
    np.testing.assert_allclose(
        ensemble.predict(x.head(20)), 0.25 * members[0].predict(x.head(20)) + 0.75 * members[1].predict(x.head(20))
    )


def test_ensembling_can_be_switched_off() -> None:
    frame = load_diabetes(as_frame=True).frame
    result = run_automl(
        frame, AutoMLConfig(target="target", families=("logistic", "lightgbm"), time_budget_s=15, max_trials=3, ensemble=False)
    )
    assert result.ensemble_weights is None and result.best_family in ("logistic", "lightgbm")
    assert not isinstance(result.model, WeightedEnsemble)
    pd.testing.assert_index_equal(pd.Index(result.feature_columns), pd.Index(frame.columns.drop("target")))
