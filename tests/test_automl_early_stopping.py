"""Boosters scored on one split stop early on its validation rows, and the final fit grows the
rounds they stopped at (:mod:`tracseq_dagster.automl.early_stopping`)."""

from __future__ import annotations

import numpy as np
import optuna
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline

from benchmarks.automl_trials_per_minute import synthetic_regression
from tracseq_dagster.automl import AutoMLConfig, engine, prepare_problem, run_automl
from tracseq_dagster.automl.cost import work_units
from tracseq_dagster.automl.early_stopping import (
    MOST_GROWN_ROUNDS,
    MOST_PATIENCE,
    PATIENCE,
    ROUNDS_FOUND_ON_ROWS,
    StoppedFit,
    fit_stopping_early,
    for_rows,
    lifted_ceiling,
    patience,
    stops_early,
    with_found_rounds,
)
from tracseq_dagster.automl.families import FAMILIES
from tracseq_dagster.automl.preprocessing import FeatureColumns, prepare_features

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _rounds_of(model: object) -> int:
    if hasattr(model, "booster_"):
        return int(model.booster_.current_iteration())  # type: ignore[attr-defined]
    return int(model.get_booster().num_boosted_rounds())  # type: ignore[attr-defined]


#: The synthetic table's first 2,400 rows fit, the last 600 validate.
FIT, VALID = np.arange(2_400), np.arange(2_400, 3_000)


def _stopped_early(family: str, **changes: float) -> tuple[StoppedFit, Pipeline, dict[str, object]]:
    """``family``'s default configuration with ``changes``, fitted stopping early on the synthetic table."""
    x, y, columns = _synthetic()
    params = {**FAMILIES[family].default_params("regression", columns), **changes}
    pipeline = FAMILIES[family].build(params, "regression", columns, seed=0, balance=False)
    assert stops_early(pipeline.steps[-1][1])
    fit_params = FAMILIES[family].fit_params(y, "regression", balance=False)
    return fit_stopping_early(pipeline, x.iloc[FIT], y[FIT], x.iloc[VALID], y[VALID], fit_params), pipeline, params


def _synthetic() -> tuple[pd.DataFrame, np.ndarray, FeatureColumns]:
    frame = synthetic_regression(3_000)
    x, columns = prepare_features(frame, "y")
    return x, frame["y"].to_numpy(), columns


@pytest.mark.parametrize("family", ["lightgbm", "xgboost"])
def test_a_booster_stops_at_its_best_round_and_predicts_as_that_many_rounds(family: str) -> None:
    stopped, pipeline, params = _stopped_early(family, n_estimators=3_000, learning_rate=0.3)
    x, y, columns = _synthetic()
    # A rate of 0.3 overfits long before 3,000 rounds: it stopped its patience's rounds after its best.
    assert 1 <= stopped.best < 3_000 and stopped.grown == min(stopped.best + patience(stopped.best), 3_000)
    # LightGBM keeps the best rounds only, XGBoost every round it grew (predicting with the best).
    assert _rounds_of(pipeline.steps[-1][1]) == (stopped.best if family == "lightgbm" else stopped.grown)
    # It predicts as the same configuration grown to its best round and no further.
    exact = FAMILIES[family].build({**params, "n_estimators": stopped.best}, "regression", columns, seed=0, balance=False)
    exact.fit(x.iloc[FIT], y[FIT])
    np.testing.assert_allclose(pipeline.predict(x.iloc[VALID]), exact.predict(x.iloc[VALID]), rtol=1e-6, atol=1e-6)
    # Its validation loss at the best round beats the ceiling's.
    full = FAMILIES[family].build(params, "regression", columns, seed=0, balance=False).fit(x.iloc[FIT], y[FIT])
    rmse = lambda p: float(np.sqrt(np.mean((p.predict(x.iloc[VALID]) - y[VALID]) ** 2)))  # noqa: E731
    assert rmse(pipeline) < rmse(full)


