"""Monitoring per catalog model: drift and A/B reports of sequencing_success and turnaround_hours over
their own rows of the prediction log (written by the catalog predictor, appended by the log's own
writer): every feature of each model measured, labels joined on the logged entity key (re-sequenced
samples included), the agreement re-scored for both; the hourly schedule and the partitioned job
over several models, and the retraining sensor retraining exactly the model whose drift check failed."""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import mlflow
import pandas as pd
import pytest
from catalog_support import generated_lab, pack, records_of
from dagster_helpers import latest_materialization

from assets.models.partitions import sweep_partition_key
from assets.monitoring.jobs import monitoring_schedule
from assets.training.retraining import latest_drift_evaluation, retraining_sensor
from resources import LakeResource, MLflowResource, PredictionLogResource
from tracseq_dagster.conformal import INTERVAL_HALF_WIDTH_TAG
from tracseq_dagster.definitions import build_definitions
from tracseq_dagster.lake import RUNS, Lake
from tracseq_dagster.models import get_model, sequencing_success, turnaround_hours
from tracseq_dagster.monitoring import ab_report
from tracseq_dagster.monitoring.ab_report import ABSettings
from tracseq_dagster.monitoring.drift import drift_against_training
from tracseq_dagster.monitoring.retraining import RETRAIN_MODEL_TAG, RetrainCursor, RetrainState
from tracseq_dagster.registry import CHALLENGER, CHAMPION, ModelRegistry
from tracseq_dagster.serving.catalog_bundle import CATALOG_FOLDER
from tracseq_dagster.serving.catalog_predictor import ServedCatalog
from tracseq_dagster.serving.catalog_schema import request_columns, request_model
from tracseq_dagster.serving.prediction_log import open_prediction_log
from tracseq_dagster.serving.traffic_split import TrafficSplit
from tracseq_dagster.tracking import ensure_experiment, fluent_api, open_client

SUCCESS, TURNAROUND = "sequencing_success", "turnaround_hours"
#: Libraries whose samples went through more freeze-thaw cycles than the lab ever saw.
THAWED = 8
#: What that shifts: the cycles, and the composite risk score computed from them.
THAWED_FEATURES = {"freeze_thaw_cycles", "quality_risk_score"}


@dataclass
class CatalogWorld:
    root: Path
    lake: Lake
    samples: pd.DataFrame
    runs: pd.DataFrame
    served: ServedCatalog
    tracking_uri: str
    models: dict[str, dict[str, ab_report.ScoringModel]]


def _register(client: Any, experiment: str, name: str, alias: str, model: Any, tags: dict[str, str]) -> None:
    """One fitted model as a registered version of ``name`` (champion first, then challenger), as training registers it."""
    run = client.create_run(experiment)
    registry = ModelRegistry(client, name)
    # The fluent API throughout, as training does: the registry store looks the logged model up through it.
    with fluent_api(client):
        with mlflow.start_run(run_id=run.info.run_id):
            info = mlflow.sklearn.log_model(
                model, name="model", serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE
            )
        version = registry.register(info.model_uri, run_id=run.info.run_id, model_id=info.model_id, tags=tags,
                                    registration_key=f"{name}:{alias}")  # fmt: skip
    if alias == CHAMPION:
        registry.promote(str(version.version), "monitoring catalog test")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> CatalogWorld:
    root = tmp_path_factory.mktemp("monitoring-catalog")
    samples, runs = generated_lab(1500, seed=31)
    lake = Lake(root / "lake")
    lake.write_table(lake.validated_path("samples-a"), samples)
    lake.write_record("samples-a", "samples.csv", len(samples))
    lake.write_table(lake.validated_path("runs-a"), runs)
    lake.write_record("runs-a", "runs.csv", len(runs), kind=RUNS)

    bundle = root / "bundle"
    pack(bundle, SUCCESS, sequencing_success.labelled_rows_from_exports(samples, runs), samples, runs, ("logistic", "lightgbm"))
    pack(
        bundle,
        TURNAROUND,
        turnaround_hours.labelled_rows_from_exports(samples, runs),
        samples,
        runs,
        ("lightgbm", "random_forest"),
    )
    served = ServedCatalog(bundle, split=TrafficSplit(challenger_share=0.5))

    tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
    client = open_client(tracking_uri)
    models: dict[str, dict[str, ab_report.ScoringModel]] = {}
    for name in (SUCCESS, TURNAROUND):
        experiment = ensure_experiment(client, name, (root / "artifacts" / name).as_uri())
        rows = str(len(get_model(name).labelled_rows(lake)))
        models[name] = {}
        for alias in (CHAMPION, CHALLENGER):
            folder = bundle / CATALOG_FOLDER / name / alias
            model = pickle.loads((folder / "model.pkl").read_bytes())
            card = json.loads((folder / "card.json").read_text())
            half_width = card["interval"]["half_width"] if card.get("interval") else None
            tags = {"training_rows": rows, **({INTERVAL_HALF_WIDTH_TAG: f"{half_width:.6g}"} if half_width is not None else {})}
            _register(client, experiment, name, alias, model, tags)
            models[name][alias] = ab_report.ScoringModel(str(card["version"]), model, get_model(name), half_width)
    return CatalogWorld(root, lake, samples, runs, served, tracking_uri, models)


