"""The boosting families' second trial: FLAML's zero-shot configuration for the table (zero_shot.py),
translated into the family's search space."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits, make_friedman1

from tracseq_dagster.automl import FAMILIES, AutoMLConfig, prepare_problem, run_automl, zero_shot
from tracseq_dagster.automl.engine import BALANCE_PARAM, zero_shot_start

optuna.logging.set_verbosity(optuna.logging.WARNING)

BOOSTERS = ("lightgbm", "xgboost")
TABLES = {
    "binary": lambda: load_breast_cancer(as_frame=True).frame,
    "multiclass": lambda: load_digits(as_frame=True).frame,
    # 5 features (diabetes' 10 are nearest to a mined table whose LightGBM choice is the default)
    "regression": lambda: _friedman(),
}


def _friedman() -> pd.DataFrame:
    x, y = make_friedman1(n_samples=600, n_features=5, noise=0.5, random_state=0)
    return pd.DataFrame(x, columns=[f"x{i}" for i in range(5)]).assign(target=y)


def _flaml_portfolio(learner: str, task: str) -> dict[str, object]:
    import flaml  # the installed package whose JSON files zero_shot reads

    return dict(json.loads((Path(flaml.__file__).parent / "default" / learner / f"{task}.json").read_text()))


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
@pytest.mark.parametrize("family", BOOSTERS)
def test_the_suggestion_is_flaml_s_own_nearest_neighbour_choice(family: str, task: str) -> None:
    # FLAML's suggest_config (sklearn NearestNeighbors on its meta-features) is the reference.
    from flaml.default import suggest_config

    rng = np.random.default_rng(0)
    for rows, width in ((300, 5), (4_000, 30), (60_000, 12), (500_000, 200)):
        x = np.zeros((rows, width))
        classes = {"binary": 2, "multiclass": 10, "regression": 0}[task]
        y = rng.integers(0, classes, rows) if classes else rng.normal(size=rows)
        frame = pd.DataFrame(x)
        expected = suggest_config(task, frame, y, zero_shot.LEARNERS[family], k=1)[0]["hyperparameters"]
        expected = {k: v for k, v in expected.items() if k != "FLAML_sample_size"}
        got = zero_shot.suggest(family, task, zero_shot.meta_features(rows, width, classes, 1.0))
        assert got == (expected or None), (rows, width)


def test_no_portfolio_no_suggestion() -> None:
    assert zero_shot.suggest("random_forest", "regression", zero_shot.meta_features(100, 3, 0, 1.0)) is None
    assert zero_shot.suggest("lightgbm", "ranking", zero_shot.meta_features(100, 3, 0, 1.0)) is None


@pytest.mark.parametrize("family", BOOSTERS)
def test_every_portfolio_configuration_translates_into_a_valid_point_of_the_space(family: str) -> None:
    # Every mined configuration (not only the ones our tables reach) lands inside the family's
    # Optuna space: Optuna would otherwise warn and TPE model a point outside its bounds.
    frame = load_diabetes(as_frame=True).frame
    problem = prepare_problem(frame, AutoMLConfig(target="target"))
    study = optuna.create_study()
    model = FAMILIES[family]
    for task in ("binary", "multiclass", "regression"):
        for entry in _flaml_portfolio(zero_shot.LEARNERS[family], task)["portfolio"]:  # type: ignore[union-attr]
            config = {k: v for k, v in entry["hyperparameters"].items() if k != "FLAML_sample_size"}
            if not config:
                continue
            params = model.zero_shot_params(config, problem.task, problem.columns)
            assert params is not None
            trial = study.ask()
            space = model.suggest(trial, problem.task)  # registers the distributions
            study.tell(trial, 0.0)
            distributions = study.trials[-1].distributions
            assert set(params) == set(distributions), (family, task)
            for name, value in params.items():
                assert distributions[name]._contains(distributions[name].to_internal_repr(value)), (name, value)
            assert space  # the suggestion was a real configuration


@pytest.mark.parametrize("table", list(TABLES))
def test_the_zero_shot_point_is_each_booster_s_second_trial(table: str) -> None:
    frame = TABLES[table]()
    config = AutoMLConfig(target="target", families=BOOSTERS, time_budget_s=30, max_trials=3, ensemble=False, workers=1)
    result = run_automl(frame, config)
    problem = prepare_problem(frame, config)
    for family in BOOSTERS:
        trials = sorted((t for t in result.trials if t.family == family), key=lambda t: t.number)
        expected = zero_shot_start(FAMILIES[family], problem)
        assert expected is not None, family
        assert expected != FAMILIES[family].default_params(problem.task, problem.columns)
        if problem.balance:
            expected = {**expected, BALANCE_PARAM: False}
        assert trials[1].params == pytest.approx(expected), family
        if table == "multiclass":
            # 10 classes × hundreds of trees: the cost estimate may skip it on a 30 s budget,
            # which is recorded like any skipped trial.
            assert trials[1].state == "complete" or str(trials[1].reason).startswith("skipped"), trials[1].reason
        else:
            assert trials[1].state == "complete", (family, trials[1].reason)
        # the configuration is built and fitted like any trial: the pipeline carries its values
        pipeline = FAMILIES[family].build(
            {k: v for k, v in expected.items() if k != BALANCE_PARAM}, problem.task, problem.columns, seed=0, balance=False
        )
        assert pipeline.named_steps["model"].get_params()["n_estimators"] == expected["n_estimators"]
