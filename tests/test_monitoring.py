"""Monitoring: drift measures, the A/B report on real registered models, the assets and their check
on a real Dagster instance, and the retraining sensor's decisions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import numpy as np
import optuna
import pandas as pd
import pytest
from dagster_helpers import latest_materialization
from prediction_log_helpers import prediction_rows

from assets.models.partitions import sweep_partition_key
from assets.training.retraining import DRIFT_CHECK, SCHEDULE_REASON, retraining_schedule, retraining_sensor
from resources import LakeResource, MLflowResource
from tracseq_dagster.automl import ALL_FAMILIES, prepare_study_storage
from tracseq_dagster.definitions import build_definitions
from tracseq_dagster.features import FEATURE_NAMES, compute_features
from tracseq_dagster.generator import generate_samples
from tracseq_dagster.lake import Lake
from tracseq_dagster.models import get_model
from tracseq_dagster.monitoring import ab_report
from tracseq_dagster.monitoring.ab_report import ABSettings, ScoringModel
from tracseq_dagster.monitoring.drift import (
    DriftThresholds,
    feature_drift,
    numeric_bins,
    population_stability_index,
    reference_features,
)
from tracseq_dagster.monitoring.retraining import (
    DRIFT_REASON,
    RETRAIN_BATCH_TAG,
    RetrainCursor,
    RetrainPolicy,
    RetrainState,
    champion_training_rows,
    labelled_row_count,
    retrain_decision,
)
from tracseq_dagster.registry import ModelRegistry
from tracseq_dagster.serving.prediction_log import open_prediction_log, typed_frame
from tracseq_dagster.tracking import ensure_experiment, open_client, parent_run
from tracseq_dagster.training import SweepSettings, rank_families, register_winner, sweep_one_family
from tracseq_dagster.training_set import load_training_set

optuna.logging.set_verbosity(optuna.logging.WARNING)

SHIFT = {"storage_temp_deviation_c": 20.0, "freeze_thaw_cycles": 6.0}
SQ = get_model("sample_quality")


# -- drift measures ---------------------------------------------------------------------------


def test_psi_of_known_histograms_and_quantile_bins() -> None:
    # (0.9 − 0.5) ln(0.9 / 0.5) + (0.1 − 0.5) ln(0.1 / 0.5)
    assert population_stability_index(np.array([50.0, 50.0]), np.array([90.0, 10.0])) == pytest.approx(0.8789, abs=1e-4)
    assert population_stability_index(np.array([10.0, 30.0]), np.array([1.0, 3.0])) == pytest.approx(0.0)
    edges = numeric_bins(np.linspace(0, 1, 1001), 10)
    assert np.allclose(edges, np.arange(1, 10) / 10)
    # A discrete feature: repeated quantiles merge into one edge each.
    assert numeric_bins(np.array([0.0] * 80 + [1.0] * 20), 10).tolist() == [0.0, 1.0]


@pytest.fixture(scope="module")
def split() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Reference and current drawn at random from the same feature table."""
    samples = generate_samples(4000, seed=7)
    shuffled = compute_features(samples, samples, as_of=None).reset_index().sample(frac=1.0, random_state=0)
    return shuffled.iloc[:3000], shuffled.iloc[3000:]


def test_drift_absent_on_the_same_distribution_and_found_on_shifted_features(split) -> None:  # type: ignore[no-untyped-def]
    reference, current = split
    clean = feature_drift(reference, current)
    assert clean.verdict == "no_drift", clean.summary()
    assert len(clean.features) == len(FEATURE_NAMES) and max(f.psi for f in clean.features) < 0.1

    shifted = current.assign(
        storage_temp_deviation_c=current["storage_temp_deviation_c"] + SHIFT["storage_temp_deviation_c"],
        freeze_thaw_cycles=current["freeze_thaw_cycles"] + SHIFT["freeze_thaw_cycles"],
        sample_type=pd.Categorical(["FFPE"] * len(current), categories=current["sample_type"].cat.categories),
    )
    drifted = feature_drift(reference, shifted)
    assert drifted.verdict == "drift"
    assert set(drifted.drifted_features) == {"storage_temp_deviation_c", "freeze_thaw_cycles", "sample_type"}
    by_name = {f.feature: f for f in drifted.features}
    assert by_name["storage_temp_deviation_c"].ks_statistic > 0.5 and by_name["storage_temp_deviation_c"].psi > 1.0
    assert by_name["sample_type"].ks_statistic is None and by_name["sample_type"].psi > 0.2
    assert drifted.table()["feature"].iloc[0] in drifted.drifted_features  # most shifted first
    # Features not judged are measured and shown, but never decide the verdict.
    lenient = DriftThresholds(not_judged=("storage_temp_deviation_c", "freeze_thaw_cycles", "sample_type"))
    quiet = feature_drift(reference, shifted, lenient)
    assert quiet.verdict == "no_drift" and quiet.table()["psi"].iloc[0] > 1.0 and "not judged" in quiet.table()["reason"].iloc[0]


