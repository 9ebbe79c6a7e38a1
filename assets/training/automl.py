"""Training assets of every catalog model: AutoML sweeps per model and family, the leaderboard,
the registered model, the promotion gate.

The domain logic lives in :mod:`tracseq_dagster.training`; the model comes from the partition
key and its declaration from :mod:`tracseq_dagster.models`. These assets read the lake, call
the domain code, and describe what happened in their metadata.
"""

from dataclasses import replace
from pathlib import Path
from typing import Any

import dagster as dg

from assets.models.partitions import AUTOML_PARTITIONS, MODEL_PARTITIONS, label_source_deps, sweep_partition
from resources import LakeResource, MLflowResource, OptunaStorageResource
from resources.feast import FeastResource
from tracseq_dagster.automl.plots import leaderboard_figure
from tracseq_dagster.feature_repo.training_rows import SourcedTrainingSet, catalog_training_set
from tracseq_dagster.lake import Lake
from tracseq_dagster.models import ModelSpec, get_model
from tracseq_dagster.plots import markdown_image
from tracseq_dagster.promotion import GatePolicy
from tracseq_dagster.tracking import parent_run
from tracseq_dagster.training import (
    FamilyOutcome,
    SweepSettings,
    leaderboard_table,
    optimisation_history_figure,
    rank_families,
    register_winner,
    run_promotion_gate,
    sweep_one_family,
)


def training_set_of(lake: Lake, spec: ModelSpec, feast: FeastResource) -> SourcedTrainingSet:
    """The model's training set, through Feast's point-in-time join when the store serves this lake."""
    return catalog_training_set(feast.store(), lake, spec)


def out_of_fold_path(lake: Lake, model: str, family: str) -> Path:
    """Where a family's sweep keeps its best trial's out-of-fold predictions: beside its outcome."""
    return lake.automl_family_path(model, family).with_name(f"{family}.oof.npz")


class SweepConfig(dg.Config):
    """How hard each family tries (per partition); defaults from SweepSettings.

    Trials cross-validate on a stratified sample of at most ``max_sweep_rows`` training rows,
    so that one fold fits in the budget on large tables; the registered model is fit on every row.
    """

    time_budget_s: float = SweepSettings.time_budget_s
    max_trials: int | None = SweepSettings.max_trials
    cv_folds: int = SweepSettings.cv_folds
    seed: int = SweepSettings.seed
    max_sweep_rows: int | None = SweepSettings.max_sweep_rows
    validation: str = SweepSettings.validation


class RefitConfig(dg.Config):
    """Seed of the final fit (the sweep's seed, for a reproducible model), and whether the
    families' weighted ensemble may replace the winner (it does only when it scores better on
    the holdout; ``ensemble: false`` registers the winner without building it)."""

    seed: int = 0
    ensemble: bool = True


class GateConfig(dg.Config):
    """Thresholds of the promotion gate, each overriding the model's own policy when set."""

    min_improvement: float | None = None
    max_slice_regression: float | None = None
    max_brier: float | None = None
    max_ece: float | None = None

    def policy(self, declared: GatePolicy) -> GatePolicy:
        return replace(declared, **{k: v for k, v in self.model_dump().items() if v is not None})


@dg.asset(
    # The exports the labels come from, and the feature store the training set is joined through.
    deps=[*label_source_deps(), "feast_registry", "feast_entity_tables"],
    partitions_def=AUTOML_PARTITIONS,
    group_name="training",
    kinds={"optuna", "mlflow", "scikitlearn"},
    pool="automl",
)
def automl_trials(
    context: dg.AssetExecutionContext,
    config: SweepConfig,
    lake: LakeResource,
    mlflow_tracking: MLflowResource,
    optuna_storage: OptunaStorageResource,
    feast: FeastResource,
) -> dg.MaterializeResult:
    """One model family's Optuna sweep over one catalog model's labelled rows.

    Stratified k-fold cross-validation with pruning, on a wall-clock budget, in an RDB study
    that other workers can join. Every trial is an MLflow run nested under this family's run,
    under the parent run of this Dagster run. The stable holdout is never seen here. A family
    the model does not sweep (its declaration leaves it out) records that and trains nothing.
    """
    model, family = sweep_partition(context.partition_key)
    spec = get_model(model)
    if family not in spec.swept_families():
        context.log.info(f"{model} does not sweep {family} (its families: {', '.join(spec.swept_families())})")
        return dg.MaterializeResult(metadata={"model": model, "swept": False, "trials": 0})
    sourced = training_set_of(lake.lake(), spec, feast)
    training_set = sourced.training_set
    client = mlflow_tracking.client()
    experiment = mlflow_tracking.experiment_id(client, model)
    outcome = sweep_one_family(
        training_set,
        family,
        SweepSettings(**config.model_dump()),
        storage=optuna_storage.prepared_url(),
        client=client,
        experiment_id=experiment,
        parent_run_id=parent_run(client, experiment, context.run_id),
        dagster_run_id=context.run_id,
        oof_path=out_of_fold_path(lake.lake(), model, family),
    )
    lake.lake().write_json(lake.lake().automl_family_path(model, family), outcome.__dict__)
    best = outcome.leaderboard or {}
    context.log.info(f"{model}/{family}: {outcome.complete} complete, {outcome.pruned} pruned, {outcome.failed} failed trials")
    return dg.MaterializeResult(
        metadata={
            "model": model,
            "swept": True,
            "trials": outcome.trials,
            "complete": outcome.complete,
            "pruned": outcome.pruned,
            "failed": outcome.failed,
            "best_cv_mean": best.get("cv_mean"),
            "best_cv_std": best.get("cv_std"),
            "best_params": dg.MetadataValue.json(outcome.best_params or {}),
            "metric": outcome.metric,
            "wall_seconds": round(outcome.wall_seconds, 2),
            "training_rows": training_set.rows,
            "training_fingerprint": training_set.fingerprint,
            "training_source": sourced.source,
            "optuna_study": outcome.study_name,
            "mlflow_run_id": outcome.mlflow_run_id,
        }
    )


