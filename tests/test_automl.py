"""The AutoML engine: task detection, the six families, the sweep, its budget, bad input, the CLI."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.metrics import roc_auc_score, root_mean_squared_error
from sklearn.pipeline import Pipeline
from typer.testing import CliRunner

from tracseq_dagster.automl import (
    ALL_FAMILIES,
    FAMILIES,
    AutoMLConfig,
    AutoMLInputError,
    ModelFamily,
    detect_task,
    prepare_features,
    resolve_metric,
    run_automl,
)
from tracseq_dagster.automl.tasks import TaskType
from tracseq_dagster.cli import app

optuna.logging.set_verbosity(optuna.logging.WARNING)


def mixed_frame(rows: int = 240, seed: int = 0) -> pd.DataFrame:
    """Numeric (with nulls), categorical (with nulls), boolean, datetime, id and constant columns.

    ``qc_status`` is an imbalanced three-class label and ``yield_ng`` a regression target, both
    driven by ``concentration``, ``kit`` and ``rerun`` so that there is something to learn.
    """
    rng = np.random.default_rng(seed)
    concentration = rng.normal(50, 15, rows)
    kit = rng.choice(["A", "B", "C", "D"], rows)
    rerun = rng.random(rows) < 0.3
    signal = concentration / 15 + np.where(kit == "D", -1.5, 0.0) - rerun + rng.normal(0, 0.5, rows)
    qc = np.where(signal > 2.6, "pass", np.where(signal > 1.6, "borderline", "fail"))
    frame = pd.DataFrame(
        {
            "sample_id": [f"S{i:05d}" for i in range(rows)],
            "concentration": concentration,
            "volume_ul": pd.array(rng.integers(10, 100, rows), dtype="Int64"),
            "kit": pd.Series(kit, dtype="string"),
            "site": pd.Categorical(rng.choice(["north", "south"], rows)),
            "rerun": rerun,
            "received_ts": pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(rng.integers(0, 300, rows), unit="D"),
            "lab": "main",
            "empty": np.nan,
            "qc_status": qc,
            "yield_ng": signal * 100 + rng.normal(0, 10, rows),
        }
    )
    frame.loc[rng.random(rows) < 0.1, "concentration"] = np.nan
    frame.loc[rng.random(rows) < 0.1, "kit"] = pd.NA
    return frame


@pytest.fixture(scope="module")
def breast_cancer() -> pd.DataFrame:
    return load_breast_cancer(as_frame=True).frame


# -- tasks and metrics ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([0, 1, 1, 0, 1], "binary"),
        (["pass", "fail", "pass", None], "binary"),
        ([True, False, True], "binary"),
        (["pass", "borderline", "fail", "pass"], "multiclass"),
        (pd.Categorical(["a", "b", "c", "a"]), "multiclass"),
        ([0, 1, 2, 2, 1, 0], "multiclass"),
        ([0.5, 1.25, 3.0, 2.2], "regression"),
        (list(range(25, 125)), "regression"),  # whole numbers, but too many values for classes
    ],
)
def test_detect_task(values: object, expected: TaskType) -> None:
    assert detect_task(pd.Series(values)) == expected


def test_metric_defaults_and_overrides() -> None:
    assert resolve_metric("binary", None).name == "roc_auc"
    assert resolve_metric("multiclass", None).name == "roc_auc_ovr"
    regression = resolve_metric("regression", None)
    assert (regression.name, regression.greater_is_better) == ("rmse", False)
    assert resolve_metric("multiclass", "balanced_log_loss").greater_is_better is False
    with pytest.raises(ValueError, match="does not fit"):
        resolve_metric("regression", "roc_auc")
    with pytest.raises(KeyError, match="unknown metric"):
        resolve_metric("binary", "f2")


def test_feature_rules_drop_ids_constants_and_convert_types() -> None:
    frame = mixed_frame()
    frame["notes"] = [f"free text {i}" for i in range(len(frame))]
    features, columns = prepare_features(frame, "qc_status")
    assert set(columns.dropped) == {"sample_id", "notes", "lab", "empty"}
    assert "qc_status" not in features and "yield_ng" in columns.numeric
    assert set(columns.categorical) == {"kit", "site"}
    assert features["rerun"].dtype == "float64" and features["received_ts"].dtype == "float64"
    assert features["received_ts"].min() == pytest.approx((pd.Timestamp("2026-01-01") - pd.Timestamp("1970-01-01")).days)
    assert features["kit"].isna().sum() == frame["kit"].isna().sum()


# -- families ------------------------------------------------------------------------------------


@pytest.mark.parametrize("task", ["multiclass", "regression"])
@pytest.mark.parametrize("name", ALL_FAMILIES)
@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::sklearn.exceptions.ConvergenceWarning")  # MLP on 120 rows
def test_each_family_fits_and_predicts_mixed_frame(name: str, task: TaskType) -> None:
    frame = mixed_frame(rows=160)
    target = "qc_status" if task == "multiclass" else "yield_ng"
    _, columns = prepare_features(frame.drop(columns=["yield_ng" if task == "multiclass" else "qc_status"]), target)
    features = frame[columns.all]  # raw dtypes (string, Int64, bool, datetime): the pipeline converts them
    y = pd.factorize(frame[target], sort=True)[0] if task == "multiclass" else frame[target].to_numpy()
    family = FAMILIES[name]
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1)).ask()
    params = family.suggest(trial, task)
    pipeline = family.build(params, task, columns, seed=0, balance=True)
    pipeline.fit(features.iloc[:120], y[:120], **family.fit_params(y[:120], task, balance=True))
    unseen = features.iloc[120:].copy()
    unseen.loc[unseen.index[0], "kit"] = "Z"  # a kit never seen in training must not break prediction
    if task == "multiclass":
        proba = pipeline.predict_proba(unseen)
        assert proba.shape == (40, 3)
        np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    else:
        predicted = pipeline.predict(unseen)
        assert predicted.shape == (40,) and np.isfinite(predicted).all()


# -- the engine learns ---------------------------------------------------------------------------


def test_breast_cancer_learns_within_the_time_budget(breast_cancer: pd.DataFrame) -> None:
    seen: list[str] = []
    result = run_automl(breast_cancer, AutoMLConfig(target="target", time_budget_s=8.0), on_trial=lambda r: seen.append(r.family))
    # The budget covers sweep, refit and holdout scoring, all measured inside the engine. Its exact
    # bound (5% over) is tested on a fake clock (test_automl_budget.py); on the real clock of a
    # shared machine only a loose one.
    assert 0 < result.wall_seconds <= 8.0 * 2
    assert (result.task, result.metric, result.greater_is_better) == ("binary", "roc_auc", True)
    assert result.holdout_score > 0.95
    assert result.holdout_size == 114
    assert len(seen) == len(result.trials) and set(seen) >= {"logistic"}
    scores = [row.cv_mean for row in result.leaderboard]
    assert scores == sorted(scores, reverse=True)
    assert result.best_family in (result.leaderboard[0].family, "ensemble")  # no runner-up: every row was swept
    assert all(row.predict_latency_ms > 0 and row.fit_seconds > 0 for row in result.leaderboard)
    # The returned model is the refit winner, usable on new rows with the original labels.
    proba = result.model.predict_proba(breast_cancer.drop(columns="target"))[:, 1]
    assert roc_auc_score(breast_cancer["target"], proba) > 0.95
    assert set(result.model.predict(breast_cancer.head(20))) <= {0, 1}


def test_diabetes_regression_beats_predicting_the_mean() -> None:
    frame = load_diabetes(as_frame=True).frame
    config = AutoMLConfig(target="target", families=("logistic", "lightgbm"), max_trials=6, time_budget_s=60)
    result = run_automl(frame, config)
    assert (result.task, result.metric, result.greater_is_better) == ("regression", "rmse", False)
    mean_rmse = root_mean_squared_error(frame["target"], np.full(len(frame), frame["target"].mean()))
    assert result.holdout_score < 0.85 * mean_rmse
    assert result.leaderboard[0].cv_mean <= result.leaderboard[-1].cv_mean  # lower is better, best first


def test_string_labels_multiclass_and_same_seed_same_trials() -> None:
    frame = mixed_frame()
    config = AutoMLConfig(
        target="qc_status", families=("logistic", "xgboost", "mlp"), max_trials=5, cv_folds=3, time_budget_s=120
    )
    first, second = run_automl(frame, config), run_automl(frame, config)
    assert first.task == "multiclass" and first.metric == "roc_auc_ovr"
    assert first.classes == ["borderline", "fail", "pass"]
    assert set(first.model.predict(frame.head(30))) <= {"pass", "borderline", "fail"}
    assert first.holdout_score > 0.8

    def trials(result: object) -> list[tuple[object, ...]]:
        return [(t.family, t.number, t.params, t.state, t.fold_scores) for t in result.trials]  # type: ignore[attr-defined]

    assert len(first.trials) == 15
    assert trials(first) == trials(second)
    assert (first.best_family, first.best_params) == (second.best_family, second.best_params)
    assert first.holdout_score == second.holdout_score


def test_losing_trials_are_pruned_between_folds(breast_cancer: pd.DataFrame) -> None:
    config = AutoMLConfig(target="target", families=("logistic",), max_trials=30, time_budget_s=120)
    result = run_automl(breast_cancer, config)
    pruned = [t for t in result.trials if t.state == "pruned"]
    assert pruned, "a 30-trial search should prune some trials"
    assert all(0 < len(t.fold_scores) < 5 for t in pruned)
    assert all(len(t.fold_scores) == 5 for t in result.trials if t.state == "complete")


def test_rdb_storage_persists_trials(breast_cancer: pd.DataFrame, tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path}/optuna.db"
    config = AutoMLConfig(
        target="target", families=("logistic",), max_trials=3, storage=storage, study_name="bc", time_budget_s=60
    )
    result = run_automl(breast_cancer, config)
    study = optuna.load_study(study_name="bc-logistic", storage=storage)
    assert result.study_names == {"logistic": "bc-logistic"}
    assert len(study.trials) == 3
    assert [t.params for t in study.trials] == [t.params for t in result.trials]
    assert len(study.best_trial.user_attrs["fold_scores"]) == 5
    # Resumed on the same study, the sweep adds trials at new points instead of repeating them.
    again = run_automl(breast_cancer, config)
    assert len(optuna.load_study(study_name="bc-logistic", storage=storage).trials) == 6
    assert [t.params for t in again.trials] != [t.params for t in result.trials]


# -- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.drop(columns="qc_status"), "target column 'qc_status' is missing"),
        (lambda f: f.assign(qc_status="pass"), "is constant"),
        (lambda f: f.assign(qc_status=pd.NA), "is all null"),
        (lambda f: f.assign(qc_status=["fail"] + ["pass"] * (len(f) - 1)), "single member"),
        (lambda f: f[["sample_id", "lab", "empty", "qc_status"]], "no usable feature columns"),
    ],
    ids=["missing", "constant", "all-null", "single-member-class", "no-features"],
)
def test_bad_input_is_named(change: object, message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from tracseq_dagster.automl import engine

    frame = change(mixed_frame(rows=60))  # type: ignore[operator]
    swept: list[str] = []
    monkeypatch.setattr(engine.FamilySweep, "run", lambda sweep, share_s: swept.append(sweep.family))
    with pytest.raises(AutoMLInputError, match=message):
        run_automl(frame, AutoMLConfig(target="qc_status", time_budget_s=30))
    assert swept == []  # found before any sweeping


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (AutoMLConfig(target="qc_status", time_budget_s=0.5), "too small for even one trial"),
        (AutoMLConfig(target="qc_status", families=("svm",)), "unknown model families svm"),
        (AutoMLConfig(target="qc_status", metric="rmse"), "does not fit a multiclass task"),
        (AutoMLConfig(target="qc_status", task="regression"), "not numeric"),
    ],
)
def test_bad_config_is_named(config: AutoMLConfig, message: str) -> None:
    with pytest.raises(AutoMLInputError, match=message):
        run_automl(mixed_frame(rows=60), config)


def test_null_target_rows_are_dropped_not_fatal() -> None:
    frame = mixed_frame(rows=200)
    frame.loc[frame.index[:50], "qc_status"] = None
    result = run_automl(frame, AutoMLConfig(target="qc_status", families=("logistic",), max_trials=2, time_budget_s=30))
    assert result.holdout_size == 30  # 20% of the 150 labelled rows


class _Sleepy(ClassifierMixin, BaseEstimator):
    """A classifier whose every fit outlasts the budget."""

    def fit(self, X: object, y: np.ndarray) -> _Sleepy:
        time.sleep(0.8)
        self.classes_ = np.unique(y)
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        return np.full((len(X), len(self.classes_)), 1 / len(self.classes_))


class _Broken(_Sleepy):
    """A classifier that cannot be fitted at all."""

    def fit(self, X: object, y: np.ndarray) -> _Broken:
        raise np.linalg.LinAlgError("singular matrix")


class _FakeFamily(ModelFamily):
    name = "logistic"

    def __init__(self, estimator: type[BaseEstimator]) -> None:
        self.estimator = estimator

    def suggest(self, trial: optuna.Trial, task: TaskType) -> dict[str, object]:
        return {"C": trial.suggest_float("C", 0.1, 1.0)}

    def build(self, params: dict[str, object], task: TaskType, columns: object, *, seed: int, balance: bool) -> Pipeline:
        return Pipeline([("model", self.estimator())])


def test_budget_that_no_trial_can_finish_in_is_an_input_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(FAMILIES, "logistic", _FakeFamily(_Sleepy))
    with pytest.raises(AutoMLInputError, match="too small: no trial completed"):
        run_automl(mixed_frame(rows=60), AutoMLConfig(target="qc_status", families=("logistic",), time_budget_s=2.0))
    # That it ends within the budget is tested on a fake clock (test_automl_budget.py).


def test_estimator_errors_are_failed_trials_with_their_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(FAMILIES, "logistic", _FakeFamily(_Broken))
    records: list[object] = []
    config = AutoMLConfig(target="qc_status", families=("logistic",), max_trials=3, time_budget_s=30)
    with pytest.raises(AutoMLInputError, match="every trial failed; the first with LinAlgError: singular matrix"):
        run_automl(mixed_frame(rows=60), config, on_trial=records.append)
    assert [r.state for r in records] == ["failed"] * 3  # type: ignore[attr-defined]


# -- CLI -----------------------------------------------------------------------------------------


def test_cli_prints_leaderboard_and_holdout(breast_cancer: pd.DataFrame, tmp_path: Path) -> None:
    csv = tmp_path / "bc.csv"
    breast_cancer.to_csv(csv, index=False)
    args = ["automl", "--csv", str(csv), "--target", "target", "--budget-s", "20", "--max-trials", "3"]
    result = CliRunner().invoke(app, [*args, "--families", "logistic,lightgbm", "--seed", "1"])
    assert result.exit_code == 0, result.output
    assert "logistic" in result.output and "lightgbm" in result.output
    assert "holdout roc_auc" in result.output
    assert "trials scored by 5-fold of 455 training rows" in result.output
    one_split = CliRunner().invoke(app, [*args, "--families", "logistic", "--validation", "holdout"])
    assert one_split.exit_code == 0 and "trials scored by holdout 20% of 455" in one_split.output, one_split.output
    assert " score " in one_split.output and "CV mean" not in one_split.output  # one split: not a CV mean
    overridden = CliRunner().invoke(app, [*args, "--families", "logistic", "--metric", "log_loss"])
    assert overridden.exit_code == 0 and "log_loss (lower is better)" in overridden.output, overridden.output
    wrong = CliRunner().invoke(app, [*args, "--metric", "rmse"])
    assert wrong.exit_code == 2 and "does not fit a binary task" in wrong.output


def test_cli_bad_input_is_one_line_and_exit_2(breast_cancer: pd.DataFrame, tmp_path: Path) -> None:
    csv = tmp_path / "bc.csv"
    breast_cancer.to_csv(csv, index=False)
    result = CliRunner().invoke(app, ["automl", "--csv", str(csv), "--target", "qc_status"])
    assert result.exit_code == 2
    assert "target column 'qc_status' is missing" in result.output
    assert "Traceback" not in result.output and not isinstance(result.exception, AutoMLInputError)


def test_sweep_sample_caps_trial_rows_but_not_the_refit(breast_cancer: pd.DataFrame) -> None:
    from tracseq_dagster.automl import prepare_problem

    problem = prepare_problem(breast_cancer, AutoMLConfig(target="target", max_sweep_rows=200, cv_folds=4))
    assert len(problem.y_sweep) == 200 and len(problem.y_train) == 455
    assert max(max(train.max(), valid.max()) for train, valid in problem.folds) < 200
    # Stratified: the class balance of the sample follows the training rows.
    assert abs(problem.y_sweep.mean() - problem.y_train.mean()) < 0.02
    result = run_automl(
        breast_cancer, AutoMLConfig(target="target", families=("logistic",), max_trials=3, max_sweep_rows=200, time_budget_s=30)
    )
    assert result.holdout_score > 0.95
    with pytest.raises(AutoMLInputError, match="max_sweep_rows must be at least 50"):
        run_automl(breast_cancer, AutoMLConfig(target="target", max_sweep_rows=10))


def test_final_fit_all_refits_on_holdout_rows_too(breast_cancer: pd.DataFrame) -> None:
    base = AutoMLConfig(target="target", families=("logistic",), max_trials=3, time_budget_s=30)
    train_only = run_automl(breast_cancer, base)
    from dataclasses import replace

    everything = run_automl(breast_cancer, replace(base, final_fit="all"))
    # Same sweep, same winner, same holdout score; the returned model saw 114 more rows.
    assert everything.best_params == train_only.best_params
    assert everything.holdout_score == pytest.approx(train_only.holdout_score)
    x = breast_cancer.drop(columns="target")
    assert not np.allclose(everything.model.predict_proba(x), train_only.model.predict_proba(x))
    with pytest.raises(AutoMLInputError, match="final_fit must be train or all"):
        run_automl(breast_cancer, replace(base, final_fit="most"))  # type: ignore[arg-type]


def test_class_weighting_is_tuned_on_imbalanced_labels() -> None:
    cancer = load_breast_cancer(as_frame=True).frame
    frame = pd.concat([cancer[cancer.target == 1], cancer[cancer.target == 0].head(60)])  # 357 : 60
    result = run_automl(frame, AutoMLConfig(target="target", families=("logistic",), max_trials=12, time_budget_s=60))
    tried = {t.params.get("balance_classes") for t in result.trials}
    assert tried == {False, True}  # both offered to the sampler
    assert "balance_classes" in result.best_params
    balanced = run_automl(
        load_breast_cancer(as_frame=True).frame, AutoMLConfig(target="target", families=("logistic",), max_trials=3)
    )
    assert all("balance_classes" not in t.params for t in balanced.trials)  # 1.7:1 is not imbalanced
