"""How a fitted model does on a holdout: the metric overall and per slice, calibration, plots.

Used by ``registered_model`` (what is logged to MLflow) and by the promotion gate (challenger
and champion scored on the very same rows). The model is any fitted estimator speaking the
target's own labels (``classes_`` and ``predict_proba`` for classifiers), such as the engine's
:class:`~tracseq_dagster.automl.LabelDecodingClassifier` or a model loaded back from MLflow.

Calibration (classification only):

* **Brier score**: mean over rows of the squared distance between the predicted class
  probabilities and the one-hot truth, summed over classes (0 is perfect, 2 is the worst).
* **Expected calibration error (ECE)**: rows binned by the confidence of the predicted class
  into :data:`ECE_BINS` equal-width bins; the row-weighted mean gap between each bin's mean
  confidence and its accuracy.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no screen: figures are written to files only

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from sklearn.inspection import permutation_importance  # noqa: E402
from sklearn.metrics import ConfusionMatrixDisplay, RocCurveDisplay  # noqa: E402

from tracseq_dagster.automl.engine import predict_scores  # noqa: E402
from tracseq_dagster.automl.tasks import METRICS, Metric  # noqa: E402
from tracseq_dagster.conformal import conformal_half_width  # noqa: E402

ECE_BINS = 10
#: Slices with fewer rows are reported but not judged: their score is mostly noise.
MIN_SLICE_ROWS = 30


@dataclass
class SliceScore:
    """The metric on one slice; ``score`` is None when it cannot be computed (``note`` says why)."""

    rows: int
    score: float | None
    note: str | None = None


@dataclass
class Evaluation:
    """A model's scores on one set of rows."""

    metric: str
    greater_is_better: bool
    score: float
    rows: int
    brier: float | None = None
    ece: float | None = None
    slices: dict[str, SliceScore] = field(default_factory=dict)
    #: Regression only: the split-conformal half-width on these rows and the coverage it is for.
    interval_half_width: float | None = None
    interval_coverage: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def mlflow_metrics(self, prefix: str = "holdout") -> dict[str, float]:
        """Flat metric names for MLflow: overall, calibration and one per judged slice."""
        out = {f"{prefix}_{self.metric}": self.score}
        if self.brier is not None:
            out[f"{prefix}_brier"] = self.brier
        if self.ece is not None:
            out[f"{prefix}_ece"] = self.ece
        for name, part in self.slices.items():
            if part.score is not None:
                out[f"{prefix}_{self.metric}_{_metric_key(name)}"] = part.score
        return out


def evaluate(model: Any, frame: pd.DataFrame, target: str, metric_name: str, slice_column: str | None) -> Evaluation:
    """Score ``model`` on ``frame`` (features plus ``target``) overall and per ``slice_column`` value."""
    metric = METRICS[metric_name]
    x = frame.drop(columns=[target])
    y_true, output = _truth_and_output(model, x, frame[target], metric)
    evaluation = Evaluation(metric.name, metric.greater_is_better, float(metric.score(y_true, output)), len(frame))
    if metric.needs_proba:
        evaluation.brier = brier_score(y_true, output)
        evaluation.ece = expected_calibration_error(y_true, output)
    if slice_column is not None:
        groups = frame[slice_column].astype(str).to_numpy()
        for value in sorted(set(groups)):
            rows = groups == value
            evaluation.slices[value] = _slice_score(metric, y_true[rows], output[rows])
    return evaluation


def with_conformal_interval(evaluation: Evaluation, model: Any, frame: pd.DataFrame, target: str, coverage: float) -> Evaluation:
    """``evaluation`` of a regression model with the split-conformal half-width of ``frame``
    (its holdout, rows the model never trained on; see :mod:`tracseq_dagster.conformal`)."""
    predicted = model.predict(frame.drop(columns=[target]))
    evaluation.interval_half_width = conformal_half_width(frame[target].to_numpy(dtype=float), predicted, coverage)
    evaluation.interval_coverage = coverage
    return evaluation


def brier_score(y: np.ndarray, proba: np.ndarray) -> float:
    """Multiclass Brier score (see the module docstring)."""
    onehot = np.eye(proba.shape[1])[y]
    return float(np.mean(np.sum((proba - onehot) ** 2, axis=1)))


def expected_calibration_error(y: np.ndarray, proba: np.ndarray, bins: int = ECE_BINS) -> float:
    """Top-label ECE with equal-width confidence bins (see the module docstring)."""
    confidence = proba.max(axis=1)
    correct = (proba.argmax(axis=1) == y).astype(float)
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    gaps = [
        abs(confidence[which == b].mean() - correct[which == b].mean()) * np.sum(which == b)
        for b in range(bins)
        if np.any(which == b)
    ]
    return float(np.sum(gaps) / len(y))


