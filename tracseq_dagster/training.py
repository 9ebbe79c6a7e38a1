"""Training a catalog model, step by step, as the Dagster assets run it.

1. :func:`sweep_one_family`: one family's Optuna study on the training set (one
   ``automl_trials`` partition, one process), every trial logged as a nested MLflow run.
   Its best trial's out-of-fold predictions are kept beside its outcome, for the ensemble.
2. :func:`rank_families`: the families that finished on the *current* training set, ranked.
3. :func:`register_winner`: the winner refit on every training row, scored on the stable
   holdout; the families' weighted ensemble replaces it when it scores better there
   (:mod:`tracseq_dagster.training_ensemble`); logged to MLflow with its plots and registered
   as the ``challenger``.
4. :func:`run_promotion_gate`: challenger and champion scored on the same holdout; the gate
   decides; ``champion`` moves only if it says so.

Each step is a plain function of the lake, an MLflow client and settings, so the assets stay
thin and the steps can be tested and run without Dagster.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import optuna
import pandas as pd
from mlflow import MlflowClient
from mlflow.models import infer_signature

from tracseq_dagster import artifact_digest
from tracseq_dagster.artifact_digest import ARTIFACT_DIGEST_TAG
from tracseq_dagster.automl import (
    AutoMLConfig,
    AutoMLInputError,
    LeaderboardRow,
    fit_final,
    predict_scores,
    prepare_problem,
    sweep_family,
)
from tracseq_dagster.automl.out_of_fold import OutOfFold
from tracseq_dagster.automl.plots import leaderboard_figure
from tracseq_dagster.automl.tasks import METRICS
from tracseq_dagster.conformal import DEFAULT_COVERAGE, INTERVAL_COVERAGE_TAG, INTERVAL_HALF_WIDTH_TAG
from tracseq_dagster.control.gate import gate_passed
from tracseq_dagster.evaluation import (
    Evaluation,
    diagnostic_figures,
    evaluate,
    feature_importances,
    importance_figure,
    with_conformal_interval,
)
from tracseq_dagster.models import UnknownModelError, get_model
from tracseq_dagster.promotion import GateCheck, GateDecision, GatePolicy, decide
from tracseq_dagster.registry import CHALLENGER, CHAMPION, ModelRegistry
from tracseq_dagster.tracking import DAGSTER_RUN_TAG, TrialLogger, child_run, fluent_api, log_values, running
from tracseq_dagster.training_ensemble import ENSEMBLE_FAMILY, EnsembleChoice, choose_model
from tracseq_dagster.training_set import TrainingSet

#: Packages the logged model needs, pinned to what trained it (skips MLflow's slow inference).
MODEL_REQUIREMENTS = ("scikit-learn", "xgboost-cpu", "lightgbm", "pandas", "numpy")


@dataclass(frozen=True)
class SweepSettings:
    """How hard each family tries."""

    time_budget_s: float = 60.0
    max_trials: int | None = None
    cv_folds: int = 5
    seed: int = 0
    max_sweep_rows: int | None = 10_000
    validation: str = "auto"  # AutoMLConfig.validation: cv, holdout, or auto (by the table's size for the budget)


@dataclass
class FamilyOutcome:
    """What one family's sweep found on one training set (None fields: no trial completed)."""

    family: str
    fingerprint: str
    study_name: str
    metric: str
    greater_is_better: bool
    trials: int
    complete: int
    pruned: int
    failed: int
    wall_seconds: float
    best_params: dict[str, Any] | None
    leaderboard: dict[str, Any] | None  # a LeaderboardRow as a dict
    mlflow_run_id: str | None = None
    dagster_run_id: str | None = None
    #: Where the best trial's out-of-fold predictions were saved (None: not kept; see out_of_fold).
    oof_path: str | None = None

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> FamilyOutcome:
        return cls(**payload)


@dataclass
class RegisteredModel:
    """The version ``register_winner`` registered and what it was scored at."""

    version: str
    family: str
    params: dict[str, Any]
    evaluation: dict[str, Any]
    importances: dict[str, float]
    mlflow_run_id: str
    model_uri: str
    fingerprint: str
    export_hashes: list[str] = field(default_factory=list)
    #: The ensemble's choice (EnsembleChoice.as_dict()): None when the ensemble was turned off.
    ensemble: dict[str, Any] | None = None