# Each model's leaderboard reads that model's sweeps: Dagster maps a model partition to the
# automl_trials partitions of the same "model" dimension (its default between a multi- and a
# single-dimension partitioning that shares the dimension).
@dg.asset(
    deps=[automl_trials],
    partitions_def=MODEL_PARTITIONS,
    group_name="training",
    kinds={"pandas"},
)
def automl_leaderboard(
    context: dg.AssetExecutionContext, lake: LakeResource, optuna_storage: OptunaStorageResource, feast: FeastResource
) -> dg.MaterializeResult:
    """Every family's best trial on the model's current training set: CV mean and spread, fit time, latency.

    Families whose last sweep ran on older data are left out; the first row is the winner. The
    leaderboard and Optuna's optimisation history of the families' studies are images here
    (and in MLflow on the registered model's run, which ``registered_model`` logs).
    """
    model = context.partition_key
    spec = get_model(model)
    lake_ = lake.lake()
    training_set = training_set_of(lake_, spec, feast).training_set
    families = spec.swept_families()
    outcomes = [
        FamilyOutcome.from_json(lake_.read_json(lake_.automl_family_path(model, f)))
        for f in families
        if lake_.automl_family_path(model, f).exists()
    ]
    ranked = rank_families(outcomes, training_set.fingerprint)
    table = leaderboard_table(ranked)
    lake_.write_json(
        lake_.leaderboard_path(model), {"fingerprint": training_set.fingerprint, "ranked": [o.__dict__ for o in ranked]}
    )
    board_plot = markdown_image(
        leaderboard_figure(table, ranked[0].metric, ranked[0].greater_is_better), f"{model}: AutoML leaderboard"
    )
    history = optimisation_history_figure([o.study_name for o in ranked], optuna_storage.prepared_url())
    history_plot = markdown_image(history, f"{model}: optimisation history") if history is not None else "_(no RDB storage)_"
    if history is not None:
        import matplotlib.pyplot as plt

        plt.close(history)  # Optuna draws it with pyplot: release it
    missing = sorted(set(families) - set(table["family"]))
    if missing:
        context.log.warning(f"families without a completed sweep on this training set: {', '.join(missing)}")
    return dg.MaterializeResult(
        metadata={
            "model": model,
            "winner": ranked[0].family,
            "metric": ranked[0].metric,
            "families": len(ranked),
            "missing_families": ", ".join(missing) or "none",
            "leaderboard": dg.MetadataValue.md(table.round(4).to_markdown(index=False)),
            "leaderboard_plot": dg.MetadataValue.md(board_plot),
            "optimisation_history": dg.MetadataValue.md(history_plot),
            "training_fingerprint": training_set.fingerprint,
        }
    )


