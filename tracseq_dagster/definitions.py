"""The Dagster code location of TracSeq Dagster: the domains of ``assets/`` merged, with the resources."""

from __future__ import annotations

import os
from typing import overload

import dagster as dg

import assets.documents
import assets.features
import assets.lab_exports
import assets.monitoring
import assets.operations
import assets.serving
import assets.training
from resources import (
    EmbedderResource,
    ExportParsingResource,
    LakeResource,
    LanceDBResource,
    LandingZoneResource,
    MLflowResource,
    OllamaResource,
    OptunaStorageResource,
    PredictionLogResource,
)
from resources.feast import FeastResource
from resources.notifications import NotificationsResource
from tracseq_dagster import settings
from tracseq_dagster.documents.parsing import DOCUMENT_SUFFIXES
from tracseq_dagster.feature_repo.config import feast_project

#: The domains of the code location, each a package of assets/ with its own definitions.
DOMAINS: tuple[dg.Definitions, ...] = (
    assets.lab_exports.defs,
    assets.features.defs,
    assets.training.defs,
    assets.serving.defs,
    assets.monitoring.defs,
    assets.operations.defs,
    assets.documents.defs,
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
    return dg.Definitions.merge(
        *DOMAINS,
        dg.Definitions(
            # One process per run, not per step: a step's own process imports the code location
            # again (8 s of CPU), and these jobs' steps run one after the other anyway. Parallel
            # work is parallel runs (one per export file, document, model family).
            executor=dg.in_process_executor,
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
                "feast": FeastResource(
                    data_dir=str(settings.data_dir()),
                    project=feast_project(),
                    registry_url=_secret_url("TRACSEQ_FEAST_REGISTRY", None),
                    redis_url=_secret_url("TRACSEQ_REDIS_URL", settings.redis_url()),
                ),
                "prediction_log": PredictionLogResource(
                    url=prediction_log_url or _secret_url("TRACSEQ_PREDICTION_LOG", settings.prediction_log_url())
                ),
                "documents_landing": LandingZoneResource(
                    url=documents_url or settings.documents_url(), suffixes=list(DOCUMENT_SUFFIXES)
                ),
                "lancedb": LanceDBResource(uri=lancedb_dir or settings.lancedb_dir()),
                "embedder": EmbedderResource(spec=settings.embedder()),
                "notifications": NotificationsResource.from_env(),
                "ollama": OllamaResource(
                    host=settings.ollama_host(), model=settings.ollama_model(), timeout_s=settings.ollama_timeout_s()
                ),
            },
        ),
    )


@overload
def _secret_url(variable: str, default: str) -> str | dg.EnvVar: ...
@overload
def _secret_url(variable: str, default: None) -> str | dg.EnvVar | None: ...
def _secret_url(variable: str, default: str | None) -> str | dg.EnvVar | None:
    """From the environment as an EnvVar when set: a URL may hold a password, kept out of the UI."""
    return dg.EnvVar(variable) if os.getenv(variable) else default


defs = build_definitions()
