"""Operations: anomalies (new samples and freezer days scored against history) and lab_alerts (sent to the lab).

Thin over :mod:`tracseq_dagster.operations.anomaly_detection`, ``alert_sources`` and
``notifications``. Both run hourly (the ``lab_alerts_hourly`` schedule), after ingest has had a
chance to land new exports; ``lab_alerts`` never fails its run because a receiver is down: what
could not be delivered is recorded in ALERTS and named in the metadata.
"""

from datetime import UTC, datetime

import dagster as dg
import pandas as pd

# Dagster 1.13 exports no public name for a check execution's status; the event log's own filter needs it.
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from assets.metadata import preview, records_table
from resources import LakeResource
from resources.notifications import NotificationsResource
from tracseq_dagster.feature_store import accepted_samples
from tracseq_dagster.lake import Lake
from tracseq_dagster.monitoring.drift import DRIFT_CHECK_NAME
from tracseq_dagster.operations import outputs
from tracseq_dagster.operations.alert_sources import (
    DEFAULT_RISK_BOUND,
    anomaly_alerts,
    check_failure_alert,
    freezer_risk_alerts,
)
from tracseq_dagster.operations.anomaly_detection import (
    DEFAULT_FALSE_ALARM_BUDGET,
    MIN_REFERENCE_ROWS,
    empty_scores,
    score_freezer_days,
    score_samples,
    window_start,
)
from tracseq_dagster.operations.freezer_history import freezer_days
from tracseq_dagster.operations.notifications import NO_CHANNEL, Alert, append_history, deliver
from tracseq_dagster.plots import markdown_image, new_figure

#: The blocking contract checks of the lab exports and the drift check, as (asset, check, is drift).
WATCHED_CHECKS: tuple[tuple[str, str, bool], ...] = (
    ("validated_samples", "accepted_rows_meet_contract", False),
    ("validated_runs", "accepted_rows_meet_contract", False),
    ("feature_drift_report", DRIFT_CHECK_NAME, True),
)
#: Latest failed executions read per check on each run, and how far back (older failures are history,
#: not news: a location enabling alerts for the first time does not page the lab about last month).
CHECK_HISTORY = 20
CHECK_LOOKBACK_DAYS = 7


class AnomaliesConfig(dg.Config):
    """The window judged (days before the latest receipt) and the share of normal rows allowed as alarms."""

    new_days: float = 7.0
    false_alarm_budget: float = DEFAULT_FALSE_ALARM_BUDGET


class LabAlertsConfig(dg.Config):
    """The excursion risk at which a freezer is alerted."""

    risk_bound: float = DEFAULT_RISK_BOUND


def _score_plot(table: pd.DataFrame) -> str:
    figure = new_figure(7.0, 3.0)
    axes = figure.subplots(1, 1)
    for kind, rows in table.groupby("kind"):
        axes.hist(rows["score"], bins=40, alpha=0.6, label=f"{kind} ({len(rows)})")
    axes.axvline(1.0, color="red", linestyle="--", label="threshold")
    axes.set_xlabel("anomaly score (1 = threshold)")
    axes.set_ylabel("rows")
    axes.legend()
    return markdown_image(figure, "anomaly score distribution")


