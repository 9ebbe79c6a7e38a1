"""Dagster resources: typed, configurable handles on the outside world."""

from resources.embedder import EmbedderResource
from resources.lake import LakeResource
from resources.lancedb import LanceDBResource
from resources.landing import LandingZoneResource
from resources.mlflow_tracking import MLflowResource
from resources.ollama import OllamaResource
from resources.optuna_storage import OptunaStorageResource
from resources.parsing import ExportParsingResource
from resources.prediction_log import PredictionLogResource

__all__ = [
    "EmbedderResource",
    "ExportParsingResource",
    "LakeResource",
    "LanceDBResource",
    "LandingZoneResource",
    "MLflowResource",
    "OllamaResource",
    "OptunaStorageResource",
    "PredictionLogResource",
]
