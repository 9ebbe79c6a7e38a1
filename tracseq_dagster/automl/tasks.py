"""Learning tasks: what kind of target we have, how it is scored, and how imbalanced it is.

Task detection (:func:`detect_task`) looks only at the non-null target values:

* strings, categoricals and booleans are classification: two distinct values → ``binary``,
  more → ``multiclass``;
* numbers with exactly two distinct values are ``binary``;
* whole numbers with at most :data:`MAX_INTEGER_CLASSES` distinct values are ``multiclass``
  (class codes such as 0/1/2); any other number is ``regression``.

Default metrics (:data:`DEFAULT_METRICS`), all overridable by name:

* binary → ``roc_auc``: threshold-free and insensitive to class balance.
* multiclass → ``roc_auc_ovr``, the macro average of one-vs-rest ROC AUCs. Chosen over balanced
  log loss because it sits on the same bounded 0.5–1 scale as the binary metric, weighs every
  class equally whatever its size (the rare ``fail`` class matters as much as ``pass``), and
  ranks models without being dominated by a few over-confident mistakes. Calibration is checked
  separately (the promotion gate's Brier / ECE bound), not by the sweep's objective.
* regression → ``rmse``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    f1_score,
    log_loss,
    mean_absolute_error,
    r2_score,
    roc_auc_score,
    root_mean_squared_error,
)

TaskType = Literal["binary", "multiclass", "regression"]
TaskChoice = Literal["auto", "binary", "multiclass", "regression"]

#: Whole-number targets with at most this many distinct values are read as class codes.
MAX_INTEGER_CLASSES = 10


def detect_task(target: pd.Series) -> TaskType:
    """Return the task a target column calls for (see the module docstring for the rules)."""
    values = target.dropna()
    distinct = values.nunique()
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    if not numeric:
        return "binary" if distinct <= 2 else "multiclass"
    if distinct <= 2:
        return "binary"
    as_float = values.astype("float64")
    whole = bool(np.all(np.isfinite(as_float)) and np.all(as_float == np.round(as_float)))
    return "multiclass" if whole and distinct <= MAX_INTEGER_CLASSES else "regression"


def is_classification(task: TaskType) -> bool:
    """True for binary and multiclass tasks."""
    return task != "regression"


@dataclass(frozen=True)
class Metric:
    """A scoring function on model output.

    ``score(y_true, output)`` takes encoded labels 0..k-1 and the class probabilities
    (``n × k``) when ``needs_proba``, else true and predicted values / labels.
    """

    name: str
    greater_is_better: bool
    needs_proba: bool
    score: Callable[[np.ndarray, np.ndarray], float]


def _binary_auc(y: np.ndarray, proba: np.ndarray) -> float:
    return float(roc_auc_score(y, proba[:, 1]))


def _ovr_auc(y: np.ndarray, proba: np.ndarray) -> float:
    labels = np.arange(proba.shape[1])
    if proba.shape[1] == 2:
        return _binary_auc(y, proba)
    return float(roc_auc_score(y, proba, multi_class="ovr", average="macro", labels=labels))


def _log_loss(y: np.ndarray, proba: np.ndarray) -> float:
    return float(log_loss(y, proba, labels=np.arange(proba.shape[1])))


def _balanced_log_loss(y: np.ndarray, proba: np.ndarray) -> float:
    # Every class contributes equally, whatever its size: weight rows by 1 / class frequency.
    return float(log_loss(y, proba, labels=np.arange(proba.shape[1]), sample_weight=balanced_sample_weight(y)))


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("roc_auc", True, True, _binary_auc),
        Metric("roc_auc_ovr", True, True, _ovr_auc),
        Metric("log_loss", False, True, _log_loss),
        Metric("balanced_log_loss", False, True, _balanced_log_loss),
        Metric("accuracy", True, False, lambda y, p: float(accuracy_score(y, p))),
        Metric("balanced_accuracy", True, False, lambda y, p: float(balanced_accuracy_score(y, p))),
        Metric("f1_macro", True, False, lambda y, p: float(f1_score(y, p, average="macro"))),
        Metric("rmse", False, False, lambda y, p: float(root_mean_squared_error(y, p))),
        Metric("mae", False, False, lambda y, p: float(mean_absolute_error(y, p))),
        Metric("r2", True, False, lambda y, p: float(r2_score(y, p))),
    )
}

DEFAULT_METRICS: dict[TaskType, str] = {"binary": "roc_auc", "multiclass": "roc_auc_ovr", "regression": "rmse"}

_CLASSIFICATION_ONLY = {"roc_auc", "roc_auc_ovr", "log_loss", "balanced_log_loss", "accuracy", "balanced_accuracy", "f1_macro"}


def resolve_metric(task: TaskType, name: str | None) -> Metric:
    """The metric called ``name`` (or the task's default), checked to fit the task.

    Raises ``KeyError`` for an unknown name and ``ValueError`` for one that does not fit the
    task; the engine turns both into :class:`~tracseq_dagster.automl.engine.AutoMLInputError`.
    """
    chosen = name or DEFAULT_METRICS[task]
    if chosen not in METRICS:
        raise KeyError(f"unknown metric {chosen!r}; choose one of {', '.join(sorted(METRICS))}")
    if is_classification(task) != (chosen in _CLASSIFICATION_ONLY):
        raise ValueError(f"metric {chosen!r} does not fit a {task} task")
    if task == "multiclass" and chosen == "roc_auc":
        chosen = "roc_auc_ovr"  # plain ROC AUC is undefined for more than two classes
    return METRICS[chosen]


# -- class imbalance ---------------------------------------------------------------------------

#: Majority/minority ratio from which the families switch on class weighting. Mild imbalance
#: barely hurts ranking metrics, while weights cost time (HistGradientBoosting fits several
#: times slower with sample weights), so weighting starts at a clear 3:1.
IMBALANCE_RATIO = 3.0


def class_counts(y: np.ndarray) -> np.ndarray:
    """Rows per encoded class 0..k-1."""
    return np.bincount(np.asarray(y, dtype=np.int64))


def imbalance_ratio(y: np.ndarray) -> float:
    """Size of the largest class over the smallest (1.0 = balanced)."""
    counts = class_counts(y)
    counts = counts[counts > 0]
    return float(counts.max() / counts.min())


def is_imbalanced(y: np.ndarray) -> bool:
    """Whether the families should weight classes (ratio at least :data:`IMBALANCE_RATIO`)."""
    return imbalance_ratio(y) >= IMBALANCE_RATIO


def balanced_sample_weight(y: np.ndarray) -> np.ndarray:
    """Row weights ``n / (k · count(class))``, scikit-learn's ``class_weight="balanced"`` per row."""
    y = np.asarray(y, dtype=np.int64)
    counts = class_counts(y).astype("float64")
    present = np.count_nonzero(counts)
    return (len(y) / (present * counts))[y]


def positive_weight(y: np.ndarray) -> float:
    """Negatives over positives, XGBoost's ``scale_pos_weight`` for a binary 0/1 target."""
    counts = class_counts(y)
    return float(counts[0] / counts[1]) if len(counts) > 1 and counts[1] else 1.0
