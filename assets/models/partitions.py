"""The catalog's partitions: the training chain runs per catalog model.

The leaderboard, the registered model and the gate have one partition per model; the sweeps
one per model and family, so a backfill of one model's row launches one run (one process, or
one pod under the Kubernetes run launcher) per family and they sweep in parallel. The
partitions are read from the catalog when the code location loads: a new model module is a
new row of partitions, nothing else.
"""

import dagster as dg

from tracseq_dagster.automl import ALL_FAMILIES
from tracseq_dagster.models import catalog, model_names

MODEL_DIMENSION = "model"
FAMILY_DIMENSION = "family"
MODEL_PARTITIONS = dg.StaticPartitionsDefinition(list(model_names()))
AUTOML_PARTITIONS = dg.MultiPartitionsDefinition(
    {MODEL_DIMENSION: MODEL_PARTITIONS, FAMILY_DIMENSION: dg.StaticPartitionsDefinition(list(ALL_FAMILIES))}
)


def label_source_deps() -> list[dg.AssetDep]:
    """The exports the catalog's labelled rows are read from, as dependencies of a per-model asset.

    Those exports have one partition per file; a model's partition reads every file, which
    Dagster must be told (the default mapping between two different partitionings is invalid,
    and the asset graph then fails its partition validation at load).
    """
    sources = sorted({source for spec in catalog().values() for source in spec.sources})
    return [dg.AssetDep(source, partition_mapping=dg.AllPartitionMapping()) for source in sources]


def sweep_partition_key(model: str, family: str) -> dg.MultiPartitionKey:
    """The automl_trials partition of one model's sweep of one family."""
    return dg.MultiPartitionKey({MODEL_DIMENSION: model, FAMILY_DIMENSION: family})


def sweep_partition(key: str | dg.MultiPartitionKey) -> tuple[str, str]:
    """(model, family) of an automl_trials partition key."""
    dimensions = key.keys_by_dimension if isinstance(key, dg.MultiPartitionKey) else _split(key)
    return dimensions[MODEL_DIMENSION], dimensions[FAMILY_DIMENSION]


def _split(key: str) -> dict[str, str]:
    # A multi-partition key as a string is its dimension values joined by "|", in dimension-name order.
    names = sorted((FAMILY_DIMENSION, MODEL_DIMENSION))
    return dict(zip(names, key.split("|"), strict=True))