def test_drift_sees_missing_values_and_small_shifts_by_ks_only_with_a_large_gap(split) -> None:  # type: ignore[no-untyped-def]
    reference, current = split
    gone = feature_drift(reference, current.assign(integrity_score=np.nan))
    assert gone.drifted_features == ["integrity_score"] and "PSI" in gone.features[FEATURE_NAMES.index("integrity_score")].reason
    # A tiny shift is "significant" at this size but too small to matter: not drift.
    nudged = current.assign(log_concentration=current["log_concentration"] + 0.01)
    assert feature_drift(reference, nudged).verdict == "no_drift"
    strict = feature_drift(reference, nudged, DriftThresholds(psi=10.0, ks_statistic=0.0, ks_alpha=1.0))
    assert "log_concentration" in strict.drifted_features
    few = feature_drift(reference, current.head(50))
    assert few.verdict == "insufficient_data" and "50 < 200" in few.summary()


# -- a lake, a registry with two versions, a served log ------------------------------------


@dataclass
class World:
    root: Path
    lake: Lake
    features: pd.DataFrame
    tracking_uri: str
    optuna_storage: str
    registry: ModelRegistry
    models: dict[str, ScoringModel]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("monitoring")
    lake = Lake(root / "lake")
    samples = generate_samples(2000, seed=3)
    lake.write_table(lake.validated_path("export-a"), samples)
    lake.write_record("export-a", "a.csv", len(samples))
    features = compute_features(samples, samples, as_of=None).reset_index()
    lake.write_table(lake.features_path, features)
    training_set = load_training_set(lake, get_model("sample_quality"))

    tracking_uri, storage = f"sqlite:///{root / 'mlflow.db'}", f"sqlite:///{root / 'optuna.db'}"
    client = open_client(tracking_uri)
    experiment = ensure_experiment(client, "sample_quality", (root / "artifacts").as_uri())
    prepare_study_storage(storage)
    registry = ModelRegistry(client, "sample_quality")
    for number, family in enumerate(("logistic", "lightgbm"), start=1):
        run = f"monitoring-{number}"
        parent = parent_run(client, experiment, run)
        outcome = sweep_one_family(
            training_set,
            family,
            SweepSettings(time_budget_s=20, max_trials=1, cv_folds=2),
            storage=storage,
            client=client,
            experiment_id=experiment,
            parent_run_id=parent,
            dagster_run_id=run,
        )
        register_winner(
            training_set,
            outcome,
            rank_families([outcome], training_set.fingerprint),
            seed=0,
            storage=storage,
            registry=registry,
            experiment_id=experiment,
            parent_run_id=parent,
            dagster_run_id=run,
        )
    registry.promote("1", "monitoring test")  # v2 keeps the alias challenger
    models = {"champion": ab_report.load_version(registry, "1", SQ), "challenger": ab_report.load_version(registry, "2", SQ)}
    return World(root, lake, features, tracking_uri, storage, registry, models)


def served_rows(
    world: World, *, rows: int = 600, seed: int = 0, shift: bool = False, start: pd.Timestamp | None = None
) -> list[dict]:
    """Predictions as the service would log them: a 50/50 split, each answered by its variant's model."""
    chosen = world.features.sample(rows, random_state=seed).reset_index(drop=True)
    if shift:
        chosen = chosen.assign(**{name: chosen[name] + delta for name, delta in SHIFT.items()})
    variants = np.where(np.arange(rows) % 2 == 0, "champion", "challenger")
    probability, status = np.empty(rows), np.empty(rows, dtype=object)
    for variant, model in world.models.items():
        mask = variants == variant
        probability[mask] = model.score(chosen[mask])
        status[mask] = model.predict(chosen[mask])
    return prediction_rows(
        chosen,
        start=start or pd.Timestamp.now(tz="UTC") - pd.Timedelta(hours=1),
        variant=list(variants),
        model_version=[{"champion": "1", "challenger": "2"}[v] for v in variants],
        probability=probability,
        status=status,
        prefix=f"s{seed}",
    )


