"""The AutoML time budget on a fake clock: the arithmetic of :class:`Budget`, and sweeps whose fits
cost a known number of (fake) seconds, so that no assertion depends on how busy the machine is."""

from __future__ import annotations

import functools

import numpy as np
import optuna
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.datasets import load_breast_cancer
from sklearn.pipeline import Pipeline

from tracseq_dagster.automl import FAMILIES, AutoMLConfig, AutoMLInputError, ModelFamily, engine, run_automl
from tracseq_dagster.automl.budget import MAX_RESERVE_FRACTION, MIN_BUDGET_S, MIN_RESERVE_FRACTION, REFIT_SAFETY, Budget
from tracseq_dagster.automl.tasks import TaskType

optuna.logging.set_verbosity(optuna.logging.WARNING)


class FakeClock:
    """Seconds that pass only when a test (or a fake fit) says so."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.fits = 0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# -- Budget's arithmetic ---------------------------------------------------------------------------


def test_constants() -> None:
    assert (MIN_BUDGET_S, MIN_RESERVE_FRACTION, REFIT_SAFETY, MAX_RESERVE_FRACTION) == (2.0, 0.04, 1.5, 0.3)


def test_elapsed_and_sweep_time_follow_the_clock() -> None:
    clock = FakeClock()
    budget = Budget(10.0, clock=clock)
    assert budget.start == 1000.0 and budget.deadline == 1010.0 and budget.total_s == 10.0
    assert budget.elapsed() == 0.0
    assert budget.sweep_deadline == pytest.approx(1010.0 - 0.4)  # the minimum reserve: 4% of 10 s
    clock.advance(3.0)
    assert budget.elapsed() == 3.0
    assert budget.sweep_left() == pytest.approx(10.0 - 0.4 - 3.0)
    assert budget.family_share(3) == pytest.approx((10.0 - 0.4 - 3.0) / 3)
    assert budget.family_share(0) == budget.family_share(1) == pytest.approx(6.6)
    clock.advance(20.0)  # past the deadline: sweep time is negative, no family gets any
    assert budget.sweep_left() == pytest.approx(-13.4) and budget.family_share(2) == 0.0


def test_the_reserve_grows_to_the_refit_estimate_and_never_shrinks() -> None:
    budget = Budget(20.0, clock=FakeClock())
    budget.reserve_refit(1.0, 5)  # 1 s folds on 4/5 of the rows: 1.25 s refit x 1.5 safety
    assert budget.sweep_deadline == pytest.approx(1020.0 - 1.875)
    budget.reserve_refit(1.6, 5)
    assert budget.sweep_deadline == pytest.approx(1020.0 - 3.0)
    budget.reserve_refit(0.1, 5)  # a faster family-best does not give the time back
    assert budget.sweep_deadline == pytest.approx(1020.0 - 3.0)
    budget.reserve_refit(10.0, 5)  # never more than 30% of the budget: the final fit is bounded
    assert budget.sweep_deadline == pytest.approx(1020.0 - 6.0)
    small = Budget(10.0, clock=FakeClock())
    small.reserve_refit(0.2, 5)  # an estimate (0.375 s) under the 4% minimum leaves the minimum
    assert small.sweep_deadline == pytest.approx(1010.0 - 0.4)
    one_fold = Budget(20.0, clock=FakeClock())
    one_fold.reserve_refit(2.0, 1)  # k/(k-1) would divide by zero: one fold counts as one refit
    assert one_fold.sweep_deadline == pytest.approx(1020.0 - 3.0)
    two_folds = Budget(20.0, clock=FakeClock())
    two_folds.reserve_refit(1.0, 2)
    assert two_folds.sweep_deadline == pytest.approx(1020.0 - 3.0)
    twice = Budget(40.0, refits=2.25, clock=FakeClock())  # final_fit="all": a second, larger fit
    twice.reserve_refit(1.0, 5)
    assert twice.sweep_deadline == pytest.approx(1040.0 - 1.0 * 1.25 * 1.5 * 2.25)
    none = Budget(10.0, refits=0.0, clock=FakeClock())  # a family's own sweep: only the minimum
    none.reserve_refit(2.0, 5)
    assert none.sweep_deadline == pytest.approx(1010.0 - 0.4)
    assert Budget(10.0, clock=FakeClock()).refits == 1.0


def test_typical_fold_time_is_the_familys_median_else_everyones() -> None:
    budget = Budget(10.0, clock=FakeClock())
    assert budget.typical_fold_seconds("logistic") == 0.0  # nothing known yet
    for seconds in (1.0, 3.0, 2.0, 10.0):
        budget.record_fold("mlp", seconds)
    budget.record_fold("xgboost", 0.5)
    assert budget.typical_fold_seconds("mlp") == 2.5
    assert budget.typical_fold_seconds("xgboost") == 0.5
    assert budget.typical_fold_seconds("logistic") == 2.0  # median of all five folds


def test_the_default_clock_is_perf_counter() -> None:
    import time

    assert Budget(5.0).clock is time.perf_counter


# -- sweeps on the fake clock ------------------------------------------------------------------------


class _Timed(ClassifierMixin, BaseEstimator):
    """A classifier whose every fit costs ``seconds`` on the fake clock (and none of the machine's)."""

    def __init__(self, clock: FakeClock, seconds: float, c: float = 1.0) -> None:
        self.clock, self.seconds, self.c = clock, seconds, c

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> _Timed:
        self.clock.advance(self.seconds)
        self.clock.fits += 1
        self.classes_ = np.unique(y)
        self.prior_ = np.bincount(y, minlength=len(self.classes_)) / len(y)
        self.weights_ = np.linspace(-1, 1, X.shape[1]) * self.c
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        score = 1 / (1 + np.exp(-np.nan_to_num(np.asarray(X, dtype=float)) @ self.weights_ / 100))
        return np.column_stack([1 - score, score])


class _TimedFamily(ModelFamily):
    def __init__(self, name: str, clock: FakeClock, seconds: float) -> None:
        self.name = name  # type: ignore[misc]
        self.clock, self.seconds = clock, seconds

    def suggest(self, trial: optuna.Trial, task: TaskType) -> dict[str, object]:
        return {"c": trial.suggest_float("c", 0.1, 1.0)}

    def build(self, params: dict[str, object], task: TaskType, columns: object, *, seed: int, balance: bool) -> Pipeline:
        return Pipeline([("model", _Timed(self.clock, self.seconds, **params))])  # type: ignore[arg-type]


@pytest.fixture
def fake_clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    clock = FakeClock()
    monkeypatch.setattr(engine, "Budget", functools.partial(Budget, clock=clock))
    return clock


def _frame() -> pd.DataFrame:
    return load_breast_cancer(as_frame=True).frame


@pytest.mark.parametrize(("budget_s", "fit_s"), [(3.0, 0.05), (8.0, 0.3), (20.0, 1.1)])
def test_a_sweep_ends_within_its_budget_refit_included(
    fake_clock: FakeClock, monkeypatch: pytest.MonkeyPatch, budget_s: float, fit_s: float
) -> None:
    for name in ("logistic", "random_forest"):
        monkeypatch.setitem(FAMILIES, name, _TimedFamily(name, fake_clock, fit_s))
    config = AutoMLConfig(target="target", families=("logistic", "random_forest"), time_budget_s=budget_s)
    result = run_automl(_frame(), config)
    # The budget covers the sweep, the refit and the scoring; only a fit longer than the reserve
    # could overrun it, and these are not.
    assert result.wall_seconds <= budget_s * 1.05, result.wall_seconds
    assert result.wall_seconds == pytest.approx(fake_clock.now - 1000.0)
    # Every fold, then the refits: the winner's, or each member's of an ensemble tried.
    assert fake_clock.fits - sum(len(t.fold_scores) for t in result.trials) in (1, 2)
    assert {t.family for t in result.trials} == {"logistic", "random_forest"}
    unstarted = [t.reason for t in result.trials if t.state == "pruned" and not t.fold_scores]
    assert all(r == "time budget" or r.startswith("skipped: estimated") for r in unstarted), unstarted


def test_a_sweep_stops_when_a_typical_trial_no_longer_fits(fake_clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(FAMILIES, "logistic", _TimedFamily("logistic", fake_clock, 0.1))
    result = run_automl(_frame(), AutoMLConfig(target="target", families=("logistic",), time_budget_s=10.0))
    # 0.5 s a trial (five folds) in about 9.6 s of sweep time: the sweep uses most of it.
    complete = [t for t in result.trials if t.state == "complete"]
    assert 10 <= len(complete) <= 20, len(complete)
    assert 8.0 <= result.wall_seconds <= 10.0 * 1.05, result.wall_seconds


def test_a_budget_that_no_trial_can_finish_in_is_an_input_error(fake_clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(FAMILIES, "logistic", _TimedFamily("logistic", fake_clock, 0.8))  # 4 s a trial
    with pytest.raises(AutoMLInputError, match="too small: no trial completed"):
        run_automl(_frame(), AutoMLConfig(target="target", families=("logistic",), time_budget_s=2.0))
    assert 1 <= fake_clock.fits <= 2  # abandoned between folds, as soon as the pace is known
    assert fake_clock.now - 1000.0 <= 2.0 * 1.05


# -- histogram boosting stops at a deadline ----------------------------------------------------------


def test_histogram_boosting_stops_at_the_deadline_and_otherwise_grows_the_same_trees() -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier

    from tracseq_dagster.automl.deadline import FitInterrupted, fit_deadline, fit_histogram_boosting

    x, y = load_breast_cancer(return_X_y=True)

    def pipeline() -> Pipeline:
        return Pipeline([("model", HistGradientBoostingClassifier(max_iter=60, early_stopping=False, random_state=0))])

    class Ticking(FakeClock):
        """Every reading is one second later: the deadline passes after a known number of checks."""

        def __call__(self) -> float:
            self.now += 1.0
            return self.now

    plain = pipeline().fit(x, y)
    unbounded = fit_histogram_boosting(pipeline(), x, y)  # no deadline: every iteration, the same trees
    assert unbounded[-1].n_iter_ == 60 and np.array_equal(unbounded.predict_proba(x), plain.predict_proba(x))
    assert unbounded[-1].get_params()["early_stopping"] is False  # the family's parameters are restored
    clock = Ticking()
    with fit_deadline(clock.now + 10.5, clock, graceful=True):
        stopped = fit_histogram_boosting(pipeline(), x, y)
    assert 5 <= stopped[-1].n_iter_ < 60  # stopped after the deadline's iteration, and kept its trees
    assert stopped.predict_proba(x).shape == (len(y), 2)
    clock = Ticking()
    with fit_deadline(clock.now + 10.5, clock, graceful=False), pytest.raises(FitInterrupted):
        fit_histogram_boosting(pipeline(), x, y)  # a sweep fold is abandoned instead


def test_histogram_boosting_with_its_own_early_stopping_grows_in_chunks_to_the_same_stop() -> None:
    """A final fit on many more rows stops early by itself (``GradientBoosting.for_more_rows``):
    under a deadline it grows in chunks of iterations, stops where one plain fit stops, and the
    deadline can end it between two chunks."""
    import time

    from sklearn.ensemble import HistGradientBoostingRegressor

    from tracseq_dagster.automl.deadline import (
        HISTOGRAM_CHUNK,
        FitInterrupted,
        fit_deadline,
        fit_histogram_boosting_in_chunks,
        stops_by_itself,
    )

    rng = np.random.default_rng(0)
    x = rng.normal(size=(4_000, 6))
    y = x[:, 0] * 2 + np.sin(3 * x[:, 1]) + rng.normal(scale=0.5, size=4_000)

    def pipeline(max_iter: int = 1_000) -> Pipeline:
        model = HistGradientBoostingRegressor(max_iter=max_iter, early_stopping=True, learning_rate=0.05, random_state=0)
        return Pipeline([("model", model)])

    assert stops_by_itself(pipeline()[-1]) and not stops_by_itself(HistGradientBoostingRegressor(early_stopping=False))
    plain = pipeline().fit(x, y)
    assert HISTOGRAM_CHUNK < plain[-1].n_iter_ < 1_000  # it stopped by itself, after more than one chunk
    with fit_deadline(time.monotonic() + 600.0, time.monotonic, graceful=True):  # far: chunks, never stopped
        chunked = fit_histogram_boosting_in_chunks(pipeline(), x, y)
    assert chunked[-1].n_iter_ == plain[-1].n_iter_ and chunked[-1].get_params()["max_iter"] == 1_000
    np.testing.assert_allclose(chunked.predict(x), plain.predict(x))
    assert chunked[-1].get_params()["warm_start"] is False  # the family's parameters are restored

    class Ticking(FakeClock):
        def __call__(self) -> float:
            self.now += 1.0
            return self.now

    clock = Ticking()
    with fit_deadline(clock.now + 1.5, clock, graceful=True):
        stopped = fit_histogram_boosting_in_chunks(pipeline(), x, y)
    assert stopped[-1].n_iter_ == HISTOGRAM_CHUNK  # the deadline had passed after the first chunk
    clock = Ticking()
    with fit_deadline(clock.now + 1.5, clock, graceful=False), pytest.raises(FitInterrupted):
        fit_histogram_boosting_in_chunks(pipeline(), x, y)


def test_a_family_whose_space_is_covered_leaves_its_time_to_the_others(
    fake_clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    covered = _TimedFamily("logistic", fake_clock, 0.02)
    covered.enough_trials = 6  # type: ignore[misc]
    monkeypatch.setitem(FAMILIES, "logistic", covered)
    monkeypatch.setitem(FAMILIES, "random_forest", _TimedFamily("random_forest", fake_clock, 0.1))
    config = AutoMLConfig(target="target", families=("logistic", "random_forest"), time_budget_s=20.0)
    result = run_automl(_frame(), config)
    trials = {f: [t for t in result.trials if t.family == f and t.rung == 0] for f in ("logistic", "random_forest")}
    assert len(trials["logistic"]) == 6
    # 0.5 s a trial: the other family has the rest of about 19 s of sweep time, not half of it.
    assert len([t for t in trials["random_forest"] if t.state == "complete"]) >= 25
    assert result.wall_seconds <= 20.0 * 1.05


def test_the_reserve_covers_the_families_that_may_be_refit() -> None:
    budget = Budget(60.0, clock=FakeClock())
    budget.reserve_refit(1.0, 5, "lightgbm")  # 1.875 s
    budget.reserve_refit(8.0, 5, "mlp")  # 15 s: a slow family
    # Every family counts at first, and the final choice may refit each: the sum.
    assert budget.sweep_deadline == pytest.approx(1060.0 - 16.875)
    budget.refit_only({"lightgbm", "logistic"})  # the scheduler's leaders: the MLP is far behind
    assert budget.sweep_deadline == pytest.approx(1060.0 - 2.4)  # the 4% minimum
    budget.reserve_refit(4.0, 5, "lightgbm")  # a leader's slower best grows it
    assert budget.sweep_deadline == pytest.approx(1060.0 - 7.5)
    budget.refit_only({"mlp"})  # the MLP climbs back: its estimate was kept
    assert budget.sweep_deadline == pytest.approx(1060.0 - 15.0)
    budget.refit_only({"mlp", "lightgbm"})  # 22.5 s for both: at most 30% of the budget
    assert budget.sweep_deadline == pytest.approx(1060.0 - 18.0)
    final_fit_all = Budget(60.0, refits=2.25, clock=FakeClock())
    final_fit_all.reserve_refit(1.6, 5, "lightgbm")  # 2 s
    final_fit_all.reserve_refit(0.8, 5, "logistic")  # 1 s
    final_fit_all.refit_only({"lightgbm", "logistic"})
    # Both refit on the training rows, the slower once more on training and holdout rows.
    assert final_fit_all.sweep_deadline == pytest.approx(1060.0 - 1.5 * (2.0 + 1.0 + 1.25 * 2.0))
    budget.merge(({}, {}, 9.0))  # a worker's reserve always counts
    budget.refit_only({"lightgbm"})
    assert budget.sweep_deadline == pytest.approx(1060.0 - 9.0)
