"""Retraining in the daemon: on drift or new labels (a sensor), every week (a schedule).

Either starts a *batch*: one ``automl_sweep`` run per (model, family), tagged with the batch
name and the model. The retraining sensor then chains ``register_and_promote`` of a model once
every sweep of that model in a batch has finished and one succeeded, whoever started the batch
(itself, the schedule, or a person who tagged a backfill), exactly once per batch and model.

Drift and new labels are watched per catalog model: a failed drift check of a model's
``feature_drift_report`` partition, or enough newly labelled rows of it, retrains that model
and no other; the weekly schedule retrains every catalog model that has a champion.
"""

from datetime import UTC, datetime, timedelta

import dagster as dg

from assets.models.partitions import sweep_partition_key
from assets.training.jobs import automl_sweep_job, register_and_promote_job
from resources import LakeResource, MLflowResource
from tracseq_dagster import settings
from tracseq_dagster.models import catalog, get_model
from tracseq_dagster.monitoring.drift import DRIFT_CHECK_NAME
from tracseq_dagster.monitoring.retraining import (
    RETRAIN_BATCH_TAG,
    RETRAIN_MODEL_TAG,
    RETRAIN_REASON_TAG,
    RetrainCursor,
    RetrainPolicy,
    champion_training_rows,
    labelled_row_count,
    retrain_decision,
)

DRIFT_CHECK = dg.AssetCheckKey(dg.AssetKey("feature_drift_report"), DRIFT_CHECK_NAME)
#: A batch whose sweep runs never appeared (launch failed) is given up after this long.
BATCH_LAUNCH_TIMEOUT = timedelta(hours=1)
#: Sweep runs older than this are not looked at when chaining registrations.
BATCH_LOOKBACK = timedelta(days=7)
SCHEDULE_REASON = "the weekly retraining schedule"
_IN_PROGRESS = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def _families(model: str) -> tuple[str, ...]:
    return settings.retrain_families() or get_model(model).swept_families()


def _training_in_progress(instance: dg.DagsterInstance) -> str | None:
    """Why not to start a batch now: a sweep or a registration is queued or running."""
    for job in (automl_sweep_job, register_and_promote_job):
        busy = instance.get_runs(dg.RunsFilter(job_name=job.name, statuses=_IN_PROGRESS), limit=1)
        if busy:
            return f"{job.name} is already running ({busy[0].run_id[:8]})"
    return None


def _sweep_requests(batch: str, reason: str, model: str) -> list[dg.RunRequest]:
    tags = {RETRAIN_BATCH_TAG: batch, RETRAIN_MODEL_TAG: model, RETRAIN_REASON_TAG: reason[:1000]}
    return [
        dg.RunRequest(
            job_name=automl_sweep_job.name,
            partition_key=sweep_partition_key(model, family),
            run_key=f"{batch}:{model}:{family}",
            tags=tags,
        )
        for family in _families(model)
    ]


#: Drift check evaluations looked through for a model's latest (hourly, one per model: days of them).
DRIFT_LOOKBACK_EVALUATIONS = 200


def latest_drift_evaluation(instance: dg.DagsterInstance, model: str) -> int | None:
    """Id of the latest drift check evaluation of ``model`` if it failed, else None.

    The check runs in each model partition's run; its evaluation names the model in its
    metadata (the evaluation record carries no partition), which is what is matched here.
    """
    for record in instance.event_log_storage.get_asset_check_execution_history(DRIFT_CHECK, limit=DRIFT_LOOKBACK_EVALUATIONS):
        if _evaluated_model(record) == model:
            return record.id if record.status.value == "FAILED" else None
    return None


def _evaluated_model(record) -> str | None:  # type: ignore[no-untyped-def]
    if record.partition is not None:
        return record.partition
    evaluation = record.event.dagster_event.event_specific_data if record.event and record.event.dagster_event else None
    named = getattr(evaluation, "metadata", {}).get("model")
    return getattr(named, "value", None)


