"""Scoring and explaining a weighted ensemble: its members' scorers, combined with the ensemble's weights.

A registered model may be the AutoML ensemble (:class:`~tracseq_dagster.automl.ensemble.WeightedEnsemble`,
inside the label decoder for a classifier): a weighted mean of its members' class probabilities
(or predictions). :class:`EnsembleScorer` scores each member with its own
:class:`~.scoring.ModelScorer`, so every member keeps its compiled kernel and its exact, cheap
attribution (tree paths, linear, MLP occlusion), and combines them:

* **value**: the weighted mean of the members' probabilities (predictions): exactly what the
  ensemble's own ``predict_proba`` (``predict``) answers;
* **contributions**: the weighted sum of the members' contributions, all in **probability** units
  for a classifier (prediction units for a regressor).

Why probability and not log-odds: the ensemble averages probabilities, so probability is the
one scale on which its members' contributions add up to the ensemble's own answer (the weighted
sum of each member's move from its baseline), and a risk factor of ``-0.12`` means the same from
every member ("this lowers P(pass) by about 0.12"). Log-odds would need the probability-scale
members (forests, occlusion) converted the other way, and the log-odds of a mean is not the mean
of log-odds. A member whose attributions are in log-odds (boosters, histogram boosting, logistic
regression) is converted per row: its contributions ``c`` (summing to ``Σc``) move its target
log-odds from ``logit(p) − Σc`` to ``logit(p)``, i.e. its probability from
``p0 = σ(logit(p) − Σc)`` to ``p``; each contribution gets its share of that move,
``c · (p − p0) / Σc`` (``c · p(1 − p)``, the slope, when ``Σc`` is 0). Signs and ratios are kept
and the converted contributions add up exactly to the member's probability move; for a binary
member ``p0`` is its probability at the baseline, for a multiclass member it is exact when the
other classes' scores stay put (the usual case for one feature's effect on one class).

Risk factors and recommendations then follow from these contributions as for any model
(:mod:`.advice`, :mod:`.catalog_predictor`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from tracseq_dagster.features import FeatureColumns
from tracseq_dagster.serving.scoring import DEFAULT_TREE_ATTRIBUTION, ContributionMethod, ModelScorer, Scores

#: The attribution method an ensemble's answers name.
ENSEMBLE_METHOD: ContributionMethod = "ensemble"
#: Probabilities are clipped this far from 0 and 1 before their log-odds are taken.
_EPSILON = 1e-12


def ensemble_of(model: Any) -> Any | None:
    """The weighted ensemble a registered model is (or wraps, in the label decoder), else None.

    Recognised by its shape (``members``, ``weights``, ``task``), not its class: serving does not
    import the AutoML engine's package (the import contract ``serving-without-training``).
    """
    inner = getattr(model, "estimator_", model)
    shaped = all(hasattr(inner, name) for name in ("members", "weights", "task"))
    return inner if shaped and type(inner).__name__ == "WeightedEnsemble" else None


class _DecodedMember:
    """One member pipeline (fitted on encoded labels) seen through the ensemble's label decoder:
    what :class:`~.scoring.ModelScorer` reads of a registered classifier (``estimator_``,
    ``classes_``, ``predict_proba``)."""

    def __init__(self, pipeline: Any, classes: np.ndarray) -> None:
        self.estimator_ = pipeline
        self.classes_ = classes

    def predict_proba(self, x: Any) -> np.ndarray:
        return np.asarray(self.estimator_.predict_proba(x))


def to_probability(contributions: np.ndarray, probability: np.ndarray) -> np.ndarray:
    """Log-odds contributions (rows × features) of a member whose P(target) is ``probability`` (rows,),
    as shares of its probability move (see the module docstring)."""
    p = np.clip(np.asarray(probability, dtype=np.float64), _EPSILON, 1.0 - _EPSILON)
    total = contributions.sum(axis=1)
    start = 1.0 / (1.0 + np.exp(-(np.log(p / (1.0 - p)) - total)))
    flat = np.abs(total) < 1e-12
    scale = np.where(flat, p * (1.0 - p), (p - start) / np.where(flat, 1.0, total))
    return contributions * scale[:, None]


class EnsembleScorer:
    """Scores feature frames with a fitted weighted ensemble, explained through its members.

    The same interface as :class:`~.scoring.ModelScorer` where the predictors read it
    (``score``, ``method``, ``classes``, ``target``, ``units``, ``bias``). ``members`` holds one
    scorer per member, ``weights`` their normalised weights.
    """

    def __init__(self, model: Any, feature_names: tuple[str, ...] | list[str], reference: dict[str, Any],
                 target_class: str | None, tree_attribution: ContributionMethod = DEFAULT_TREE_ATTRIBUTION) -> None:  # fmt: skip
        ensemble = ensemble_of(model)
        if ensemble is None:
            raise ValueError(f"{type(model).__name__} is not a weighted ensemble")
        self.model = model
        self.feature_names = tuple(feature_names)
        self.reference = reference
        self.target = target_class
        weights = np.asarray(ensemble.weights, dtype=np.float64)
        self.weights = weights / weights.sum()
        if target_class is None:
            if hasattr(model, "classes_"):
                raise ValueError("a classifier needs a target class (None is for regression models)")
            members = list(ensemble.members)
        else:
            if not hasattr(model, "classes_"):
                raise ValueError(f"target class {target_class!r} given for a regression model")
            # Members predict encoded labels; each is wrapped in the ensemble's decoder so its scorer names the classes.
            members = [_DecodedMember(m, np.asarray(model.classes_)) for m in ensemble.members]
        self.members = [ModelScorer(m, self.feature_names, reference, target_class, tree_attribution) for m in members]
        self.classes: tuple[str, ...] = self.members[0].classes
        self.family = "WeightedEnsemble"
        self.method: ContributionMethod = ENSEMBLE_METHOD

    @property
    def member_methods(self) -> tuple[str, ...]:
        """Each member's own attribution method (``tree_path``, ``linear``, …), in member order."""
        return tuple(m.method for m in self.members)

    def composition(self) -> list[dict[str, Any]]:
        """What ``GET /model`` says of the members: estimator, weight and attribution of each."""
        return [
            {"estimator": m.family, "weight": round(float(w), 6), "attribution": m.method}
            for m, w in zip(self.members, self.weights, strict=True)
        ]

    @property
    def units(self) -> str:
        return "prediction" if self.target is None else "probability"

    @property
    def bias(self) -> float | None:
        """What a regressor's contributions add to (the weighted members' biases); None for a
        classifier, whose converted log-odds members have a per-row baseline."""
        if self.target is not None:
            return None
        biases = [m.bias for m in self.members]
        if any(b is None for b in biases):
            return None
        return float(sum(w * b for w, b in zip(self.weights, biases, strict=True)))

    def score(self, features: pd.DataFrame | FeatureColumns) -> Scores:
        """Values and contributions of every row: the members' weighted mean and weighted sum."""
        values: np.ndarray | None = None
        contributions: np.ndarray | None = None
        for weight, member in zip(self.weights, self.members, strict=True):
            scores = member.score(features)
            own = scores.probabilities if self.target is not None else scores.values
            share = self._probability_scale(scores, member)
            values = weight * own if values is None else values + weight * own
            contributions = weight * share if contributions is None else contributions + weight * share
        assert values is not None and contributions is not None  # an ensemble has members
        if self.target is None:
            return Scores((), np.empty((len(values), 0)), contributions, self.method, None, values)
        return Scores(self.classes, values, contributions, self.method, self.target)

    @staticmethod
    def _probability_scale(scores: Scores, member: ModelScorer) -> np.ndarray:
        """A member's contributions in the ensemble's units (its units read after scoring: a
        member whose traced path failed its check has switched to occlusion, in probability)."""
        if member.units == "log-odds":
            return to_probability(scores.contributions, scores.values)
        return scores.contributions


def catalog_model_scorer(model: Any, feature_names: tuple[str, ...] | list[str], reference: dict[str, Any],
                         target_class: str | None,
                         tree_attribution: ContributionMethod = DEFAULT_TREE_ATTRIBUTION) -> ModelScorer | EnsembleScorer:  # fmt: skip
    """The scorer of any registered model: an :class:`EnsembleScorer` for an ensemble, else a :class:`ModelScorer`."""
    if ensemble_of(model) is not None:
        return EnsembleScorer(model, feature_names, reference, target_class, tree_attribution)
    return ModelScorer(model, feature_names, reference, target_class, tree_attribution)


def scorer_description(scorer: Any) -> dict[str, Any]:
    """A served variant's attribution for ``GET /model``: its method, and an ensemble's members."""
    inner = getattr(scorer, "scorer", scorer)  # the catalog's CatalogScorer wraps the scorer
    described: dict[str, Any] = {"attribution": scorer.method}
    if isinstance(inner, EnsembleScorer):
        described["members"] = inner.composition()
    return described
