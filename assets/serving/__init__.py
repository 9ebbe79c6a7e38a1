"""Serving: every catalog model's champion as one Bento, its packaging job, and the sensor rolling a moved
champion out to the running services. (The online feature store is Feast's: ``feast_online_features``.)"""

import dagster as dg

from assets.serving.bento import prediction_bento
from assets.serving.jobs import package_bento_job
from assets.serving.rollout import champion_rollout_sensor

defs = dg.Definitions(assets=[prediction_bento], jobs=[package_bento_job], sensors=[champion_rollout_sensor])