@dg.asset(deps=["sample_features"], group_name="operations", kinds={"pandas", "scikitlearn"})
def anomalies(context: dg.AssetExecutionContext, config: AnomaliesConfig, lake: LakeResource) -> dg.MaterializeResult:
    """Every sample received in the last ``new_days`` days and every freezer day of that window, scored.

    Fitted on the history before the window (samples: their point-in-time features; freezer days:
    freezer_history), thresholded at the false-alarm budget, with the reasons of each flagged row.
    Written to <lake>/operations/anomalies.parquet (the ANOMALIES contract).
    """
    lake_ = lake.lake()
    samples = accepted_samples(lake_)
    if samples.empty:
        raise dg.Failure(
            description=f"No accepted samples in {lake_.root}: ingest at least one export first.", allow_retries=False
        )
    features = lake_.read_features()
    since = window_start(samples["received_ts"], config.new_days)
    parts, notes = [], []
    try:
        parts.append(score_samples(features, samples, since=since, budget=config.false_alarm_budget))
    except ValueError as error:  # too little history is a reason to say so, not to fail
        notes.append(f"samples not scored: {error}")
    days = freezer_days(samples)
    try:
        parts.append(score_freezer_days(days, since=since.floor("D"), budget=config.false_alarm_budget))
    except ValueError as error:
        notes.append(f"freezer days not scored: {error}")
    table = pd.concat(parts, ignore_index=True) if parts else empty_scores()
    path = lake_.write_table(lake_.operations_path(outputs.ANOMALIES), table)
    for note in notes:
        context.log.warning(note)
    flagged = table[table["is_anomaly"].astype(bool)].sort_values("score", ascending=False) if len(table) else table
    counts = {
        kind: {"scored": int((table["kind"] == kind).sum()), "anomalies": int((flagged["kind"] == kind).sum())}
        for kind in ("sample", "freezer_day")
    }
    top = [
        {"kind": r.kind, "entity": r.entity, "ts": str(r.ts), "score": round(float(r.score), 3), "reasons": r.reasons}
        for r in flagged.head(20).itertuples(index=False)
    ]
    metadata = {
        "dagster/row_count": len(table),
        "window_start": since.isoformat(),
        "false_alarm_budget": config.false_alarm_budget,
        "samples_scored": counts["sample"]["scored"],
        "sample_anomalies": counts["sample"]["anomalies"],
        "freezer_days_scored": counts["freezer_day"]["scored"],
        "freezer_day_anomalies": counts["freezer_day"]["anomalies"],
        "not_scored": dg.MetadataValue.md("\n".join(f"- {n}" for n in notes) or "_nothing: both kinds scored_"),
        "top_anomalies": records_table(top),
        "path": dg.MetadataValue.path(str(path)),
    }
    if len(table):
        metadata["score_distribution"] = dg.MetadataValue.md(_score_plot(table))
    context.log.info(f"{len(flagged)} anomalies among {len(table)} rows scored (min reference {MIN_REFERENCE_ROWS} rows)")
    return dg.MaterializeResult(metadata=metadata)


def _read_optional(lake_: Lake, name: str) -> pd.DataFrame | None:
    path = lake_.operations_path(name)
    return pd.read_parquet(path) if path.exists() else None


def failed_check_alerts(instance: dg.DagsterInstance, now: datetime | None = None) -> list[Alert]:
    """The failed executions of the watched checks in the last CHECK_LOOKBACK_DAYS, from the instance's event log."""
    since = (now or datetime.now(UTC)).timestamp() - CHECK_LOOKBACK_DAYS * 86_400
    alerts = []
    for asset, check, drift in WATCHED_CHECKS:
        key = dg.AssetCheckKey(dg.AssetKey(asset), check)
        records = instance.event_log_storage.get_asset_check_execution_history(
            key, limit=CHECK_HISTORY, status={AssetCheckExecutionRecordStatus.FAILED}
        )
        for record in (r for r in records if r.create_timestamp >= since):
            evaluation = record.event.asset_check_evaluation if record.event is not None else None
            description = getattr(evaluation, "description", None) if evaluation is not None else None
            partition = record.partition or (getattr(evaluation, "partition", None) if evaluation is not None else None)
            alerts.append(
                check_failure_alert(
                    asset=asset, check=check, partition=partition, run_id=record.run_id, description=description, drift=drift
                )
            )
    return alerts


