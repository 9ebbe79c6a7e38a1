"""Exact attributions of a linear model (logistic regression, ridge): coefficients times the move from a reference.

A linear model's output is ``w · t(x) + b`` over the transformed columns ``t(x)`` (scaled
numbers, missing indicators, one-hot categories). Every transformed column comes from one raw
feature (:attr:`.pipeline_arrays.PreprocessArrays.origins`), so with the reference row ``r``
(the typical training values, the same baseline occlusion uses):

    output(x) = [w · t(r) + b]  +  Σ_features Σ_{its columns c} w_c · (t(x)_c − t(r)_c)
                 └── bias ──┘      └────────── the feature's contribution ──────────┘

exactly, for every row: a feature at its reference value contributes 0, and its contribution is
what occlusion would measure on the output's scale, at the cost of one small matrix product.

What "output" is per task:

* regression (ridge): the prediction;
* binary logistic regression: the log-odds of the target class (the decision function, negated
  when the target is the first class);
* multiclass (multinomial) logistic regression: the target class's log-odds against the
  others, ``z_t − mean_{c≠t} z_c`` = ``log p_t − mean_{c≠t} log p_c`` (the softmax's normaliser
  cancels, so it is linear, hence exact). It rises exactly when the target class gains on the
  average of the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class LinearAttribution:
    """Per transformed column its effective weight toward the target, and the column → feature map."""

    weights: np.ndarray  # (columns,) effective weight toward the target output
    intercept: float
    credit: np.ndarray  # (columns, features): weight of the column, in its feature's slot
    reference: np.ndarray  # (columns,) the transformed reference row
    logits: tuple[np.ndarray, np.ndarray] | None  # classifiers: (coef (columns, k), intercept (k,)) of every class

    @classmethod
    def of(
        cls, estimator: Any, origins: np.ndarray, reference: np.ndarray, target: int | None, features: int
    ) -> LinearAttribution:
        """For a fitted linear ``estimator`` whose transformed columns come from ``origins`` (feature positions)."""
        coef = np.atleast_2d(np.asarray(estimator.coef_, dtype=np.float64))
        intercept = np.atleast_1d(np.asarray(estimator.intercept_, dtype=np.float64))
        logits = None
        if target is None:  # regression: one output
            weights, bias = coef[0], float(intercept[0])
        elif coef.shape[0] == 1:  # binary: the decision function is the log-odds of the second class
            sign = 1.0 if target == 1 else -1.0
            weights, bias = sign * coef[0], sign * float(intercept[0])
            logits = (np.column_stack([np.zeros_like(coef[0]), coef[0]]), np.array([0.0, intercept[0]]))
        else:
            others = np.arange(coef.shape[0]) != target
            weights = coef[target] - coef[others].mean(axis=0)
            bias = float(intercept[target] - intercept[others].mean())
            logits = (coef.T.copy(), intercept)
        credit = np.zeros((len(weights), features))
        credit[np.arange(len(weights)), origins] = weights
        return cls(weights, bias, credit, np.asarray(reference, dtype=np.float64), logits)

    @property
    def bias(self) -> float:
        """The output at the reference row: what the contributions add to."""
        return float(self.reference @ self.weights + self.intercept)

    def contributions(self, transformed: np.ndarray) -> np.ndarray:
        """(rows, features): each feature's share of output(x) − output(reference)."""
        return (transformed - self.reference) @ self.credit

    def output(self, transformed: np.ndarray) -> np.ndarray:
        """The target output of every row (the log-odds defined in the module docstring, or the prediction)."""
        return transformed @ self.weights + self.intercept

    def probabilities(self, transformed: np.ndarray) -> np.ndarray:
        """Class probabilities as the estimator computes them (sigmoid for binary, softmax otherwise)."""
        if self.logits is None:
            raise ValueError("a regression model has no class probabilities")
        coef, intercept = self.logits
        z = transformed @ coef + intercept
        z -= z.max(axis=1, keepdims=True)
        exp = np.exp(z)
        return exp / exp.sum(axis=1, keepdims=True)