def automl_config(settings: SweepSettings, *, family: str, storage: str | None, training_set: TrainingSet) -> AutoMLConfig:
    return AutoMLConfig(
        target=training_set.target,
        task=training_set.task,  # type: ignore[arg-type]
        metric=training_set.metric,
        families=(family,),
        time_budget_s=settings.time_budget_s,
        max_trials=settings.max_trials,
        cv_folds=settings.cv_folds,
        validation=settings.validation,  # type: ignore[arg-type]  # the engine checks it
        seed=settings.seed,
        max_sweep_rows=settings.max_sweep_rows,
        storage=storage,
        # One study per model, training set and family (the engine appends the family):
        # re-running a family on the same data adds trials to its study.
        study_name=f"{training_set.model}-{training_set.fingerprint}",
    )


def sweep_one_family(
    training_set: TrainingSet,
    family: str,
    settings: SweepSettings,
    *,
    storage: str | None,
    client: MlflowClient,
    experiment_id: str,
    parent_run_id: str,
    dagster_run_id: str,
    oof_path: Path | None = None,
) -> FamilyOutcome:
    """Run ``family``'s study on the training set; every trial becomes a nested MLflow run.

    With ``oof_path``, the best trial's out-of-fold predictions are saved there (when the metric
    scores probabilities or values: what an ensemble averages), for :func:`register_winner`'s ensemble.
    """
    config = automl_config(settings, family=family, storage=storage, training_set=training_set)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # every trial is in MLflow; no line per trial in the logs
    started = time.perf_counter()
    problem = prepare_problem(training_set.frame, config, holdout=training_set.holdout, groups=training_set.groups)
    tags = {DAGSTER_RUN_TAG: dagster_run_id, "training_fingerprint": training_set.fingerprint}
    family_run = child_run(client, experiment_id, parent_run_id, f"family-{family}", "family", {**tags, "family": family})
    with running(client, family_run):
        sweep = sweep_family(problem, family, config, on_trial=TrialLogger(client, experiment_id, family_run, tags))
        row = sweep.leaderboard_row(None) if sweep.best is not None else None
        states = [r.state for r in sweep.records]
        outcome = FamilyOutcome(
            family=family,
            fingerprint=training_set.fingerprint,
            study_name=sweep.study_name,
            metric=problem.metric.name,
            greater_is_better=problem.metric.greater_is_better,
            trials=len(states),
            complete=states.count("complete"),
            pruned=states.count("pruned"),
            failed=states.count("failed"),
            wall_seconds=time.perf_counter() - started,
            best_params=sweep.chosen_params() if sweep.best is not None else None,
            leaderboard=asdict(row) if row is not None else None,
            mlflow_run_id=family_run,
            dagster_run_id=dagster_run_id,
            oof_path=_save_out_of_fold(sweep.best_oof, problem, training_set, family, oof_path),
        )
        client.log_dict(family_run, asdict(outcome), "family_outcome.json")
        if row is not None:
            client.log_metric(family_run, "best_cv_mean", row.cv_mean)
            client.log_metric(family_run, "best_cv_std", row.cv_std)
    return outcome


def _save_out_of_fold(oof: Any, problem: Any, training_set: TrainingSet, family: str, path: Path | None) -> str | None:
    """Save the best trial's out-of-fold output with the training rows it belongs to; the path, or None."""
    if oof is None or path is None or not training_set.frame.index.is_unique:
        return None
    scored = problem.scored  # every sweep row under k folds; the validation rows of a holdout split
    rows = training_set.frame.index.get_indexer(problem.x_sweep.index[scored])  # positions: any index dtype saves
    OutOfFold(family, training_set.fingerprint, rows.astype("int64"), problem.y_sweep[scored], oof[scored]).save(path)
    return str(path)


def rank_families(outcomes: list[FamilyOutcome], fingerprint: str) -> list[FamilyOutcome]:
    """Families that completed a trial on the training set ``fingerprint``, best CV mean first.

    Results of an older training set are left out: they were judged on other data.
    """
    current = [o for o in outcomes if o.fingerprint == fingerprint and o.leaderboard is not None]
    if not current:
        raise AutoMLInputError(
            "no model family has a completed sweep on the current training set: materialize automl_trials first"
        )
    sign = 1.0 if current[0].greater_is_better else -1.0
    return sorted(current, key=lambda o: -sign * o.leaderboard["cv_mean"])  # type: ignore[index]


