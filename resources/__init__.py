"""Dagster resources: typed, configurable handles on the outside world."""

from resources.lake import LakeResource
from resources.landing import LandingZoneResource
from resources.mlflow_tracking import MLflowResource
from resources.online_store import OnlineStoreResource
from resources.optuna_storage import OptunaStorageResource
from resources.parsing import ExportParsingResource
from resources.prediction_log import PredictionLogResource

__all__ = [
    "ExportParsingResource",
    "LakeResource",
    "LandingZoneResource",
    "MLflowResource",
    "OnlineStoreResource",
    "OptunaStorageResource",
    "PredictionLogResource",
]
