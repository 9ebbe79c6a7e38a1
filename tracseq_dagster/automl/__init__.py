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