@dg.sensor(
    jobs=[automl_sweep_job, register_and_promote_job],
    minimum_interval_seconds=settings.monitoring_interval_s(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Retrains each catalog model whose feature drift check (its partition) failed or whose newly "
    "labelled rows are enough: every family's automl_sweep partition of that model, then its register_and_promote "
    "(also after the weekly schedule's sweeps of any model).",
)
def retraining_sensor(
    context: dg.SensorEvaluationContext, lake: LakeResource, mlflow_tracking: MLflowResource
) -> dg.SensorResult:
    """Chains register_and_promote after finished batches, or starts a retraining batch of the models with a reason.

    The decision is tracseq_dagster.monitoring.retraining's, per model; the cursor remembers
    its own open batch, the batches already registered, and per model the labels it saw and
    the drift evaluation it acted on, so nothing starts twice.
    """
    cursor = RetrainCursor.from_json(context.cursor)
    if cursor.batch is not None:
        waiting = _own_batch_waiting(context, cursor)
        if waiting:
            return dg.SensorResult(skip_reason=waiting, cursor=cursor.to_json())
        cursor.batch = None
    due = _registrations_due(context, cursor)
    if due:
        return dg.SensorResult(run_requests=due, cursor=cursor.to_json())

    policy = RetrainPolicy(
        min_new_labels=settings.retrain_min_new_labels(),
        drift_cooldown_hours=settings.retrain_drift_cooldown_hours(),
    )
    lake_ = lake.lake()
    # Cheap tests first: most ticks end here without opening the registry.
    signals = {}
    for name, spec in catalog().items():
        try:
            labelled = labelled_row_count(lake_, spec)
        except Exception as error:  # one model's rows that cannot be built yet must not stop the others'
            context.log.warning(f"{name}: its labelled rows could not be counted ({error}); not judged this tick")
            continue
        failed = latest_drift_evaluation(context.instance, name)
        if failed is not None or labelled - cursor.model(name).labels_at_last_retrain >= policy.min_new_labels:
            signals[name] = (failed, labelled)
    if not signals:
        return dg.SensorResult(skip_reason=f"no failed drift check and too few new labels of any of {len(catalog())} models",
                               cursor=cursor.to_json())  # fmt: skip
    busy = _training_in_progress(context.instance)  # a training someone else started
    if busy:
        return dg.SensorResult(skip_reason=busy, cursor=cursor.to_json())

    now = datetime.now(UTC)
    batch = f"retrain-{now:%Y%m%dT%H%M%S}"
    requests, quiet = [], []
    client = mlflow_tracking.client()
    for name, (failed, labelled) in signals.items():
        state = cursor.model(name)
        champion_rows = champion_training_rows(mlflow_tracking.registry(name, client))
        decision = retrain_decision(
            policy, state, failed_drift_evaluation=failed, labelled_now=labelled, champion_training_rows=champion_rows, now=now
        )
        if not decision:
            drift = "failed (already acted on, or cooling down)" if failed is not None else "passing"
            champion = "no champion" if champion_rows is None else f"the champion learned from {champion_rows}"
            quiet.append(f"{name}: drift check {drift}; {labelled} labelled rows, {champion}")
            continue
        because = "; ".join(decision.reasons)
        context.log.info(f"{batch}: retraining {name} because {because}")
        state.labels_at_last_retrain, state.last_retrain_at = labelled, now.isoformat()
        if decision.drift:
            state.drift_evaluation_seen = failed
        requests += _sweep_requests(batch, because, name)
    if not requests:
        return dg.SensorResult(skip_reason="no reason to retrain: " + "; ".join(quiet), cursor=cursor.to_json())
    cursor.batch, cursor.batch_started_at = batch, now.isoformat()
    return dg.SensorResult(run_requests=requests, cursor=cursor.to_json())


def _own_batch_waiting(context: dg.SensorEvaluationContext, cursor: RetrainCursor) -> str | None:
    """Why the sensor's own batch is not settled yet (its sweeps not launched, or running)."""
    sweeps = _batch_sweeps(context.instance, cursor.batch)  # type: ignore[arg-type]
    started = datetime.fromisoformat(cursor.batch_started_at) if cursor.batch_started_at else datetime.now(UTC)
    if not sweeps and datetime.now(UTC) - started < BATCH_LAUNCH_TIMEOUT:
        return f"{cursor.batch}: waiting for its sweep runs to be launched"
    running = [r for r in sweeps if not r.is_finished]
    if running:
        return f"{cursor.batch}: {len(running)} of {len(sweeps)} sweeps still running"
    return None


def _batch_sweeps(instance: dg.DagsterInstance, batch: str) -> list[dg.DagsterRun]:
    return list(instance.get_runs(dg.RunsFilter(job_name=automl_sweep_job.name, tags={RETRAIN_BATCH_TAG: batch})))


def _registrations_due(context: dg.SensorEvaluationContext, state: RetrainCursor) -> list[dg.RunRequest]:
    """register_and_promote for each recent batch and model whose sweeps all finished and one succeeded (once)."""
    since = datetime.now(UTC) - BATCH_LOOKBACK
    batches: dict[tuple[str, str], list[dg.DagsterRun]] = {}
    for run in context.instance.get_runs(dg.RunsFilter(job_name=automl_sweep_job.name, created_after=since)):
        batch, model = run.tags.get(RETRAIN_BATCH_TAG), run.tags.get(RETRAIN_MODEL_TAG)
        if batch and model and f"{batch}:{model}" not in state.settled_batches:
            batches.setdefault((batch, model), []).append(run)
    due = []
    for (batch, model), sweeps in sorted(batches.items()):
        if not all(r.is_finished for r in sweeps):
            continue
        state.settle(f"{batch}:{model}")
        if any(r.is_success for r in sweeps):
            due.append(
                dg.RunRequest(
                    job_name=register_and_promote_job.name,
                    partition_key=model,
                    run_key=f"{batch}:{model}:register",
                    tags={RETRAIN_BATCH_TAG: batch, RETRAIN_MODEL_TAG: model},
                )
            )
        else:
            context.log.warning(f"{batch}: no sweep of {model} succeeded; nothing to register")
    return due


@dg.schedule(
    job=automl_sweep_job,
    cron_schedule=settings.retrain_cron(),
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Retrains every catalog model with a champion every week (TRACSEQ_RETRAIN_CRON), even without "
    "drift or new labels: each model's family sweeps; the retraining sensor then registers each winner and runs its gate.",
)
def retraining_schedule(
    context: dg.ScheduleEvaluationContext, mlflow_tracking: MLflowResource
) -> list[dg.RunRequest] | dg.SkipReason:
    """One batch of family sweeps per scheduled time for the models with a champion, unless a training runs."""
    client = mlflow_tracking.client()
    models = [m for m in catalog() if champion_training_rows(mlflow_tracking.registry(m, client)) is not None]
    if not models:
        return dg.SkipReason("no champion yet: the first training is an operator's decision (tracseq train)")
    busy = _training_in_progress(context.instance)
    if busy:
        return dg.SkipReason(busy)
    moment = context.scheduled_execution_time or datetime.now(UTC)
    return [r for model in models for r in _sweep_requests(f"scheduled-{moment:%Y%m%dT%H%M}", SCHEDULE_REASON, model)]
