"""The model catalog: declarations, the two run-based models' point-in-time rows, that each
learns the documented hidden process and beats its naive baseline, the turnaround interval's
coverage, and a throwaway catalog entry trained, registered and served with no other code change."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
import requests
from processes import free_port, stop, wait_until_ready

from tracseq_dagster.automl import ALL_FAMILIES, fit_final, prepare_problem, sweep_family
from tracseq_dagster.evaluation import evaluate
from tracseq_dagster.generator import generate_exports, generate_samples
from tracseq_dagster.lake import Lake
from tracseq_dagster.models import HOLDOUT_GROUP, ModelSpec, catalog, get_model, sequencing_success, turnaround_hours
from tracseq_dagster.models.catalog import EXTRA_MODULES_VARIABLE, UnknownModelError
from tracseq_dagster.registry import CHAMPION, ModelRegistry
from tracseq_dagster.run_generator import generate_runs
from tracseq_dagster.tracking import open_client
from tracseq_dagster.training import SweepSettings, automl_config
from tracseq_dagster.training_set import TrainingSet, build_training_set

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(scope="module")
def lab() -> tuple[pd.DataFrame, pd.DataFrame]:
    samples = generate_samples(5000, seed=21)
    return samples, generate_runs(samples, seed=21)


def test_the_catalog_declares_three_models_with_what_the_machinery_needs() -> None:
    models = catalog()
    assert list(models) == ["freezer_excursion_risk", "sample_quality", "sequencing_success", "turnaround_hours"]
    for spec in models.values():
        assert spec.label not in spec.features and spec.slice_column in spec.features
        assert spec.swept_families() and spec.sources and spec.label_known_at and spec.predicted_at
        assert spec.summary()["name"] == spec.name
    assert (get_model("sequencing_success").task, get_model("turnaround_hours").task) == ("binary", "regression")
    with pytest.raises(
        UnknownModelError,
        match="no model 'nope' in the catalog; it has freezer_excursion_risk, sample_quality, sequencing_success",
    ):
        get_model("nope")


def test_a_declaration_is_checked_when_it_is_made() -> None:
    def rows(lake):  # type: ignore[no-untyped-def]
        raise AssertionError("never read")

    with pytest.raises(ValueError, match="identifier"):
        ModelSpec("run-success", "", "y", "", ("id",), "", ("x",), rows)
    with pytest.raises(ValueError, match="the label y is also listed as a feature"):
        ModelSpec("m", "", "y", "", ("id",), "", ("x", "y"), rows)
    with pytest.raises(ValueError, match="slice column z is not a feature"):
        ModelSpec("m", "", "y", "", ("id",), "", ("x",), rows, slice_column="z")
    with pytest.raises(ValueError, match="families must be among"):
        ModelSpec("m", "", "y", "", ("id",), "", ("x",), rows, families=("catboost",)).swept_families()


def test_sequencing_success_rows_never_see_an_outcome_known_after_their_prep(lab) -> None:  # type: ignore[no-untyped-def]
    samples, runs = lab
    cutoff = runs["library_prep_ts"].quantile(0.6)
    # Rewrite every outcome known at or after the cutoff: statuses flipped, metrics changed.
    later = runs["run_end_ts"].isna() | (runs["run_end_ts"] >= cutoff)
    rewritten = runs.copy()
    rewritten.loc[later, "run_status"] = rewritten.loc[later, "run_status"].map({"pass": "fail", "fail": "pass"})
    rewritten.loc[later, "q30_pct"] = 1.0
    before = sequencing_success.labelled_rows_from_exports(samples, runs)
    after = sequencing_success.labelled_rows_from_exports(samples, rewritten)
    early = runs.set_index(runs["run_id"].astype(str) + "/" + runs["sample_id"].astype(str))["library_prep_ts"] < cutoff
    rows = before.index[early.reindex(before.index).to_numpy()]
    assert len(rows) > 1000
    features = list(sequencing_success.MODEL.features)
    pd.testing.assert_frame_equal(before.loc[rows, features], after.loc[rows, features])
    assert (before[HOLDOUT_GROUP] == before.index.str.split("/").str[1]).all()  # a sample's runs are held out together


def test_turnaround_rows_never_see_a_run_that_ended_after_receipt(lab) -> None:  # type: ignore[no-untyped-def]
    samples, runs = lab
    cutoff = samples["received_ts"].quantile(0.6)
    later = runs["run_end_ts"] >= cutoff
    rewritten = runs.assign(run_end_ts=runs["run_end_ts"].where(~later, runs["run_end_ts"] + pd.Timedelta(hours=500)))
    before = turnaround_hours.labelled_rows_from_exports(samples, runs)
    after = turnaround_hours.labelled_rows_from_exports(samples, rewritten)
    received = samples.set_index("sample_id")["received_ts"]
    rows = before.index[(received.reindex(before.index) < cutoff).to_numpy()].intersection(after.index)
    assert len(rows) > 1000
    features = list(turnaround_hours.MODEL.features)
    pd.testing.assert_frame_equal(before.loc[rows, features], after.loc[rows, features])
    # ...while the labels that the rewrite touched did change: the test could fail.
    assert not before[turnaround_hours.MODEL.label].equals(after[turnaround_hours.MODEL.label].reindex(before.index))


def _holdout_model(training_set: TrainingSet, family: str):  # type: ignore[no-untyped-def]
    config = automl_config(SweepSettings(time_budget_s=20, max_trials=4, cv_folds=3), family=family, storage=None,
                           training_set=training_set)  # fmt: skip
    problem = prepare_problem(training_set.frame, config, holdout=training_set.holdout)
    sweep = sweep_family(problem, family, config)
    model, _ = fit_final(problem, family, dict(sweep.best.params), 0)
    return model, problem.metric.name


def test_sequencing_success_learns_the_hidden_failure_process(lab) -> None:  # type: ignore[no-untyped-def]
    """AUC on the stable holdout at least 0.70, where the base rate (a constant) scores 0.5."""
    spec = sequencing_success.MODEL
    training_set = build_training_set(spec, sequencing_success.labelled_rows_from_exports(*lab))
    model, metric = _holdout_model(training_set, "logistic")
    evaluation = evaluate(model, training_set.holdout_frame(), spec.label, metric, spec.slice_column)
    assert metric == "roc_auc" and evaluation.score >= 0.70, evaluation.score
    assert evaluation.ece is not None and evaluation.ece <= spec.gate.max_ece
    # The documented bad instrument and kits show in what the model learned to expect.
    holdout = training_set.holdout_frame()
    p_pass = model.predict_proba(holdout.drop(columns=[spec.label]))[:, list(model.classes_).index("pass")]
    by_risk = pd.Series(p_pass).groupby(pd.qcut(holdout["quality_risk_score"].to_numpy(), 4, labels=False)).mean()
    assert by_risk.is_monotonic_decreasing, by_risk


def test_turnaround_beats_the_median_per_priority_and_its_interval_covers(lab) -> None:  # type: ignore[no-untyped-def]
    """MAE at most 0.8 x that of the training median per priority; the 90 % interval holds 85-95 % of the truth."""
    spec = turnaround_hours.MODEL
    training_set = build_training_set(spec, turnaround_hours.labelled_rows_from_exports(*lab))
    model, metric = _holdout_model(training_set, "lightgbm")
    holdout, train = training_set.holdout_frame(), training_set.frame[~training_set.holdout]
    evaluation = evaluate(model, holdout, spec.label, metric, spec.slice_column)
    medians = train.groupby("priority", observed=True)[spec.label].median()
    baseline = float(np.abs(holdout[spec.label] - holdout["priority"].map(medians).astype(float)).mean())
    assert metric == "mae" and evaluation.score <= 0.8 * baseline, (evaluation.score, baseline)

    predicted = model.predict(holdout.drop(columns=[spec.label]))
    actual = holdout[spec.label].to_numpy()
    calibrate = np.arange(len(holdout)) % 2 == 0
    width = turnaround_hours.conformal_half_width(actual[calibrate], predicted[calibrate])
    inside = np.abs(actual[~calibrate] - predicted[~calibrate]) <= width
    assert 0.85 <= inside.mean() <= 0.95, (inside.mean(), width)
    with pytest.raises(ValueError, match="calibration rows"):
        turnaround_hours.conformal_half_width(np.array([]), np.array([]))


def readme_example_model() -> str:
    """The module of README's "How to add a model", as a reader would copy it: the throwaway entry."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    start = readme.index('```python\n"""extraction_delay_hours') + len("```python\n")
    return readme[start : readme.index("```", start)]