def test_the_patience_grows_with_the_best_round_between_a_floor_and_a_ceiling() -> None:
    assert patience(1) == patience(100) == PATIENCE  # an early best: the fixed floor
    assert patience(500) == 160  # 0.3 × 500 + 10
    assert patience(1_000) == patience(4_000) == MOST_PATIENCE


@pytest.mark.parametrize("family", ["lightgbm", "xgboost"])
def test_a_booster_whose_best_round_is_late_waits_longer_for_a_better_one(family: str) -> None:
    stopped, _, _ = _stopped_early(family, n_estimators=4_000, learning_rate=0.02)
    assert stopped.best > 200 and stopped.grown - stopped.best == patience(stopped.best) > PATIENCE


def test_other_families_do_not_stop_early() -> None:
    _, columns = prepare_features(synthetic_regression(50), "y")
    for name in ("gradient_boosting", "random_forest", "logistic", "mlp"):
        pipeline = FAMILIES[name].build(
            FAMILIES[name].default_params("regression", columns), "regression", columns, seed=0, balance=False
        )
        assert not stops_early(pipeline.steps[-1][1]), name


def _sweep(validation: str) -> tuple[engine.FamilySweep, engine.Problem]:
    config = AutoMLConfig(target="y", time_budget_s=60, validation=validation, max_trials=4, seed=0)  # type: ignore[arg-type]
    problem = prepare_problem(synthetic_regression(4_000), config)
    sweep = engine.FamilySweep(FAMILIES["lightgbm"], problem, config, engine.Budget(60.0), "early", None)
    sweep.run(share_s=60.0)
    return sweep, problem


def test_one_split_trials_record_their_rounds_and_the_refit_grows_them() -> None:
    sweep, problem = _sweep("holdout")
    assert problem.validation == "holdout 20%"
    complete = [r for r in sweep.records if r.state == "complete"]
    assert len(complete) == 4
    for record in complete:
        assert record.rounds is not None and 1 <= record.rounds <= record.params["n_estimators"]
    assert sweep.best is not None and sweep.best_record is not None
    chosen = sweep.chosen_params()
    fitted_rows = len(problem.folds[0][0])
    assert chosen == {**sweep.best.params, "n_estimators": sweep.best_record.rounds, ROUNDS_FOUND_ON_ROWS: fitted_rows}
    # The sweep's fold model holds the patience's extra rounds: it is never handed back as the final model.
    assert sweep.fold_model(chosen) is None and sweep.fold_model(dict(sweep.best.params)) is None
    # The refit on every training row grows the rounds in proportion to its rows.
    refit = engine._fit(FAMILIES["lightgbm"], chosen, problem, problem.x_train, problem.y_train, seed=0)
    grown = round(sweep.best_record.rounds * len(problem.y_train) / fitted_rows)
    assert len(problem.y_train) > fitted_rows and _rounds_of(refit.steps[-1][1]) == grown


def test_found_rounds_grow_with_the_rows_up_to_a_ceiling() -> None:
    found = with_found_rounds({"learning_rate": 0.1, "n_estimators": 4_000}, 300, 1_000)
    assert for_rows(found, 1_000) == {"learning_rate": 0.1, "n_estimators": 300}
    assert for_rows(found, 1_560)["n_estimators"] == 468
    assert for_rows(found, 1_000_000)["n_estimators"] == MOST_GROWN_ROUNDS
    assert for_rows({"n_estimators": 100}, 5_000) == {"n_estimators": 100}  # searched rounds stay as they are


def test_k_fold_trials_keep_their_searched_rounds() -> None:
    sweep, problem = _sweep("cv")
    assert problem.validation == "5-fold"
    assert all(r.rounds is None for r in sweep.records)
    assert sweep.best is not None and sweep.chosen_params() == dict(sweep.best.params)


