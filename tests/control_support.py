"""A real MLflow registry (SQLite) with catalog models, versions, gate verdicts and metrics, for the control tests."""

from __future__ import annotations

import shutil
from pathlib import Path

from mlflow import MlflowClient

from tracseq_dagster.registry import ModelRegistry
from tracseq_dagster.tracking import open_client


def template_registry(folder: Path) -> Path:
    """An empty MLflow database with its schema made once (migrations take seconds)."""
    open_client(f"sqlite:///{folder / 'mlflow.db'}")
    return folder / "mlflow.db"


def registry_copy(template: Path, folder: Path) -> MlflowClient:
    shutil.copy(template, folder / "mlflow.db")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def add_version(client: MlflowClient, model: str, folder: Path, *, gate: str | None, metrics: dict[str, float]) -> str:
    """A registered version of ``model`` whose run logged ``metrics`` and whose gate said ``gate``."""
    registry = ModelRegistry(client, model)
    try:
        experiment = client.create_experiment(model)
    except Exception:  # noqa: BLE001 - made by an earlier version
        experiment = client.get_experiment_by_name(model).experiment_id  # type: ignore[union-attr]
    run = client.create_run(experiment)
    for key, value in metrics.items():
        client.log_metric(run.info.run_id, key, value)
    source = folder / "models" / run.info.run_id
    source.mkdir(parents=True, exist_ok=True)
    key = f"key-{run.info.run_id}"
    version = str(
        registry.register(
            source.as_uri(), run_id=run.info.run_id, model_id=None, tags={"family": "lightgbm"}, registration_key=key
        ).version
    )
    if gate is not None:
        client.set_model_version_tag(model, version, "gate_decision", gate)
    return version
