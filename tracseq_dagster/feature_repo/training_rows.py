"""A catalog model's labelled rows from Feast's point-in-time join (``get_historical_features``).

The entity rows are the model's labelled entities with their prediction time (for
``sample_quality``: every accepted, labelled sample at ``label_ts``, the moment before its
QC label is known) and the label, read from the accepted exports; Feast joins to each the
features of the model's feature service as they stood at that moment. The result has the
shape :func:`tracseq_dagster.training_set.build_training_set` takes, so the training set
built from it can be compared with (and replace) the one built from the offline table.

Only a model whose feature service is complete (every feature in the store) and whose entity
is the sample can be joined this way today; others raise :class:`NotInFeatureStore`.
"""

from __future__ import annotations

import pandas as pd
from feast import FeatureStore

from tracseq_dagster.entity_history import label_times
from tracseq_dagster.feature_store import accepted_samples
from tracseq_dagster.features import LABEL_COLUMN, SAMPLE_ID
from tracseq_dagster.lake import Lake
from tracseq_dagster.models import ModelSpec
from tracseq_dagster.training_set import TrainingSet, build_training_set

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
        {SAMPLE_ID: samples[SAMPLE_ID].astype(object).to_numpy(), ENTITY_TIMESTAMP: label_times(samples).to_numpy(),
         LABEL_COLUMN: samples[LABEL_COLUMN].astype("string").to_numpy()}  # fmt: skip
    )
    return entities[entities[LABEL_COLUMN].notna() & entities[ENTITY_TIMESTAMP].notna()].reset_index(drop=True)


def historical_labelled_rows(store: FeatureStore, spec: ModelSpec, entities: pd.DataFrame) -> pd.DataFrame:
    """Features of ``spec``'s service joined point in time to ``entities``, indexed by the entity key."""
    service = store.get_feature_service(spec.name)
    if service.tags.get("coverage") != "complete":
        raise NotInFeatureStore(f"{spec.name}: the feature store lacks {service.tags.get('missing_features', '?')}")
    if tuple(spec.entity) != (SAMPLE_ID,):
        raise NotInFeatureStore(f"{spec.name}: entity {', '.join(spec.entity)}; only sample-level models are joined here")
    joined = store.get_historical_features(entity_df=entities, features=service).to_df()
    frame = joined.set_index(SAMPLE_ID).sort_index()
    frame.index = frame.index.astype("string")  # as the offline table keys it
    missing = frame[list(spec.features)].isna().all(axis=1)
    if missing.any():  # no feature row at or before the entity's time: not a trainable row
        frame = frame[~missing]
    out = frame[[*spec.features, spec.label]]
    return out.assign(**{spec.label: out[spec.label].astype(str)})


def feast_training_set(store: FeatureStore, lake: Lake, spec: ModelSpec) -> TrainingSet:
    """``spec``'s training set from Feast's point-in-time join over the lake's labelled samples."""
    rows = historical_labelled_rows(store, spec, labelled_sample_entities(lake))
    return build_training_set(spec, rows, tuple(r.file_hash for r in lake.current_records()))