@dg.asset(deps=[anomalies], group_name="operations", kinds={"pandas", "slack"})
def lab_alerts(
    context: dg.AssetExecutionContext, config: LabAlertsConfig, lake: LakeResource, notifications: NotificationsResource
) -> dg.MaterializeResult:
    """Anomalies above the threshold, failed blocking and drift checks, freezers at risk: sent to the lab.

    Each alert has a stable key; one delivered before on a channel is not sent again there. A
    receiver that is down is retried with backoff and the alert recorded as undelivered (sent on a
    later run): the run succeeds. Every attempt is appended to <lake>/operations/alerts.parquet.
    """
    lake_ = lake.lake()
    sources: dict[str, list[Alert]] = {"anomaly": [], "check_failed": [], "drift": [], "freezer_risk": []}
    found = _read_optional(lake_, outputs.ANOMALIES)
    sources["anomaly"] = anomaly_alerts(found) if found is not None else []
    for alert in failed_check_alerts(context.instance):
        sources[alert.kind].append(alert)
    state = _read_optional(lake_, outputs.FREEZER_STATE)
    sources["freezer_risk"] = freezer_risk_alerts(state, config.risk_bound) if state is not None else []
    history = _read_optional(lake_, outputs.ALERTS)
    channels = notifications.channels()
    new_rows = deliver(
        [a for alerts in sources.values() for a in alerts],
        channels,
        history,
        policy=notifications.policy(),
        now=pd.Timestamp(datetime.now(UTC)),
    )
    path = lake_.write_table(lake_.operations_path(outputs.ALERTS), append_history(history, new_rows))
    delivered = int(new_rows["delivered"].sum()) if len(new_rows) else 0
    undelivered = new_rows[~new_rows["delivered"].astype(bool)] if len(new_rows) else new_rows
    if len(undelivered) and channels:
        context.log.warning(f"{len(undelivered)} alert deliveries failed or were rate limited; recorded in {path.name}")
    sent_to = (
        ", ".join(c.name for c in channels)
        or "nothing: no channel configured (TRACSEQ_ALERT_WEBHOOK_URL, TRACSEQ_SLACK_WEBHOOK_URL); alerts recorded, not sent"
    )
    shown = new_rows[["kind", "subject", "channel", "delivered", "attempts", "error"]] if len(new_rows) else new_rows
    return dg.MaterializeResult(
        metadata={
            "channels": sent_to,
            "collected": dg.MetadataValue.json({kind: len(alerts) for kind, alerts in sources.items()}),
            "new_records": len(new_rows),
            "delivered": delivered,
            "undelivered": int(len(undelivered)) - int((undelivered["channel"] == NO_CHANNEL).sum()) if len(undelivered) else 0,
            "recorded_not_sent": int((new_rows["channel"] == NO_CHANNEL).sum()) if len(new_rows) else 0,
            "undelivered_errors": records_table(
                [
                    {"subject": r.subject, "channel": r.channel, "attempts": int(r.attempts), "error": r.error}
                    for r in undelivered.head(20).itertuples()
                ]
            ),
            "this_run": preview(shown, rows=20),
            "history_rows": int(len(history) if history is not None else 0) + len(new_rows),
            "path": dg.MetadataValue.path(str(path)),
        }
    )


lab_alerts_job = dg.define_asset_job(
    "lab_alerts_job",
    selection=dg.AssetSelection.assets(anomalies, lab_alerts),
    description="Score new samples and freezer days, then send the lab's alerts (anomalies, failed checks, drift, freezer risk).",
)


@dg.schedule(
    name="lab_alerts_hourly",
    job=lab_alerts_job,
    cron_schedule="15 * * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Anomalies and alerts every hour, at a quarter past (after the monitoring reports on the hour).",
)
def lab_alerts_schedule(context: dg.ScheduleEvaluationContext, lake: LakeResource) -> dg.RunRequest | dg.SkipReason:
    """Skipped, with the reason, until sample features exist (nothing to score before the first ingest)."""
    if not lake.lake().features_path.exists():
        return dg.SkipReason("no sample features yet: ingest an export first (tracseq ingest)")
    moment = context.scheduled_execution_time or datetime.now(UTC)
    return dg.RunRequest(run_key=f"lab_alerts:{moment:%Y%m%dT%H%M}")


defs = dg.Definitions(assets=[anomalies, lab_alerts], jobs=[lab_alerts_job], schedules=[lab_alerts_schedule])
