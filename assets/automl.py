"""Training assets: AutoML sweeps per family, the leaderboard, the registered model, the promotion gate.

The domain logic lives in :mod:`tracseq_dagster.training`; these assets read the lake, call it,
and describe what happened in their metadata.
"""

import dagster as dg

from resources import LakeResource, MLflowResource, OptunaStorageResource
from tracseq_dagster.automl import ALL_FAMILIES
from tracseq_dagster.promotion import GatePolicy
from tracseq_dagster.training import (
    FamilyOutcome,
    SweepSettings,
    leaderboard_table,
    rank_families,
    register_winner,
    run_promotion_gate,
    sweep_one_family,
)
from tracseq_dagster.training_set import load_training_set
from tracseq_dagster.tracking import parent_run

# One partition per model family: a backfill of all six launches one run (one process, or one
# pod under the Kubernetes run launcher) per family, and they sweep in parallel.
AUTOML_FAMILIES = dg.StaticPartitionsDefinition(list(ALL_FAMILIES))


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


class RefitConfig(dg.Config):
    """Seed of the final fit (the sweep's seed, for a reproducible model)."""

    seed: int = 0


class GateConfig(dg.Config):
    """Thresholds of the promotion gate; defaults from GatePolicy (see tracseq_dagster.promotion)."""

    min_improvement: float = GatePolicy.min_improvement
    max_slice_regression: float = GatePolicy.max_slice_regression
    max_brier: float = GatePolicy.max_brier
    max_ece: float = GatePolicy.max_ece


@dg.asset(
    deps=["sample_features"],
    partitions_def=AUTOML_FAMILIES,
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
) -> dg.MaterializeResult:
    """One model family's Optuna sweep over the labelled sample features.

    Stratified k-fold cross-validation with pruning, on a wall-clock budget, in an RDB study
    that other workers can join. Every trial is an MLflow run nested under this family's run,
    under the parent run of this Dagster run. The stable holdout is never seen here.
    """
    family = context.partition_key
    training_set = load_training_set(lake.lake())
    client = mlflow_tracking.client()
    experiment = mlflow_tracking.experiment_id(client)
    outcome = sweep_one_family(
        training_set,
        family,
        SweepSettings(**config.model_dump()),
        storage=optuna_storage.prepared_url(),
        client=client,
        experiment_id=experiment,
        parent_run_id=parent_run(client, experiment, context.run_id),
        dagster_run_id=context.run_id,
    )
    lake.lake().write_json(lake.lake().automl_family_path(family), outcome.__dict__)
    best = outcome.leaderboard or {}
    context.log.info(f"{family}: {outcome.complete} complete, {outcome.pruned} pruned, {outcome.failed} failed trials")
    return dg.MaterializeResult(
        metadata={
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
            "optuna_study": outcome.study_name,
            "mlflow_run_id": outcome.mlflow_run_id,
        }
    )


