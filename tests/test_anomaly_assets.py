"""anomalies and lab_alerts materialized on an embedded Dagster instance, alerts sent to a real local receiver."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from assets.operations.anomalies import CHECK_LOOKBACK_DAYS, anomalies, failed_check_alerts, lab_alerts, lab_alerts_schedule
from resources import LakeResource
from resources.notifications import NotificationsResource
from tests.test_notifications import Receiver, closed_port_url
from tracseq_dagster.feature_store import build_feature_table
from tracseq_dagster.generator import generate_samples
from tracseq_dagster.lake import Lake
from tracseq_dagster.monitoring.drift import DRIFT_CHECK_NAME
from tracseq_dagster.operations import outputs
from tracseq_dagster.operations.anomaly_detection import MIN_REFERENCE_ROWS
from tracseq_dagster.operations.anomaly_injection import inject_anomalies

pytestmark = pytest.mark.slow

NEW_DAYS = 30.0


def lake_with_anomalies(root: Path) -> tuple[Lake, pd.Series]:
    """One accepted export of generated samples with injected anomalies in the judged window, and features."""
    samples = generate_samples(3000, seed=21)
    since = pd.to_datetime(samples["received_ts"], utc=True).max() - pd.Timedelta(days=NEW_DAYS)
    injected = inject_anomalies(samples, since=since, share=0.08, failing_freezers=1, failing_days=4, seed=21)
    lake = Lake(root)
    lake.write_record("a" * 16, "samples.csv", len(injected.samples))
    lake.write_table(lake.validated_path("a" * 16), injected.samples)
    lake.write_table(lake.features_path, build_feature_table(lake))
    return lake, injected.sample_kind.set_axis(injected.samples["sample_id"])


# A stand-in for the monitoring domain's feature_drift_report: same asset and check names, a failing
# check, so that lab_alerts reads a real failed check execution from the instance's event log.
@dg.asset(name="feature_drift_report", check_specs=[dg.AssetCheckSpec(DRIFT_CHECK_NAME, asset="feature_drift_report")])
def drifting_report() -> dg.Output:
    yield dg.Output(None)
    yield dg.AssetCheckResult(check_name=DRIFT_CHECK_NAME, passed=False, description="purity_score: PSI 0.41 > 0.2")


def run(instance: dg.DagsterInstance, lake: Lake, notifications: NotificationsResource) -> dict:
    result = dg.materialize(
        [anomalies, lab_alerts],
        instance=instance,
        resources={"lake": LakeResource(root=str(lake.root)), "notifications": notifications},
        run_config={"ops": {"anomalies": {"config": {"new_days": NEW_DAYS}}}},
    )
    assert result.success
    return {
        "anomalies": result.asset_materializations_for_node("anomalies")[0].metadata,
        "lab_alerts": result.asset_materializations_for_node("lab_alerts")[0].metadata,
    }


def test_anomalies_then_alerts_delivered_once_and_receiver_down_recorded(tmp_path: Path) -> None:
    lake, truth = lake_with_anomalies(tmp_path / "lake")
    instance = dg.DagsterInstance.ephemeral()
    assert dg.materialize([drifting_report], instance=instance).success  # a failed non-blocking check: the run succeeds
    receiver = Receiver()
    try:
        webhook = NotificationsResource(webhook_url=receiver.url("/hook"), rate_limit_per_hour=500)
        first = run(instance, lake, webhook)

        # anomalies: the ANOMALIES contract, injected sample anomalies found, reasons kept, a plot.
        table = pd.read_parquet(lake.operations_path(outputs.ANOMALIES))
        assert {"kind", "entity", "ts", "score", "is_anomaly", "reasons", "project_id", "site"} <= set(table.columns)
        samples = table[table["kind"] == "sample"].set_index("entity")
        injected = truth.reindex(samples.index).isin(["sensor_glitch", "impossible_combination"]).fillna(False)
        assert injected.sum() >= 10 and samples.loc[injected, "is_anomaly"].mean() >= 0.8
        assert samples.loc[~injected & truth.reindex(samples.index).isna(), "is_anomaly"].mean() <= 0.03
        assert (table["kind"] == "freezer_day").any()
        meta = first["anomalies"]
        assert meta["sample_anomalies"].value == int(samples["is_anomaly"].sum())
        assert "data:image/png;base64," in meta["score_distribution"].value
        assert "reasons" in meta["top_anomalies"].value

        # lab_alerts: every flagged row (up to the per-run cap) and the failed drift check reached the receiver.
        bodies = receiver.bodies("/hook")
        kinds = pd.Series([b["kind"] for b in bodies]).value_counts().to_dict()
        assert kinds.get("drift") == 1 and kinds.get("anomaly", 0) == min(int(table["is_anomaly"].sum()), 50)
        drift = next(b for b in bodies if b["kind"] == "drift")
        assert drift["message"] == "purity_score: PSI 0.41 > 0.2"
        assert first["lab_alerts"]["delivered"].value == len(bodies) and first["lab_alerts"]["undelivered"].value == 0

        # Again with the receiver down: nothing new to send (dedupe), so nothing fails; a new failure is recorded undelivered.
        assert dg.materialize([drifting_report], instance=instance).success
        down = NotificationsResource(
            webhook_url=closed_port_url(), retries=1, backoff_s=0.01, timeout_s=1.0, rate_limit_per_hour=500
        )
        second = run(instance, lake, down)
        assert second["lab_alerts"]["new_records"].value == 1 and second["lab_alerts"]["undelivered"].value == 1
        assert "ConnectError" in second["lab_alerts"]["undelivered_errors"].value
        history = pd.read_parquet(lake.operations_path(outputs.ALERTS))
        assert len(history) == len(bodies) + 1 and (~history["delivered"]).sum() == 1

        # Receiver back: only the undelivered alert goes out.
        third = run(instance, lake, webhook)
        assert third["lab_alerts"]["delivered"].value == 1 and len(receiver.bodies("/hook")) == len(bodies) + 1
    finally:
        receiver.close()


def test_without_channels_alerts_are_recorded_not_sent_and_schedule_waits_for_features(tmp_path: Path) -> None:
    lake, _ = lake_with_anomalies(tmp_path / "lake")
    as_of = pd.Timestamp("2026-12-06", tz="UTC")
    state = pd.DataFrame({"freezer_id": ["FRZ-01", "FRZ-02"], "excursion_risk_30d": [0.72, 0.1], "as_of": [as_of, as_of]})
    lake.write_table(lake.operations_path(outputs.FREEZER_STATE), state)
    meta = run(dg.DagsterInstance.ephemeral(), lake, NotificationsResource())["lab_alerts"]
    assert meta["collected"].value["freezer_risk"] == 1
    history = pd.read_parquet(lake.operations_path(outputs.ALERTS))
    assert history.loc[history["kind"] == "freezer_risk", "subject"].tolist() == [
        "Freezer FRZ-01: excursion risk 72% in the next 30 days"
    ]
    assert meta["channels"].value.startswith("nothing: no channel configured")
    assert meta["delivered"].value == 0 and meta["recorded_not_sent"].value == meta["new_records"].value > 0

    empty = LakeResource(root=str(tmp_path / "empty"))
    with dg.build_schedule_context(resources={"lake": empty}) as context:
        skipped = lab_alerts_schedule(context)
    assert isinstance(skipped, dg.SkipReason) and "no sample features" in skipped.skip_message
    moment = datetime(2026, 12, 6, 12, 15, tzinfo=UTC)
    with dg.build_schedule_context(
        resources={"lake": LakeResource(root=str(lake.root))}, scheduled_execution_time=moment
    ) as context:
        request = lab_alerts_schedule(context)
    assert isinstance(request, dg.RunRequest) and request.run_key == "lab_alerts:20261206T1215"


def test_failed_checks_are_read_from_the_instance_within_the_lookback() -> None:
    instance = dg.DagsterInstance.ephemeral()
    assert dg.materialize([drifting_report], instance=instance).success
    [alert] = failed_check_alerts(instance)
    assert alert.kind == "drift" and alert.message == "purity_score: PSI 0.41 > 0.2"
    assert failed_check_alerts(instance, now=datetime.now(UTC) + timedelta(days=CHECK_LOOKBACK_DAYS + 1)) == []


def test_too_little_history_is_said_in_the_metadata_not_a_failure(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    samples = generate_samples(40, seed=3)
    lake.write_record("b" * 16, "samples.csv", len(samples))
    lake.write_table(lake.validated_path("b" * 16), samples)
    lake.write_table(lake.features_path, build_feature_table(lake))
    meta = run(dg.DagsterInstance.ephemeral(), lake, NotificationsResource())
    assert meta["anomalies"]["samples_scored"].value == 0 and "samples not scored" in meta["anomalies"]["not_scored"].value
    assert f"at least {MIN_REFERENCE_ROWS}" in meta["anomalies"]["not_scored"].value
    # Freezer days have history enough (a day per freezer since the first receipt): those are scored.
    assert meta["lab_alerts"]["new_records"].value == meta["anomalies"]["freezer_day_anomalies"].value
