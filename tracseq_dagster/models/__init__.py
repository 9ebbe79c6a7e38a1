"""The model catalog: one module per predictive model of the lab, each declaring ``MODEL``.

Everything that trains, gates, registers, serves or monitors a model reads it from here
(:func:`get_model`, :func:`catalog`); nothing below the catalog names a model.
"""

from tracseq_dagster.models.catalog import UnknownModelError, catalog, get_model, model_names
from tracseq_dagster.models.spec import HOLDOUT_GROUP, ModelSpec, ServingSpec

__all__ = ["HOLDOUT_GROUP", "ModelSpec", "ServingSpec", "UnknownModelError", "catalog", "get_model", "model_names"]
