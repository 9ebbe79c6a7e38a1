"""Monitoring: the prediction log, feature drift (with its check) and the A/B report, hourly."""

import dagster as dg

from assets.monitoring.jobs import monitoring_reports_job, monitoring_schedule
from assets.monitoring.reports import ab_test_report, feature_drift_report, prediction_log

defs = dg.Definitions(
    assets=[prediction_log, feature_drift_report, ab_test_report], jobs=[monitoring_reports_job], schedules=[monitoring_schedule]
)