def library_records(world: CatalogWorld, n: int, seed: int, *, thawed: bool = False) -> list[dict[str, Any]]:
    """``n`` labelled libraries as sequencing_success requests (sample record + run context)."""
    runs = world.runs[world.runs["run_status"].notna()].sample(n, random_state=seed)
    rows = runs.merge(world.samples.drop(columns=["qc_status"]), on="sample_id")
    if thawed:
        rows = rows.assign(freeze_thaw_cycles=rows["freeze_thaw_cycles"] + THAWED)
    return records_of(rows, request_columns(get_model(SUCCESS)))


def sample_records(world: CatalogWorld, n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` samples whose turnaround is known, as turnaround_hours requests."""
    labelled = turnaround_hours.labelled_rows_from_exports(world.samples, world.runs).index
    chosen = world.samples[world.samples["sample_id"].isin(labelled)].sample(n, random_state=seed)
    return records_of(chosen, request_columns(get_model(TURNAROUND)))


def log_predictions(world: CatalogWorld, log_dir: Path, name: str, records: list[dict[str, Any]]) -> pd.DataFrame:
    """What the service does per request: the catalog predictor answers, the log's writer appends its rows."""
    valid = [request_model(name).model_validate(r).model_dump() for r in records]
    answers = world.served.models[name].predict(valid)
    open_prediction_log(str(log_dir)).append([a.log_row for a in answers])
    return open_prediction_log(str(log_dir)).read(model=name)


# -- the reports, per model ---------------------------------------------------------------------


def test_drift_per_model_over_its_own_log_rows(world: CatalogWorld, tmp_path: Path) -> None:
    log_dir = tmp_path / "log"
    log_predictions(world, log_dir, SUCCESS, library_records(world, 400, seed=1, thawed=True))
    log_predictions(world, log_dir, TURNAROUND, sample_records(world, 400, seed=2))
    log = open_prediction_log(str(log_dir))
    assert len(log.read(model=None)) == 800 and set(log.read(model=None)["model"]) == {SUCCESS, TURNAROUND}

    success = drift_against_training(log.read(model=SUCCESS), world.lake, get_model(SUCCESS))
    assert success.model == SUCCESS and success.verdict == "drift" and set(success.drifted_features) == THAWED_FEATURES
    assert success.reference_rows == len(get_model(SUCCESS).labelled_rows(world.lake))
    # Every feature of the model is measured, the run context included (logged, never missing).
    assert success.unlogged == () and [f.feature for f in success.features] == list(get_model(SUCCESS).features)
    by_feature = {f.feature: f for f in success.features}
    assert by_feature["instrument_failure_rate"].current_missing == 0.0 and not by_feature["instrument_failure_rate"].drifted
    assert by_feature["instrument_id"].kind == "categorical" and by_feature["instrument_id"].current_missing == 0.0

    turnaround = drift_against_training(log.read(model=TURNAROUND), world.lake, get_model(TURNAROUND))
    assert turnaround.verdict == "no_drift", turnaround.summary()
    assert turnaround.unlogged == () and [f.feature for f in turnaround.features] == list(get_model(TURNAROUND).features)
    assert {f.feature: f.kind for f in turnaround.features}["priority"] == "categorical"
    # Logged as served: each feature is missing about as often as in the training rows, never wholesale.
    assert all(abs(f.current_missing - f.reference_missing) < 0.1 for f in (*turnaround.features, *success.features))


def test_ab_report_of_a_binary_model_joins_its_run_labels_on_the_logged_entity_key(world: CatalogWorld, tmp_path: Path) -> None:
    spec = get_model(SUCCESS)
    records = library_records(world, 500, seed=3)
    unassigned = [{k: v for k, v in r.items() if k != "run_id"} for r in records[:5]]  # libraries not yet on a run
    frame = log_predictions(world, tmp_path / "log", SUCCESS, records + unassigned)
    assert frame["sample_id"].notna().all() and set(frame["variant"]) == {CHAMPION, CHALLENGER}
    keyed = frame["entity_key"]
    assert keyed.iloc[:500].tolist() == [f"{r['run_id']}/{r['sample_id']}" for r in records]
    assert keyed.iloc[500:].str.startswith("unassigned:").all() and keyed.iloc[500:].is_unique
    assert (keyed.iloc[500:].str.split("/").str[-1] == frame["sample_id"].iloc[500:]).all()

    labels, notes = ab_report.outcomes(world.lake, spec)
    rows = spec.labelled_rows(world.lake)
    assert not notes and len(labels) == len(rows) and labels.index.name == "entity_key"  # nobody left out
    assert not keyed.iloc[500:].isin(labels.index).any()  # the unassigned never join
    resequenced = frame.iloc[:500].groupby("sample_id")["entity_key"].nunique()
    assert (resequenced > 1).any(), "the generated lab should sequence some requested samples twice"
    on_runs = frame.iloc[:500]  # (an unassigned library of a re-sequenced sample has no label yet: checked above)
    assert on_runs.loc[on_runs["sample_id"].isin(resequenced[resequenced > 1].index), "entity_key"].isin(labels.index).all()

    report = ab_report.ab_test_report(frame, labels, spec, world.models[SUCCESS], ABSettings(bootstrap=100))
    assert report.model == SUCCESS and report.task == "classification"
    labelled = report.labelled.set_index("variant")
    expected = frame.drop_duplicates(["variant", "entity_key"], keep="last").join(
        labels.rename("y"), on="entity_key", how="inner"
    )
    assert labelled["labelled"].sum() == len(expected) == 500  # every library that has a label, each run of a re-sequenced sample
    assert labelled["labelled"].to_dict() == expected.groupby("variant").size().to_dict()
    for variant, part in expected.groupby("variant"):
        accuracy = float((part["predicted_status"] == part["y"]).mean())
        assert labelled.loc[variant, "accuracy"] == pytest.approx(accuracy)
        assert labelled.loc[variant, "roc_auc"] > 0.6 and labelled.loc[variant, "roc_auc_low"] <= labelled.loc[variant, "roc_auc"]
    assert set(report.differences["metric"]) == {"roc_auc", "accuracy", "brier"}

    # Both versions re-score every logged library (the run context is in the log): the agreement.
    agreement = report.agreement
    assert agreement is not None and agreement["samples"] == 505, report.notes
    assert agreement["champion_version"] != agreement["challenger_version"]
    assert 0.0 <= agreement["category_agreement"] <= 1.0 and agreement["score_pearson"] > 0.5
    answered = frame.set_index("variant")["prediction"]
    champion = world.models[SUCCESS][CHAMPION].score(frame[frame["variant"] == CHAMPION])
    assert champion == pytest.approx(answered.loc[CHAMPION].to_numpy(), abs=1e-3)  # the logged vector re-scores to the answer
    assert agreement["paired_on_labelled"]["samples"] == 500
    assert not any("does not carry" in n for n in report.notes)


def test_ab_report_of_a_regressor_gives_mae_and_interval_coverage_per_variant(world: CatalogWorld, tmp_path: Path) -> None:
    spec = get_model(TURNAROUND)
    frame = log_predictions(world, tmp_path / "log", TURNAROUND, sample_records(world, 500, seed=4))
    assert frame["quality_probability"].isna().all() and frame["prediction"].notna().all()
    labels, notes = ab_report.outcomes(world.lake, spec)
    assert not notes and labels.dtype == float
    report = ab_report.ab_test_report(frame, labels, spec, world.models[TURNAROUND], ABSettings(bootstrap=100))
    assert report.task == "regression" and "share_high" not in report.variants.columns
    assert report.score_histogram[[CHAMPION, CHALLENGER]].to_numpy().sum() == 500
    labelled = report.labelled.set_index("variant")
    assert (frame["entity_key"] == frame["sample_id"]).all()  # a sample-level model's key is its sample_id
    joined = frame.join(labels.rename("y"), on="entity_key", how="inner")
    for variant, part in joined.groupby("variant"):
        error = (part["prediction"] - part["y"]).abs()
        half_width = world.models[TURNAROUND][variant].half_width
        assert half_width is not None and labelled.loc[variant, "labelled"] == len(part)
        assert labelled.loc[variant, "mae"] == pytest.approx(error.mean())
        assert labelled.loc[variant, "interval_coverage"] == pytest.approx(float((error <= half_width).mean()))
        assert labelled.loc[variant, "mae_low"] <= labelled.loc[variant, "mae"] <= labelled.loc[variant, "mae_high"]
    assert {"mae", "rmse", "interval_coverage"} <= set(report.differences["metric"])
    assert report.agreement is not None and report.agreement["samples"] == 500 and report.agreement["score_pearson"] > 0.5
    assert report.agreement["paired_on_labelled"]["samples"] == 500 and "mae_difference" in report.agreement["paired_on_labelled"]
    # Without the versions' half-widths the coverage is not made up: the report says so.
    plain = ab_report.ab_test_report(frame, labels, spec, None, ABSettings(bootstrap=20))
    assert (
        "interval_coverage" not in plain.labelled.columns and sum("interval_coverage not computed" in n for n in plain.notes) == 2
    )


# -- the schedule, the partitioned job and the retraining sensor ------------------------------


def _definitions(world: CatalogWorld, log_dir: Path) -> dg.Definitions:
    return build_definitions(lake_dir=str(world.lake.root), mlflow_tracking_uri=world.tracking_uri,
                             optuna_storage=f"sqlite:///{world.root / 'optuna.db'}", prediction_log_url=str(log_dir))  # fmt: skip


def _schedule_tick(instance: dg.DagsterInstance, log_dir: Path):  # type: ignore[no-untyped-def]
    with dg.build_schedule_context(instance=instance, scheduled_execution_time=datetime.now(UTC),
                                   resources={"prediction_log": PredictionLogResource(url=str(log_dir))}) as context:  # fmt: skip
        return monitoring_schedule(context)


def _sensor_tick(world: CatalogWorld, instance: dg.DagsterInstance, cursor: str | None) -> dg.SensorResult:
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={
        "lake": LakeResource(root=str(world.lake.root)), "mlflow_tracking": MLflowResource(tracking_uri=world.tracking_uri)})  # fmt: skip
    return retraining_sensor(context)


def test_schedule_and_job_over_several_models_and_the_sensor_retrains_only_the_drifted_one(
    world: CatalogWorld, sqlite_instance: dg.DagsterInstance, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRACSEQ_RETRAIN_FAMILIES", "logistic")
    monkeypatch.setenv("TRACSEQ_RETRAIN_MIN_NEW_LABELS", "1000000")  # only drift may start a retraining here
    log_dir = tmp_path / "log"
    skipped = _schedule_tick(sqlite_instance, log_dir)
    assert isinstance(skipped, dg.SkipReason) and "no catalog model has logged predictions" in skipped.skip_message
    assert "sample_quality: no logged predictions" in skipped.skip_message

    log_predictions(world, log_dir, SUCCESS, library_records(world, 300, seed=5, thawed=True))
    log_predictions(world, log_dir, TURNAROUND, sample_records(world, 300, seed=6))
    requests = _schedule_tick(sqlite_instance, log_dir)
    assert sorted(r.partition_key for r in requests) == [SUCCESS, TURNAROUND]  # sample_quality has no predictions: skipped
    assert all(r.tags["tracseq/predictions"] == "300" for r in requests)

    quiet = _sensor_tick(world, sqlite_instance, None)
    assert not quiet.run_requests and "no failed drift check" in quiet.skip_reason.skip_message

    job = _definitions(world, log_dir).resolve_job_def("monitoring_reports")
    for request in requests:  # what the daemon launches: one run per requested model partition
        result = job.execute_in_process(instance=sqlite_instance, partition_key=request.partition_key, raise_on_error=False,
                                        run_config={"ops": {"ab_test_report": {"config": {"bootstrap": 50}}}})  # fmt: skip
        assert result.success
        (evaluation,) = result.get_asset_check_evaluations()
        assert evaluation.metadata["model"].value == request.partition_key
        assert evaluation.passed == (request.partition_key == TURNAROUND)
    for name in (SUCCESS, TURNAROUND):
        drift = latest_materialization(sqlite_instance, "feature_drift_report", name).metadata
        ab = latest_materialization(sqlite_instance, "ab_test_report", name).metadata
        assert drift["model"].value == ab["model"].value == name and drift["predictions"].value == ab["predictions"].value == 300
        assert ab["labelled_predictions"].value > 100 and world.lake.monitoring_path(f"{name}/ab_test_report.json").exists()
    drifted = latest_materialization(sqlite_instance, "feature_drift_report", SUCCESS).metadata["drifted_features"].value
    assert set(drifted.split(", ")) == THAWED_FEATURES
    assert latest_materialization(sqlite_instance, "ab_test_report", TURNAROUND).metadata["task"].value == "regression"
    assert (
        latest_drift_evaluation(sqlite_instance, SUCCESS) is not None
        and latest_drift_evaluation(sqlite_instance, TURNAROUND) is None
    )

    started = _sensor_tick(world, sqlite_instance, quiet.cursor)
    (sweep,) = started.run_requests
    assert sweep.partition_key == sweep_partition_key(SUCCESS, "logistic") and sweep.tags[RETRAIN_MODEL_TAG] == SUCCESS
    assert "drift" in sweep.tags["tracseq/retrain_reason"]
    cursor = RetrainCursor.from_json(started.cursor)
    assert cursor.models[SUCCESS].drift_evaluation_seen == latest_drift_evaluation(sqlite_instance, SUCCESS)
    assert cursor.models.get(TURNAROUND, RetrainState()).drift_evaluation_seen is None


def test_a_single_model_cursor_is_read_as_sample_quality_state() -> None:
    old = (
        '{"drift_evaluation_seen": 12, "labels_at_last_retrain": 1800, "last_retrain_at": "2026-11-01T00:00:00+00:00", '
        '"batch": "retrain-20261101T000000", "settled_batches": ["retrain-20261001T000000:sample_quality"]}'
    )
    cursor = RetrainCursor.from_json(old)
    assert cursor.models == {"sample_quality": RetrainState(12, 1800, "2026-11-01T00:00:00+00:00")}
    assert cursor.batch == "retrain-20261101T000000" and cursor.batch_started_at == "2026-11-01T00:00:00+00:00"
    assert cursor.settled_batches == ["retrain-20261001T000000:sample_quality"]
    assert RetrainCursor.from_json(cursor.to_json()) == cursor
    assert cursor.model(SUCCESS) == RetrainState() and SUCCESS in cursor.models
    assert RetrainCursor.from_json(None) == RetrainCursor() and RetrainCursor.from_json("").models == {}
