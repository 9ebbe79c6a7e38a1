"""The prediction log of the sample_quality service as a Dagster resource."""

import dagster as dg
from pydantic import Field

from tracseq_dagster.serving.prediction_log import PredictionLog, open_prediction_log


class PredictionLogResource(dg.ConfigurableResource):
    """Where the service logs its predictions (see tracseq_dagster.serving.prediction_log).

    A folder of date-partitioned Parquet files by default; a ``postgresql://`` URL for the
    table ``prediction_log``. The monitoring assets only read it.
    """

    url: str = Field(description="A folder path or file:// URL (Parquet), or postgresql://user@host/db")

    def log(self) -> PredictionLog:
        return open_prediction_log(self.url)
