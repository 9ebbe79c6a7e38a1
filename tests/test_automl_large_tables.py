"""The AutoML budget on large tables, on the real clock: the run (preparation, sweep, refit and
holdout scoring) ends within 5% of its budget, and the boosting families still complete trials."""

from __future__ import annotations

import time

import optuna
import pytest

from benchmarks.automl_trials_per_minute import synthetic_regression
from tracseq_dagster.automl import AutoMLConfig, prepare_problem, run_automl
from tracseq_dagster.automl.cost import auto_sweep_rows

optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_the_sweep_sample_is_chosen_from_the_budget_and_can_be_overridden() -> None:
    frame = synthetic_regression(60_000)
    auto = prepare_problem(frame, AutoMLConfig(target="y", time_budget_s=30))
    expected = auto_sweep_rows(48_000, 9, 1, 30)
    assert expected is not None
    assert len(auto.y_sweep) == expected < 48_000 and len(auto.y_train) == 48_000
    assert len(auto.folds) == 1  # many cells for the budget: one holdout split (test_automl_validation.py)
    cross_validated = prepare_problem(frame, AutoMLConfig(target="y", time_budget_s=30, validation="cv"))
    assert len(cross_validated.y_sweep) == expected and len(cross_validated.folds) == 3  # a large sample: 3 folds
    longer = prepare_problem(frame, AutoMLConfig(target="y", time_budget_s=120))
    assert len(longer.y_sweep) > len(auto.y_sweep)  # more budget, more rows
    explicit = prepare_problem(frame, AutoMLConfig(target="y", time_budget_s=30, max_sweep_rows=3_000))
    assert len(explicit.y_sweep) == 3_000 and len(explicit.folds) == 5
    assert auto_sweep_rows(1_000, 9, 1, 30) is None  # small tables: every row


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_200000_rows_in_30_seconds(workers: int) -> None:
    frame = synthetic_regression(200_000)
    started = time.perf_counter()
    result = run_automl(frame, AutoMLConfig(target="y", time_budget_s=30, workers=workers))
    wall = time.perf_counter() - started
    assert wall <= 30 * 1.05, wall
    assert result.wall_seconds <= wall
    complete = {t.family for t in result.trials if t.state == "complete"}
    # On a quiet machine every boosting family completes several trials; on a busy shared one
    # (load 9 on 2 cores while measured) at least one does, and the model is nonlinear.
    assert complete & {"lightgbm", "xgboost", "gradient_boosting"}, complete
    # Far better than the mean (the target's standard deviation is about 1.85) and than the
    # linear family (about 1.31).
    assert result.holdout_score < 1.0, result.holdout_score
    assert result.best_family != "logistic"
    assert all(t.reason for t in result.trials if t.state == "pruned")


def test_on_a_sample_the_runner_up_is_refit_on_every_row_too_and_the_better_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    from sklearn.datasets import load_breast_cancer

    from tracseq_dagster.automl import engine

    scored: list[tuple[str, float]] = []
    original = engine._holdout_score

    def spy(model: object, problem: engine.Problem) -> float:
        score = original(model, problem)
        scored.append((type(model.steps[-1][1]).__name__, score))  # type: ignore[attr-defined]
        return score

    monkeypatch.setattr(engine, "_holdout_score", spy)
    frame = load_breast_cancer(as_frame=True).frame
    config = AutoMLConfig(
        target="target", families=("logistic", "lightgbm"), time_budget_s=20, max_trials=3, max_sweep_rows=200, ensemble=False
    )
    result = run_automl(frame, config)
    assert result.sweep_rows == 200 and result.final_rows == 455  # swept a sample, refit on every row
    assert {name for name, _ in scored} == {"LogisticRegression", "LGBMClassifier"}  # both families were refit
    assert result.holdout_score == max(score for _, score in scored)  # the better on the holdout is kept
    assert result.best_family in ("logistic", "lightgbm")


def test_the_leaderboard_times_prediction_on_a_bounded_slice_of_the_holdout(monkeypatch: pytest.MonkeyPatch) -> None:
    """It runs after the deadline, once per family: on a 40,000-row holdout it took 3.5 s of a 30 s budget."""
    from tracseq_dagster.automl import engine

    frame = synthetic_regression(30_000)
    timed: list[int] = []
    original = engine.FamilySweep.leaderboard_row

    def spy(self: engine.FamilySweep, refit: object) -> object:
        calls: list[int] = []
        real_output = engine._output
        monkeypatch.setattr(engine, "_output", lambda model, x, metric: calls.append(len(x)) or real_output(model, x, metric))
        try:
            return original(self, refit)  # type: ignore[arg-type]
        finally:
            monkeypatch.setattr(engine, "_output", real_output)
            timed.extend(calls)

    monkeypatch.setattr(engine.FamilySweep, "leaderboard_row", spy)
    result = run_automl(frame, AutoMLConfig(target="y", families=("logistic",), time_budget_s=6, max_trials=2, workers=1))
    assert result.holdout_size > engine.LATENCY_ROWS
    assert timed == [engine.LATENCY_ROWS]
    assert result.leaderboard[0].predict_latency_ms > 0
