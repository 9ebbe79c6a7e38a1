"""The boosters' number of rounds, found by early stopping on a one-split trial's validation rows.

A trial on one holdout split (:func:`.cost.holdout_pays`: a table large for the budget) fits
LightGBM or XGBoost with its configuration's ``n_estimators`` as a ceiling, watching the loss on
the split's validation rows, and stops after :func:`patience` rounds without improvement. The
trial is scored at its best round. The configuration to refit carries that many rounds and the
rows they were found on (:func:`with_found_rounds`, :meth:`.engine.FamilySweep.chosen_params`);
the final fit grows them in proportion to its own rows (:func:`for_rows`). A trial that grew to its
ceiling still improving found a floor; its promotion to more rows may grow more (:func:`lifted_ceiling`).

Why: the best number of rounds depends on the learning rate, the leaves and the rows, so a
searched ``n_estimators`` is mostly wrong. Too many rounds overfit and cost time, too few
underfit. Early stopping finds it in one fit, as AutoGluon and LightGBM's own tuning guides do.
k-fold trials do not stop early: each fold would pick its own count.

The loss watched is the library's default for the task (squared error, log loss), a smooth proxy
for the sweep's metric. The validation rows then both stop and score the trial, which biases the
score slightly upwards. AutoGluon accepts the same bias.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import lightgbm
import numpy as np
import pandas as pd
import xgboost
from sklearn.pipeline import Pipeline

from tracseq_dagster.automl.families import MOST_ROUNDS_STOPPED_EARLY

#: Rounds without improvement of the validation loss before a fit stops (:func:`patience`): at least
#: PATIENCE, more for a fit whose best round is late, at most MOST_PATIENCE.
PATIENCE = 50
PATIENCE_RATE = 0.3
PATIENCE_OFFSET = 10
MOST_PATIENCE = 300


def patience(best_round: int) -> int:
    """Rounds a fit whose best round so far is ``best_round`` waits for a better one.

    AutoGluon's adaptive early stopping for its boosters (``AdaptiveES``: 0.3 × the best round + 10,
    between 20 and 300 rounds), with this module's earlier fixed 50 as the floor. Why: at a low
    learning rate the validation loss falls slowly for thousands of rounds, with plateaus longer
    than 50 rounds on the way. On hotel_rates (seed 0, the sweep's winning LightGBM at rate 0.055,
    BENCHMARKS.md) a patience of 50 stopped at round 1,410 (validation rmse 12.92), 100 at 2,774
    (12.71), 200 at 3,542 (12.68, the best of 8,000).
    """
    return int(min(max(PATIENCE, PATIENCE_RATE * best_round + PATIENCE_OFFSET), MOST_PATIENCE))


#: The parameter that carries the rows a configuration's rounds were found on (:func:`with_found_rounds`).
ROUNDS_FOUND_ON_ROWS = "rounds_found_on_rows"
#: The most rounds :func:`for_rows` grows (twice the search's ceiling on one split).
MOST_GROWN_ROUNDS = 8192


#: A promoted configuration whose trial grew to its ``n_estimators`` may grow this many times more.
CEILING_LIFT = 4


def lifted_ceiling(ceiling: int) -> int:
    """The rounds a promotion (:meth:`.engine.FamilySweep._promote`) may grow for a configuration whose
    one-split trial was still improving at ``ceiling``: :data:`CEILING_LIFT` times more, at most the
    search's top on one split (never fewer than it had).

    Why: a searched ``n_estimators`` is the trial's cost bound, and the rounds it found there are
    a floor, not the best round. On hotel_rates (seed 0, BENCHMARKS.md) the best one-split trials
    all stopped at their ceiling (LightGBM 2,890 of 2,890 and 3,297 of 3,302 rounds), and their
    configuration refit with 6,500 rounds instead of the 3,910 grown from such a floor scored test
    rmse 11.885 against 11.978. The promotion is the configuration's second look, on more rows; it
    stops early as the trial did, and its deadline ends it where its share does.
    """
    return max(ceiling, min(ceiling * CEILING_LIFT, MOST_ROUNDS_STOPPED_EARLY))


@dataclass(frozen=True)
class StoppedFit:
    """``best``: the rounds that scored best on the validation rows (what a refit should grow);
    ``grown``: the rounds the fit grew before it stopped (``best`` + up to its :func:`patience`)."""

    best: int
    grown: int


def stops_early(model: Any) -> bool:
    """Whether ``model`` (a pipeline's last step) is a booster this module can stop early."""
    return type(model).__name__ in ("LGBMClassifier", "LGBMRegressor", "XGBClassifier", "XGBRegressor")


def fit_stopping_early(
    pipeline: Pipeline,
    x: pd.DataFrame,
    y: np.ndarray,
    x_valid: pd.DataFrame,
    y_valid: np.ndarray,
    fit_params: dict[str, Any],
) -> StoppedFit:
    """Fit ``pipeline`` on ``x``, ``y``, its booster stopped early on ``x_valid``, ``y_valid``.

    The preprocessing steps are fitted on ``x`` only, then transform both. The pipeline predicts
    at the best round afterwards (both libraries' ``predict`` default).
    ``fit_params`` are the pipeline's (``model__…``).
    """
    head, model = pipeline[:-1], pipeline.steps[-1][1]
    train = head.fit_transform(x, y)
    valid = head.transform(x_valid)
    own = {name.removeprefix("model__"): value for name, value in fit_params.items()}
    if type(model).__name__.startswith("LGBM"):
        stop = _LightGBMStopping()
        model.fit(train, y, eval_X=valid, eval_y=y_valid, **{**own, "callbacks": [*own.get("callbacks", []), stop]})
        grown = _evaluated_rounds(model.evals_result_)  # its booster keeps the best rounds only
        return StoppedFit(best=int(model.best_iteration_ or grown), grown=grown)
    callbacks = model.get_params()["callbacks"]
    model.set_params(callbacks=[*(callbacks or []), _XGBoostStopping(rounds=PATIENCE)])
    try:
        model.fit(train, y, eval_set=[(valid, y_valid)], verbose=False, **own)
    finally:
        model.set_params(callbacks=callbacks)  # a clone for a refit has no validation rows to watch
    grown = _evaluated_rounds(model.evals_result())
    best = getattr(model, "best_iteration", None)
    return StoppedFit(best=grown if best is None else int(best) + 1, grown=grown)


class _LightGBMStopping:
    """LightGBM's early stopping on the first validation metric, with :func:`patience` rounds.

    Written here because LightGBM's own (``lightgbm.early_stopping``) takes a fixed patience and its
    class is private; it ends a fit the same way, so the booster keeps and predicts at the best round.
    """

    def __init__(self) -> None:
        # Where LightGBM's own early stopping runs, after the evaluation is recorded; set on the
        # instance, since LightGBM numbers a callback without its own ``order`` to run first.
        self.order = 30
        self.before_iteration = False
        self.best_round = -1  # 0-based, as LightGBM counts
        self.best_score = np.inf
        self.best_results: list[Any] = []

    def __call__(self, env: lightgbm.callback.CallbackEnv) -> None:
        results = env.evaluation_result_list or []
        if not results:
            return
        _, _, value, higher_is_better = results[0][:4]
        score = -value if higher_is_better else value
        if score < self.best_score:
            self.best_round, self.best_score, self.best_results = env.iteration, score, list(results)
        last = env.iteration == env.end_iteration - 1
        if last or env.iteration - self.best_round >= patience(self.best_round + 1):
            raise lightgbm.callback.EarlyStopException(self.best_round, self.best_results)


class _XGBoostStopping(xgboost.callback.EarlyStopping):
    """XGBoost's early stopping, its patience (``rounds``) set by :func:`patience` every round."""

    def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
        self.rounds = patience(epoch - self.current_rounds)  # the best round so far, 1-based
        return bool(super().after_iteration(model, epoch, evals_log))


def _evaluated_rounds(evals: dict[str, dict[str, list[float]]]) -> int:
    """How many rounds a fit grew: the length of its validation loss history."""
    return len(next(iter(next(iter(evals.values())).values())))


def with_found_rounds(params: dict[str, Any], rounds: int, rows: int) -> dict[str, Any]:
    """``params`` with the ``rounds`` early stopping found while fitting ``rows`` rows."""
    return {**params, "n_estimators": int(rounds), ROUNDS_FOUND_ON_ROWS: int(rows)}


def for_rows(params: dict[str, Any], rows: int) -> dict[str, Any]:
    """``params`` for a fit on ``rows`` rows: rounds found on fewer rows grow in proportion (at most
    :data:`MOST_GROWN_ROUNDS`); the estimator's own parameters only.

    Why: more rows bear more rounds before the validation loss turns. Measured on the benchmark's
    one-split tables (seed 0, 60 s, BENCHMARKS.md): refitting the found rounds unchanged on 1.6–1.9×
    the rows gave hotel_rates rmse 12.35 and diamonds 543.9; grown in proportion, 11.98 and 541.9.
    """
    if ROUNDS_FOUND_ON_ROWS not in params:
        return params
    own = {name: value for name, value in params.items() if name != ROUNDS_FOUND_ON_ROWS}
    grown = round(int(own["n_estimators"]) * rows / max(int(params[ROUNDS_FOUND_ON_ROWS]), 1))
    own["n_estimators"] = int(min(max(grown, 1), max(MOST_GROWN_ROUNDS, int(own["n_estimators"]))))
    return own
