"""Occlusion attributions of a scikit-learn MLP, computed from its weights instead of re-running the pipeline.

Occlusion explains a row ``x`` by, for every feature ``j``,

    contribution_j(x) = value(x) − value(x with feature j alone at its reference value)

where value is the target class's probability (classifier) or the prediction (regressor). Done
on the pipeline, that is ``features + 1`` passes of pandas preprocessing and the network over
every row. Two facts make it cheap:

* every transformed column comes from one feature only (:attr:`.pipeline_arrays.PreprocessArrays.origins`),
  so occluding feature ``j`` is exactly replacing its transformed columns ``C_j`` by the
  reference row's ``r[C_j]``, and the rest of the transformed row is unchanged;
* the first layer is linear: with ``Z = X W1 + b1`` computed once, the occluded row's first
  pre-activation is ``Z + (r[C_j] − X[:, C_j]) W1[C_j]``, an update of rank ``|C_j|`` (1 for a
  number without missing indicator, the category count for a one-hot feature).

So per feature only the layers after the first run, on the rows where the feature is not
already at its reference (the others contribute exactly 0, as occlusion says), and of the
output layer only what the target's value needs (for softmax, the differences to the target's
logit). Everything is float64 with scikit-learn's own activation functions in its own order
(``_forward_pass_fast``): the probabilities equal ``predict_proba``'s, and the contributions the
pipeline-level occlusion up to rounding (~1e-15).

Cost, on 100,000 rows of 20 features (48 transformed columns): about 5 µs of CPU a row for one
hidden layer of 100 units (relu), 7 for (64, 32), against 120–200 for occlusion through the
pipeline. A tanh or logistic hidden layer costs far more (numpy's tanh: about 15 ns a value).

The contributions are not additive: they do not sum to ``value(x) − value(reference)``,
because the network is not linear in its features (:attr:`MlpOcclusion.bias`, the value at the
reference row, is there for display, not as what the contributions add up to).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.linalg.blas import dger
from scipy.special import expit
from sklearn.neural_network._base import ACTIVATIONS
from threadpoolctl import ThreadpoolController

#: Rows processed at once: bounds the per-feature hidden-layer arrays (rows × widest layer).
CHUNK_ROWS = 1024


@dataclass(frozen=True)
class _Occluded:
    """One feature the first layer reads: where its transformed columns are, their reference, their first-layer weights."""

    feature: int
    columns: np.ndarray  # (c,) positions among the transformed columns
    reference: np.ndarray  # (c,) the reference row's values in those columns
    weights: np.ndarray  # (c, first layer width) rows of the first layer's coefficients


@dataclass(frozen=True)
class MlpOcclusion:
    """A fitted ``MLPClassifier`` / ``MLPRegressor`` read once: its layers, each feature's columns, the target's head."""

    layers: tuple[tuple[np.ndarray, np.ndarray], ...]  # (coefficients, intercepts) of every layer, float64
    hidden_activation: str
    output_activation: str
    target: int | None  # index of the target class among the estimator's classes; None: regression
    classes: int  # width of predict_proba (0 for regression)
    reference: np.ndarray  # (columns,) the transformed reference row
    occluded: tuple[_Occluded, ...]  # the features the first layer reads (a non-zero weight on one of their columns)
    features: int
    head: tuple[tuple[np.ndarray, float], ...]  # what the value needs of the output layer: see _head
    complement: bool  # binary toward the first class: the value is 1 − the one output

    @classmethod
    def of(cls, estimator: Any, origins: np.ndarray, reference: np.ndarray, target: int | None, features: int) -> MlpOcclusion:
        """For a fitted MLP whose transformed column ``c`` comes from feature ``origins[c]`` (of ``features``).

        ``reference`` is the transformed reference row; ``target`` the index of the target class
        in ``estimator.classes_``, or None for a regressor.
        """
        layers = tuple((np.asarray(coef, dtype=np.float64), np.asarray(intercept, dtype=np.float64))
                       for coef, intercept in zip(estimator.coefs_, estimator.intercepts_, strict=True))  # fmt: skip
        origins = np.asarray(origins, dtype=np.int64)
        reference = np.asarray(reference, dtype=np.float64)
        columns = layers[0][0].shape[0]
        if origins.shape != (columns,) or reference.shape != (columns,):
            raise ValueError(
                f"the network reads {columns} columns; origins {origins.shape} and reference {reference.shape} must match"
            )
        if len(origins) and (origins.min() < 0 or origins.max() >= features):
            raise ValueError(f"origins must be feature positions in [0, {features})")
        if hasattr(estimator, "classes_"):
            classes = len(estimator.classes_)
            if target is None or not 0 <= target < classes:
                raise ValueError(f"a classifier needs a target class index in [0, {classes}), not {target!r}")
        else:
            if target is not None:
                raise ValueError("a regressor has no target class")
            if estimator.n_outputs_ != 1:
                raise ValueError("only single-output regressors are supported")
            classes = 0
        first = layers[0][0]
        occluded = []
        for feature in range(features):
            own = np.flatnonzero(origins == feature)
            if np.any(first[own] != 0):  # else the network never reads the feature: it contributes exactly 0
                occluded.append(_Occluded(feature, own, reference[own].copy(), np.ascontiguousarray(first[own])))
        output = estimator.out_activation_
        complement = output == "logistic" and layers[-1][0].shape[1] == 1 and target == 0
        return cls(layers, estimator.activation, output, target, classes, reference, tuple(occluded), features,
                   _head(layers, output, target), complement)  # fmt: skip

    @property
    def bias(self) -> float:
        """The value at the reference row (not what the contributions add up to: see the module docstring)."""
        return float(self._values(self._forward(self._first(self.reference[None, :])))[0])

    def outputs_and_contributions(self, transformed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """What the estimator answers for ``transformed`` (the estimator's input matrix), and the occlusion contributions.

        The first item is ``predict_proba(transformed)`` (rows, classes) for a classifier and
        ``predict(transformed)`` (rows,) for a regressor. The second is (rows, features): each
        feature's occlusion contribution in the value's units (the target class's probability,
        or the prediction); exactly 0 for a feature at its reference, without transformed
        columns, or whose columns all have zero first-layer weights.
        """
        x = np.asarray(transformed, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != len(self.reference):
            raise ValueError(f"expected (rows, {len(self.reference)}) transformed columns, got {x.shape}")
        outputs = np.empty((len(x), self.classes or 1))
        contributions = np.zeros((len(x), self.features))
        # One BLAS thread: a chunk's products are small, and OpenBLAS's threads on them cost
        # 3 to 5 times the CPU on a shared 2-core machine (the limit is process-wide while it
        # holds, as in scikit-learn's KMeans). Softmax's closed form may overflow to the right
        # answer (see _occluded_values): no warning for it.
        with _blas_controller().limit(limits=1, user_api="blas"), np.errstate(over="ignore"):
            for start in range(0, len(x), CHUNK_ROWS):
                rows = slice(start, start + CHUNK_ROWS)
                self._chunk(x[rows], outputs[rows], contributions[rows])
        return (outputs if self.classes else outputs[:, 0]), contributions

    def _chunk(self, x: np.ndarray, outputs: np.ndarray, contributions: np.ndarray) -> None:
        """Fill ``outputs`` and ``contributions`` (views of the caller's arrays) for the rows ``x``."""
        z = self._first(x)
        top = self._forward(z.copy())  # z is kept: every feature's occluded rows start from it
        outputs[:] = self._probabilities(top)
        values = self._values(top)
        for feature in self.occluded:
            delta = feature.reference - x[:, feature.columns]
            moved = np.flatnonzero((delta != 0).any(axis=1))  # NaN counts as moved, as occlusion would
            if len(moved) == 0:
                continue
            if len(moved) == len(x):
                rows: slice | np.ndarray = slice(None)
                occluded = _shifted(z.copy(), delta, feature.weights)
            else:
                rows = moved
                occluded = _shifted(z[moved], delta[moved], feature.weights)  # the gather is a copy
            contributions[rows, feature.feature] = values[rows] - self._occluded_values(occluded)

    def _first(self, x: np.ndarray) -> np.ndarray:
        """The first layer's pre-activations, as scikit-learn computes them (product, then intercept)."""
        coef, intercept = self.layers[0]
        z = x @ coef
        z += intercept
        return z

    def _forward(self, z: np.ndarray) -> np.ndarray:
        """From the first layer's pre-activations to the output layer's activations; ``z`` is overwritten.

        The order of scikit-learn's ``_forward_pass_fast``: hidden activation, next layer's
        product and intercept, ..., then the output activation (logistic, softmax or identity).
        """
        hidden = ACTIVATIONS[self.hidden_activation]
        for coef, intercept in self.layers[1:]:
            hidden(z)
            z = z @ coef
            z += intercept
        ACTIVATIONS[self.output_activation](z)
        return z

    def _occluded_values(self, z: np.ndarray) -> np.ndarray:
        """The value from the first layer's pre-activations, computing of the output layer only what it needs.

        The hidden layers run as in :meth:`_forward`; the output layer is :func:`_head`'s few
        matrix-vector products. Softmax toward class t is ``1 / (1 + Σ_{c≠t} exp(z_c − z_t))``,
        the same number as scikit-learn's normalised exponentials (to rounding) without
        computing and normalising every class; where an exponential overflows, the
        probability is 0 to double precision and 1 / inf gives exactly that.
        """
        if len(self.layers) > 1:  # else z already is the output layer's pre-activations
            hidden = ACTIVATIONS[self.hidden_activation]
            hidden(z)
            for coef, intercept in self.layers[1:-1]:
                z = z @ coef
                z += intercept
                hidden(z)
        outputs = []
        for weights, offset in self.head:
            output = z @ weights
            output += offset
            outputs.append(output)
        if self.output_activation == "softmax":
            total = np.ones(len(z))
            for output in outputs:
                total += np.exp(output, out=output)
            return 1 / total
        if self.output_activation == "logistic":
            probability = expit(outputs[0])
            return 1 - probability if self.complement else probability
        return outputs[0]

    def _values(self, top: np.ndarray) -> np.ndarray:
        """Per row the value occlusion measures from the output layer's activations: the target class's probability, or the prediction."""
        if self.target is None:
            return top[:, 0]
        if top.shape[1] == 1:  # binary: the one logistic output is the second class's probability
            return top[:, 0] if self.target == 1 else 1 - top[:, 0]
        return top[:, self.target]

    def _probabilities(self, top: np.ndarray) -> np.ndarray:
        """predict_proba's answer (binary: both columns from the one output), or the predictions as one column."""
        if self.classes and top.shape[1] == 1:
            return np.column_stack([1 - top[:, 0], top[:, 0]])
        return top


def _shifted(z: np.ndarray, delta: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``z + delta @ weights``; ``z`` is the caller's own copy of the pre-activations, and may be overwritten.

    Most features are one column (a number without missing indicator): for them BLAS's
    in-place rank-one update (``dger``, on the transposed view, which is Fortran-ordered) costs
    about half of a broadcast product followed by a sum.
    """
    if len(weights) == 1:
        return dger(1.0, weights[0], delta[:, 0], a=z.T, overwrite_a=True).T
    shifted = delta @ weights
    shifted += z
    return shifted


_CONTROLLER: list[ThreadpoolController] = []


def _blas_controller() -> ThreadpoolController:
    """The process's thread pools, inspected once (that takes milliseconds; limiting then takes microseconds)."""
    if not _CONTROLLER:
        _CONTROLLER.append(ThreadpoolController())
    return _CONTROLLER[0]


def _head(
    layers: tuple[tuple[np.ndarray, np.ndarray], ...], output: str, target: int | None
) -> tuple[tuple[np.ndarray, float], ...]:
    """The output layer reduced to what the target's value needs: (weights, offset) pairs.

    Softmax: one pair per other class c, giving ``z_c − z_t``. Logistic: the target's own output
    (the one output of a binary classifier). Identity (regression): the one prediction. Without
    hidden layers the first layer is the output layer and its pre-activations come in whole: the
    pairs then pick and subtract them.
    """
    if len(layers) > 1:
        coef, intercept = layers[-1]
    else:
        coef, intercept = np.eye(layers[0][0].shape[1]), np.zeros(layers[0][0].shape[1])
    if output == "softmax":
        assert target is not None
        return tuple((np.ascontiguousarray(coef[:, c] - coef[:, target]), float(intercept[c] - intercept[target]))
                     for c in range(coef.shape[1]) if c != target)  # fmt: skip
    own = target if output == "logistic" and coef.shape[1] > 1 else 0  # multilabel: one logistic output per class
    return ((np.ascontiguousarray(coef[:, own]), float(intercept[own])),)