# -- the A/B report ----------------------------------------------------------------------------


def test_ab_report_compares_two_registered_versions_with_intervals(world: World, tmp_path: Path) -> None:
    log = open_prediction_log(str(tmp_path / "log"))
    log.append(served_rows(world))
    frame = log.read()
    assert ab_report.versions_to_compare(frame, world.registry) == {"champion": "1", "challenger": "2"}
    labels, notes = ab_report.outcomes(world.lake, SQ)
    assert not notes and len(labels) == int(world.features["qc_status"].notna().sum()) > 1000
    report = ab_report.ab_test_report(frame, labels, SQ, world.models, ABSettings(bootstrap=200))
    assert report.model == "sample_quality" and report.task == "classification"

    variants = report.variants.set_index("variant")
    assert variants["predictions"].to_dict() == {"challenger": 300, "champion": 300}
    assert variants.loc["champion", "model_versions"] == "1" and variants.loc["challenger", "model_versions"] == "2"
    shares = variants[["share_high", "share_medium", "share_low"]].sum(axis=1)
    assert np.allclose(shares, 1.0) and (variants["p_pass_q10"] <= variants["p_pass_q90"]).all()
    assert report.score_histogram[["champion", "challenger"]].sum().tolist() == [300, 300]

    agreement = report.agreement
    assert agreement is not None and (agreement["champion_version"], agreement["challenger_version"]) == ("1", "2")
    assert agreement["samples"] == 600 and 0.5 < agreement["category_agreement"] < 1.0
    assert agreement["score_pearson"] > 0.6  # two models of the same process agree, but not exactly
    assert sum(sum(row.values()) for row in agreement["category_crosstab"].values()) == 600
    paired = agreement["paired_on_labelled"]
    assert paired["samples"] == int(frame["sample_id"].map(labels).notna().sum())
    assert paired["roc_auc_difference_low"] <= paired["roc_auc_difference"] <= paired["roc_auc_difference_high"]

    labelled = report.labelled.set_index("variant")
    expected = frame.assign(label=frame["sample_id"].map(labels)).dropna(subset=["label"]).groupby("variant").size()
    assert labelled["labelled"].to_dict() == expected.to_dict()
    for variant in ("champion", "challenger"):
        row = labelled.loc[variant]
        assert row["roc_auc"] > 0.7, row
        assert row["roc_auc_low"] <= row["roc_auc"] <= row["roc_auc_high"] and row["roc_auc_high"] - row["roc_auc_low"] < 0.3
        assert 0 < row["accuracy"] <= 1 and row["brier"] < 0.25
    assert set(report.differences["metric"]) == {"roc_auc", "accuracy", "brier"}
    assert not any("too few" in note for note in report.notes)
    assert report.to_dict()["variants"][0]["variant"] == "challenger"


def test_ab_report_says_when_labels_are_too_few_and_when_versions_are_equal(world: World) -> None:
    rows = served_rows(world, rows=80, seed=1)
    for row in rows:
        row["sample_id"] = row["sample_id"].replace("TS-", "TS-9")  # samples whose QC has not come back
    frame = typed_frame(pd.DataFrame(rows))
    labels, _ = ab_report.outcomes(world.lake, SQ)
    same = {"champion": world.models["champion"], "challenger": world.models["champion"]}
    report = ab_report.ab_test_report(frame, labels, SQ, same, ABSettings(bootstrap=50))
    assert report.labelled["labelled"].tolist() == [0, 0] and "roc_auc" not in report.labelled.columns
    assert sum("too few labels" in note for note in report.notes) == 2
    assert any("paired comparison not computed" in note for note in report.notes)
    assert report.agreement["category_agreement"] == 1.0 and report.agreement["status_agreement"] == 1.0
    assert any("same version" in note for note in report.notes)
    empty = ab_report.ab_test_report(frame.head(0), labels, SQ, None)
    assert empty.rows == 0 and "no predictions in the window" in empty.notes


# -- the assets and the check on a real instance ----------------------------------------------


