"""Training through Dagster and MLflow for real: the CLI on an embedded instance, bad input,
and register → promote → rollback against a real `mlflow server` backed by PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from dagster_helpers import latest_materialization
from processes import free_port, stop, wait_until_ready
from typer.testing import CliRunner

from assets.models.partitions import sweep_partition_key
from tracseq_dagster.automl import prepare_study_storage
from tracseq_dagster.cli import app
from tracseq_dagster.definitions import build_definitions
from tracseq_dagster.features import compute_features
from tracseq_dagster.generator import generate_samples
from tracseq_dagster.ingest import failure_message
from tracseq_dagster.lake import Lake
from tracseq_dagster.models.sample_quality import training_set_from_features
from tracseq_dagster.promotion import GatePolicy
from tracseq_dagster.registry import CHALLENGER, CHAMPION, ModelRegistry
from tracseq_dagster.tracking import ensure_experiment, open_client, parent_run
from tracseq_dagster.training import SweepSettings, rank_families, register_winner, run_promotion_gate, sweep_one_family

pytestmark = pytest.mark.slow


def test_tracseq_train_sweeps_registers_and_promotes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data"
    monkeypatch.setenv("TRACSEQ_DATA_DIR", str(data))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    runner = CliRunner()
    assert (
        runner.invoke(app, ["generate-exports", "--rows", "3000", "--seed", "4", "--out", str(data / "landing")]).exit_code == 0
    )
    assert runner.invoke(app, ["ingest", str(data / "landing")]).exit_code == 0

    result = runner.invoke(
        app,
        [
            "train",
            "--model",
            "sample_quality",
            "--budget-s",
            "10",
            "--families",
            "logistic,lightgbm",
            "--cv-folds",
            "3",
            "--max-ece",
            "0.3",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "sample_quality promotion gate: promoted (challenger v1)" in result.output, result.output
    assert "✓ feature store" in result.output, result.output  # feast apply and the tables, before the sweeps

    instance = dg.DagsterInstance.get()
    for family in ("logistic", "lightgbm"):
        trials = latest_materialization(instance, "automl_trials", sweep_partition_key("sample_quality", family)).metadata

        assert trials["complete"].value >= 1 and trials["best_cv_mean"].value > 0.6
        assert trials["training_source"].value.startswith("feast get_historical_features (service sample_quality")
    board = latest_materialization(instance, "automl_leaderboard").metadata
    assert board["families"].value == 2 and "| family" in board["leaderboard"].value
    registered = latest_materialization(instance, "registered_model").metadata
    assert registered["model_version"].value == "1" and registered["holdout_roc_auc_ovr"].value > 0.6
    assert set(registered["holdout_by_sample_type"].value) >= {"DNA", "RNA"}
    assert latest_materialization(instance, "promotion_gate").metadata["decision"].value == "promoted"

    # MLflow: each Dagster run has one parent run; trials nest under their family's run.
    client = open_client(f"sqlite:///{data / 'mlflow' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("sample_quality")
    assert experiment.artifact_location.startswith((data / "mlflow" / "artifacts").as_uri())
    runs = client.search_runs([experiment.experiment_id], max_results=2000)
    parents = {r.data.tags["dagster_run_id"]: r.info.run_id for r in runs if r.data.tags.get("tracseq.role") == "dagster_run"}
    family_runs = [r for r in runs if r.data.tags.get("tracseq.role") == "family"]
    assert len(family_runs) == 2 and len(parents) == 3  # two sweeps and register_and_promote
    for run in family_runs:
        assert run.data.tags["mlflow.parentRunId"] == parents[run.data.tags["dagster_run_id"]]
        assert instance.get_run_by_id(run.data.tags["dagster_run_id"]).job_name == "automl_sweep"
    trial_parents = {r.data.tags["mlflow.parentRunId"] for r in runs if r.data.tags.get("tracseq.role") == "trial"}
    assert trial_parents == {r.info.run_id for r in family_runs}

    registry = ModelRegistry(client, "sample_quality")
    assert str(registry.version(CHAMPION).version) == "1"
    history = runner.invoke(app, ["model", "history", "--model", "sample_quality"])
    assert history.exit_code == 0 and "promote" in history.output and "v1" in history.output, history.output
    rollback = runner.invoke(app, ["model", "rollback", "--model", "sample_quality"])
    assert rollback.exit_code == 2 and "no previous champion" in rollback.output
    listed = runner.invoke(app, ["models"], terminal_width=250)
    assert (
        listed.exit_code == 0 and "v1" in listed.output and "roc_auc" in listed.output and "sequencing_success" in listed.output
    ), listed.output


def _features(rows: int = 1200, seed: int = 5) -> pd.DataFrame:
    samples = generate_samples(rows, seed=seed)
    return compute_features(samples, samples, as_of=None).reset_index()


@pytest.mark.parametrize(
    ("change", "budget", "message"),
    [
        (lambda f: f.assign(qc_status=pd.NA), 10.0, "target column 'qc_status' is all null"),
        (lambda f: f.assign(qc_status="pass"), 10.0, "target column 'qc_status' is constant"),
        (lambda f: f.assign(qc_status=["fail"] + ["pass"] * (len(f) - 1)), 10.0, "single member ('fail')"),
        (lambda f: f, 0.5, "too small for even one trial"),
    ],
    ids=["all-null", "constant", "single-member-class", "tiny-budget"],
)
def test_bad_training_input_fails_clearly_and_leaves_the_registry_alone(tmp_path: Path, change, budget, message) -> None:  # type: ignore[no-untyped-def]
    lake = Lake(tmp_path / "lake")
    lake.write_table(lake.features_path, change(_features()))
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    defs = build_definitions(
        lake_dir=str(lake.root), mlflow_tracking_uri=tracking, optuna_storage=f"sqlite:///{tmp_path / 'optuna.db'}"
    )
    with dg.DagsterInstance.ephemeral() as instance:
        result = defs.resolve_job_def("automl_sweep").execute_in_process(
            partition_key=sweep_partition_key("sample_quality", "logistic"),
            instance=instance,
            raise_on_error=False,
            run_config={"ops": {"automl_trials": {"config": {"time_budget_s": budget}}}},
        )
        assert not result.success
        assert message in failure_message(result)
        final = defs.resolve_job_def("register_and_promote").execute_in_process(
            partition_key="sample_quality", instance=instance, raise_on_error=False
        )
        assert not final.success
    assert open_client(tracking).search_registered_models() == []


@pytest.fixture
def mlflow_server(postgres_url: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    """A real `mlflow server` on a free loopback port, its backend store in PostgreSQL."""
    port = free_port()
    log = (tmp_path / "mlflow-server.log").open("w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            postgres_url,
            "--artifacts-destination",
            str(tmp_path / "artifacts"),
            "--serve-artifacts",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
    )
    url = f"http://127.0.0.1:{port}"
    wait_until_ready(process, f"{url}/health", tmp_path / "mlflow-server.log")
    yield url, postgres_url
    stop(process)


def test_register_promote_rollback_against_mlflow_server_on_postgres(
    mlflow_server, second_postgres_url: str, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    url, postgres_url = mlflow_server
    client = open_client(url)
    experiment = ensure_experiment(client, "sample_quality")
    registry = ModelRegistry(client, "sample_quality")
    storage = second_postgres_url  # Optuna in the same PostgreSQL server, its own database, as in production
    prepare_study_storage(storage)
    training_set = training_set_from_features(_features(1500, seed=8), ("export-1",))
    lenient = GatePolicy(min_improvement=-1.0, max_slice_regression=1.0, max_brier=1.0, max_ece=1.0)

    for number in (1, 2):
        dagster_run_id = f"server-run-{number}"
        parent = parent_run(client, experiment, dagster_run_id)
        outcome = sweep_one_family(
            training_set,
            "logistic",
            SweepSettings(time_budget_s=20, max_trials=3, cv_folds=3, seed=number),
            storage=storage,
            client=client,
            experiment_id=experiment,
            parent_run_id=parent,
            dagster_run_id=dagster_run_id,
        )
        ranked = rank_families([outcome], training_set.fingerprint)
        registered = register_winner(
            training_set,
            ranked[0],
            ranked,
            seed=number,
            storage=storage,
            registry=registry,
            experiment_id=experiment,
            parent_run_id=parent,
            dagster_run_id=dagster_run_id,
        )
        assert registered.version == str(number)
        gate = run_promotion_gate(
            training_set,
            lenient,
            registry=registry,
            metric="roc_auc_ovr",
            experiment_id=experiment,
            parent_run_id=parent,
            dagster_run_id=dagster_run_id,
        )
        assert gate.promoted

    assert str(registry.version(CHAMPION).version) == "2" and str(registry.version(CHALLENGER).version) == "2"
    # The artifacts went through the server into its artifact store.
    assert any((tmp_path / "artifacts").rglob("MLmodel"))
    event = registry.rollback("test rollback")
    assert (event.version, event.previous) == ("1", "2")
    assert str(registry.version(CHAMPION).version) == "1"
    assert [(e.action, e.version) for e in registry.history()] == [("promote", "1"), ("promote", "2"), ("rollback", "1")]
    # The backend store really is PostgreSQL: the registry's rows are there.
    import psycopg2

    with psycopg2.connect(postgres_url) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM model_versions WHERE name = 'sample_quality'")
        assert cursor.fetchone()[0] == 2