def leaderboard_table(ranked: list[FamilyOutcome]) -> pd.DataFrame:
    """The leaderboard as a table: one row per family."""
    rows = [{**LeaderboardRow(**o.leaderboard).__dict__, "complete": o.complete, "pruned": o.pruned} for o in ranked]  # type: ignore[arg-type]
    return pd.DataFrame(rows)


def register_winner(
    training_set: TrainingSet,
    winner: FamilyOutcome,
    ranked: list[FamilyOutcome],
    *,
    seed: int,
    storage: str | None,
    registry: ModelRegistry,
    experiment_id: str,
    parent_run_id: str,
    dagster_run_id: str,
    root_run_id: str | None = None,
    ensemble: bool = True,
) -> RegisteredModel:
    """Refit the winner on all training rows, score it on the holdout, log and register it as challenger.

    With ``ensemble`` (the default), the families' greedy ensemble is built from their saved
    out-of-fold predictions and registered instead when it scores better on the holdout
    (:func:`~tracseq_dagster.training_ensemble.choose_model`); the choice, its weights and both
    holdout scores are logged (tags, metrics, ``ensemble_choice.json``) either way.

    ``root_run_id`` is the first run of a re-execution lineage (Dagster's ``root_run_id``):
    the registration key uses it, so a run re-executed from failure after it had already
    registered finds that version instead of adding a second one.
    """
    client = registry.client
    config = automl_config(SweepSettings(seed=seed), family=winner.family, storage=storage, training_set=training_set)
    problem = prepare_problem(training_set.frame, config, holdout=training_set.holdout, groups=training_set.groups)
    model, _ = fit_final(problem, winner.family, winner.best_params or {}, seed)
    holdout = training_set.holdout_frame()
    evaluation = evaluate(model, holdout, training_set.target, winner.metric, training_set.slice_column)
    choice: EnsembleChoice | None = None
    if ensemble:
        model, evaluation, choice = choose_model(training_set, ranked, problem, model, evaluation, seed=seed)
    family = ENSEMBLE_FAMILY if choice is not None and choice.chosen else winner.family
    params = _ensemble_params(choice, ranked) if family == ENSEMBLE_FAMILY else winner.best_params or {}
    if not hasattr(model, "classes_"):  # a regressor: answers carry prediction ± half-width (tracseq_dagster.conformal)
        with_conformal_interval(evaluation, model, holdout, training_set.target, interval_coverage(training_set.model))
    importances = feature_importances(model, holdout, training_set.target, winner.metric, seed=seed)

    tags = {
        DAGSTER_RUN_TAG: dagster_run_id,
        "family": family,
        "model": training_set.model,
        "feature_code_version": training_set.feature_code_version,
        "training_fingerprint": training_set.fingerprint,
        "training_rows": str(training_set.rows),
        "export_hashes": ",".join(training_set.export_hashes)[:4900],
        "export_count": str(len(training_set.export_hashes)),
    }
    if choice is not None:
        tags |= choice.tags()
    run_id = child_run(client, experiment_id, parent_run_id, f"registered-{family}", "registered_model", tags)
    # The fluent API throughout: the registry store itself looks the logged model up through it.
    with running(client, run_id), fluent_api(client):
        metrics = {**evaluation.mlflow_metrics(), "cv_mean": winner.leaderboard["cv_mean"]}  # type: ignore[index]
        log_values(client, run_id, metrics | (choice.metrics() if choice else {}), params=params)
        if choice is not None:
            client.log_dict(run_id, choice.as_dict(), "ensemble_choice.json")
        _log_artifacts(client, run_id, model, training_set, evaluation, importances, ranked, storage)
        info = _log_model(run_id, model, training_set)
        digest = {ARTIFACT_DIGEST_TAG: model_artifact_digest(info.model_uri)}  # checked again before it is packaged
        version = registry.register(
            info.model_uri,
            run_id=run_id,
            model_id=info.model_id,
            tags={
                **tags,
                "holdout_score": f"{evaluation.score:.6f}",
                "metric": evaluation.metric,
                **interval_tags(evaluation),
                **digest,
            },  # fmt: skip
            registration_key=f"{root_run_id or dagster_run_id}:{training_set.fingerprint}",
        )
    return RegisteredModel(
        version=str(version.version),
        family=family,
        params=params,
        evaluation=evaluation.as_dict(),
        importances=importances.round(6).to_dict(),
        mlflow_run_id=run_id,
        model_uri=registry.model_uri(str(version.version)),
        fingerprint=training_set.fingerprint,
        export_hashes=list(training_set.export_hashes),
        ensemble=None if choice is None else choice.as_dict(),
    )