def _definitions(world: World, log_dir: Path) -> dg.Definitions:
    return build_definitions(
        lake_dir=str(world.lake.root),
        mlflow_tracking_uri=world.tracking_uri,
        optuna_storage=world.optuna_storage,
        prediction_log_url=str(log_dir),
    )


def _run_reports(
    world: World, instance: dg.DagsterInstance, log_dir: Path, model: str = "sample_quality"
) -> dg.ExecuteInProcessResult:
    config = {"ops": {"ab_test_report": {"config": {"bootstrap": 100}}}}
    result = (
        _definitions(world, log_dir)
        .resolve_job_def("monitoring_reports")
        .execute_in_process(instance=instance, run_config=config, raise_on_error=False, partition_key=model)
    )
    assert result.success
    return result


def test_monitoring_assets_and_the_drift_check(world: World, sqlite_instance: dg.DagsterInstance, tmp_path: Path) -> None:
    clean_log, drifted_log = tmp_path / "clean", tmp_path / "drifted"
    open_prediction_log(str(clean_log)).append(served_rows(world, seed=2))
    open_prediction_log(str(drifted_log)).append(served_rows(world, seed=3, shift=True))
    # Old predictions fall outside the window.
    open_prediction_log(str(clean_log)).append(
        served_rows(world, rows=50, seed=4, shift=True, start=pd.Timestamp("2020-01-01T00:00Z"))
    )

    clean = _run_reports(world, sqlite_instance, clean_log)
    (evaluation,) = clean.get_asset_check_evaluations()
    assert evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR
    drift = latest_materialization(sqlite_instance, "feature_drift_report", "sample_quality").metadata
    assert drift["verdict"].value == "no_drift" and drift["predictions"].value == 600 and drift["model"].value == "sample_quality"
    assert drift["reference_rows"].value == len(reference_features(world.lake, SQ)) and "| feature" in drift["features"].value
    ab = latest_materialization(sqlite_instance, "ab_test_report", "sample_quality").metadata
    assert ab["predictions"].value == 600 and 0.5 < ab["category_agreement"].value < 1.0 and ab["model"].value == "sample_quality"
    assert "champion" in ab["labelled_metrics"].value and "roc_auc" in ab["challenger_minus_champion"].value
    saved = world.lake.read_json(world.lake.monitoring_path("sample_quality/ab_test_report.json"))
    assert saved["rows"] == 600 and {v["variant"] for v in saved["variants"]} == {"champion", "challenger"}
    assert len(pd.read_parquet(world.lake.monitoring_path("sample_quality/feature_drift_report.parquet"))) == len(FEATURE_NAMES)
    record = sqlite_instance.get_latest_asset_check_evaluation_record(DRIFT_CHECK)
    assert record is not None and record.status.value == "SUCCEEDED"

    drifted = _run_reports(world, sqlite_instance, drifted_log)
    (evaluation,) = drifted.get_asset_check_evaluations()
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR
    assert set(evaluation.metadata["drifted_features"].value.split(", ")) == set(SHIFT)
    assert sqlite_instance.get_latest_asset_check_evaluation_record(DRIFT_CHECK).status.value == "FAILED"
    saved = world.lake.read_json(world.lake.monitoring_path("sample_quality/feature_drift_report.json"))
    assert saved["verdict"] == "drift" and set(saved["drifted_features"]) == set(SHIFT) and saved["model"] == "sample_quality"


