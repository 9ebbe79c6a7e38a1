"""Jobs and automation of the features domain."""

import dagster as dg

from tracseq_dagster import settings

# The offline feature store, rebuilt from every accepted sample.
sample_features_job = dg.define_asset_job(
    "build_sample_features",
    selection=dg.AssetSelection.assets("sample_features"),
    description="Recompute point-in-time features of every accepted sample.",
)

# The Feast feature store by hand: apply the definitions, rebuild the entity tables, materialise.
feast_job = dg.define_asset_job(
    "feast_apply_and_materialize",
    selection=dg.AssetSelection.assets("feast_registry", "feast_entity_tables", "feast_online_features"),
    description="feast apply, the entity histories, and materialisation into the online store.",
)

# What training reads from Feast: the definitions applied and the tables its point-in-time join reads
# (no online materialisation). `tracseq train` runs it before the sweeps.
feast_training_tables_job = dg.define_asset_job(
    "feast_apply_and_tables",
    selection=dg.AssetSelection.assets("feast_registry", "feast_entity_tables"),
    description="feast apply and the tables training sets are joined from (point in time), without materialising.",
)

# Declarative automation keeps sample_features, the Feast tables and Feast's online store fresh once
# new exports are validated, and applies the Feast definitions when they change.
features_automation_sensor = dg.AutomationConditionSensorDefinition(
    "features_automation",
    target=dg.AssetSelection.assets("sample_features", "feast_registry", "feast_entity_tables", "feast_online_features"),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=settings.sensor_interval_s(),
)
