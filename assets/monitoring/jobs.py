"""Jobs and schedules of the monitoring domain."""

import dagster as dg

# The monitoring reports over the prediction log (the drift check runs with its asset).
monitoring_reports_job = dg.define_asset_job(
    "monitoring_reports",
    selection=dg.AssetSelection.assets("feature_drift_report", "ab_test_report"),
    description="Feature drift (with its check) and the A/B report over the recent prediction log.",
)

# Hourly by default: the drift check's failure is what the retraining sensor acts on.
monitoring_schedule = dg.ScheduleDefinition(
    name="monitoring_reports_hourly",
    job=monitoring_reports_job,
    cron_schedule="0 * * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Feature drift and the A/B report over the prediction log, every hour.",
)
