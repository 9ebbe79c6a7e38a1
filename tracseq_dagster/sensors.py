"""Sensors: new LIMS exports and lab documents become partitions and runs; monitoring starts retraining."""

import hashlib
import json
from datetime import datetime, timedelta, timezone

import dagster as dg

from resources import LakeResource, LandingZoneResource, MLflowResource
from tracseq_dagster import settings
from tracseq_dagster.jobs import (
    automl_sweep_job,
    index_documents_job,
    ingest_document_job,
    ingest_lab_export_job,
    register_and_promote_job,
)
from tracseq_dagster.landing import LandingCursor, ScanResult, scan_landing
from tracseq_dagster.monitoring.drift import DRIFT_CHECK_NAME
from tracseq_dagster.monitoring.retraining import (
    RETRAIN_BATCH_TAG,
    RETRAIN_REASON_TAG,
    RetrainPolicy,
    RetrainState,
    champion_training_rows,
    labelled_sample_count,
    retrain_decision,
)
from tracseq_dagster.partitions import SOURCE_PATH_TAG, document_partitions, lab_export_partitions


@dg.sensor(
    job=ingest_lab_export_job,
    minimum_interval_seconds=settings.sensor_interval_s(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Watches the landing folder; each new, finished export becomes one partition and one run.",
)
def lab_export_sensor(context: dg.SensorEvaluationContext, landing_zone: LandingZoneResource) -> dg.SensorResult:
    """A file is picked up once it has stopped changing between two ticks.

    Its content hash is the partition key, so the same bytes dropped again (under any
    name) start nothing, and a changed file becomes a new partition.
    """
    scan = scan_landing(landing_zone.list_files(), LandingCursor.from_json(context.cursor), landing_zone.content_hash)
    new_keys = _new_partition_keys(context, scan, lab_export_partitions, "file")

    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(partition_key=key, run_key=key, tags={SOURCE_PATH_TAG: path}) for key, path in new_keys.items()
        ],
        dynamic_partitions_requests=[lab_export_partitions.build_add_request(list(new_keys))] if new_keys else [],
        cursor=scan.cursor.to_json(),
    )


def _new_partition_keys(
    context: dg.SensorEvaluationContext, scan: ScanResult, partitions: dg.DynamicPartitionsDefinition, noun: str
) -> dict[str, str]:
    """Content hash → path of the finished files whose bytes no partition holds yet (logging the rest)."""
    for error in scan.errors:
        context.log.warning(f"Cannot read {error}; retrying on the next tick.")
    if scan.waiting:
        context.log.info(f"Waiting for {len(scan.waiting)} {noun}(s) to finish writing: {', '.join(scan.waiting[:5])}")
    new_keys: dict[str, str] = {}
    for ready in scan.ready:
        key = ready.content_hash
        if key in new_keys or context.instance.has_dynamic_partition(partitions.name, key):
            context.log.info(f"{ready.file.path}: same bytes as a {noun} already ingested ({key}); nothing to do.")
            continue
        new_keys[key] = ready.file.path
    return new_keys


# Declarative automation keeps sample_features fresh once new exports are validated.
features_automation_sensor = dg.AutomationConditionSensorDefinition(
    "features_automation",
    target=dg.AssetSelection.assets("sample_features", "online_sample_features"),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=settings.sensor_interval_s(),
)


DRIFT_CHECK = dg.AssetCheckKey(dg.AssetKey("feature_drift_report"), DRIFT_CHECK_NAME)
#: A batch whose sweep runs never appeared (launch failed) is given up after this long.
BATCH_LAUNCH_TIMEOUT = timedelta(hours=1)
_IN_PROGRESS = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]