def test_monitoring_assets_with_an_empty_log_pass_quietly(
    world: World, sqlite_instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    result = _run_reports(world, sqlite_instance, tmp_path / "no-log-yet")
    (evaluation,) = result.get_asset_check_evaluations()
    assert evaluation.passed and evaluation.metadata["verdict"].value == "insufficient_data"
    assert (
        "no predictions in the window"
        in latest_materialization(sqlite_instance, "ab_test_report", "sample_quality").metadata["notes"].value
    )


# -- retraining --------------------------------------------------------------------------------


def test_retrain_decision_rules() -> None:
    policy = RetrainPolicy(min_new_labels=100, drift_cooldown_hours=24)
    fresh = RetrainState()
    assert not retrain_decision(policy, fresh, failed_drift_evaluation=7, labelled_now=5000, champion_training_rows=None)
    drift = retrain_decision(policy, fresh, failed_drift_evaluation=7, labelled_now=1000, champion_training_rows=1000)
    assert drift.reasons == (DRIFT_REASON,) and drift.drift
    assert not retrain_decision(
        policy, RetrainState(drift_evaluation_seen=7), failed_drift_evaluation=7, labelled_now=1000, champion_training_rows=1000
    )
    now = datetime(2026, 5, 1, tzinfo=UTC)
    recent = RetrainState(drift_evaluation_seen=6, last_retrain_at=(now - timedelta(hours=2)).isoformat())
    assert not retrain_decision(
        policy, recent, failed_drift_evaluation=7, labelled_now=1000, champion_training_rows=1000, now=now
    )
    labels = retrain_decision(policy, fresh, failed_drift_evaluation=None, labelled_now=1100, champion_training_rows=1000)
    assert labels.reasons == ("100 newly labelled rows (the champion learned from 1000)",) and not labels.drift
    # The gate kept the old champion after the last retraining at 1100 labels: wait for 100 more than that.
    after = RetrainState(labels_at_last_retrain=1100)
    assert not retrain_decision(policy, after, failed_drift_evaluation=None, labelled_now=1150, champion_training_rows=1000)
    assert retrain_decision(policy, after, failed_drift_evaluation=None, labelled_now=1200, champion_training_rows=1000)


def _tick(world: World, instance: dg.DagsterInstance, cursor: str | None, lake: Lake | None = None) -> dg.SensorResult:
    context = dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        resources={
            "lake": LakeResource(root=str((lake or world.lake).root)),
            "mlflow_tracking": MLflowResource(tracking_uri=world.tracking_uri),
        },
    )
    return retraining_sensor(context)


