"""Declarative automation: what follows on its own once new data has landed."""

import dagster as dg

from tracseq_dagster import settings

# Declarative automation keeps sample_features fresh once new exports are validated.
features_automation_sensor = dg.AutomationConditionSensorDefinition(
    "features_automation",
    target=dg.AssetSelection.assets("sample_features", "online_sample_features"),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=settings.sensor_interval_s(),
)


# New document chunks reach the index (and submission forms the submission table) on their own.
documents_automation_sensor = dg.AutomationConditionSensorDefinition(
    "documents_automation",
    target=dg.AssetSelection.assets("document_index", "submission_metadata"),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=settings.sensor_interval_s(),
)
