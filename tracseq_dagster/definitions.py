"""The Dagster code location of TracSeq Dagster."""

from __future__ import annotations

import os

import dagster as dg

from assets.automl import automl_leaderboard, automl_trials, promotion_gate, registered_model
from assets.documents import document_chunks, document_index, submission_metadata
from assets.features import sample_features
from assets.lab_exports import raw_lab_exports, raw_rows_meet_contract, raw_run_exports, raw_run_rows_meet_contract
from assets.monitoring import ab_test_report, feature_drift_report, prediction_log
from assets.serving import online_sample_features, sample_quality_bento
from assets.validation import validate_lab_export, validate_run_export
from resources import (
    EmbedderResource,
    ExportParsingResource,
    LakeResource,
    LanceDBResource,
    LandingZoneResource,
    MLflowResource,
    OllamaResource,
    OnlineStoreResource,
    OptunaStorageResource,
    PredictionLogResource,
)
from tracseq_dagster import settings
from tracseq_dagster.jobs import (
    audit_raw_export_job,
    audit_raw_run_export_job,
    automl_sweep_job,
    index_documents_job,
    ingest_document_job,
    ingest_lab_export_job,
    ingest_run_export_job,
    monitoring_reports_job,
    monitoring_schedule,
    package_bento_job,
    register_and_promote_job,
    sample_features_job,
)
from tracseq_dagster.documents.parsing import DOCUMENT_SUFFIXES
from tracseq_dagster.sensors import (
    documents_automation_sensor,
    documents_sensor,
    features_automation_sensor,
    lab_export_sensor,
    retraining_schedule,
    retraining_sensor,
)


def build_definitions(
    *,
    lake_dir: str | None = None,
    landing_url: str | None = None,
    chunk_rows: int | None = None,
    mlflow_tracking_uri: str | None = None,
    optuna_storage: str | None = None,
    prediction_log_url: str | None = None,
    documents_url: str | None = None,
    lancedb_dir: str | None = None,
) -> dg.Definitions:
    """The code location, with folders from the arguments or the environment (see settings)."""
    return dg.Definitions(
        # One process per run, not per step: a step's own process imports the code location
        # again (8 s of CPU), and these jobs' steps run one after the other anyway. Parallel
        # work is parallel runs (one per export file, document, model family).
        executor=dg.in_process_executor,
        assets=[
            raw_lab_exports,
            validate_lab_export,
            raw_run_exports,
            validate_run_export,
            sample_features,
            automl_trials,
            automl_leaderboard,
            registered_model,
            promotion_gate,
            sample_quality_bento,
            online_sample_features,
            prediction_log,
            feature_drift_report,
            ab_test_report,
            document_chunks,
            document_index,
            submission_metadata,
        ],
        asset_checks=[raw_rows_meet_contract, raw_run_rows_meet_contract],
        jobs=[
            ingest_lab_export_job,
            audit_raw_export_job,
            ingest_run_export_job,
            audit_raw_run_export_job,
            sample_features_job,
            automl_sweep_job,
            register_and_promote_job,
            package_bento_job,
            monitoring_reports_job,
            ingest_document_job,
            index_documents_job,
        ],
        schedules=[monitoring_schedule, retraining_schedule],
        sensors=[
            lab_export_sensor,
            features_automation_sensor,
            retraining_sensor,
            documents_sensor,
            documents_automation_sensor,
        ],
        resources={
            "lake": LakeResource(root=lake_dir or settings.lake_dir()),
            "landing_zone": LandingZoneResource(url=landing_url or settings.landing_url()),
            "export_parsing": ExportParsingResource(chunk_rows=chunk_rows or settings.chunk_rows()),
            "mlflow_tracking": MLflowResource(
                tracking_uri=mlflow_tracking_uri or settings.mlflow_tracking_uri(),
                artifact_location=settings.mlflow_artifact_location(),
            ),
            "optuna_storage": OptunaStorageResource(
                url=optuna_storage or _secret_url("TRACSEQ_OPTUNA_STORAGE", settings.optuna_storage_url())
            ),
            "online_store": OnlineStoreResource(redis_url=_secret_url("TRACSEQ_REDIS_URL", settings.redis_url())),
            "prediction_log": PredictionLogResource(
                url=prediction_log_url or _secret_url("TRACSEQ_PREDICTION_LOG", settings.prediction_log_url())
            ),
            "documents_landing": LandingZoneResource(
                url=documents_url or settings.documents_url(), suffixes=list(DOCUMENT_SUFFIXES)
            ),
            "lancedb": LanceDBResource(uri=lancedb_dir or settings.lancedb_dir()),
            "embedder": EmbedderResource(spec=settings.embedder()),
            "ollama": OllamaResource(
                host=settings.ollama_host(), model=settings.ollama_model(), timeout_s=settings.ollama_timeout_s()
            ),
        },
    )


def _secret_url(variable: str, default: str | None) -> str | dg.EnvVar | None:
    """From the environment as an EnvVar when set: a URL may hold a password, kept out of the UI."""
    return dg.EnvVar(variable) if os.getenv(variable) else default


defs = build_definitions()
