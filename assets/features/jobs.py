"""Jobs and automation of the features domain."""

import dagster as dg

from tracseq_dagster import settings

# The offline feature store, rebuilt from every accepted sample.
sample_features_job = dg.define_asset_job(
    "build_sample_features",
    selection=dg.AssetSelection.assets("sample_features"),
    description="Recompute point-in-time features of every accepted sample.",
)

# Declarative automation keeps sample_features (and the online store) fresh once new exports are validated.
features_automation_sensor = dg.AutomationConditionSensorDefinition(
    "features_automation",
    target=dg.AssetSelection.assets("sample_features", "online_sample_features"),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=settings.sensor_interval_s(),
)
