"""Features: the offline store of point-in-time sample features, its job and its automation."""

import dagster as dg

from assets.features.jobs import features_automation_sensor, sample_features_job
from assets.features.sample_features import sample_features

defs = dg.Definitions(assets=[sample_features], jobs=[sample_features_job], sensors=[features_automation_sensor])