def _ensemble_params(choice: EnsembleChoice | None, ranked: list[FamilyOutcome]) -> dict[str, Any]:
    """The ensemble's parameters as MLflow params: each member's weight and its own parameters, prefixed."""
    assert choice is not None
    best = {o.family: o.best_params or {} for o in ranked}
    params: dict[str, Any] = {}
    for member, weight in choice.weights.items():
        params[f"weight.{member}"] = round(weight, 6)
        params |= {f"{member}.{name}": value for name, value in best[member].items()}
    return params


def model_artifact_digest(model_uri: str) -> str:
    """The SHA-256 of a logged model's artifact folder, as the bundle export will download it
    (:mod:`tracseq_dagster.artifact_digest`); call inside :func:`fluent_api`."""
    import tempfile

    import mlflow

    with tempfile.TemporaryDirectory(prefix="tracseq-digest-") as folder:
        return artifact_digest.model_artifact_digest(
            Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=folder))
        )


def interval_coverage(model_name: str) -> float:
    """The coverage the catalog model declares for its interval (the default for a model outside the catalog)."""
    try:
        return get_model(model_name).serving.interval_coverage
    except UnknownModelError:
        return DEFAULT_COVERAGE


def interval_tags(evaluation: Evaluation) -> dict[str, str]:
    """The interval as version tags, when the evaluation has one."""
    if evaluation.interval_half_width is None:
        return {}
    return {
        INTERVAL_HALF_WIDTH_TAG: f"{evaluation.interval_half_width:.6g}",
        INTERVAL_COVERAGE_TAG: f"{evaluation.interval_coverage:g}",
    }


@dataclass
class GateOutcome:
    """What the gate decided about which versions."""

    decision: GateDecision
    challenger_version: str
    champion_version: str | None
    challenger: Evaluation
    champion: Evaluation | None
    promoted: bool
    mlflow_run_id: str
    #: The gate passed but the model's policy asks for an approver: a pending request was filed.
    pending_approval: bool = False

    @property
    def verdict(self) -> str:
        """What happened to the champion, in words (the asset's metadata, the CLI)."""
        if self.promoted:
            return "promoted"
        return "passed, waiting for approval" if self.pending_approval else "kept the champion"


def run_promotion_gate(
    training_set: TrainingSet,
    policy: GatePolicy,
    *,
    registry: ModelRegistry,
    metric: str,
    experiment_id: str,
    parent_run_id: str,
    dagster_run_id: str,
) -> GateOutcome:
    """Score challenger and champion on the same holdout; move ``champion`` if the gate passes."""
    challenger_version = registry.version(CHALLENGER)
    if challenger_version is None:
        raise AutoMLInputError(f"{registry.name} has no challenger: materialize registered_model first")
    champion_version = registry.version(CHAMPION)
    holdout = training_set.holdout_frame()
    with fluent_api(registry.client):
        target, slices = training_set.target, training_set.slice_column
        challenger = evaluate(_load(registry, challenger_version.version), holdout, target, metric, slices)
        champion = None
        if champion_version is not None:
            champion = evaluate(_load(registry, champion_version.version), holdout, target, metric, slices)

    if champion_version is not None and champion_version.version == challenger_version.version:
        decision = GateDecision(promote=False)
        decision.checks.append(_already_champion(challenger_version.version))
    else:
        decision = decide(challenger, champion, policy)

    client = registry.client
    tags = {DAGSTER_RUN_TAG: dagster_run_id, "challenger_version": str(challenger_version.version)}
    if champion_version is not None:
        tags["champion_version"] = str(champion_version.version)
    run_id = child_run(client, experiment_id, parent_run_id, f"gate-v{challenger_version.version}", "promotion_gate", tags)
    with running(client, run_id):
        log_values(
            client,
            run_id,
            {**challenger.mlflow_metrics("challenger"), **(champion.mlflow_metrics("champion") if champion else {})},
        )
        client.log_dict(run_id, {**decision.as_dict(), "policy": asdict(policy)}, "gate_decision.json")
        verdict = "promote" if decision.promote else "reject"
        client.set_tag(run_id, "gate_decision", verdict)
        client.set_model_version_tag(registry.name, challenger_version.version, "gate_decision", verdict)
        client.set_model_version_tag(
            registry.name, challenger_version.version, "gate_reasons", "; ".join(decision.reasons)[:4900]
        )
        promoted = False
        if decision.promote:
            first = decision.checks[0].reason  # the overall comparison
            # Promotes now, or files a request for an approver when the model's policy asks; audited.
            promoted = gate_passed(registry, challenger_version.version, f"{decision.headline()}: {first}", dagster_run_id)
    return GateOutcome(
        decision=decision,
        challenger_version=str(challenger_version.version),
        champion_version=None if champion_version is None else str(champion_version.version),
        challenger=challenger,
        champion=champion,
        promoted=promoted,
        mlflow_run_id=run_id,
        pending_approval=decision.promote and not promoted,
    )


