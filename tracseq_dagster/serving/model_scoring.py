"""The seam between the catalog predictor and the scorers: values and contributions of any catalog model.

:func:`model_scorer` answers, for a fitted catalog model, per row its value (P(target class) for a
classifier, the prediction for a regressor) and one contribution per feature of the model's
feature set, signed toward the target class (classifier) or upward (regressor). Behind it:

* the ``sample_quality`` feature set with the ``pass`` class: :class:`~.scoring.QualityScorer`
  (exact tree paths for the boosters, compiled trees; occlusion otherwise);
* anything else: occlusion over the model's own features (a feature's contribution is how much
  the value moves when that feature alone is set to its typical training value), one batched
  prediction per feature. Model-agnostic; a generic exact scorer replaces it when it exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd

from tracseq_dagster.features import FEATURE_NAMES
from tracseq_dagster.serving.scoring import PASS, QualityScorer


@dataclass(frozen=True)
class ModelScores:
    """Per row: the answered value, class probabilities (classifiers), per-feature contributions."""

    values: np.ndarray  # (n,) P(target class), or the prediction
    classes: tuple[str, ...]  # () for a regressor
    probabilities: np.ndarray | None  # (n, classes)
    contributions: np.ndarray  # (n, features): toward the target class, or upward
    method: str


class ModelScorer(Protocol):
    method: str
    regression: bool

    def score(self, features: pd.DataFrame) -> ModelScores: ...


def model_scorer(model: Any, features: tuple[str, ...], reference: dict[str, Any], target_class: str) -> ModelScorer:
    """The scorer of one fitted model (see the module docstring for which one)."""
    if hasattr(model, "classes_") and tuple(features) == FEATURE_NAMES and target_class == PASS:
        return _QualityScorerAdapter(QualityScorer(model, reference))
    return OcclusionScorer(model, features, reference, target_class)


class _QualityScorerAdapter:
    """``sample_quality``'s scorer behind the generic interface."""

    regression = False

    def __init__(self, scorer: QualityScorer) -> None:
        self.scorer = scorer
        self.method = scorer.method

    def score(self, features: pd.DataFrame) -> ModelScores:
        scores = self.scorer.score(features)
        return ModelScores(scores.quality_probability, scores.classes, scores.probabilities, scores.contributions, scores.method)


class OcclusionScorer:
    """Contributions by occlusion for any model over any feature set (see the module docstring)."""

    method = "occlusion"

    def __init__(self, model: Any, features: tuple[str, ...], reference: dict[str, Any], target_class: str) -> None:
        self.model = model
        self.features = tuple(features)
        self.reference = reference
        self.regression = not hasattr(model, "classes_")
        self.classes: tuple[str, ...] = () if self.regression else tuple(str(c) for c in model.classes_)
        if not self.regression and target_class not in self.classes:
            raise ValueError(f"the model's classes {self.classes} do not include the target class {target_class!r}")
        self._target = None if self.regression else self.classes.index(target_class)

    def _values(self, x: pd.DataFrame) -> tuple[np.ndarray, np.ndarray | None]:
        if self.regression:
            return np.asarray(self.model.predict(x), dtype=float), None
        probabilities = np.asarray(self.model.predict_proba(x), dtype=float)
        return probabilities[:, self._target], probabilities

    def score(self, features: pd.DataFrame) -> ModelScores:
        # Categories as plain values: an occluded cell takes a reference category the request may not have.
        x = features[list(self.features)].reset_index(drop=True)
        x = x.astype({c: object for c in x.columns if isinstance(x[c].dtype, pd.CategoricalDtype)})
        values, probabilities = self._values(x)
        n, k = len(x), len(self.features)
        variants = pd.concat([x] * k, ignore_index=True)
        for j, name in enumerate(self.features):
            value = self.reference.get(name)
            variants.iloc[j * n : (j + 1) * n, j] = np.nan if value is None else value
        occluded, _ = self._values(variants)
        contributions = values[:, None] - occluded.reshape(k, n).T
        return ModelScores(values, self.classes, probabilities, contributions, self.method)
