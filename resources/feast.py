"""The Feast feature store as a Dagster resource."""

import dagster as dg
from pydantic import Field

from tracseq_dagster.feature_repo.config import DEFAULT_PROJECT, FeastSettings  # imports feast, keeping the warning filters

# Feast only through tracseq_dagster.feature_repo, which imports it inside warnings.catch_warnings: a bare
# ``import feast`` first would leave Feast's process-wide DeprecationWarning filter on the CLI's output.
from tracseq_dagster.feature_repo.store import FeatureStore, open_store


class FeastResource(dg.ConfigurableResource):
    """Where Feast keeps its registry and online store (``tracseq_dagster.feature_repo.config``).

    The registry is a file under ``data_dir`` unless ``registry_url`` names a database (the
    stack's PostgreSQL); the online store is Redis with ``redis_url``, else a SQLite file under
    ``data_dir``. URLs may hold passwords: set them with ``dg.EnvVar``.
    """

    data_dir: str = Field(description="The platform's data folder; Feast's files go to <data_dir>/feast")
    project: str = Field(default=DEFAULT_PROJECT, description="Feast project (namespaces registry objects and Redis keys)")
    registry_url: str | None = Field(default=None, description="SQL registry URL (postgresql://…); none = file registry")
    redis_url: str | None = Field(default=None, description="redis://host:port/db for the online store; none = SQLite file")

    def settings(self) -> FeastSettings:
        return FeastSettings(self.data_dir, self.project, self.registry_url, self.redis_url)

    def store(self) -> FeatureStore:
        return open_store(self.settings())
