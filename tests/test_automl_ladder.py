"""Successive halving on rows (automl/ladder.py): the rungs, the promotion rule, and a sweep on a
large table whose best configurations are cross-validated again on more rows."""

from __future__ import annotations

import optuna
import pytest

from tracseq_dagster.automl import AutoMLConfig, run_automl
from tracseq_dagster.automl.ladder import ETA, RungResult, next_promotion, rung_rows

optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_rungs_grow_by_eta_up_to_every_training_row() -> None:
    assert ETA == 3
    assert rung_rows(2_000, 48_000) == [2_000, 6_000, 18_000, 48_000]
    assert rung_rows(13_333, 40_000) == [13_333, 39_999, 40_000]
    assert rung_rows(455, 455) == [455]  # the sweep sees every row: no ladder


def _results(scores: list[float | None]) -> list[RungResult]:
    return [RungResult(number, {"n": number}, score) for number, score in enumerate(scores)]


def test_the_best_third_of_a_rung_is_promoted_one_at_a_time_highest_rung_first() -> None:
    rungs: list[list[RungResult]] = [_results([0.5, 0.9, None, 0.7, 0.8, 0.6]), [], []]
    # Five complete on rung 0: the best one (5 // 3) goes up first.
    assert next_promotion(rungs, greater_is_better=True) == (1, rungs[0][1])
    rungs[1].append(RungResult(1, {"n": 1}, 0.91))
    assert next_promotion(rungs, greater_is_better=True) is None  # the top 1 is promoted already
    rungs[0].append(RungResult(6, {"n": 6}, 0.85))  # six complete: the top two go up
    assert next_promotion(rungs, greater_is_better=True) == (1, rungs[0][-1])
    # Lower is better (rmse): the smallest are promoted.
    assert next_promotion([_results([3.0, 1.0, 2.0]), []], greater_is_better=False) == (1, RungResult(1, {"n": 1}, 1.0))
    # A skipped or interrupted promotion (score None) is not retried, nor promoted further.
    stuck = [_results([0.1, 0.2, 0.3]), [RungResult(2, {"n": 2}, None)], []]
    assert next_promotion(stuck, greater_is_better=True) is None
    # Three complete on rung 1 send its best to rung 2 before rung 0's next.
    climbing = [_results([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]), _results([0.6, 0.95, 0.7]), []]
    assert next_promotion(climbing, greater_is_better=True) == (2, climbing[1][1])


@pytest.mark.slow
def test_a_large_table_promotes_its_best_configurations_to_more_rows() -> None:
    from tests.test_automl_large_tables import synthetic_regression

    frame = synthetic_regression(60_000)  # 48,000 training rows
    config = AutoMLConfig(
        target="y", families=("lightgbm",), time_budget_s=120, max_trials=15, max_sweep_rows=2_000, ensemble=False, workers=1
    )
    result = run_automl(frame, config)
    rung0 = [t for t in result.trials if t.rung == 0]
    rung1 = [t for t in result.trials if t.rung == 1]
    rung2 = [t for t in result.trials if t.rung == 2]
    assert len(rung0) == 15 and {t.rows for t in rung0} == {2_000}
    complete0 = sorted((t for t in rung0 if t.state == "complete"), key=lambda t: t.cv_mean)  # type: ignore[arg-type, return-value]
    # Asynchronous: each promotion to 6,000 rows was among the best third (rmse: the lowest) of the
    # rung-0 trials complete when it started, and in the end the best third of them all went up.
    for promoted in rung1:
        before = sorted(t.cv_mean for t in complete0 if t.end_s <= promoted.start_s)  # type: ignore[type-var]
        assert promoted.params in [t.params for t in complete0 if t.cv_mean in before[: len(before) // 3]]
    assert {t.number for t in complete0[: len(complete0) // 3]} <= {t.number for t in rung1}
    assert {t.rows for t in rung1} == {6_000} and all(t.state == "complete" for t in rung1)
    assert len(rung1) >= ETA, [(t.number, t.state, t.cv_mean) for t in rung0]  # 15 trials, a few pruned: >= 9 complete
    best1 = min(rung1[:ETA], key=lambda t: t.cv_mean)  # type: ignore[arg-type, return-value]
    assert rung2 and rung2[0].number == best1.number and rung2[0].rows == 18_000
    # The final model is the highest rung's best configuration, refit on every training row.
    assert result.best_params == min(rung2, key=lambda t: t.cv_mean).params  # type: ignore[arg-type, return-value]
    assert result.final_rows == 48_000