# -- helpers -----------------------------------------------------------------------------------


def _already_champion(version: str) -> GateCheck:
    return GateCheck("is a new model", False, f"version {version} is already the champion")


def _load(registry: ModelRegistry, version: str) -> Any:
    return mlflow.sklearn.load_model(registry.model_uri(str(version)))


def _log_model(run_id: str, model: Any, training_set: TrainingSet) -> Any:
    """The model in MLflow's sklearn flavour, with signature, input example and pinned requirements."""
    from importlib.metadata import version as installed

    example = training_set.frame.drop(columns=[training_set.target]).head(5)
    metric = METRICS["log_loss"] if hasattr(model, "classes_") else METRICS["rmse"]
    signature = infer_signature(example, predict_scores(model, example, metric))
    # MLflow warns about cloudpickle on every save; the choice is deliberate (see below).
    logging.getLogger("mlflow.sklearn").setLevel(logging.ERROR)
    with mlflow.start_run(run_id=run_id, nested=True):
        return mlflow.sklearn.log_model(
            model,
            name="model",
            signature=signature,
            input_example=example,
            # skops refuses the project's own pipeline steps; cloudpickle stores them by reference,
            # so loading needs this package installed (the Bento and the code location have it).
            serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE,
            pip_requirements=[f"{p}=={installed(p)}" for p in MODEL_REQUIREMENTS] + [f"mlflow=={installed('mlflow')}"],
        )


def _log_artifacts(
    client: MlflowClient,
    run_id: str,
    model: Any,
    training_set: TrainingSet,
    evaluation: Evaluation,
    importances: pd.Series,
    ranked: list[FamilyOutcome],
    storage: str | None,
) -> None:
    holdout = training_set.holdout_frame()
    for name, figure in diagnostic_figures(model, holdout, training_set.target).items():
        client.log_figure(run_id, figure, f"plots/{name}")
    client.log_figure(run_id, importance_figure(importances), "plots/feature_importance.png")
    client.log_dict(run_id, importances.round(6).to_dict(), "feature_importance.json")
    client.log_dict(run_id, evaluation.as_dict(), "holdout_evaluation.json")
    client.log_dict(run_id, {"export_hashes": list(training_set.export_hashes)}, "training_exports.json")
    client.log_text(run_id, leaderboard_table(ranked).to_markdown(index=False), "leaderboard.md")
    board = leaderboard_figure(leaderboard_table(ranked), ranked[0].metric, ranked[0].greater_is_better)
    client.log_figure(run_id, board, "plots/leaderboard.png")
    history = optimisation_history_figure([o.study_name for o in ranked], storage)
    if history is not None:
        client.log_figure(run_id, history, "plots/optimization_history.png")


def optimisation_history_figure(study_names: list[str], storage: str | None) -> Any:
    """Optuna's optimisation history plot of the families' studies (None without an RDB storage)."""
    if storage is None:
        return None
    import warnings

    from optuna.visualization.matplotlib import plot_optimization_history

    studies = [optuna.load_study(study_name=name, storage=storage) for name in study_names]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the matplotlib backend is marked experimental
        axes = plot_optimization_history(studies)
    figure = axes.get_figure(root=True)  # Optuna draws on a figure of its own: root and axes' figure are one
    assert figure is not None
    figure.set_size_inches(8, 5)
    return figure
