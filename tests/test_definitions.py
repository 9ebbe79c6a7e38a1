"""The code location loads, and every asset is documented and grouped as the UI shows it."""

from __future__ import annotations

import dagster as dg

from assets.models.partitions import sweep_partition
from tracseq_dagster.automl import ALL_FAMILIES
from tracseq_dagster.definitions import build_definitions
from tracseq_dagster.models import model_names


def test_code_location_loads_with_every_asset_documented(tmp_path) -> None:  # type: ignore[no-untyped-def]
    defs = build_definitions(
        lake_dir=str(tmp_path / "lake"),
        landing_url=str(tmp_path / "landing"),
        mlflow_tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        optuna_storage=f"sqlite:///{tmp_path / 'optuna.db'}",
    )
    graph = defs.resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert {"automl_trials", "automl_leaderboard", "registered_model", "promotion_gate", "sample_features"} <= keys
    assert {"document_chunks", "document_index", "submission_metadata"} <= keys
    assert graph.get(dg.AssetKey("document_chunks")).partitions_def.name == "documents"
    for key in graph.get_all_asset_keys():
        spec = graph.get(key)
        assert spec.description and len(spec.description) > 40, f"{key} has no docstring"
    trials = graph.get(dg.AssetKey("automl_trials"))
    keys = trials.partitions_def.get_partition_keys()
    assert {sweep_partition(k) for k in keys} == {(m, f) for m in model_names() for f in ALL_FAMILIES}
    assert graph.get(dg.AssetKey("registered_model")).group_name == "training"
    jobs = {"automl_sweep", "register_and_promote", "package_bento", "monitoring_reports", "ingest_document", "index_documents"}
    assert jobs <= {job.name for job in defs.resolve_all_job_defs()}
    assert graph.get(dg.AssetKey("prediction_bento")).group_name == "serving"
    for name in ("feature_drift_report", "ab_test_report", "prediction_log"):
        assert graph.get(dg.AssetKey(name)).group_name == "monitoring"
    assert dg.AssetCheckKey(dg.AssetKey("feature_drift_report"), "feature_drift_within_threshold") in graph.asset_check_keys
    assert {"lab_export_sensor", "retraining_sensor", "champion_rollout_sensor"} <= {s.name for s in defs.sensors}
    assert {s.name for s in defs.schedules} == {
        "monitoring_reports_hourly", "retraining_schedule", "demand_forecast_daily", "lab_alerts_hourly", "lab_qc_report_weekly",
    }  # fmt: skip
    assert defs.get_schedule_def("retraining_schedule").cron_schedule == "0 3 * * 0"  # Sundays, 03:00 UTC
    freshness = {
        k.to_user_string(): n.freshness_policy
        for k, n in ((k, graph.get(k)) for k in graph.get_all_asset_keys())
        if n.freshness_policy
    }
    assert set(freshness) == {"sample_features", "feature_drift_report"}
    assert {"documents_sensor", "documents_automation"} <= {sensor.name for sensor in defs.sensors}


def test_every_partition_mapping_is_valid(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """What `dagster definitions validate` (and the webserver at load) checks: a per-model or per-week asset
    reading the exports' per-file partitions says how (all of them); the default mapping would be invalid."""
    defs = build_definitions(lake_dir=str(tmp_path / "lake"), landing_url=str(tmp_path / "landing"))
    defs.resolve_asset_graph().validate_partitions()
