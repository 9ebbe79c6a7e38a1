"""The Dagster code location of TracSeq Dagster."""

from __future__ import annotations

import dagster as dg

from assets.automl import automl_leaderboard, automl_trials, promotion_gate, registered_model
from assets.documents import document_chunks, document_index, submission_metadata
from assets.features import sample_features
from assets.lab_exports import raw_lab_exports, raw_rows_meet_contract
from assets.validation import validate_lab_export
from resources import (
    EmbedderResource,
    ExportParsingResource,
    LakeResource,
    LanceDBResource,
    LandingZoneResource,
    MLflowResource,
    OllamaResource,
    OptunaStorageResource,
)
from tracseq_dagster import settings
from tracseq_dagster.jobs import (
    audit_raw_export_job,
    automl_sweep_job,
    index_documents_job,
    ingest_document_job,
    ingest_lab_export_job,
    register_and_promote_job,
    sample_features_job,
)
from tracseq_dagster.documents.parsing import DOCUMENT_SUFFIXES
from tracseq_dagster.sensors import (
    documents_automation_sensor,
    documents_sensor,
    features_automation_sensor,
    lab_export_sensor,
)


def build_definitions(
    *,
    lake_dir: str | None = None,
    landing_url: str | None = None,
    chunk_rows: int | None = None,
    mlflow_tracking_uri: str | None = None,
    optuna_storage: str | None = None,
    documents_url: str | None = None,
    lancedb_dir: str | None = None,
) -> dg.Definitions:
    """The code location, with folders from the arguments or the environment (see settings)."""
    return dg.Definitions(
        assets=[
            raw_lab_exports,
            validate_lab_export,
            sample_features,
            automl_trials,
            automl_leaderboard,
            registered_model,
            promotion_gate,
            document_chunks,
            document_index,
            submission_metadata,
        ],
        asset_checks=[raw_rows_meet_contract],
        jobs=[
            ingest_lab_export_job,
            audit_raw_export_job,
            sample_features_job,
            automl_sweep_job,
            register_and_promote_job,
            ingest_document_job,
            index_documents_job,
        ],
        sensors=[lab_export_sensor, features_automation_sensor, documents_sensor, documents_automation_sensor],
        resources={
            "lake": LakeResource(root=lake_dir or settings.lake_dir()),
            "landing_zone": LandingZoneResource(url=landing_url or settings.landing_url()),
            "export_parsing": ExportParsingResource(chunk_rows=chunk_rows or settings.chunk_rows()),
            "mlflow_tracking": MLflowResource(
                tracking_uri=mlflow_tracking_uri or settings.mlflow_tracking_uri(),
                artifact_location=settings.mlflow_artifact_location(),
            ),
            "optuna_storage": OptunaStorageResource(url=optuna_storage or settings.optuna_storage_url()),
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


defs = build_definitions()