@dg.sensor(
    jobs=[automl_sweep_job, register_and_promote_job],
    minimum_interval_seconds=settings.monitoring_interval_s(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Retrains sample_quality when the feature drift check failed or enough newly labelled "
    "samples arrived: every family's automl_sweep partition, then register_and_promote.",
)
def retraining_sensor(
    context: dg.SensorEvaluationContext, lake: LakeResource, mlflow_tracking: MLflowResource
) -> dg.SensorResult:
    """Starts a retraining batch, or, while one runs, chains register_and_promote after its sweeps.

    The decision is tracseq_dagster.monitoring.retraining's; the cursor remembers the open
    batch, the labels it saw and the drift evaluation it acted on, so nothing starts twice.
    """
    state = RetrainState.from_json(context.cursor)
    if state.batch is not None:
        return _advance_batch(context, state)

    policy = RetrainPolicy(
        min_new_labels=settings.retrain_min_new_labels(),
        drift_cooldown_hours=settings.retrain_drift_cooldown_hours(),
        families=settings.retrain_families() or RetrainPolicy.families,
    )
    latest_check = context.instance.get_latest_asset_check_evaluation_record(DRIFT_CHECK)
    failed_drift = latest_check.id if latest_check and latest_check.status.value == "FAILED" else None
    labelled = labelled_sample_count(lake.lake())
    # Cheap tests first: most ticks end here without opening the registry.
    if failed_drift is None and labelled - state.labels_at_last_retrain < policy.min_new_labels:
        return dg.SensorResult(skip_reason=f"no failed drift check; {labelled} labelled samples", cursor=state.to_json())
    for job in (automl_sweep_job, register_and_promote_job):  # a training someone else started
        busy = context.instance.get_runs(dg.RunsFilter(job_name=job.name, statuses=_IN_PROGRESS), limit=1)
        if busy:
            return dg.SensorResult(skip_reason=f"{job.name} is already running ({busy[0].run_id[:8]})", cursor=state.to_json())
    champion_rows = champion_training_rows(mlflow_tracking.registry())
    decision = retrain_decision(
        policy, state, failed_drift_evaluation=failed_drift, labelled_now=labelled, champion_training_rows=champion_rows
    )
    if not decision:
        drift = "failed (already acted on, or cooling down)" if failed_drift is not None else "passing"
        champion = "no champion" if champion_rows is None else f"the champion learned from {champion_rows}"
        return dg.SensorResult(
            skip_reason=f"no reason to retrain: drift check {drift}; {labelled} labelled samples, {champion}",
            cursor=state.to_json(),
        )

    now = datetime.now(timezone.utc)
    batch = f"retrain-{now:%Y%m%dT%H%M%S}"
    because = "; ".join(decision.reasons)
    context.log.info(f"{batch}: retraining because {because}")
    tags = {RETRAIN_BATCH_TAG: batch, RETRAIN_REASON_TAG: because[:1000]}
    state.batch, state.labels_at_last_retrain, state.last_retrain_at = batch, labelled, now.isoformat()
    if decision.drift:
        state.drift_evaluation_seen = failed_drift
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(job_name=automl_sweep_job.name, partition_key=family, run_key=f"{batch}:{family}", tags=tags)
            for family in policy.families
        ],
        cursor=state.to_json(),
    )


def _advance_batch(context: dg.SensorEvaluationContext, state: RetrainState) -> dg.SensorResult:
    """register_and_promote once every sweep of the open batch finished and one succeeded."""
    batch = state.batch
    sweeps = [r for r in context.instance.get_runs(dg.RunsFilter(tags={RETRAIN_BATCH_TAG: batch})) if r.job_name == automl_sweep_job.name]
    started = datetime.fromisoformat(state.last_retrain_at) if state.last_retrain_at else datetime.now(timezone.utc)
    if not sweeps and datetime.now(timezone.utc) - started < BATCH_LAUNCH_TIMEOUT:
        return dg.SensorResult(skip_reason=f"{batch}: waiting for its sweep runs to be launched", cursor=state.to_json())
    running = [r for r in sweeps if not r.is_finished]
    if running:
        return dg.SensorResult(skip_reason=f"{batch}: {len(running)} of {len(sweeps)} sweeps still running", cursor=state.to_json())
    state.batch = None
    if not any(r.is_success for r in sweeps):
        context.log.warning(f"{batch}: no sweep succeeded; nothing to register")
        return dg.SensorResult(skip_reason=f"{batch}: no sweep succeeded", cursor=state.to_json())
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(job_name=register_and_promote_job.name, run_key=f"{batch}:register", tags={RETRAIN_BATCH_TAG: batch})
        ],
        cursor=state.to_json(),
    )


@dg.sensor(
    jobs=[ingest_document_job, index_documents_job],
    minimum_interval_seconds=settings.sensor_interval_s(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Watches the documents folder: each new, finished document becomes one partition and one run; "
    "a deleted document starts a run of the index that removes its chunks.",
)
def documents_sensor(context: dg.SensorEvaluationContext, documents_landing: LandingZoneResource) -> dg.SensorResult:
    """Like lab_export_sensor: settled files only, keyed by content hash, same bytes start nothing.

    The cursor also keeps the folder's file list (a documents folder holds thousands of
    files, not the millions an export folder may): when a file disappears, the index job
    runs to drop its chunks.
    """
    state = json.loads(context.cursor) if context.cursor else {}
    files = documents_landing.list_files()
    scan: ScanResult = scan_landing(files, LandingCursor.from_json(state.get("scan")), documents_landing.content_hash)
    new_keys = _new_partition_keys(context, scan, document_partitions, "document")
    run_requests = [
        dg.RunRequest(job_name=ingest_document_job.name, partition_key=key, run_key=key, tags={SOURCE_PATH_TAG: path})
        for key, path in new_keys.items()
    ]
    paths = sorted(f.path for f in files)
    digest = hashlib.sha256("\n".join(paths).encode()).hexdigest()[:16]
    previous = set(state.get("paths_seen", []))
    if previous - set(paths):
        context.log.info(f"Document(s) removed from the folder: {', '.join(sorted(previous - set(paths))[:5])}")
        run_requests.append(dg.RunRequest(job_name=index_documents_job.name, run_key=f"removed-{digest}"))
    return dg.SensorResult(
        run_requests=run_requests,
        dynamic_partitions_requests=[document_partitions.build_add_request(list(new_keys))] if new_keys else [],
        cursor=json.dumps({"scan": scan.cursor.to_json(), "paths_seen": paths}),
    )


# New document chunks reach the index (and submission forms the submission table) on their own.
documents_automation_sensor = dg.AutomationConditionSensorDefinition(
    "documents_automation",
    target=dg.AssetSelection.assets("document_index", "submission_metadata"),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=settings.sensor_interval_s(),
)