@dg.asset(
    deps=[automl_leaderboard],
    partitions_def=MODEL_PARTITIONS,
    group_name="training",
    kinds={"mlflow", "scikitlearn"},
    pool="automl",
)
def registered_model(
    context: dg.AssetExecutionContext,
    config: RefitConfig,
    lake: LakeResource,
    mlflow_tracking: MLflowResource,
    optuna_storage: OptunaStorageResource,
    feast: FeastResource,
) -> dg.MaterializeResult:
    """The leaderboard's winner refit on all training rows, scored on the holdout, registered as challenger.

    Logged to MLflow with signature, input example, holdout metrics overall and per slice
    (the model's slice column), ROC and confusion plots (residuals for a regression),
    permutation importances and the Optuna history plot; tagged with the feature code
    version and the export hashes it was trained on. One registered model per catalog model.
    """
    model = context.partition_key
    lake_ = lake.lake()
    sourced = training_set_of(lake_, get_model(model), feast)
    training_set = sourced.training_set
    board = lake_.read_json(lake_.leaderboard_path(model))
    ranked = rank_families([FamilyOutcome.from_json(o) for o in board["ranked"]], training_set.fingerprint)
    client = mlflow_tracking.client()
    experiment = mlflow_tracking.experiment_id(client, model)
    registered = register_winner(
        training_set,
        ranked[0],
        ranked,
        seed=config.seed,
        storage=optuna_storage.prepared_url(),
        registry=mlflow_tracking.registry(model, client),
        experiment_id=experiment,
        parent_run_id=parent_run(client, experiment, context.run_id),
        dagster_run_id=context.run_id,
        root_run_id=context.run.root_run_id,
        ensemble=config.ensemble,
    )
    lake_.write_json(lake_.registered_model_path(model), registered.__dict__)
    evaluation = registered.evaluation
    slices = {name: part["score"] for name, part in evaluation["slices"].items()}
    return dg.MaterializeResult(
        metadata={
            "model": model,
            "model_version": registered.version,
            "family": registered.family,
            f"holdout_{evaluation['metric']}": evaluation["score"],
            "holdout_rows": evaluation["rows"],
            "brier": evaluation["brier"],
            "ece": evaluation["ece"],
            f"holdout_by_{training_set.slice_column or 'slice'}": dg.MetadataValue.json(slices),
            "top_features": dg.MetadataValue.json(dict(list(registered.importances.items())[:8])),
            "model_uri": registered.model_uri,
            "mlflow_run_id": registered.mlflow_run_id,
            "feature_code_version": training_set.feature_code_version,
            "training_exports": len(registered.export_hashes),
            "training_source": sourced.source,
            **_ensemble_metadata(registered.ensemble),
        }
    )


def _ensemble_metadata(choice: dict[str, Any] | None) -> dict[str, Any]:
    """What the materialization says about the ensemble: kept or not, why, weights, both holdout scores."""
    if choice is None:
        return {"ensemble": "off"}
    return {
        "ensemble": "chosen" if choice["chosen"] else "not chosen",
        "ensemble_reason": choice["reason"],
        "ensemble_weights": dg.MetadataValue.json(choice["weights"]),
        "single_family": choice["single_family"],
        "single_holdout_score": choice["single_holdout"],
        "ensemble_holdout_score": choice["ensemble_holdout"],
    }


@dg.asset(deps=[registered_model], partitions_def=MODEL_PARTITIONS, group_name="training", kinds={"mlflow"})
def promotion_gate(
    context: dg.AssetExecutionContext,
    config: GateConfig,
    lake: LakeResource,
    mlflow_tracking: MLflowResource,
    feast: FeastResource,
) -> dg.MaterializeResult:
    """Moves the alias champion to the challenger only if it passes the gate.

    It must beat the champion on the same holdout by a margin, not regress on any slice,
    and be calibrated (Brier score and expected calibration error within bounds). The
    thresholds are the model's declared policy, each overridable in the run config. The
    decision and every reason are recorded in MLflow and here.
    """
    model = context.partition_key
    spec = get_model(model)
    lake_ = lake.lake()
    training_set = training_set_of(lake_, spec, feast).training_set
    registered = lake_.read_json(lake_.registered_model_path(model))
    client = mlflow_tracking.client()
    experiment = mlflow_tracking.experiment_id(client, model)
    outcome = run_promotion_gate(
        training_set,
        config.policy(spec.gate),
        registry=mlflow_tracking.registry(model, client),
        metric=registered["evaluation"]["metric"],
        experiment_id=experiment,
        parent_run_id=parent_run(client, experiment, context.run_id),
        dagster_run_id=context.run_id,
    )
    context.log.info(outcome.decision.summary())
    reasons = "\n".join(f"| {c.rule} | {'pass' if c.passed else 'FAIL'} | {c.reason} |" for c in outcome.decision.checks)
    return dg.MaterializeResult(
        metadata={
            "model": model,
            "decision": outcome.verdict,
            "challenger_version": outcome.challenger_version,
            "champion_version_before": outcome.champion_version or "none",
            "challenger_score": outcome.challenger.score,
            "champion_score": outcome.champion.score if outcome.champion else None,
            "reasons": dg.MetadataValue.md("| rule | result | reason |\n|---|---|---|\n" + reasons),
            "mlflow_run_id": outcome.mlflow_run_id,
        }
    )
