"""AutoML engine: typed, plain Python, usable without Dagster.

>>> from tracseq_dagster.automl import AutoMLConfig, run_automl
>>> result = run_automl(frame, AutoMLConfig(target="qc_status", time_budget_s=60))
>>> result.leaderboard[0].family, result.holdout_score

See :mod:`.engine` for the sweep, :mod:`.families` for the model families, :mod:`.tasks`
for task detection and metrics, :mod:`.preprocessing` for the feature rules,
:mod:`.budget` for how the time budget is shared, :mod:`.cost` for the cost estimates and the
automatic sweep sample, :mod:`.deadline` for fits that stop at a deadline and
:mod:`.ensemble` for the weighted ensemble of the families' best trials.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - the names below, for type checkers; at run time they load on first use
    from tracseq_dagster.automl.budget import MIN_BUDGET_S
    from tracseq_dagster.automl.engine import (
        AutoMLConfig,
        AutoMLInputError,
        AutoMLResult,
        FamilySweep,
        LeaderboardRow,
        Problem,
        TrialRecord,
        fit_final,
        predict_scores,
        prepare_problem,
        prepare_study_storage,
        rank_sweeps,
        run_automl,
        sweep_family,
    )
    from tracseq_dagster.automl.ensemble import WeightedEnsemble
    from tracseq_dagster.automl.families import ALL_FAMILIES, FAMILIES, ModelFamily
    from tracseq_dagster.automl.model import LabelDecodingClassifier
    from tracseq_dagster.automl.preprocessing import FeatureColumns, prepare_features
    from tracseq_dagster.automl.tasks import DEFAULT_METRICS, METRICS, Metric, TaskType, detect_task, resolve_metric

#: Where each public name lives. Loaded on first use (PEP 562), so that unpickling a served model
#: (its classes live in ``.model``, ``.families``, ``.preprocessing``) does not import the engine and
#: Optuna into the prediction service.
_HOMES: dict[str, str] = {
    "MIN_BUDGET_S": "budget",
    **dict.fromkeys(
        ["AutoMLConfig", "AutoMLInputError", "AutoMLResult", "FamilySweep", "LeaderboardRow", "Problem", "TrialRecord",
         "fit_final", "predict_scores", "prepare_problem", "prepare_study_storage", "rank_sweeps", "run_automl",
         "sweep_family"],
        "engine",
    ),
    "WeightedEnsemble": "ensemble",
    **dict.fromkeys(["ALL_FAMILIES", "FAMILIES", "ModelFamily"], "families"),
    "LabelDecodingClassifier": "model",
    **dict.fromkeys(["FeatureColumns", "prepare_features"], "preprocessing"),
    **dict.fromkeys(["DEFAULT_METRICS", "METRICS", "Metric", "TaskType", "detect_task", "resolve_metric"], "tasks"),
}  # fmt: skip


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{home}"), name)
    globals()[name] = value  # once: later lookups are plain module attributes
    return value


__all__ = [
    "ALL_FAMILIES",
    "DEFAULT_METRICS",
    "FAMILIES",
    "METRICS",
    "MIN_BUDGET_S",
    "AutoMLConfig",
    "AutoMLInputError",
    "AutoMLResult",
    "FamilySweep",
    "Problem",
    "fit_final",
    "predict_scores",
    "prepare_problem",
    "rank_sweeps",
    "sweep_family",
    "FeatureColumns",
    "LabelDecodingClassifier",
    "LeaderboardRow",
    "Metric",
    "ModelFamily",
    "TaskType",
    "prepare_study_storage",
    "TrialRecord",
    "WeightedEnsemble",
    "detect_task",
    "prepare_features",
    "resolve_metric",
    "run_automl",
]
