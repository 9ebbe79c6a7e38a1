"""How trials are scored: k folds, or one holdout split when the table is large for the budget
(``AutoMLConfig.validation``), and the ensemble then chosen on the validation rows alone."""

from __future__ import annotations

import numpy as np
import optuna
import pandas as pd
import pytest

from benchmarks.automl_trials_per_minute import synthetic_regression
from tests.test_automl_ensemble import linear_plus_interaction
from tracseq_dagster.automl import AutoMLConfig, AutoMLInputError, engine, prepare_problem, run_automl
from tracseq_dagster.automl.cost import HOLDOUT_CELLS_PER_BUDGET_S, auto_sweep_rows, holdout_pays

optuna.logging.set_verbosity(optuna.logging.WARNING)


def wide_binary(rows: int, positives: float, columns: int = 100, seed: int = 0) -> pd.DataFrame:
    """A wide binary table with a chosen share of positives (caravan's shape: 85 columns, 6%)."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(rows, columns)), columns=[f"x{i}" for i in range(columns)])
    frame["label"] = (rng.random(rows) < positives).astype(int)
    return frame


def test_the_rule_is_flamls_cells_per_budget() -> None:
    # 10 million cells per hour of budget: 166,667 at 60 s.
    assert round(HOLDOUT_CELLS_PER_BUDGET_S * 60) == 166_667
    assert holdout_pays(20_000, 9, 1, 60) and not holdout_pays(15_000, 9, 1, 60)
    assert holdout_pays(2_000, 9, 10, 60) and not holdout_pays(2_000, 9, 2, 60)  # per-class boosting counts


def test_a_large_table_is_scored_on_one_split_of_the_sweep_rows() -> None:
    frame = synthetic_regression(60_000)
    problem = prepare_problem(frame, AutoMLConfig(target="y", time_budget_s=30))
    assert problem.validation == "holdout 20%"
    assert len(problem.y_sweep) == auto_sweep_rows(48_000, 9, 1, 30)  # the same sample as k folds would see
    [(train, valid)] = problem.folds
    assert not np.intersect1d(train, valid).size and len(train) + len(valid) == len(problem.y_sweep)
    assert len(valid) == pytest.approx(0.2 * len(problem.y_sweep), abs=1)
    np.testing.assert_array_equal(problem.scored, valid)  # out-of-fold outputs exist there only
    # Each rung of the ladder above the sample is scored the same way (one fit per promotion).
    sweep = engine.FamilySweep(
        engine.FAMILIES["lightgbm"],
        problem,
        AutoMLConfig(target="y", time_budget_s=30),
        engine.Budget(30.0),
        "s",
        None,
        ladder=True,
    )
    _, y_rung, rung_folds = sweep._rung(1)
    assert len(rung_folds) == 1 and len(rung_folds[0][1]) == pytest.approx(0.2 * len(y_rung), abs=1)


def test_small_tables_and_rare_classes_keep_k_folds() -> None:
    small = prepare_problem(synthetic_regression(2_000), AutoMLConfig(target="y", time_budget_s=30))
    assert small.validation == "5-fold" and len(small.scored) == len(small.y_sweep)
    # Wide enough for a holdout at 10 s, but its split would hold about 19 positives: k folds.
    rare = prepare_problem(wide_binary(3_000, 0.05), AutoMLConfig(target="label", time_budget_s=10))
    assert holdout_pays(len(rare.y_sweep), 100, 2, 10)
    assert rare.validation == "5-fold"
    balanced = prepare_problem(wide_binary(8_000, 0.5), AutoMLConfig(target="label", time_budget_s=10))
    assert balanced.validation == "holdout 20%"
    [(_, valid)] = balanced.folds
    assert abs(balanced.y_sweep[valid].mean() - balanced.y_sweep.mean()) < 0.01  # stratified


def test_the_choice_can_be_overridden_and_is_checked() -> None:
    frame = synthetic_regression(60_000)
    forced_cv = prepare_problem(frame, AutoMLConfig(target="y", time_budget_s=30, validation="cv"))
    assert forced_cv.validation == "3-fold"  # a large sample: 3 folds
    forced_holdout = prepare_problem(synthetic_regression(600), AutoMLConfig(target="y", validation="holdout"))
    assert forced_holdout.validation == "holdout 20%"
    with pytest.raises(AutoMLInputError, match="validation must be auto, cv or holdout"):
        prepare_problem(frame, AutoMLConfig(target="y", validation="bootstrap"))  # type: ignore[arg-type]


def test_grouped_rows_are_always_cross_validated() -> None:
    frame = synthetic_regression(60_000)
    groups = pd.Series(np.arange(len(frame)) // 10, index=frame.index)
    problem = prepare_problem(frame, AutoMLConfig(target="y", time_budget_s=30, validation="holdout"), groups=groups)
    assert len(problem.folds) > 1


def test_on_one_split_the_out_of_fold_score_is_the_trial_s_score() -> None:
    frame = linear_plus_interaction(rows=3_000)
    config = AutoMLConfig(target="qc", families=("lightgbm",), time_budget_s=20, max_trials=2, validation="holdout")
    problem = prepare_problem(frame, config)
    sweep = engine.FamilySweep(engine.FAMILIES["lightgbm"], problem, config, engine.Budget(20.0), "s", None)
    sweep.run(share_s=15.0)
    assert sweep.best_record is not None and sweep.best_oof is not None
    # Scored on the validation rows alone; over every sweep row (zeros where nothing was
    # predicted) the ensemble would compare the families on noise.
    assert engine._oof_score(sweep, problem) == pytest.approx(sweep.best_record.cv_mean)
    assert sweep.best_record.cv_mean > 0.8 and sweep.best_record.cv_std == 0.0


def test_a_run_on_one_split_reports_it_and_can_still_ensemble(monkeypatch: pytest.MonkeyPatch) -> None:
    chosen: list[list[tuple[str, float]]] = []
    original = engine._ensemble_members

    def spy(*args: object) -> list[tuple[engine.FamilySweep, float]]:
        members = original(*args)  # type: ignore[arg-type]
        chosen.append([(sweep.family, weight) for sweep, weight in members])
        return members

    monkeypatch.setattr(engine, "_ensemble_members", spy)
    frame = linear_plus_interaction()  # 1,500 rows: neither family alone is best (at 3,000, LightGBM is)
    config = AutoMLConfig(target="qc", families=("logistic", "lightgbm"), time_budget_s=20, max_trials=4, validation="holdout")
    result = run_automl(frame, config)
    assert result.validation == "holdout 20%"
    assert {t.family for t in result.trials} == {"logistic", "lightgbm"}
    # The linear part and the interaction: the two families' errors differ, and their blend wins
    # on the validation rows (as it does out of fold with k folds); the holdout then decides.
    [members] = chosen
    assert {family for family, _ in members} == {"logistic", "lightgbm"}, members
    assert result.best_family in ("ensemble", "lightgbm", "logistic")
