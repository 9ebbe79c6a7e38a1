"""A catalog model's labelled rows from Feast's point-in-time join (``get_historical_features``).

The entity rows are the model's labelled entities with their prediction time and label;
Feast joins to each the features of the model's feature service as they stood at that
moment. The result has the shape :func:`tracseq_dagster.training_set.build_training_set`
takes, so the training set built from it can be compared with (and replace) the one built
from the project's own tables.

* A model over the sample features (``sample_quality``): every accepted, labelled sample at
  ``label_ts``, the moment before its QC label is known, read from the accepted exports.
* A model with a table of its own (:mod:`~tracseq_dagster.feature_repo.model_tables`): its
  labelled rows' entity columns, prediction time (``as_of``) and label, from that table.
  Several entity columns make a key ``a/b`` (``RUN-…/TS-…``), and rows of one sample are held
  out together (the sample is the holdout group), as the catalog's own rows do.

A model whose feature service is not complete raises :class:`NotInFeatureStore`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import dask
import pandas as pd
import pyarrow.parquet as pq
from feast import FeatureStore, FileSource
from feast.errors import FeatureServiceNotFoundException

from tracseq_dagster.entity_history import label_times
from tracseq_dagster.feature_repo.model_tables import MODEL_TABLES, PREDICTION_TIME, model_table_path
from tracseq_dagster.feature_store import accepted_samples
from tracseq_dagster.features import LABEL_COLUMN, SAMPLE_ID
from tracseq_dagster.lake import Lake
from tracseq_dagster.models import HOLDOUT_GROUP, ModelSpec
from tracseq_dagster.training_set import TrainingSet, build_training_set, load_training_set

ENTITY_TIMESTAMP = "event_timestamp"


class NotInFeatureStore(ValueError):
    """The model's features cannot all be read from the feature store."""


def labelled_sample_entities(lake: Lake) -> pd.DataFrame:
    """(sample_id, event_timestamp = label_ts, qc_status) of every accepted labelled sample."""
    samples = accepted_samples(lake)
    if samples.empty:
        return pd.DataFrame({SAMPLE_ID: pd.Series([], dtype="string"), ENTITY_TIMESTAMP: pd.Series([], dtype="datetime64[ns, UTC]"),
                             LABEL_COLUMN: pd.Series([], dtype="string")})  # fmt: skip
    entities = pd.DataFrame(
        # sample_id as object, as Feast's Dask join reads the tables' keys
        {
            SAMPLE_ID: samples[SAMPLE_ID].astype(object).to_numpy(),
            ENTITY_TIMESTAMP: label_times(samples).to_numpy(),
            LABEL_COLUMN: samples[LABEL_COLUMN].astype("string").to_numpy(),
        }  # fmt: skip
    )
    return entities[entities[LABEL_COLUMN].notna() & entities[ENTITY_TIMESTAMP].notna()].reset_index(drop=True)


def model_entities(lake: Lake, spec: ModelSpec) -> pd.DataFrame:
    """The labelled entity rows of ``spec``: entity columns, ``event_timestamp``, label."""
    if spec.name not in MODEL_TABLES:
        return labelled_sample_entities(lake)
    path = model_table_path(lake.root, spec.name)
    carried = [HOLDOUT_GROUP] if HOLDOUT_GROUP in pq.read_schema(path).names else []
    table = pd.read_parquet(path, columns=[*spec.entity, PREDICTION_TIME, spec.label, *carried])
    table = table[table[spec.label].notna()].rename(columns={PREDICTION_TIME: ENTITY_TIMESTAMP})
    return table.astype({k: object for k in spec.entity}).reset_index(drop=True)


