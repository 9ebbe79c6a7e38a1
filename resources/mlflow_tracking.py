"""MLflow tracking server and model registry as a Dagster resource."""

import dagster as dg
from mlflow import MlflowClient
from pydantic import Field

from tracseq_dagster.registry import ModelRegistry
from tracseq_dagster.tracking import ensure_experiment, open_client


class MLflowResource(dg.ConfigurableResource):
    """Where runs are tracked and models registered.

    The embedded default is a SQLite store and an artifact folder under the data directory;
    a deployment points ``tracking_uri`` at its MLflow server (``http://mlflow:5000``), which
    owns the artifact store.
    """

    tracking_uri: str = Field(description="MLflow tracking URI: sqlite:///…, postgresql://… or http://server:port")
    registry_uri: str | None = Field(default=None, description="Model registry URI; defaults to the tracking URI")
    artifact_location: str | None = Field(
        default=None,
        description="Artifact root for an experiment created here (file URI or s3://…); a server's default otherwise",
    )

    def client(self) -> MlflowClient:
        return open_client(self.tracking_uri, self.registry_uri)

    def experiment_id(self, client: MlflowClient, model: str) -> str:
        """The experiment of catalog model ``model`` (named after it), created on first use."""
        return ensure_experiment(client, model, self.artifact_location)

    def registry(self, model: str, client: MlflowClient | None = None) -> ModelRegistry:
        """The registered model of catalog model ``model``: one per model, with its own aliases and history."""
        return ModelRegistry(client or self.client(), model)