def test_the_readme_example_declaration_sweeps_every_family_of_the_engine() -> None:
    """``families=None`` as the README writes it: the end-to-end test below sweeps one family only (time)."""
    namespace: dict = {}
    exec(compile(readme_example_model(), "extraction_delay_hours.py", "exec"), namespace)  # noqa: S102 - our own README
    spec = namespace["MODEL"]
    assert spec.name == "extraction_delay_hours" and spec.swept_families() == ALL_FAMILIES


@pytest.mark.slow
def test_the_readme_example_model_is_trained_registered_and_served_without_other_code(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "extraction_delay_hours.py").write_text(readme_example_model())
    data = tmp_path / "data"
    env = {
        **os.environ, "TRACSEQ_DATA_DIR": str(data), EXTRA_MODULES_VARIABLE: "extraction_delay_hours",
        "PYTHONPATH": os.pathsep.join([str(tmp_path / "models"), os.environ.get("PYTHONPATH", "")]), "COLUMNS": "200",
    }  # fmt: skip
    for name in ("DAGSTER_HOME", "MLFLOW_TRACKING_URI"):
        env.pop(name, None)
    tracseq = [sys.executable, "-m", "tracseq_dagster.cli"]

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*tracseq, *args], env=env, capture_output=True, text=True, timeout=600)

    generate_exports(1500, "csv", data / "landing", seed=4)  # in-process: what the catalog reads is what matters here
    assert run("ingest", str(data / "landing")).returncode == 0
    # One family: each family's sweep is a Dagster run of its own, and sweeping all six (the
    # declaration's default, asserted above) would add a minute and prove nothing more here.
    trained = run("train", "--model", "extraction_delay_hours", "--families", "lightgbm", "--budget-s", "8", "--cv-folds", "2",
                  "--max-trials", "3")  # fmt: skip
    assert trained.returncode == 0, trained.stdout + trained.stderr
    assert (
        "automl_trials[extraction_delay_hours|lightgbm]" in trained.stdout
        and "extraction_delay_hours promotion gate: promoted" in trained.stdout
    )
    registry = ModelRegistry(open_client(f"sqlite:///{data / 'mlflow' / 'mlflow.db'}"), "extraction_delay_hours")
    champion = registry.version(CHAMPION)
    assert champion is not None and champion.tags["model"] == "extraction_delay_hours" and champion.tags["metric"] == "mae"
    listed = run("models")
    assert listed.returncode == 0 and "extraction_delay_hours" in listed.stdout, listed.stdout + listed.stderr

    # ...and served by the one Bento, with no serving code: the declaration's defaults do it all.
    env["BENTOML_HOME"] = str(tmp_path / "bentoml")
    built = run("bento", "build")
    assert built.returncode == 0, built.stdout + built.stderr
    assert "serving extraction_delay_hours" in built.stdout and "not served: sample_quality" in built.stdout, built.stdout
    tag = re.search(r"built (tracseq_predictions:\S+)", built.stdout).group(1)  # type: ignore[union-attr]
    port = free_port()
    log = tmp_path / "serve.log"
    server = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "bentoml"), "serve", tag, "--host", "127.0.0.1",
                               "--port", str(port)], env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)  # fmt: skip
    try:
        wait_until_ready(server, f"http://127.0.0.1:{port}/readyz", log, timeout_s=240)
        lake = Lake(data / "lake")
        record = json.loads(
            lake.read_validated().drop(columns=["qc_status"]).tail(1).to_json(orient="records", date_format="iso")
        )[0]
        answer = requests.post(f"http://127.0.0.1:{port}/models/extraction_delay_hours/predict", json=record, timeout=60)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["model"]["name"] == "extraction_delay_hours" and body["interval"]["coverage"] == 0.9
        assert body["interval"]["high"] == pytest.approx(body["prediction"] + body["interval"]["half_width"])
        assert [m["name"] for m in requests.get(f"http://127.0.0.1:{port}/models", timeout=30).json()["models"]] == [
            "extraction_delay_hours"
        ]
        bad = requests.post(
            f"http://127.0.0.1:{port}/models/extraction_delay_hours/predict", json={**record, "volume_ul": -1}, timeout=30
        )
        assert bad.status_code == 400 and bad.json()["detail"][0]["loc"][-1] == "volume_ul"
        assert (
            requests.post(f"http://127.0.0.1:{port}/predict", json=record, timeout=30).status_code == 404
        )  # no sample_quality champion
    finally:
        stop(server)


