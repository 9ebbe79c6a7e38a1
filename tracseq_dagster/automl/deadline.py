"""Deadlines that stop a fit mid-way, so that no single fit can outlast its share of the budget.

Why: a time budget checked only *between* fits holds only if every fit is short. On a large table
one random-forest or boosting fit can take longer than the whole budget (a 42 s forest fold on
54,000 rows), so the learners that fit in steps (boosting iterations, batches of trees) check a
deadline after every step:

* a **sweep fold** that reaches its deadline raises :class:`FitInterrupted`: the trial is
  abandoned and recorded with that reason (a half-fitted fold would score unfairly low);
* the **final refit** (``graceful=True``) stops where it is and keeps what it has: a booster with
  the iterations fitted so far, a forest with the trees grown so far, a valid model either way.

The deadline lives in a :class:`~contextvars.ContextVar`, not in the estimators, so the fitted
models carry only stateless callbacks (no clock, no time) and behave the same once the context
ends: outside :func:`fit_deadline` every check is a no-op. Learners that cannot stop mid-fit
(logistic, MLP) are kept within budget by the cost estimate instead (:mod:`.cost`).

scikit-learn's histogram boosting has no callbacks, but its early stopping calls a scorer after
every iteration: :func:`fit_histogram_boosting` gives it :class:`HistGradientBoostingDeadline`, a
scorer that scores nothing (it returns the time, always "improving") until the deadline, then
stops the fit. The trees are the ones a plain fit grows (checked: identical predictions).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import lightgbm
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from xgboost.callback import TrainingCallback

#: Trees a forest grows between two deadline checks.
FOREST_CHUNK = 10
#: The first chunk of iterations of a histogram boosting fit with early stopping of its own; the next
#: ones take CHUNK_TIME_SHARE of the time left at its pace (:func:`fit_histogram_boosting_in_chunks`).
HISTOGRAM_CHUNK = 50
CHUNK_TIME_SHARE = 0.8


class FitInterrupted(Exception):
    """A sweep fold reached its deadline before the fit ended."""


@dataclass(frozen=True)
class Deadline:
    """When the current fit must stop, on ``clock``; ``graceful``: stop and keep the partial model."""

    at: float
    clock: Callable[[], float]
    graceful: bool

    def passed(self) -> bool:
        return self.clock() >= self.at


_CURRENT: ContextVar[Deadline | None] = ContextVar("automl_fit_deadline", default=None)


@contextmanager
def fit_deadline(at: float, clock: Callable[[], float], *, graceful: bool) -> Iterator[Deadline]:
    """Fits inside this block stop at ``at`` (see the module docstring for how)."""
    deadline = Deadline(at, clock, graceful)
    token = _CURRENT.set(deadline)
    try:
        yield deadline
    finally:
        _CURRENT.reset(token)


def current() -> Deadline | None:
    """The deadline of the fit running now, if any."""
    return _CURRENT.get()


def has_time_for(seconds: float) -> bool:
    """Whether ``seconds`` more fitting end before the current deadline (always, without one)."""
    deadline = current()
    return deadline is None or deadline.clock() + seconds < deadline.at


def _interrupted() -> FitInterrupted:
    return FitInterrupted("interrupted: the fit reached its time share")


class LightGBMDeadline:
    """LightGBM callback (passed to ``fit(callbacks=...)``): stop after the iteration that passes the deadline."""

    order = 100
    before_iteration = False

    def __call__(self, env: Any) -> None:
        deadline = current()
        if deadline is None or not deadline.passed():
            return
        if deadline.graceful:
            # LightGBM keeps the trees so far: best_iteration becomes this iteration + 1.
            raise lightgbm.callback.EarlyStopException(env.iteration, env.evaluation_result_list or [])
        raise _interrupted()


class XGBoostDeadline(TrainingCallback):
    """XGBoost callback (a constructor argument): stop after the iteration that passes the deadline."""

    def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
        deadline = current()
        if deadline is None or not deadline.passed():
            return False
        if deadline.graceful:
            return True  # XGBoost ends training and keeps the trees so far
        raise _interrupted()


class HistGradientBoostingDeadline:
    """An early-stopping "scorer" for histogram boosting, called after every iteration.

    Before the deadline it returns the monotonic time, which always improves, so early stopping
    never triggers; after it, a sweep fold raises :class:`FitInterrupted` and a graceful fit
    returns minus infinity, so that (with ``n_iter_no_change=1``) the fit ends after this
    iteration and keeps the trees so far. Stateless: fitted models may carry it.
    """

    def __call__(self, estimator: Any, x: Any, y: Any, sample_weight: Any = None) -> float:
        deadline = current()
        if deadline is not None and deadline.passed():
            if deadline.graceful:
                return -math.inf
            raise _interrupted()
        return time.monotonic()


#: What :func:`fit_histogram_boosting` sets for the fit (and restores after it).
_HISTOGRAM_STOPPING = {"early_stopping": True, "validation_fraction": None, "n_iter_no_change": 1, "tol": 0.0}


def stops_by_scorer(estimator: Any) -> bool:
    """Whether ``estimator`` is histogram boosting without early stopping of its own (the families')."""
    kinds = (HistGradientBoostingClassifier, HistGradientBoostingRegressor)
    return isinstance(estimator, kinds) and estimator.get_params()["early_stopping"] is False


def fit_histogram_boosting(pipeline: Any, x: Any, y: Any, **fit_params: Any) -> Any:
    """Fit a pipeline ending in histogram boosting that stops at the current deadline (see
    :class:`HistGradientBoostingDeadline`); the estimator's own parameters are restored after."""
    model = pipeline.steps[-1][1]
    keep = {name: model.get_params()[name] for name in [*_HISTOGRAM_STOPPING, "scoring"]}
    model.set_params(**_HISTOGRAM_STOPPING, scoring=HistGradientBoostingDeadline())
    try:
        return pipeline.fit(x, y, **fit_params)
    finally:
        model.set_params(**keep)


def stops_by_itself(estimator: Any) -> bool:
    """Whether ``estimator`` is histogram boosting with early stopping of its own (a final fit on
    many more rows than the trials': ``GradientBoosting.for_more_rows``)."""
    kinds = (HistGradientBoostingClassifier, HistGradientBoostingRegressor)
    return isinstance(estimator, kinds) and estimator.get_params()["early_stopping"] is True


def fit_histogram_boosting_in_chunks(pipeline: Any, x: Any, y: Any, **fit_params: Any) -> Any:
    """Fit a pipeline ending in histogram boosting with early stopping of its own, in chunks of
    iterations (``warm_start``) sized to end by the deadline, checking it between them.

    Its own early stopping needs the scorer that :func:`fit_histogram_boosting` would replace.
    The first chunk is :data:`HISTOGRAM_CHUNK` iterations; each next one as many as
    :data:`CHUNK_TIME_SHARE` of the time left holds at the last chunk's pace, so that a fit takes a
    few chunks (each warm start bins the rows and predicts the trees so far again). Warm starts keep
    the seeded validation split and its score history, so the fit stops where one plain fit would.
    Past the deadline, or with less time left than a fifth of a chunk, a graceful (final) fit keeps
    the iterations so far and a sweep fold raises :class:`FitInterrupted`. Outside a deadline: one
    plain fit. Found on flights' refit on 196,407 rows, which ran 5 s past a 60 s budget.
    """
    deadline = current()
    if deadline is None:
        return pipeline.fit(x, y, **fit_params)
    model = pipeline.steps[-1][1]
    total = int(model.get_params()["max_iter"])
    model.set_params(warm_start=True, max_iter=min(HISTOGRAM_CHUNK, total))
    try:
        started = deadline.clock()
        pipeline.fit(x, y, **fit_params)
        model_params = {k.removeprefix(f"{pipeline.steps[-1][0]}__"): v for k, v in fit_params.items()}
        transformed = pipeline[:-1].transform(x) if len(pipeline.steps) > 1 else x
        done, chunk = model.n_iter_, model.n_iter_
        while model.n_iter_ == model.max_iter < total:  # not stopped by its own validation loss yet
            now = deadline.clock()
            pace = (now - started) / max(chunk, 1)  # seconds an iteration took in the last chunk
            more = int((deadline.at - now) * CHUNK_TIME_SHARE / max(pace, 1e-9))
            if now >= deadline.at or more < HISTOGRAM_CHUNK // 5:
                if deadline.graceful:
                    break
                raise _interrupted()
            started = now
            model.set_params(max_iter=min(model.max_iter + more, total))
            model.fit(transformed, y, **model_params)
            chunk, done = model.n_iter_ - done, model.n_iter_
    finally:
        model.set_params(warm_start=False, max_iter=total)
    return pipeline


def grows_in_chunks(estimator: Any) -> bool:
    """Whether ``estimator`` is a forest that can grow its trees a batch at a time (``warm_start``)."""
    return isinstance(estimator, (RandomForestClassifier, RandomForestRegressor))


def fit_forest_in_chunks(pipeline: Any, x: Any, y: Any, **fit_params: Any) -> Any:
    """Fit a pipeline ending in a forest :data:`FOREST_CHUNK` trees at a time, checking the deadline.

    scikit-learn's ``warm_start`` draws the new trees' seeds after the old ones', so the forest
    is the one a single fit would grow. A sweep fold past its deadline raises
    :class:`FitInterrupted`; a graceful (final) fit keeps the trees grown so far.
    """
    model = pipeline.steps[-1][1]
    total = int(model.get_params()["n_estimators"])
    model.set_params(warm_start=True, n_estimators=min(FOREST_CHUNK, total))
    try:
        pipeline.fit(x, y, **fit_params)
        model_params = {k.removeprefix(f"{pipeline.steps[-1][0]}__"): v for k, v in fit_params.items()}
        transformed = pipeline[:-1].transform(x) if len(pipeline.steps) > 1 else x
        while model.n_estimators < total:
            deadline = current()
            if deadline is not None and deadline.passed():
                if deadline.graceful:
                    break
                raise _interrupted()
            model.set_params(n_estimators=min(model.n_estimators + FOREST_CHUNK, total))
            model.fit(transformed, y, **model_params)
    finally:
        model.set_params(warm_start=False)
    if model.n_estimators != len(model.estimators_):  # stopped early: say what was grown
        model.set_params(n_estimators=len(model.estimators_))
    return pipeline
