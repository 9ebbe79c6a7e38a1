"""The feature views: what Feast reads from the lake, with each table's event timestamp.

* ``sample_features`` (entity sample): every sample feature of DESIGN.md, each row as of its
  ``as_of`` (the sample's own latest event, the moment before its QC label is known).
* ``operator_history``, ``site_history``, ``freezer_history``, ``instrument_history``: the
  entity aggregates of :mod:`tracseq_dagster.entity_history`, one row per change, stamped
  just after the events they include (so a point-in-time join sees labels strictly before).
* ``<model>_features`` for each catalog model with a table of its own
  (:mod:`~tracseq_dagster.feature_repo.model_tables`): the model's features as of its
  prediction time, over the model's entity (``sequencing_success``: run and sample).

Every view has a description, the owner of the features domain and, from Feast's registry, a
version history (a schema or source change makes a new version on ``apply``). No TTL: a
feature stays valid until the entity's next row.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from feast import FeatureView, Field, FileSource
from feast.types import Float64, String

from tracseq_dagster.entity_history import (
    EVENT_TIMESTAMP,
    FREEZER_COLUMNS,
    INSTRUMENT_COLUMNS,
    OPERATOR_COLUMNS,
    SITE_COLUMNS,
)
from tracseq_dagster.feature_repo import entities
from tracseq_dagster.feature_repo.model_tables import MODEL_TABLES, PREDICTION_TIME, model_table_path
from tracseq_dagster.feature_repo.tables import entity_table_path, sample_features_path
from tracseq_dagster.features import AS_OF_COLUMN, FEATURE_CODE_VERSION, FEATURE_SPECS
from tracseq_dagster.models import ModelSpec, catalog
from tracseq_dagster.run_features import RUN_FEATURE_CODE_VERSION

#: Who answers for these features (shown by the registry and the management API).
OWNER = "lab-data-team@tracseq"

_ENTITY_VIEWS = (
    ("operator_history", entities.operator, OPERATOR_COLUMNS,
     "Operator failure rate, smoothed (fails + 10 * 0.15) / (n + 10), and labelled-sample count, "
     "after every QC label of the operator's samples."),
    ("site_history", entities.site, SITE_COLUMNS,
     "Site failure rate, smoothed (fails + 10 * 0.15) / (n + 10), and labelled-sample count, after "
     "every QC label of the site's samples."),
    ("freezer_history", entities.freezer, FREEZER_COLUMNS,
     "Freezer utilisation: mean box_occupancy / 100 of the samples received in the freezer, and "
     "their count, after every receipt."),
    ("instrument_history", entities.instrument, INSTRUMENT_COLUMNS,
     "Instrument failure window: the libraries of the last 20 runs whose status was known, their "
     "failures and the smoothed rate, after every run end."),
)  # fmt: skip

_UNITS = {
    "operator_failure_rate": "fraction 0..1", "operator_history_count": "count", "site_failure_rate": "fraction 0..1",
    "site_history_count": "count", "freezer_utilisation": "fraction 0..1", "freezer_sample_count": "count",
    "instrument_failure_rate": "fraction 0..1", "instrument_recent_failures": "count",
    "instrument_recent_libraries": "count", "instrument_recent_runs": "count",
}  # fmt: skip


def sample_features_view(lake_dir: str | Path) -> FeatureView:
    source = FileSource(
        name="sample_features_table",
        path=str(sample_features_path(lake_dir)),
        timestamp_field=AS_OF_COLUMN,
        description="<lake>/features/sample_features.parquet, written by the sample_features asset",
    )
    schema = [
        Field(name=s.name, dtype=Float64 if s.kind == "numeric" else String, description=s.description, tags={"unit": s.unit})
        for s in FEATURE_SPECS
    ]
    return FeatureView(
        name="sample_features", entities=[entities.sample], schema=schema, source=source, ttl=timedelta(0), online=True,
        description="Point-in-time sample features (tracseq_dagster.features), each sample as of its own latest event.",
        owner=OWNER, tags={"feature_code_version": FEATURE_CODE_VERSION, "asset": "sample_features"},
    )  # fmt: skip


def entity_history_views(lake_dir: str | Path) -> tuple[FeatureView, ...]:
    views = []
    for name, entity, columns, description in _ENTITY_VIEWS:
        source = FileSource(name=f"{name}_table", path=str(entity_table_path(lake_dir, name)), timestamp_field=EVENT_TIMESTAMP,
                            description=f"<lake>/feast/{name}.parquet (tracseq_dagster.entity_history)")  # fmt: skip
        schema = [Field(name=c, dtype=Float64, tags={"unit": _UNITS[c]}) for c in columns[1:]]
        code = RUN_FEATURE_CODE_VERSION if name == "instrument_history" else FEATURE_CODE_VERSION
        views.append(FeatureView(
            name=name, entities=[entity], schema=schema, source=source, ttl=timedelta(0), online=True,
            description=description, owner=OWNER, tags={"feature_code_version": code, "asset": "feast_entity_tables"},
        ))  # fmt: skip
    return tuple(views)


def model_view(lake_dir: str | Path, spec: ModelSpec) -> FeatureView:
    """The view of a model's own rows, tagged with the model (its service reads it first)."""
    source = FileSource(name=f"{spec.name}_table", path=str(model_table_path(lake_dir, spec.name)), timestamp_field=PREDICTION_TIME,
                        description=f"<lake>/feast/models/{spec.name}.parquet (tracseq_dagster.feature_repo.model_tables)")  # fmt: skip
    specs = {s.name: s for s in spec.serving.feature_specs}
    schema = [
        Field(name=f, dtype=String if specs[f].kind == "categorical" else Float64, description=specs[f].description,
              tags={"unit": specs[f].unit})
        for f in spec.features
    ]  # fmt: skip
    return FeatureView(
        name=f"{spec.name}_features", entities=[entities.BY_JOIN_KEY[k] for k in spec.entity], schema=schema, source=source,
        ttl=timedelta(0), online=True, owner=OWNER,
        description=f"The features of {spec.name} as of its prediction time ({spec.predicted_at}).",
        tags={"feature_code_version": spec.feature_code_version, "model": spec.name, "asset": "feast_entity_tables"},
    )  # fmt: skip


def model_views(lake_dir: str | Path, models: dict[str, ModelSpec] | None = None) -> tuple[FeatureView, ...]:
    return tuple(model_view(lake_dir, spec) for name, spec in (models or catalog()).items() if name in MODEL_TABLES)


def feature_views(lake_dir: str | Path) -> tuple[FeatureView, ...]:
    """Every feature view, over the tables of the lake at ``lake_dir``. A service takes each of its
    model's features from the model's own view when it has one, else from the first view here
    that holds it."""
    return (sample_features_view(lake_dir), *entity_history_views(lake_dir), *model_views(lake_dir))
