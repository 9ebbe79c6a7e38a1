"""The seam between the catalog predictor and the scorer: values and contributions of any catalog model.

:func:`model_scorer` wraps :class:`~.scoring.ModelScorer` (exact and cheap attributions for every
family: linear models from their coefficients, tree ensembles from their trees, occlusion only for
the MLP) for one catalog model: per row its value (P(target class) for a classifier, the
prediction for a regressor) and one contribution per feature of the model's feature set, toward
the target class (classifier) or upward (regressor). The predictor reads only :class:`ModelScores`,
so how contributions are computed stays :mod:`.scoring`'s business. An AutoML ensemble is
scored through its members, weighted (:mod:`.ensemble_scoring`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from tracseq_dagster.serving.ensemble_scoring import EnsembleScorer, catalog_model_scorer
from tracseq_dagster.serving.scoring import DEFAULT_TREE_ATTRIBUTION, ContributionMethod, ModelScorer


@dataclass(frozen=True)
class ModelScores:
    """Per row: the answered value, class probabilities (classifiers), per-feature contributions."""

    values: np.ndarray  # (n,) P(target class), or the prediction
    classes: tuple[str, ...]  # () for a regressor
    probabilities: np.ndarray | None  # (n, classes); None for a regressor
    contributions: np.ndarray  # (n, features): toward the target class, or upward
    method: str


class CatalogScorer:
    """One fitted catalog model's scorer, answering :class:`ModelScores`."""

    def __init__(self, scorer: ModelScorer | EnsembleScorer) -> None:
        self.scorer = scorer
        self.method: str = scorer.method
        self.regression = scorer.target is None

    def score(self, features: pd.DataFrame) -> ModelScores:
        scores = self.scorer.score(features)
        probabilities = None if self.regression else scores.probabilities
        return ModelScores(scores.values, scores.classes, probabilities, scores.contributions, scores.method)


def model_scorer(model: Any, features: tuple[str, ...], reference: dict[str, Any], target_class: str,
                 tree_attribution: ContributionMethod = DEFAULT_TREE_ATTRIBUTION) -> CatalogScorer:  # fmt: skip
    """The scorer of one fitted model: toward ``target_class`` for a classifier, upward for a regressor."""
    target = target_class if hasattr(model, "classes_") else None
    return CatalogScorer(catalog_model_scorer(model, features, reference, target, tree_attribution))
