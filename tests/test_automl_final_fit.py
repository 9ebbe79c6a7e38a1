"""``final_fit="all"`` never returns a refit its deadline cut short, and the training-rows refit gives way
to the sweep's fold model of the same configuration when its deadline cut it short and the holdout prefers that.

On a loaded machine the all-rows refit's cost estimate can be low; a booster stopped after a few
trees is far worse than the same configuration fitted on the training rows (measured on the
FLAML benchmark: one LightGBM tree, rmse 60 instead of 13). These tests run the refit on a clock
that moves only when the fit asks for the time, so nothing depends on how busy the machine is."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.datasets import make_regression

from tracseq_dagster.automl import FAMILIES, AutoMLConfig, engine
from tracseq_dagster.automl.budget import Budget


class TickingClock:
    """Each reading is ``step`` seconds after the last one: a fit that reads the time every
    iteration (the boosters' deadline callbacks) spends ``step`` seconds per tree."""

    def __init__(self, step: float) -> None:
        self.now, self.step = 1000.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def _problem() -> engine.Problem:
    x, y = make_regression(n_samples=600, n_features=6, noise=5.0, random_state=0)
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(6)]).assign(target=y)
    return engine.prepare_problem(frame, AutoMLConfig(target="target", time_budget_s=30, final_fit="all"))


def _final(problem: engine.Problem, params: dict[str, object]) -> engine._Final:
    lightgbm = FAMILIES["lightgbm"]
    model = engine._fit(lightgbm, params, problem, problem.x_train, problem.y_train, seed=0)
    score = engine._holdout_score(model, problem)
    return engine._Final(model, score, len(problem.y_train), {"lightgbm": model}, [(lightgbm, params)], {}, "lightgbm", params)


def _params(problem: engine.Problem) -> dict[str, object]:
    return {**FAMILIES["lightgbm"].default_params(problem.task, problem.columns), "n_estimators": 200}


def test_a_refit_cut_short_by_its_deadline_gives_way_to_the_training_rows_model() -> None:
    problem = _problem()
    final = _final(problem, _params(problem))
    budget = Budget(30.0, clock=TickingClock(step=1.0))  # 30 s at a second per tree: 200 trees cannot fit

    model, rows = engine._fit_all_rows_within(final, problem, seed=0, budget=budget)

    assert model is final.model and rows == len(problem.y_train)
    assert model.named_steps["model"].booster_.num_trees() == 200


def test_a_refit_that_ends_in_time_uses_every_row() -> None:
    problem = _problem()
    final = _final(problem, _params(problem))
    budget = Budget(30.0, clock=TickingClock(step=1e-4))  # 200 trees take 0.02 (fake) seconds

    model, rows = engine._fit_all_rows_within(final, problem, seed=0, budget=budget)

    assert model is not final.model and rows == len(problem.y_train) + len(problem.y_holdout)
    assert model.named_steps["model"].booster_.num_trees() == 200
    assert np.isfinite(engine._holdout_score(model, problem))


def test_a_training_rows_refit_cut_short_gives_way_to_the_sweeps_fold_model() -> None:
    problem = _problem()
    lightgbm, params = FAMILIES["lightgbm"], _params(problem)
    train, _ = problem.folds[-1]
    fold_model = engine._fit(lightgbm, params, problem, problem.x_sweep.iloc[train], problem.y_sweep[train], seed=0)
    budget = Budget(30.0, clock=TickingClock(step=1.0))  # a second per tree: the refit stops after a few trees
    cut = engine._bounded_fit(lightgbm, params, problem, problem.x_train, problem.y_train, 0, budget, budget.clock() + 5.0)
    assert cut.cut_short and cut.pipeline.named_steps["model"].booster_.num_trees() < 10

    model, rows = engine._unless_cut_short(cut, fold_model, problem)

    assert model is fold_model and rows == len(train) < len(problem.y_train)
    # rmse: the complete fold model beats the few trees of the refit on the holdout.
    assert engine._holdout_score(fold_model, problem) < engine._holdout_score(cut.pipeline, problem)


def test_a_training_rows_refit_in_time_or_without_a_fold_model_is_kept() -> None:
    problem = _problem()
    lightgbm, params = FAMILIES["lightgbm"], _params(problem)
    train, _ = problem.folds[-1]
    fold_model = engine._fit(lightgbm, params, problem, problem.x_sweep.iloc[train], problem.y_sweep[train], seed=0)
    budget = Budget(30.0, clock=TickingClock(step=1e-4))
    whole = engine._bounded_fit(lightgbm, params, problem, problem.x_train, problem.y_train, 0, budget, budget.clock() + 5.0)
    assert not whole.cut_short
    assert engine._unless_cut_short(whole, fold_model, problem) == (whole.pipeline, len(problem.y_train))

    slow = Budget(30.0, clock=TickingClock(step=1.0))
    cut = engine._bounded_fit(lightgbm, params, problem, problem.x_train, problem.y_train, 0, slow, slow.clock() + 5.0)
    assert cut.cut_short
    assert engine._unless_cut_short(cut, None, problem) == (cut.pipeline, len(problem.y_train))
