"""Optuna's RDB storage as a Dagster resource."""

import dagster as dg
from pydantic import Field

from tracseq_dagster.automl import prepare_study_storage


class OptunaStorageResource(dg.ConfigurableResource):
    """The database holding the Optuna studies: SQLite by default, PostgreSQL in production.

    Every worker that sweeps the same study name on the same ``url`` adds trials to one study,
    whichever process or machine it runs on.
    """

    url: str = Field(description="SQLAlchemy URL of the Optuna storage (sqlite:///…, postgresql://…)")

    def prepared_url(self) -> str:
        """The URL, with Optuna's tables created (safe to call from many processes)."""
        prepare_study_storage(self.url)
        return self.url
