"""Serving: every catalog model's champion as one Bento, its packaging job, the sensor rolling a moved
champion out to the running services, and the online feature store."""

import dagster as dg

from assets.serving.bento import prediction_bento
from assets.serving.jobs import package_bento_job
from assets.serving.online_features import online_sample_features
from assets.serving.rollout import champion_rollout_sensor

defs = dg.Definitions(
    assets=[prediction_bento, online_sample_features], jobs=[package_bento_job], sensors=[champion_rollout_sensor]
)
