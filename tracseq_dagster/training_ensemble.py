"""The registration step's ensemble: the families' best trials averaged, kept only when it wins on the holdout.

Why here and not in the sweeps: on the platform every family sweeps in its own partition run, so
no single sweep sees the others. Each sweep leaves its best trial's out-of-fold predictions beside
its outcome (:mod:`tracseq_dagster.automl.out_of_fold`); the registration step, which already
refits the winner, chooses the greedy ensemble on those (Caruana's selection,
:func:`~tracseq_dagster.automl.ensemble.greedy_ensemble`), refits its members on every training
row, and scores it on the stable holdout beside the single winner. The ensemble is registered
only when it scores strictly better there; otherwise the winner is, as before. Either way the
choice, the weights and both holdout scores are recorded (:class:`EnsembleChoice`).

The holdout then chooses between two models, so the registered model's holdout score is slightly
optimistic (a choice of two); the promotion gate compares it with the champion on the same rows.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tracseq_dagster.automl import fit_final
from tracseq_dagster.automl.ensemble import WeightedEnsemble, greedy_ensemble
from tracseq_dagster.automl.model import LabelDecodingClassifier
from tracseq_dagster.automl.out_of_fold import OutOfFold, aligned
from tracseq_dagster.automl.tasks import METRICS
from tracseq_dagster.evaluation import Evaluation, evaluate

if TYPE_CHECKING:
    from tracseq_dagster.automl.engine import Problem
    from tracseq_dagster.training import FamilyOutcome
    from tracseq_dagster.training_set import TrainingSet

log = logging.getLogger(__name__)

#: The registered model's family when the ensemble is kept.
ENSEMBLE_FAMILY = "ensemble"


@dataclass
class EnsembleChoice:
    """What the registration step decided about the ensemble, and on what numbers.

    ``weights`` (family → weight, summing to 1) is empty when no ensemble was built; ``reason``
    says why it was or was not kept. Holdout scores are in the model's metric.
    """

    chosen: bool
    reason: str
    single_family: str
    single_holdout: float
    weights: dict[str, float] = field(default_factory=dict)
    ensemble_holdout: float | None = None
    ensemble_oof: float | None = None
    single_oof: float | None = None
    oof_rows: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def tags(self) -> dict[str, str]:
        """The registered version's tags (MLflow keeps strings)."""
        tags = {
            "ensemble_chosen": str(self.chosen).lower(),
            "ensemble_reason": self.reason[:4900],
            "single_family": self.single_family,
            "single_holdout_score": f"{self.single_holdout:.6f}",
        }
        if self.weights:
            tags["ensemble_weights"] = json.dumps({f: round(w, 6) for f, w in self.weights.items()})
        if self.ensemble_holdout is not None:
            tags["ensemble_holdout_score"] = f"{self.ensemble_holdout:.6f}"
        return tags

    def metrics(self) -> dict[str, float]:
        """Both holdout scores (and the out-of-fold ones) as MLflow metrics of the registered run."""
        values = {"single_holdout_score": self.single_holdout, "ensemble_chosen": float(self.chosen)}
        for name, value in (("ensemble_holdout_score", self.ensemble_holdout), ("ensemble_oof_score", self.ensemble_oof),
                            ("single_oof_score", self.single_oof)):  # fmt: skip
            if value is not None:
                values[name] = float(value)
        return values


def choose_model(
    training_set: TrainingSet,
    ranked: list[FamilyOutcome],
    problem: Problem,
    winner_model: Any,
    winner_evaluation: Evaluation,
    *,
    seed: int,
) -> tuple[Any, Evaluation, EnsembleChoice]:
    """The model to register, its holdout evaluation and the ensemble choice.

    ``winner_model`` / ``winner_evaluation``: the CV winner (``ranked[0]``) refit on every
    training row, and its holdout evaluation. The ensemble is built from the ranked families
    whose out-of-fold predictions are on disk for this training set; it replaces the winner
    only when it gains out of fold *and* scores strictly better on the holdout.
    """
    winner = ranked[0]
    single = EnsembleChoice(False, "", winner.family, winner_evaluation.score)
    parts = _out_of_fold(ranked, training_set.fingerprint)
    if len(parts) < 2 or parts[0].family != winner.family:
        single.reason = "fewer than two families (with the winner) left out-of-fold predictions on this training set"
        return winner_model, winner_evaluation, single
    metric = METRICS[winner.metric]
    try:
        predictions, y = aligned(parts)
    except ValueError as error:
        single.reason = f"out-of-fold predictions not comparable: {error}"
        return winner_model, winner_evaluation, single
    weights, oof_score = greedy_ensemble(predictions, y, metric)
    single.ensemble_oof, single.single_oof, single.oof_rows = oof_score, float(metric.score(y, predictions[0])), len(y)
    members = {p.family: float(w) for p, w in zip(parts, weights, strict=True) if w > 0}
    gain = (oof_score - single.single_oof) * (1.0 if metric.greater_is_better else -1.0)
    if len(members) < 2 or gain <= 0:
        single.reason = f"the greedy selection kept {', '.join(members)} only: no out-of-fold gain over {winner.family}"
        return winner_model, winner_evaluation, single
    single.weights = members
    ensemble = _fitted_ensemble(members, ranked, problem, winner_model, seed)
    evaluation = evaluate(ensemble, training_set.holdout_frame(), training_set.target, winner.metric, training_set.slice_column)
    single.ensemble_holdout = evaluation.score
    better = (
        evaluation.score > winner_evaluation.score if metric.greater_is_better else evaluation.score < winner_evaluation.score
    )
    if not better:
        single.reason = (f"holdout {winner.metric} {evaluation.score:.4f} (ensemble) is not better than "
                         f"{winner_evaluation.score:.4f} ({winner.family})")  # fmt: skip
        return winner_model, winner_evaluation, single
    single.chosen = True
    single.reason = (f"holdout {winner.metric} {evaluation.score:.4f} (ensemble) beats "
                     f"{winner_evaluation.score:.4f} ({winner.family})")  # fmt: skip
    return ensemble, evaluation, single


def _out_of_fold(ranked: list[FamilyOutcome], fingerprint: str) -> list[OutOfFold]:
    """The ranked families' saved out-of-fold predictions on this training set, in rank order."""
    parts = []
    for outcome in ranked:
        path = outcome.oof_path
        if not path or not Path(path).exists():
            continue
        try:
            part = OutOfFold.load(Path(path))
        except (OSError, ValueError, KeyError) as error:  # a damaged file: that family is left out
            log.warning("out-of-fold predictions of %s unreadable (%s): left out of the ensemble", outcome.family, error)
            continue
        if part.fingerprint == fingerprint and part.family == outcome.family:
            parts.append(part)
    return parts


def _fitted_ensemble(
    weights: dict[str, float], ranked: list[FamilyOutcome], problem: Problem, winner_model: Any, seed: int
) -> Any:
    """Each member family's best configuration refit on every training row, averaged with ``weights``.

    Members are the engine's pipelines on encoded labels (what :class:`WeightedEnsemble` averages);
    a classifier's ensemble is wrapped to answer in the user's labels like any registered model.
    """
    params = {o.family: o.best_params or {} for o in ranked}
    members = []
    for family in weights:
        model = winner_model if family == ranked[0].family else fit_final(problem, family, params[family], seed)[0]
        members.append(getattr(model, "estimator_", model))  # the pipeline inside the label decoder
    ensemble = WeightedEnsemble(members, list(weights.values()), problem.task)
    if problem.classes is None:
        return ensemble
    return LabelDecodingClassifier.from_fitted(ensemble, np.asarray(problem.classes))
