"""Scoring a feature frame with a registered model: probabilities and per-feature contributions.

The registered model is the engine's :class:`~tracseq_dagster.automl.LabelDecodingClassifier`
around a scikit-learn ``Pipeline`` (feature conversion → preprocessing → estimator). For the
gradient boosters the estimator's native booster answers directly, because that is where both
speed and exact attributions are:

* **Tree SHAP** (XGBoost ``pred_contribs``, LightGBM ``pred_contrib``): each feature's exact
  contribution to the raw score (log-odds) of the ``pass`` class; the contributions and the
  bias add up to that raw score.
* **Occlusion** (every other family: logistic regression, random forest, sklearn gradient
  boosting, MLP): a feature's contribution is how much the probability of ``pass`` changes when
  that feature alone is set to its typical training value (median, or most frequent category).
  Cheap (one extra prediction per feature, batched), model-agnostic, and signed the same way.

A negative contribution pushes the sample away from ``pass``: that is a risk factor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from tracseq_dagster.features import CATEGORICAL_FEATURES, FEATURE_NAMES, NUMERIC_FEATURES

#: The class whose probability is the sample's quality probability.
PASS = "pass"

ContributionMethod = Literal["tree_shap", "occlusion"]


@dataclass(frozen=True)
class Scores:
    """Per row: class probabilities (columns ``classes``) and per-feature contributions."""

    classes: tuple[str, ...]
    probabilities: np.ndarray  # (n, k)
    contributions: np.ndarray  # (n, len(FEATURE_NAMES)), toward "pass"
    method: ContributionMethod

    @property
    def quality_probability(self) -> np.ndarray:
        return self.probabilities[:, self.classes.index(PASS)]

    @property
    def predicted_status(self) -> np.ndarray:
        return np.asarray(self.classes, dtype=object)[self.probabilities.argmax(axis=1)]


def reference_values(features: pd.DataFrame) -> dict[str, Any]:
    """Typical training values per feature (median; most frequent category): the occlusion baseline."""
    reference: dict[str, Any] = {}
    for name in NUMERIC_FEATURES:
        value = pd.to_numeric(features[name], errors="coerce").median()
        reference[name] = None if pd.isna(value) else float(value)
    for name in CATEGORICAL_FEATURES:
        mode = features[name].dropna().astype(str).mode()
        reference[name] = None if mode.empty else str(mode.iloc[0])
    return reference


class QualityScorer:
    """Scores feature frames (``FEATURE_NAMES`` columns) with one fitted model."""

    def __init__(self, model: Any, reference: dict[str, Any]) -> None:
        self.model = model
        self.reference = reference
        self.classes: tuple[str, ...] = tuple(str(c) for c in model.classes_)
        if PASS not in self.classes:
            raise ValueError(f"the model's classes {self.classes} do not include {PASS!r}")
        self._pass = self.classes.index(PASS)
        pipeline = getattr(model, "estimator_", None)
        estimator = pipeline.steps[-1][1] if hasattr(pipeline, "steps") else None
        self._transform = pipeline[:-1] if estimator is not None else None
        self._estimator = estimator
        self.family = type(estimator).__name__ if estimator is not None else type(model).__name__
        self.method: ContributionMethod = "tree_shap" if self._native_kind() else "occlusion"

    def _native_kind(self) -> str | None:
        name = type(self._estimator).__name__
        if name == "LGBMClassifier":
            return "lightgbm"
        if name == "XGBClassifier":
            return "xgboost"
        return None

    def score(self, features: pd.DataFrame) -> Scores:
        """Probabilities and contributions of every row of ``features``."""
        x = features[list(FEATURE_NAMES)]
        kind = self._native_kind()
        if kind is not None:
            matrix = self._transform.transform(x)
            probabilities = self._estimator.predict_proba(matrix)
            contributions = self._tree_shap(kind, np.asarray(matrix, dtype=float))
            return Scores(self.classes, probabilities, contributions, "tree_shap")
        probabilities = self.model.predict_proba(x)
        return Scores(self.classes, probabilities, self._occlusion(x, probabilities[:, self._pass]), "occlusion")

    def _tree_shap(self, kind: str, matrix: np.ndarray) -> np.ndarray:
        """Contributions to the pass class's raw score, one column per feature (bias dropped).

        The booster's columns are the converter's order: numeric features, then categorical
        codes (see ``automl.preprocessing.ordinal_with_missing``).
        """
        n, width = matrix.shape
        if kind == "lightgbm":
            raw = np.asarray(self._estimator.booster_.predict(matrix, pred_contrib=True))
            per_class = raw.reshape(n, -1, width + 1)
        else:
            import xgboost

            raw = self._estimator.get_booster().predict(xgboost.DMatrix(matrix), pred_contribs=True)
            per_class = raw.reshape(n, -1, width + 1)
        if per_class.shape[1] == 1:  # binary: one margin, for the positive class (index 1)
            toward_pass = per_class[:, 0, :width] * (1.0 if self._pass == 1 else -1.0)
        else:
            toward_pass = per_class[:, self._pass, :width]
        order = [*NUMERIC_FEATURES, *CATEGORICAL_FEATURES]
        return toward_pass[:, [order.index(name) for name in FEATURE_NAMES]]

    def _occlusion(self, x: pd.DataFrame, p_pass: np.ndarray) -> np.ndarray:
        """P(pass) minus P(pass) with one feature at its reference value, for every feature at once."""
        n = len(x)
        variants = pd.concat([x] * len(FEATURE_NAMES), ignore_index=True)
        for j, name in enumerate(FEATURE_NAMES):
            value = self.reference.get(name)
            rows = slice(j * n, (j + 1) * n)
            column = variants.columns.get_loc(name)
            variants.iloc[rows, column] = np.nan if value is None else value
        occluded = self.model.predict_proba(variants)[:, self._pass].reshape(len(FEATURE_NAMES), n).T
        return p_pass[:, None] - occluded
