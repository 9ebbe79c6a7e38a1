"""Features: the offline store of point-in-time sample features, the Feast feature store
(registry, entity tables, online materialisation), their jobs and their automation."""

import dagster as dg

from assets.features.feast_materialization import feast_online_features
from assets.features.feast_registry import feast_entity_tables, feast_registry
from assets.features.jobs import feast_job, feast_training_tables_job, features_automation_sensor, sample_features_job
from assets.features.sample_features import sample_features

defs = dg.Definitions(
    assets=[sample_features, feast_registry, feast_entity_tables, feast_online_features],
    jobs=[sample_features_job, feast_job, feast_training_tables_job],
    sensors=[features_automation_sensor],
)