def test_each_run_model_has_its_own_registry_and_gate(lab, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Registered per model (own name, aliases, tags); the gate scores its declared slices
    (instruments for sequencing_success, priorities for turnaround_hours) and promotes."""
    from tracseq_dagster.automl import prepare_study_storage
    from tracseq_dagster.tracking import ensure_experiment, parent_run
    from tracseq_dagster.training import rank_families, register_winner, run_promotion_gate, sweep_one_family

    client = open_client(f"sqlite:///{tmp_path / 'mlflow.db'}")
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    prepare_study_storage(storage)
    settings = SweepSettings(time_budget_s=15, max_trials=2, cv_folds=2)
    for module, family, slices in ((sequencing_success, "logistic", "SEQ-01"), (turnaround_hours, "lightgbm", "urgent")):
        spec = module.MODEL
        training_set = build_training_set(spec, module.labelled_rows_from_exports(*lab))
        experiment = ensure_experiment(client, spec.name, (tmp_path / "artifacts").as_uri())
        parent = parent_run(client, experiment, f"run-{spec.name}")
        outcome = sweep_one_family(training_set, family, settings, storage=storage, client=client, experiment_id=experiment,
                                   parent_run_id=parent, dagster_run_id=f"run-{spec.name}")  # fmt: skip
        assert outcome.study_name.startswith(f"{spec.name}-") and outcome.metric == spec.metric
        registry = ModelRegistry(client, spec.name)
        ranked = rank_families([outcome], training_set.fingerprint)
        registered = register_winner(training_set, ranked[0], ranked, seed=0, storage=storage, registry=registry,
                                     experiment_id=experiment, parent_run_id=parent, dagster_run_id=f"run-{spec.name}")  # fmt: skip
        assert slices in registered.evaluation["slices"]
        gate = run_promotion_gate(training_set, spec.gate, registry=registry, metric=spec.metric, experiment_id=experiment,
                                  parent_run_id=parent, dagster_run_id=f"run-{spec.name}")  # fmt: skip
        assert gate.promoted, gate.decision.reasons
        champion = registry.version(CHAMPION)
        assert champion.tags["model"] == spec.name and champion.tags["metric"] == spec.metric
    assert {m.name for m in client.search_registered_models()} == {"sequencing_success", "turnaround_hours"}