def test_retraining_sensor_on_drift_sweeps_then_registers(
    world: World, sqlite_instance: dg.DagsterInstance, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRACSEQ_RETRAIN_FAMILIES", "logistic")
    quiet = _tick(world, sqlite_instance, None)
    assert not quiet.run_requests and "sample_quality: drift check passing" in quiet.skip_reason.skip_message

    drifted_log = tmp_path / "drifted"
    open_prediction_log(str(drifted_log)).append(served_rows(world, seed=5, shift=True))
    _run_reports(world, sqlite_instance, drifted_log)
    started = _tick(world, sqlite_instance, quiet.cursor)
    (sweep,) = started.run_requests
    assert sweep.job_name == "automl_sweep" and sweep.partition_key == sweep_partition_key("sample_quality", "logistic")
    assert "drift" in sweep.tags["tracseq/retrain_reason"]
    state = RetrainCursor.from_json(started.cursor)
    assert state.batch == sweep.tags[RETRAIN_BATCH_TAG] and state.models["sample_quality"].drift_evaluation_seen is not None

    waiting = _tick(world, sqlite_instance, started.cursor)
    assert not waiting.run_requests and "waiting for its sweep runs" in waiting.skip_reason.skip_message
    # The daemon would launch the request; here the same run, in process, on the same instance.
    defs = _definitions(world, drifted_log)
    run = defs.resolve_job_def("automl_sweep").execute_in_process(
        partition_key=sweep_partition_key("sample_quality", "logistic"),
        instance=sqlite_instance,
        tags=sweep.tags,
        raise_on_error=False,
        run_config={"ops": {"automl_trials": {"config": {"time_budget_s": 10, "max_trials": 1, "cv_folds": 2}}}},
    )
    assert run.success
    chained = _tick(world, sqlite_instance, waiting.cursor)
    (register,) = chained.run_requests
    assert register.job_name == "register_and_promote" and register.run_key == f"{state.batch}:sample_quality:register"
    assert register.partition_key == "sample_quality"
    # The same failed evaluation does not start a second retraining.
    after = _tick(world, sqlite_instance, chained.cursor)
    assert not after.run_requests and RetrainCursor.from_json(after.cursor).batch is None


def test_weekly_schedule_starts_a_batch_that_the_sensor_registers_once(
    world: World, sqlite_instance: dg.DagsterInstance, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRACSEQ_RETRAIN_FAMILIES", "logistic")
    sunday = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)

    def schedule_tick(tracking_uri: str):  # type: ignore[no-untyped-def]
        # As a context manager: the schedule context opens its own instance from the ref and,
        # left open, would leave that instance's storage as Dagster's current one after it dies.
        with dg.build_schedule_context(
            instance=sqlite_instance,
            scheduled_execution_time=sunday,
            resources={"mlflow_tracking": MLflowResource(tracking_uri=tracking_uri)},
        ) as context:
            return retraining_schedule(context)

    no_champion = schedule_tick(f"sqlite:///{tmp_path / 'empty.db'}")
    assert isinstance(no_champion, dg.SkipReason) and "no champion yet" in no_champion.skip_message
    (sweep,) = schedule_tick(world.tracking_uri)
    assert sweep.job_name == "automl_sweep" and sweep.partition_key == sweep_partition_key("sample_quality", "logistic")
    assert sweep.tags[RETRAIN_BATCH_TAG] == "scheduled-20261122T0300" and sweep.tags["tracseq/retrain_reason"] == SCHEDULE_REASON

    run = (
        _definitions(world, tmp_path / "log")
        .resolve_job_def("automl_sweep")
        .execute_in_process(
            partition_key=sweep_partition_key("sample_quality", "logistic"),
            instance=sqlite_instance,
            tags=sweep.tags,
            raise_on_error=False,
            run_config={"ops": {"automl_trials": {"config": {"time_budget_s": 10, "max_trials": 1, "cv_folds": 2}}}},
        )
    )
    assert run.success
    # The sensor did not start this batch, yet it registers it, once.
    chained = _tick(world, sqlite_instance, None)
    (register,) = chained.run_requests
    assert register.job_name == "register_and_promote" and register.run_key == "scheduled-20261122T0300:sample_quality:register"
    assert not _tick(world, sqlite_instance, chained.cursor).run_requests


def test_retraining_sensor_on_new_labels_once(
    world: World, sqlite_instance: dg.DagsterInstance, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRACSEQ_RETRAIN_MIN_NEW_LABELS", "300")
    champion_rows = champion_training_rows(world.registry)
    assert champion_rows == labelled_row_count(world.lake, get_model("sample_quality")) and champion_rows > 1000
    lake = Lake(tmp_path / "lake")
    newer = generate_samples(400, seed=12, id_offset=900_000)
    more = compute_features(newer, newer, as_of=None).reset_index()
    lake.write_table(lake.features_path, pd.concat([world.features, more], ignore_index=True))
    new_labels = labelled_row_count(lake, get_model("sample_quality")) - champion_rows
    assert 300 <= new_labels <= 400

    started = _tick(world, sqlite_instance, None, lake)
    assert len(started.run_requests) == 6 and {r.partition_key for r in started.run_requests} == {
        sweep_partition_key("sample_quality", f) for f in ALL_FAMILIES
    }
    assert f"{new_labels} newly labelled rows" in started.run_requests[0].tags["tracseq/retrain_reason"]
    state = RetrainCursor.from_json(started.cursor)
    assert state.models["sample_quality"].labels_at_last_retrain == labelled_row_count(lake, get_model("sample_quality"))
    state.batch = None  # as if the batch finished and the gate kept the champion
    again = _tick(world, sqlite_instance, state.to_json(), lake)
    assert not again.run_requests


def test_tracseq_monitor_drift_command(world: World, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from tracseq_dagster.cli import app

    clean_log, drifted_log = tmp_path / "clean", tmp_path / "drifted"
    open_prediction_log(str(clean_log)).append(served_rows(world, rows=300, seed=6))
    open_prediction_log(str(drifted_log)).append(served_rows(world, rows=300, seed=7, shift=True))
    runner = CliRunner()
    clean = runner.invoke(app, ["monitor", "drift", "--log", str(clean_log), "--lake", str(world.lake.root)])
    assert clean.exit_code == 0 and "no_drift" in clean.output, clean.output
    drifted = runner.invoke(app, ["monitor", "drift", "--log", str(drifted_log), "--lake", str(world.lake.root)])
    assert drifted.exit_code == 1 and "drift:" in drifted.output and "freeze_thaw_cycles" in drifted.output, drifted.output
    assert "sample_quality:" in drifted.output  # every model with logged predictions: here only sample_quality
    other = runner.invoke(
        app, ["monitor", "drift", "--model", "turnaround_hours", "--log", str(drifted_log), "--lake", str(world.lake.root)]
    )
    assert other.exit_code == 0 and "turnaround_hours: no logged predictions" in other.output, other.output
    unknown = runner.invoke(app, ["monitor", "drift", "--model", "nope", "--log", str(clean_log)])
    assert unknown.exit_code == 2 and "no model 'nope' in the catalog" in unknown.output, unknown.output