def historical_labelled_rows(store: FeatureStore, spec: ModelSpec, entities: pd.DataFrame) -> pd.DataFrame:
    """Features of ``spec``'s service joined point in time to ``entities``, indexed by the entity key."""
    service = store.get_feature_service(spec.name)
    if service.tags.get("coverage") != "complete":
        raise NotInFeatureStore(f"{spec.name}: the feature store lacks {service.tags.get('missing_features', '?')}")
    # Dask's synchronous scheduler: its default thread pool is process-wide, and a process that forks
    # after using it (tracseq train's sweep workers) leaves the child waiting forever on its queue.
    with dask.config.set(scheduler="synchronous"):
        joined = store.get_historical_features(entity_df=entities, features=service).to_df()
    keys = [joined[k].astype(str) for k in spec.entity]
    key = keys[0]
    for part in keys[1:]:
        key = key + "/" + part
    frame = joined.set_axis(pd.Index(key.to_numpy(), name="/".join(spec.entity), dtype="string" if len(keys) == 1 else object))
    frame = frame.sort_index()
    missing = frame[list(spec.features)].isna().all(axis=1)
    if missing.any():  # no feature row at or before the entity's time: not a trainable row
        frame = frame[~missing]
    out = frame[[*spec.features, spec.label]]
    if not pd.api.types.is_numeric_dtype(out[spec.label].dtype):
        out = out.assign(**{spec.label: out[spec.label].astype(str)})
    if HOLDOUT_GROUP in frame.columns:  # carried by the entity rows from the model's table
        out = out.assign(**{HOLDOUT_GROUP: frame[HOLDOUT_GROUP].astype(str)})
    elif len(spec.entity) > 1 and SAMPLE_ID in spec.entity:
        out = out.assign(**{HOLDOUT_GROUP: frame[SAMPLE_ID].astype(str)})
    return out


def feast_training_set(store: FeatureStore, lake: Lake, spec: ModelSpec) -> TrainingSet:
    """``spec``'s training set from Feast's point-in-time join over the model's labelled entities."""
    rows = historical_labelled_rows(store, spec, model_entities(lake, spec))
    return build_training_set(spec, rows, tuple(r.file_hash for r in lake.current_records()))


class TrainingSetSkew(RuntimeError):
    """Feast's point-in-time join and the feature code disagree on a model's training set."""


@dataclass(frozen=True)
class SourcedTrainingSet:
    """A training set and where it came from, in words (shown in the training assets' metadata)."""

    training_set: TrainingSet
    source: str


def catalog_training_set(store: FeatureStore, lake: Lake, spec: ModelSpec) -> SourcedTrainingSet:
    """``spec``'s training set through Feast's point-in-time join when the store serves this lake.

    The store serves the lake when its registry holds the model's complete feature service and
    every view of it reads a table of this lake that exists. Otherwise (a lab that never applied
    the repository, a test's lake) the feature code builds it, and the source says why.

    The join is checked against the feature code's own rows, which cost a fraction of the join:
    a different fingerprint means the store's tables are older than the exports (or skewed), and
    a model trained on them would be trained on the past without saying so. That is an error
    naming the remedy, never a silent switch.
    """
    reason = _why_not_from_the_store(store, lake, spec)
    own = load_training_set(lake, spec)
    if reason is not None:
        return SourcedTrainingSet(own, f"feature code ({reason})")
    joined = feast_training_set(store, lake, spec)
    if joined.fingerprint != own.fingerprint:
        raise TrainingSetSkew(
            f"{spec.name}: Feast's point-in-time join gives {joined.rows} rows (fingerprint {joined.fingerprint}), the "
            f"feature code {own.rows} ({own.fingerprint}): the feature store's tables are older than the exports or skewed; "
            "materialize feast_entity_tables (job feast_apply_and_materialize) and train again"
        )
    return SourcedTrainingSet(joined, f"feast get_historical_features (service {spec.name}, project {store.project})")


def _why_not_from_the_store(store: FeatureStore, lake: Lake, spec: ModelSpec) -> str | None:
    try:
        service = store.get_feature_service(spec.name)
    except FeatureServiceNotFoundException:
        return f"Feast project {store.project} has no service {spec.name}: apply the repository (asset feast_registry)"
    if service.tags.get("coverage") != "complete":
        return f"the feature store lacks {service.tags.get('missing_features', '?')}"
    if spec.name not in MODEL_TABLES and spec.label != LABEL_COLUMN:
        # The entity rows of a model without a table are the QC-labelled samples (labelled_sample_entities).
        return f"no Feast table holds its label {spec.label} (give the model a table in feature_repo/model_tables.py)"
    root = Path(lake.root).resolve()
    for projection in service.feature_view_projections:
        source = store.get_feature_view(projection.name).batch_source
        if not isinstance(source, FileSource):
            return f"view {projection.name} reads {type(source).__name__}, not a table of the lake"
        path = Path(source.path).resolve()
        if not path.is_relative_to(root):
            return f"Feast project {store.project} reads {path}, not this lake ({root})"
        if not path.exists():
            return f"{path} is missing: materialize feast_entity_tables"
    return None