def test_a_run_on_one_split_returns_a_model_of_the_stopped_rounds() -> None:
    frame = synthetic_regression(4_000)
    result = run_automl(
        frame, AutoMLConfig(target="y", time_budget_s=20, validation="holdout", families=["xgboost"], ensemble=False, seed=0)
    )
    best = next(
        r for r in result.trials if r.family == "xgboost" and r.number == result.leaderboard[0].best_trial and r.rung == 0
    )
    assert best.rounds is not None
    model = result.model.steps[-1][1]
    assert result.best_params["n_estimators"] == best.rounds <= best.params["n_estimators"]
    rows = result.best_params[ROUNDS_FOUND_ON_ROWS]
    assert _rounds_of(model) == round(best.rounds * result.final_rows / rows)
    assert isinstance(result.model.predict(frame.drop(columns="y").head(5)), np.ndarray | pd.Series)


def test_the_refit_reserve_counts_the_rounds_that_grow_with_the_rows() -> None:
    """The time held back for the refit is one trial's fit times the refit's work: more rows, and
    the rounds that grow with them, against the rounds the trial grew before it stopped."""
    sweep, problem = _sweep("holdout")
    assert sweep.best is not None and sweep.best_record is not None and sweep.best_record.rounds is not None
    fitted, rows, width = len(problem.folds[0][0]), len(problem.y_train), len(problem.columns.all)
    refit_rounds = round(sweep.best_record.rounds * rows / fitted)
    grown = sweep.best.user_attrs["grown"]
    assert grown >= sweep.best_record.rounds
    expected = work_units("lightgbm", {**sweep.best.params, "n_estimators": refit_rounds}, rows, width, 1) / work_units(
        "lightgbm", {**sweep.best.params, "n_estimators": grown}, fitted, width, 1
    )
    assert sweep._refit_work(sweep.best) == pytest.approx(expected)
    # k folds: the searched rounds are refit as they are, on more rows.
    cv_sweep, cv_problem = _sweep("cv")
    assert cv_sweep.best is not None
    assert cv_sweep._refit_work(cv_sweep.best) == pytest.approx(len(cv_problem.y_train) / len(cv_problem.folds[0][0]))


def test_a_promotion_lifts_the_ceiling_of_a_trial_still_improving_at_it(monkeypatch: pytest.MonkeyPatch) -> None:
    assert lifted_ceiling(100) == 400 and lifted_ceiling(2_000) == 4_096
    assert lifted_ceiling(5_000) == 5_000  # never fewer rounds than the trial had
    config = AutoMLConfig(target="y", time_budget_s=60, validation="holdout", max_trials=4, max_sweep_rows=1_000, seed=0)  # type: ignore[arg-type]
    problem = prepare_problem(synthetic_regression(6_000), config)
    sweep = engine.FamilySweep(FAMILIES["lightgbm"], problem, config, engine.Budget(60.0), "lift", None, ladder=True)
    sweep.run(share_s=60.0)
    first = {r.number: r for r in sweep.records if r.rung == 0 and r.state == "complete"}
    # The trials that grew to their n_estimators (their patience reached past it) and those that stopped by themselves.
    for number, record in first.items():
        assert record.rounds is not None
        assert (number in sweep.at_ceiling) == (record.rounds + patience(record.rounds) >= record.params["n_estimators"])
    assert sweep.at_ceiling and sweep.at_ceiling != set(first)
    ceilings: list[int] = []
    fit_for_score = engine._fit_for_score

    def watched(pipeline: Pipeline, *args: object, **kwargs: object) -> object:
        ceilings.append(int(pipeline.steps[-1][1].n_estimators))
        return fit_for_score(pipeline, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(engine, "_fit_for_score", watched)
    best = min(first.values(), key=lambda r: r.cv_mean or np.inf)  # the rung's best third: promoted first
    assert best.number in sweep.at_ceiling
    sweep._promote(share_s=60.0)
    promoted = sweep.records[-1]
    assert (promoted.number, promoted.rung, promoted.state) == (best.number, 1, "complete")
    assert ceilings == [lifted_ceiling(best.params["n_estimators"])]
    assert sweep.rounds[best.number] == (promoted.rounds, len(sweep._rung(1)[2][0][0]))  # the refit grows what it found
