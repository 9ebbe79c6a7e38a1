"""A strong first point: each family's first trial is its default configuration, and the sweep's
leaderboard never ends below the best default of the families it swept."""

from __future__ import annotations

import numpy as np
import optuna
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_wine

from tracseq_dagster.automl import FAMILIES, AutoMLConfig, prepare_problem, run_automl
from tracseq_dagster.automl.engine import BALANCE_PARAM

optuna.logging.set_verbosity(optuna.logging.WARNING)

SWEPT = ("logistic", "lightgbm", "xgboost", "gradient_boosting")


def _imbalanced_cancer() -> pd.DataFrame:
    cancer = load_breast_cancer(as_frame=True).frame
    return pd.concat([cancer[cancer.target == 1], cancer[cancer.target == 0].head(40)])  # 357 : 40


def _categorical_prices(rows: int = 2_000, seed: int = 0) -> pd.DataFrame:
    """A regression driven by a 90-value categorical (a wide one) and a 5-value one: LightGBM's
    first trial splits them natively (its default), later ones may choose codes."""
    rng = np.random.default_rng(seed)
    agent, room = rng.integers(0, 90, rows), rng.integers(0, 5, rows)
    nights = rng.integers(1, 10, rows).astype(float)
    price = rng.normal(100, 30, 90)[agent] + np.array([0.0, 20.0, -10.0, 40.0, 5.0])[room] + 2 * nights
    return pd.DataFrame({"agent": [f"AG{a}" for a in agent], "room": [f"R{r}" for r in room], "nights": nights,
                         "target": price + rng.normal(0, 5, rows)})  # fmt: skip


TABLES = {
    "breast_cancer": lambda: load_breast_cancer(as_frame=True).frame,
    "categorical_prices": _categorical_prices,
    "wine": lambda: load_wine(as_frame=True).frame,
    "diabetes": lambda: load_diabetes(as_frame=True).frame,
    "imbalanced": _imbalanced_cancer,
}


@pytest.mark.parametrize("table", list(TABLES))
def test_first_trials_are_the_defaults_and_the_winner_is_not_below_them(table: str) -> None:
    frame = TABLES[table]()
    config = AutoMLConfig(target="target", families=SWEPT, time_budget_s=8, max_trials=6, ensemble=False)
    result = run_automl(frame, config)
    problem = prepare_problem(frame, config)
    sign = 1.0 if result.greater_is_better else -1.0
    defaults = []
    for family in SWEPT:
        first = min((t for t in result.trials if t.family == family), key=lambda t: t.number)
        expected = dict(FAMILIES[family].default_params(problem.task, problem.columns))
        if problem.balance:
            expected[BALANCE_PARAM] = False  # the default does not weight classes
        assert first.params == pytest.approx(expected), family
        assert first.state == "complete", (family, first.reason)
        defaults.append(sign * first.cv_mean)
    best = result.leaderboard[0]
    assert sign * best.cv_mean >= max(defaults) - 1e-12
    assert all(
        sign * row.cv_mean >= sign * t.cv_mean - 1e-12
        for row in result.leaderboard
        for t in result.trials
        if t.family == row.family and t.state == "complete"
    )


def test_a_study_that_already_has_trials_is_not_given_the_default_again(tmp_path: object) -> None:
    frame = load_breast_cancer(as_frame=True).frame
    storage = f"sqlite:///{tmp_path}/optuna.db"
    config = AutoMLConfig(
        target="target", families=("logistic",), max_trials=2, storage=storage, study_name="s", time_budget_s=30
    )
    first, second = run_automl(frame, config), run_automl(frame, config)
    assert first.trials[0].params == {"C": 1.0}
    assert all(t.params != {"C": 1.0} for t in second.trials)
    assert np.isfinite(second.holdout_score)