def feature_importances(model: Any, frame: pd.DataFrame, target: str, metric_name: str, seed: int = 0) -> pd.Series:
    """Permutation importance of each raw feature on ``frame``: how much the metric drops without it.

    Model-agnostic on the user's own columns (not one-hot pieces), so every family is comparable.
    """
    metric = METRICS[metric_name]
    x = frame.drop(columns=[target])

    def scorer(estimator: Any, x_: pd.DataFrame, y_: pd.Series) -> float:
        truth, output = _truth_and_output(estimator, x_, y_, metric)
        value = metric.score(truth, output)
        return value if metric.greater_is_better else -value

    result = permutation_importance(model, x, frame[target], scoring=scorer, n_repeats=3, random_state=seed, n_jobs=1)
    return pd.Series(result.importances_mean, index=x.columns, name="importance").sort_values(ascending=False)


# -- plots -------------------------------------------------------------------------------------


def diagnostic_figures(model: Any, frame: pd.DataFrame, target: str) -> dict[str, Figure]:
    """ROC curves and a confusion matrix (classification) or residuals (regression), by file name."""
    x, y = frame.drop(columns=[target]), frame[target]
    if not hasattr(model, "classes_"):
        predicted = np.asarray(model.predict(x), dtype=float)
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.scatter(predicted, y.to_numpy(dtype=float) - predicted, s=6, alpha=0.5)
        ax.axhline(0.0, color="grey", lw=1)
        ax.set(xlabel="predicted", ylabel="actual − predicted", title="Residuals on the holdout")
        return {"residuals.png": fig}
    proba = predict_scores(model, x, METRICS["log_loss"])
    roc, ax = plt.subplots(figsize=(6, 5))
    for index, label in enumerate(model.classes_):
        RocCurveDisplay.from_predictions(
            (y.astype(str) == str(label)).astype(int), proba[:, index], name=f"{label} vs rest", ax=ax
        )
    ax.set_title("ROC on the holdout")
    confusion, ax = plt.subplots(figsize=(5, 4))
    ConfusionMatrixDisplay.from_predictions(y.astype(str), np.asarray(model.predict(x)).astype(str), ax=ax, colorbar=False)
    ax.set_title("Confusion matrix on the holdout")
    return {"roc.png": roc, "confusion_matrix.png": confusion}


def importance_figure(importances: pd.Series) -> Figure:
    fig, ax = plt.subplots(figsize=(6, 0.25 * len(importances) + 1))
    importances.iloc[::-1].plot.barh(ax=ax)
    ax.set(xlabel="drop in the metric when shuffled", title="Permutation feature importance")
    fig.tight_layout()
    return fig


# -- helpers -----------------------------------------------------------------------------------


def _truth_and_output(model: Any, x: pd.DataFrame, y: pd.Series, metric: Metric) -> tuple[np.ndarray, np.ndarray]:
    """Encoded truth (class index in ``model.classes_``) and what ``metric`` scores."""
    output = predict_scores(model, x, metric)
    if not hasattr(model, "classes_"):
        return y.to_numpy(dtype=float), output
    index = {str(c): i for i, c in enumerate(model.classes_)}
    labels = y.astype(str)
    unknown = sorted(set(labels) - set(index))
    if unknown:
        raise ValueError(f"labels {', '.join(unknown)} are not among the model's classes {', '.join(index)}")
    codes = labels.map(index).to_numpy(dtype=np.int64)
    if not metric.needs_proba:
        output = pd.Series(np.asarray(output).astype(str)).map(index).to_numpy(dtype=np.int64)
    return codes, output


def _slice_score(metric: Metric, y: np.ndarray, output: np.ndarray) -> SliceScore:
    if len(y) < MIN_SLICE_ROWS:
        return SliceScore(len(y), None, f"fewer than {MIN_SLICE_ROWS} rows")
    try:
        score = float(metric.score(y, output))
    except ValueError as error:  # e.g. ROC AUC on a slice that lacks a class, in older scikit-learn
        return SliceScore(len(y), None, str(error).split("\n")[0])
    if not np.isfinite(score):
        # scikit-learn 1.6+ warns and returns NaN instead of raising: a NaN in a model card's metrics
        # is not JSON, and the served listing of the models answered 500 on it.
        return SliceScore(len(y), None, f"{metric.name} is undefined on this slice (one class only?)")
    return SliceScore(len(y), score)


def _metric_key(value: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in value)