@dg.asset(
    deps=[automl_trials],
    group_name="training",
    kinds={"pandas"},
)
def automl_leaderboard(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """Every family's best trial on the current training set: CV mean and spread, fit time, latency.

    Families whose last sweep ran on older data are left out; the first row is the winner.
    """
    lake_ = lake.lake()
    training_set = load_training_set(lake_)
    outcomes = [
        FamilyOutcome.from_json(lake_.read_json(lake_.automl_family_path(f)))
        for f in ALL_FAMILIES
        if lake_.automl_family_path(f).exists()
    ]
    ranked = rank_families(outcomes, training_set.fingerprint)
    table = leaderboard_table(ranked)
    lake_.write_json(lake_.leaderboard_path, {"fingerprint": training_set.fingerprint, "ranked": [o.__dict__ for o in ranked]})
    missing = sorted(set(ALL_FAMILIES) - set(table["family"]))
    if missing:
        context.log.warning(f"families without a completed sweep on this training set: {', '.join(missing)}")
    return dg.MaterializeResult(
        metadata={
            "winner": ranked[0].family,
            "metric": ranked[0].metric,
            "families": len(ranked),
            "missing_families": ", ".join(missing) or "none",
            "leaderboard": dg.MetadataValue.md(table.round(4).to_markdown(index=False)),
            "training_fingerprint": training_set.fingerprint,
        }
    )


@dg.asset(deps=[automl_leaderboard], group_name="training", kinds={"mlflow", "scikitlearn"}, pool="automl")
def registered_model(
    context: dg.AssetExecutionContext,
    config: RefitConfig,
    lake: LakeResource,
    mlflow_tracking: MLflowResource,
    optuna_storage: OptunaStorageResource,
) -> dg.MaterializeResult:
    """The leaderboard's winner refit on all training rows, scored on the holdout, registered as challenger.

    Logged to MLflow with signature, input example, holdout metrics overall and per sample
    type, ROC and confusion plots, permutation importances and the Optuna history plot;
    tagged with the feature code version and the export hashes it was trained on.
    """
    lake_ = lake.lake()
    training_set = load_training_set(lake_)
    board = lake_.read_json(lake_.leaderboard_path)
    ranked = rank_families([FamilyOutcome.from_json(o) for o in board["ranked"]], training_set.fingerprint)
    client = mlflow_tracking.client()
    experiment = mlflow_tracking.experiment_id(client)
    registered = register_winner(
        training_set,
        ranked[0],
        ranked,
        seed=config.seed,
        storage=optuna_storage.prepared_url(),
        registry=mlflow_tracking.registry(client),
        experiment_id=experiment,
        parent_run_id=parent_run(client, experiment, context.run_id),
        dagster_run_id=context.run_id,
        root_run_id=context.run.root_run_id,
    )
    lake_.write_json(lake_.registered_model_path, registered.__dict__)
    evaluation = registered.evaluation
    slices = {name: part["score"] for name, part in evaluation["slices"].items()}
    return dg.MaterializeResult(
        metadata={
            "model_version": registered.version,
            "family": registered.family,
            f"holdout_{evaluation['metric']}": evaluation["score"],
            "holdout_rows": evaluation["rows"],
            "brier": evaluation["brier"],
            "ece": evaluation["ece"],
            "holdout_by_sample_type": dg.MetadataValue.json(slices),
            "top_features": dg.MetadataValue.json(dict(list(registered.importances.items())[:8])),
            "model_uri": registered.model_uri,
            "mlflow_run_id": registered.mlflow_run_id,
            "feature_code_version": training_set.feature_code_version,
            "training_exports": len(registered.export_hashes),
        }
    )


@dg.asset(deps=[registered_model], group_name="training", kinds={"mlflow"})
def promotion_gate(
    context: dg.AssetExecutionContext, config: GateConfig, lake: LakeResource, mlflow_tracking: MLflowResource
) -> dg.MaterializeResult:
    """Moves the alias champion to the challenger only if it passes the gate.

    It must beat the champion on the same holdout by a margin, not regress on any sample
    type, and be calibrated (Brier score and expected calibration error within bounds).
    The decision and every reason are recorded in MLflow and here.
    """
    lake_ = lake.lake()
    training_set = load_training_set(lake_)
    registered = lake_.read_json(lake_.registered_model_path)
    client = mlflow_tracking.client()
    experiment = mlflow_tracking.experiment_id(client)
    outcome = run_promotion_gate(
        training_set,
        GatePolicy(**config.model_dump()),
        registry=mlflow_tracking.registry(client),
        metric=registered["evaluation"]["metric"],
        experiment_id=experiment,
        parent_run_id=parent_run(client, experiment, context.run_id),
        dagster_run_id=context.run_id,
    )
    context.log.info(outcome.decision.summary())
    reasons = "\n".join(f"| {c.rule} | {'pass' if c.passed else 'FAIL'} | {c.reason} |" for c in outcome.decision.checks)
    return dg.MaterializeResult(
        metadata={
            "decision": "promoted" if outcome.promoted else "kept the champion",
            "challenger_version": outcome.challenger_version,
            "champion_version_before": outcome.champion_version or "none",
            "challenger_score": outcome.challenger.score,
            "champion_score": outcome.champion.score if outcome.champion else None,
            "reasons": dg.MetadataValue.md("| rule | result | reason |\n|---|---|---|\n" + reasons),
            "mlflow_run_id": outcome.mlflow_run_id,
        }
    )
