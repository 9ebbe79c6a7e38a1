"""A final fit on many more rows than the trials saw: gradient boosting may grow its iterations,
stopped early on its own validation split (``ModelFamily.for_more_rows``), and tries larger trees
against the trials' size on that split (``ModelFamily.larger_trees``)."""

from __future__ import annotations

import time

import numpy as np
import optuna
import pandas as pd
from sklearn.pipeline import Pipeline

from benchmarks.automl_trials_per_minute import synthetic_regression
from tracseq_dagster.automl import AutoMLConfig, engine, prepare_problem
from tracseq_dagster.automl.deadline import fit_deadline
from tracseq_dagster.automl.families import FAMILIES, MORE_ROWS_MAX_ITER, MORE_ROWS_MAX_LEAVES
from tracseq_dagster.automl.preprocessing import prepare_features

optuna.logging.set_verbosity(optuna.logging.WARNING)

#: scikit-learn's defaults, the family's first trial.
DEFAULT = FAMILIES["gradient_boosting"].default_params("regression", prepare_features(synthetic_regression(50), "y")[1])


def test_gradient_boosting_grows_its_iterations_only_on_many_more_rows() -> None:
    family = FAMILIES["gradient_boosting"]
    assert family.for_more_rows(DEFAULT, 1.25) == DEFAULT  # a k-fold trial saw 80% of the rows: the same fit
    grown = family.for_more_rows(DEFAULT, 12.0)
    assert grown == {**DEFAULT, "max_iter": 1_200, "early_stopping": True}
    assert family.for_more_rows(DEFAULT, 100.0)["max_iter"] == MORE_ROWS_MAX_ITER
    # The other families' final fits are unchanged.
    assert FAMILIES["lightgbm"].for_more_rows({"n_estimators": 100}, 12.0) == {"n_estimators": 100}


def test_gradient_boosting_offers_larger_trees_only_on_many_more_rows() -> None:
    family = FAMILIES["gradient_boosting"]
    assert family.larger_trees(DEFAULT, 1.25) is None
    grown = family.for_more_rows(DEFAULT, 12.0)
    # As many rows a leaf as the trials had: 31 leaves on a twelfth of the rows → 372.
    assert family.larger_trees(grown, 12.0) == {**grown, "max_leaf_nodes": 372}
    assert family.larger_trees(family.for_more_rows(DEFAULT, 100.0), 100.0)["max_leaf_nodes"] == MORE_ROWS_MAX_LEAVES
    assert family.larger_trees(DEFAULT, 12.0) is None  # without its own early stopping nothing compares them
    assert FAMILIES["lightgbm"].larger_trees({"n_estimators": 100}, 12.0) is None


def _final_model(max_sweep_rows: int | None, frame: pd.DataFrame | None = None) -> tuple[Pipeline, engine.Problem]:
    frame = synthetic_regression(12_000) if frame is None else frame
    problem = prepare_problem(frame, AutoMLConfig(target="y", max_sweep_rows=max_sweep_rows, validation="cv"))
    pipeline = engine._fit(FAMILIES["gradient_boosting"], dict(DEFAULT), problem, problem.x_train, problem.y_train, seed=0)
    return pipeline, problem


def test_a_refit_after_a_sweep_on_a_sample_stops_early_on_more_iterations() -> None:
    pipeline, problem = _final_model(max_sweep_rows=1_000)  # folds fit 800 rows; the refit 9,600
    model = pipeline.named_steps["model"]
    assert model.early_stopping is True and model.max_iter == 1_200
    assert model.max_leaf_nodes == 31  # a smooth target: the larger trees scored worse on the fit's validation split
    assert 100 <= model.n_iter_ < 1_200  # stopped by its validation split, after more than the trials' 100
    sampled = float(problem.metric.score(problem.y_holdout, pipeline.predict(problem.x_holdout)))
    # Scored against the same configuration's plain 100 iterations on the same rows.
    plain_pipeline, _ = _final_model(max_sweep_rows=None)
    plain = plain_pipeline.named_steps["model"]
    assert plain.early_stopping is False and plain.max_iter == 100 and plain.n_iter_ == 100
    unchanged = float(problem.metric.score(problem.y_holdout, plain_pipeline.predict(problem.x_holdout)))
    assert sampled < unchanged, (sampled, unchanged)  # rmse: more rounds where they pay
    assert np.isfinite(sampled)


def _checkerboard(rows: int, seed: int = 0) -> pd.DataFrame:
    """A target set by a 20 × 20 grid of two 60-value columns: many rows before trees are large enough."""
    rng = np.random.default_rng(seed)
    cells = np.random.default_rng(99).normal(size=(20, 20))
    a, b = rng.integers(0, 60, rows), rng.integers(0, 60, rows)
    return pd.DataFrame(
        {"a": a, "b": b, "noise": rng.normal(size=rows), "y": cells[a // 3, b // 3] + 0.3 * rng.normal(size=rows)}
    )


def test_a_refit_keeps_larger_trees_where_they_score_better_on_its_validation_split() -> None:
    pipeline, problem = _final_model(max_sweep_rows=1_000, frame=_checkerboard(12_000))  # 800 rows a fold; 9,600
    model = pipeline.named_steps["model"]
    assert model.max_leaf_nodes == 372
    # The trials' 31 leaves, fitted the same way, score worse on the same validation split and the holdout.
    params = FAMILIES["gradient_boosting"].for_more_rows(dict(DEFAULT), 12.0)
    smaller = engine._built_and_fitted(FAMILIES["gradient_boosting"], params, problem, problem.x_train, problem.y_train, 0, False)
    assert smaller.named_steps["model"].max_leaf_nodes == 31
    assert engine._own_validation_score(pipeline) > engine._own_validation_score(smaller)
    rmse = [float(problem.metric.score(problem.y_holdout, p.predict(problem.x_holdout))) for p in (pipeline, smaller)]
    assert rmse[0] < rmse[1], rmse


def test_a_refit_short_of_time_keeps_the_larger_trees_without_fitting_the_smaller() -> None:
    frame = synthetic_regression(12_000)
    problem = prepare_problem(frame, AutoMLConfig(target="y", max_sweep_rows=1_000, validation="cv"))
    with fit_deadline(time.perf_counter() + 0.05, time.perf_counter, graceful=True):
        pipeline = engine._fit(FAMILIES["gradient_boosting"], dict(DEFAULT), problem, problem.x_train, problem.y_train, seed=0)
    model = pipeline.named_steps["model"]
    assert model.max_leaf_nodes == 372  # the first candidate, its iterations so far: no time for the second
    assert model.n_iter_ < 1_200
