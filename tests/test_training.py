"""Training steps against a real MLflow store: nested runs, registry, gate, rollback, history."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import optuna
import pandas as pd
import pytest
from typer.testing import CliRunner

from tracseq_dagster.automl import AutoMLInputError
from tracseq_dagster.cli import app
from tracseq_dagster.evaluation import Evaluation, SliceScore, brier_score, evaluate, expected_calibration_error
from tracseq_dagster.features import compute_features
from tracseq_dagster.generator import generate_samples
from tracseq_dagster.models.sample_quality import MODEL, training_set_from_features
from tracseq_dagster.promotion import GatePolicy, decide
from tracseq_dagster.registry import CHALLENGER, CHAMPION, ModelRegistry, RegistryError
from tracseq_dagster.tracking import ensure_experiment, fluent_api, open_client, parent_run
from tracseq_dagster.training import (
    SweepSettings,
    rank_families,
    register_winner,
    run_promotion_gate,
    sweep_one_family,
)
from tracseq_dagster.training_set import stable_holdout

TARGET, SLICE_COLUMN = MODEL.label, MODEL.slice_column

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(scope="module")
def training_set():  # type: ignore[no-untyped-def]
    samples = generate_samples(2500, seed=11)
    features = compute_features(samples, samples, as_of=None).reset_index()
    return training_set_from_features(features, ("hash-a", "hash-b"))


@pytest.fixture()
def mlflow_store(tmp_path: Path):  # type: ignore[no-untyped-def]
    client = open_client(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = ensure_experiment(client, "sample_quality", (tmp_path / "artifacts").as_uri())
    return client, experiment, f"sqlite:///{tmp_path / 'optuna.db'}"


# -- the training set --------------------------------------------------------------------------


def test_stable_holdout_is_per_id_and_near_the_fraction() -> None:
    ids = pd.Index([f"TS-2025-{i:06d}" for i in range(20000)])
    mask = stable_holdout(ids)
    assert 0.18 < mask.mean() < 0.22
    # The same id gets the same answer whatever else is in the table, in any order.
    again = stable_holdout(ids[::-1][:5000])
    assert np.array_equal(again, mask[::-1][:5000])


def test_training_set_keeps_labelled_rows_and_lineage(training_set) -> None:  # type: ignore[no-untyped-def]
    assert training_set.frame[TARGET].notna().all() and set(training_set.frame[TARGET]) == {"pass", "borderline", "fail"}
    assert training_set.frame.index.name == "sample_id" and training_set.frame.index.is_unique
    assert training_set.export_hashes == ("hash-a", "hash-b")
    changed = training_set.frame.copy()
    changed.iloc[0, 0] += 1.0
    assert training_set_from_features(changed.reset_index()).fingerprint != training_set.fingerprint


# -- evaluation and the gate --------------------------------------------------------------------


def test_calibration_measures() -> None:
    y = np.array([0, 1, 1, 0])
    perfect = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
    assert brier_score(y, perfect) == 0.0 and expected_calibration_error(y, perfect) == 0.0
    unsure = np.full((4, 2), 0.5)
    assert brier_score(y, unsure) == pytest.approx(0.5)
    # Always 90 % sure and right half the time: ECE = |0.9 − 0.5| = 0.4.
    overconfident = np.array([[0.9, 0.1], [0.9, 0.1], [0.1, 0.9], [0.1, 0.9]])
    assert expected_calibration_error(y, overconfident) == pytest.approx(0.4)


def _evaluation(score: float, slices: dict[str, float], brier: float = 0.2, ece: float = 0.03) -> Evaluation:
    return Evaluation("roc_auc_ovr", True, score, 500, brier, ece, {k: SliceScore(100, v) for k, v in slices.items()})


def test_gate_rules() -> None:
    policy = GatePolicy(min_improvement=0.01, max_slice_regression=0.02, max_brier=0.3, max_ece=0.05)
    champion = _evaluation(0.80, {"DNA": 0.80, "RNA": 0.80})
    assert decide(_evaluation(0.82, {"DNA": 0.84, "RNA": 0.79}), champion, policy).promote
    too_small = decide(_evaluation(0.805, {"DNA": 0.81, "RNA": 0.80}), champion, policy)
    assert not too_small.promote and "less than the required 0.01" in too_small.summary()
    slice_drop = decide(_evaluation(0.85, {"DNA": 0.95, "RNA": 0.75}), champion, policy)
    assert not slice_drop.promote and "RNA" in slice_drop.summary()
    uncalibrated = decide(_evaluation(0.9, {"DNA": 0.9}, ece=0.2), champion, policy)
    assert not uncalibrated.promote and "FAIL calibration error bound" in uncalibrated.summary()
    # No champion yet: only calibration is judged.
    assert decide(_evaluation(0.6, {}), None, policy).promote
    assert not decide(_evaluation(0.6, {}, brier=0.4), None, policy).promote


def test_evaluate_scores_slices_and_names_unknown_labels(training_set) -> None:  # type: ignore[no-untyped-def]
    from sklearn.dummy import DummyClassifier

    frame = training_set.holdout_frame()
    model = DummyClassifier(strategy="prior").fit(frame.drop(columns=[TARGET]), frame[TARGET])
    result = evaluate(model, frame, TARGET, "roc_auc_ovr", SLICE_COLUMN)
    assert result.score == pytest.approx(0.5)
    assert set(result.slices) == set(frame[SLICE_COLUMN].astype(str))
    bad = frame.assign(**{TARGET: frame[TARGET].replace("fail", "failed")})
    with pytest.raises(ValueError, match="failed"):
        evaluate(model, bad, TARGET, "roc_auc_ovr", SLICE_COLUMN)


def test_a_slice_of_one_class_has_no_score_and_no_metric() -> None:
    """ROC AUC is undefined on a slice holding one class (scikit-learn returns NaN with a warning):
    the slice is reported without a score, and no NaN reaches the metrics a model card serves."""
    import json
    import warnings

    from sklearn.dummy import DummyClassifier

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=120), "site": ["A"] * 60 + ["B"] * 60})
    frame["y"] = np.where(frame["site"] == "B", "pass", np.where(frame["x"] > 0, "pass", "fail"))
    model = DummyClassifier(strategy="prior").fit(frame.drop(columns=["y"]), frame["y"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = evaluate(model, frame, "y", "roc_auc", "site")
    assert result.slices["A"].score == pytest.approx(0.5)  # two classes: a score
    assert result.slices["B"].score is None and "undefined" in (result.slices["B"].note or "")
    metrics = result.mlflow_metrics()
    assert "holdout_roc_auc_A" in metrics and "holdout_roc_auc_B" not in metrics
    json.dumps(metrics, allow_nan=False)  # what a JSON answer of the served listing needs


# -- MLflow: nested runs, registry, gate, rollback ----------------------------------------------


def test_sweep_register_gate_rollback(training_set, mlflow_store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    client, experiment, storage = mlflow_store
    from tracseq_dagster.automl import prepare_study_storage

    prepare_study_storage(storage)
    registry = ModelRegistry(client, "sample_quality")
    settings = SweepSettings(time_budget_s=30, max_trials=4, cv_folds=3)

    def train(dagster_run_id: str, families: tuple[str, ...]) -> list:
        parent = parent_run(client, experiment, dagster_run_id)
        assert parent_run(client, experiment, dagster_run_id) == parent  # one parent per Dagster run
        outcomes = [
            sweep_one_family(
                training_set,
                f,
                settings,
                storage=storage,
                client=client,
                experiment_id=experiment,
                parent_run_id=parent,
                dagster_run_id=dagster_run_id,
            )
            for f in families
        ]
        ranked = rank_families(outcomes, training_set.fingerprint)
        register_winner(
            training_set,
            ranked[0],
            ranked,
            seed=0,
            storage=storage,
            registry=registry,
            experiment_id=experiment,
            parent_run_id=parent,
            dagster_run_id=dagster_run_id,
        )
        return ranked

    # First model: no champion yet, so the gate promotes a calibrated challenger.
    train("run-1", ("logistic", "lightgbm"))
    runs = client.search_runs([experiment], max_results=1000)
    by_role: dict[str, list] = {}
    for run in runs:
        by_role.setdefault(run.data.tags.get("tracseq.role"), []).append(run)
    parent_id = by_role["dagster_run"][0].info.run_id
    families = {r.data.tags["family"]: r.info.run_id for r in by_role["family"]}
    assert set(families) == {"logistic", "lightgbm"}
    assert all(r.data.tags["mlflow.parentRunId"] == parent_id for r in by_role["family"])
    assert len(by_role["trial"]) == 8
    for trial in by_role["trial"]:
        assert trial.data.tags["mlflow.parentRunId"] in families.values()
        assert trial.data.tags["dagster_run_id"] == "run-1"
        if trial.data.tags["trial_state"] == "complete":
            assert "cv_mean" in trial.data.metrics and trial.info.status == "FINISHED"
    history = client.get_metric_history(by_role["trial"][0].info.run_id, "fold_score")
    assert [m.step for m in history] == list(range(len(history))) and len(history) >= 1

    v1 = registry.version(CHALLENGER)
    assert v1 is not None and str(v1.version) == "1" and registry.version(CHAMPION) is None
    assert v1.tags["feature_code_version"] == training_set.feature_code_version
    assert v1.tags["export_hashes"] == "hash-a,hash-b"
    registered_run = client.get_run(v1.run_id)
    artifacts = {a.path for a in client.list_artifacts(v1.run_id, "plots")}
    assert {
        "plots/roc.png",
        "plots/confusion_matrix.png",
        "plots/feature_importance.png",
        "plots/optimization_history.png",
    } <= artifacts
    assert any(k.startswith("holdout_roc_auc_ovr_") for k in registered_run.data.metrics)  # per sample type
    with fluent_api(client):
        loaded = mlflow.sklearn.load_model("models:/sample_quality@challenger")
    assert set(loaded.predict(training_set.frame.drop(columns=[TARGET]).head(50))) <= {"pass", "borderline", "fail"}

    policy = GatePolicy(max_brier=0.8, max_ece=0.2)
    first = run_promotion_gate(
        training_set,
        policy,
        registry=registry,
        metric="roc_auc_ovr",
        experiment_id=experiment,
        parent_run_id=parent_id,
        dagster_run_id="run-1",
    )
    assert first.promoted and str(registry.version(CHAMPION).version) == "1"
    # The gate again on the same challenger: it already is the champion, nothing moves.
    again = run_promotion_gate(
        training_set,
        policy,
        registry=registry,
        metric="roc_auc_ovr",
        experiment_id=experiment,
        parent_run_id=parent_id,
        dagster_run_id="run-1",
    )
    assert not again.promoted and "already the champion" in again.decision.summary()

    # Second model: promoted only when it beats the champion on the same holdout by the margin.
    ranked_2 = train("run-2", ("logistic",))
    assert str(registry.version(CHALLENGER).version) == "2"
    strict = GatePolicy(min_improvement=1.0, max_brier=0.8, max_ece=0.2)  # no model gains a full AUC point
    rejected = run_promotion_gate(
        training_set,
        strict,
        registry=registry,
        metric="roc_auc_ovr",
        experiment_id=experiment,
        parent_run_id=parent_id,
        dagster_run_id="run-2",
    )
    assert not rejected.promoted and str(registry.version(CHAMPION).version) == "1"
    assert rejected.champion is not None and rejected.champion.rows == rejected.challenger.rows
    assert client.get_model_version("sample_quality", "2").tags["gate_decision"] == "reject"
    lenient = GatePolicy(min_improvement=-1.0, max_slice_regression=1.0, max_brier=0.8, max_ece=0.2)
    assert run_promotion_gate(
        training_set,
        lenient,
        registry=registry,
        metric="roc_auc_ovr",
        experiment_id=experiment,
        parent_run_id=parent_id,
        dagster_run_id="run-2",
    ).promoted
    assert str(registry.version(CHAMPION).version) == "2"

    # Re-registering under the same key (a re-executed run) adds no version.
    assert (
        str(
            registry.register(
                v1.source, run_id=v1.run_id, model_id=None, tags={}, registration_key=v1.tags["registration_key"]
            ).version
        )
        == "1"
    )
    assert len(registry.versions()) == 2
    # run-2 re-executed from failure: a new run id with run-2 as its root finds run-2's version.
    reexecuted = register_winner(
        training_set,
        ranked_2[0],
        ranked_2,
        seed=0,
        storage=storage,
        registry=registry,
        experiment_id=experiment,
        parent_run_id=parent_id,
        dagster_run_id="run-2-again",
        root_run_id="run-2",
    )
    assert reexecuted.version == "2" and len(registry.versions()) == 2

    # Rollback: back to 1; a second rollback has nowhere to go and says so.
    event = registry.rollback("bad predictions reported")
    assert (event.version, event.previous, str(registry.version(CHAMPION).version)) == ("1", "2", "1")
    with pytest.raises(RegistryError, match="no previous champion"):
        registry.rollback()
    assert [(e.action, e.version) for e in registry.history()] == [("promote", "1"), ("promote", "2"), ("rollback", "1")]


def test_rank_families_ignores_other_training_sets() -> None:
    from tracseq_dagster.training import FamilyOutcome

    def outcome(family: str, fingerprint: str, cv: float | None) -> FamilyOutcome:
        row = (
            None
            if cv is None
            else {
                "family": family,
                "best_trial": 0,
                "cv_mean": cv,
                "cv_std": 0.0,
                "fit_seconds": 1.0,
                "predict_latency_ms": 0.1,
                "trials": 1,
            }
        )
        return FamilyOutcome(family, fingerprint, "s", "roc_auc", True, 1, 1, 0, 0, 1.0, {}, row)

    ranked = rank_families(
        [outcome("a", "new", 0.7), outcome("b", "old", 0.9), outcome("c", "new", 0.8), outcome("d", "new", None)], "new"
    )
    assert [o.family for o in ranked] == ["c", "a"]
    with pytest.raises(AutoMLInputError, match="materialize automl_trials"):
        rank_families([outcome("b", "old", 0.9)], "new")


def test_model_cli_history_and_rollback(mlflow_store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    client, _, _ = mlflow_store
    monkeypatch.setenv("MLFLOW_TRACKING_URI", client.tracking_uri)
    runner = CliRunner()
    missing = runner.invoke(app, ["model", "history", "--model", "sample_quality"])
    assert missing.exit_code == 2 and "no registered model 'sample_quality'" in missing.output
    assert "Traceback" not in missing.output
    unknown = runner.invoke(app, ["model", "history", "--model", "nope"], terminal_width=300)
    flat = " ".join(unknown.output.replace("│", " ").split())  # the usage error is boxed and wrapped
    assert (
        unknown.exit_code == 2
        and "no model 'nope' in the catalog; it has freezer_excursion_risk, sample_quality, sequencing_success" in flat
    )
    untrained = runner.invoke(app, ["models"])
    assert untrained.exit_code == 0 and "sample_quality" in untrained.output and "none" in untrained.output


def test_sqlite_paths_follow_sqlalchemy() -> None:
    from tracseq_dagster.sqlite_lock import sqlite_path

    assert sqlite_path("sqlite:////tmp/a/mlflow.db") == Path("/tmp/a/mlflow.db")
    assert sqlite_path("sqlite:///mlflow.db") == Path("mlflow.db")
    assert sqlite_path("sqlite:///:memory:") is None and sqlite_path("postgresql://h/db") is None
    assert sqlite_path("http://127.0.0.1:5000") is None
