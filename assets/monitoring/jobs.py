"""Jobs and schedules of the monitoring domain: the reports of every catalog model, hourly."""

from datetime import UTC, datetime

import dagster as dg

from assets.models.partitions import MODEL_PARTITIONS
from assets.monitoring.reports import DriftConfig
from resources import PredictionLogResource
from tracseq_dagster.monitoring.watched import no_predictions_message, predictions_per_model
from tracseq_dagster.serving.prediction_log import last_hours

# The monitoring reports of one catalog model over its rows of the prediction log (the drift
# check runs with its asset): one run per model partition.
monitoring_reports_job = dg.define_asset_job(
    "monitoring_reports",
    selection=dg.AssetSelection.assets("feature_drift_report", "ab_test_report"),
    partitions_def=MODEL_PARTITIONS,
    description="Feature drift (with its check) and the A/B report of one catalog model over its recent predictions.",
)


# Hourly by default: a model's drift check failing is what the retraining sensor acts on.
@dg.schedule(
    name="monitoring_reports_hourly",
    job=monitoring_reports_job,
    cron_schedule="0 * * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Feature drift and the A/B report of every catalog model with logged predictions, every hour "
    "(one run per model partition; models without predictions in the window are skipped and named).",
)
def monitoring_schedule(
    context: dg.ScheduleEvaluationContext, prediction_log: PredictionLogResource
) -> list[dg.RunRequest] | dg.SkipReason:
    """One run per model with predictions in the reports' default window; the others are named as skipped."""
    moment = context.scheduled_execution_time or datetime.now(UTC)
    since, until = last_hours(DriftConfig().window_hours)
    counts = predictions_per_model(prediction_log.log(), since, until)
    skipped = [no_predictions_message(name, since) for name, rows in counts.items() if not rows]
    if len(skipped) == len(counts):
        return dg.SkipReason("no catalog model has logged predictions: " + "; ".join(skipped))
    for message in skipped:
        context.log.info(message)
    return [
        dg.RunRequest(partition_key=name, run_key=f"{name}:{moment:%Y%m%dT%H%M}", tags={"tracseq/predictions": str(rows)})
        for name, rows in counts.items()
        if rows
    ]
