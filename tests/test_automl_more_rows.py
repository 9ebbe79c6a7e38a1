"""A final fit on many more rows than the trials saw: gradient boosting may grow its iterations,
stopped early on its own validation split (``ModelFamily.for_more_rows``)."""

from __future__ import annotations

import numpy as np
import optuna
from sklearn.pipeline import Pipeline

from benchmarks.automl_trials_per_minute import synthetic_regression
from tracseq_dagster.automl import AutoMLConfig, engine, prepare_problem
from tracseq_dagster.automl.families import FAMILIES, MORE_ROWS_MAX_ITER
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


def _final_model(max_sweep_rows: int | None) -> tuple[Pipeline, engine.Problem]:
    frame = synthetic_regression(12_000)
    problem = prepare_problem(frame, AutoMLConfig(target="y", max_sweep_rows=max_sweep_rows, validation="cv"))
    pipeline = engine._fit(FAMILIES["gradient_boosting"], dict(DEFAULT), problem, problem.x_train, problem.y_train, seed=0)
    return pipeline, problem


def test_a_refit_after_a_sweep_on_a_sample_stops_early_on_more_iterations() -> None:
    pipeline, problem = _final_model(max_sweep_rows=1_000)  # folds fit 800 rows; the refit 9,600
    model = pipeline.named_steps["model"]
    assert model.early_stopping is True and model.max_iter == 1_200
    assert 100 <= model.n_iter_ < 1_200  # stopped by its validation split, after more than the trials' 100
    sampled = float(problem.metric.score(problem.y_holdout, pipeline.predict(problem.x_holdout)))
    # Scored against the same configuration's plain 100 iterations on the same rows.
    plain_pipeline, _ = _final_model(max_sweep_rows=None)
    plain = plain_pipeline.named_steps["model"]
    assert plain.early_stopping is False and plain.max_iter == 100 and plain.n_iter_ == 100
    unchanged = float(problem.metric.score(problem.y_holdout, plain_pipeline.predict(problem.x_holdout)))
    assert sampled < unchanged, (sampled, unchanged)  # rmse: more rounds where they pay
    assert np.isfinite(sampled)
