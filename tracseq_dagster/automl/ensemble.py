"""A weighted ensemble of the families' best trials, chosen greedily on out-of-fold predictions.

Why: the families' best models make different mistakes (a linear model extrapolates where trees
plateau, boosters and forests disagree on sparse regions); averaging them often beats the single
best, at no extra tuning time, since every trial already predicted its validation folds.
Caruana et al.'s ensemble selection (2004, what AutoGluon and auto-sklearn use) is greedy forward
selection *with replacement*: start from the best single model, then repeatedly add the member
whose addition scores best on the out-of-fold predictions; the weights are how often each was
added. Selection with replacement overfits the validation rows less than fitting weights freely.

:class:`WeightedEnsemble` is the served model: an ordinary picklable scikit-learn estimator
(``predict``, ``predict_proba`` on the user's raw columns) whose members are the families' refit
pipelines. For classification it predicts encoded labels 0..k-1, like every family's pipeline;
the engine wraps it in :class:`~tracseq_dagster.automl.model.LabelDecodingClassifier`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator

from tracseq_dagster.automl.tasks import Metric

#: Greedy additions (the weights are multiples of 1 / ROUNDS).
ROUNDS = 25


def greedy_ensemble(
    predictions: list[np.ndarray], y: np.ndarray, metric: Metric, rounds: int = ROUNDS
) -> tuple[np.ndarray, float]:
    """Weights (summing to 1) over ``predictions`` and the ensemble's score on ``y``.

    ``predictions[i]`` is member i's out-of-fold output for the rows of ``y`` (class
    probabilities ``n × k``, or predicted values). The first member added is the best single one,
    so the ensemble's score is never worse than the best member's on these rows.
    """
    sign = 1.0 if metric.greater_is_better else -1.0
    counts = np.zeros(len(predictions))
    total = np.zeros_like(predictions[0], dtype="float64")
    best_score = -np.inf
    for step in range(1, rounds + 1):
        scores = [sign * metric.score(y, (total + p) / step) for p in predictions]
        chosen = int(np.argmax(scores))
        if step > 1 and scores[chosen] <= best_score:
            break  # no addition helps any more
        counts[chosen] += 1
        total += predictions[chosen]
        best_score = scores[chosen]
    return counts / counts.sum(), float(sign * best_score)


class WeightedEnsemble(BaseEstimator):
    """Fitted ``members`` (pipelines on the same raw columns) averaged with ``weights``.

    ``task`` is ``"regression"`` (weighted mean of predictions) or a classification task
    (weighted mean of class probabilities; ``predict`` is their argmax, an encoded label).
    Built prefit by the engine; ``fit`` refits every member on new rows.
    """

    def __init__(self, members: list[Any], weights: list[float], task: str) -> None:
        self.members = members
        self.weights = weights
        self.task = task

    def fit(self, X: Any, y: Any, **fit_params: Any) -> WeightedEnsemble:
        for member in self.members:
            member.fit(X, y, **fit_params)
        return self

    def _weighted(self, outputs: list[np.ndarray]) -> np.ndarray:
        weights = np.asarray(self.weights, dtype="float64")
        return sum(w * np.asarray(o, dtype="float64") for w, o in zip(weights / weights.sum(), outputs, strict=True))

    def predict_proba(self, X: Any) -> np.ndarray:
        if self.task == "regression":
            raise AttributeError("a regression ensemble has no predict_proba")
        return self._weighted([m.predict_proba(X) for m in self.members])

    def predict(self, X: Any) -> np.ndarray:
        if self.task == "regression":
            return self._weighted([m.predict(X) for m in self.members])
        return np.argmax(self.predict_proba(X), axis=1)

    @property
    def classes_(self) -> np.ndarray:
        return self.members[0].classes_
