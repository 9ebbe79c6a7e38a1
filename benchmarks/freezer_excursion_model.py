"""freezer_excursion_risk on generated data with the hidden excursion process: AUC on held-out later days.

For each seed: generate a year of samples (``generate_samples``), build the model's labelled
freezer days (:func:`labelled_rows_from_samples`), train each of the model's families with the
project's AutoML engine at default hyperparameters on the days before ``--cutoff`` and score the
days from it on. Two AUCs per model:

* ``observed``: against the label the model is trained on (an excursion *recorded* by a sample
  stay that starts after the day and ends within 30 days), which is what the lab can check;
* ``hidden``: against the truth of the hidden process (the unit had an excursion in the 30 days
  after the day, from :func:`~tracseq_dagster.operations.freezer_process.simulate_excursions`
  with the generator's seed and the samples' intake: the same events the samples recorded).

References: the history rule of the placement recommender (``1 - exp(-30 λ)`` from the all-time
rate per sample-day) and the oracle (the hidden process's mean hazard over the next 30 days,
which no model can see). CPU time of each fit, since the machine is shared.

    .venv/bin/python benchmarks/freezer_excursion_model.py [--rows 10000] [--seeds 3 5 7] [--cutoff 2025-09-01]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from tracseq_dagster.automl import fit_final, prepare_problem
from tracseq_dagster.generator import generate_samples
from tracseq_dagster.models import get_model
from tracseq_dagster.models.freezer_excursion_risk import EXCURSION, FEATURES, LABEL, QUIET, labelled_rows_from_samples
from tracseq_dagster.operations.freezer_history import located_samples
from tracseq_dagster.operations.freezer_process import REFERENCE, hazard, simulate_excursions
from tracseq_dagster.training import SweepSettings, automl_config
from tracseq_dagster.training_set import build_training_set

HORIZON = 30


def hidden_truth(samples: pd.DataFrame, keys: pd.Index, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Per freezer day: whether the unit truly had an excursion in the next 30 days, and its mean hazard then."""
    located, _ = located_samples(samples)
    received = pd.to_datetime(located["received_ts"], utc=True)
    intake = (
        pd.DataFrame({"freezer_id": located["freezer_id"].to_numpy(), "day": received.dt.floor("D").to_numpy(), "samples": 1})
        .groupby(["freezer_id", "day"], as_index=False)["samples"]
        .sum()
    )
    first = received.min().floor("D")
    days = int((received.max().floor("D") - first).days) + HORIZON + 2
    events = simulate_excursions(sorted(located["freezer_id"].unique()), first, days, seed, intake=intake)
    freezer = keys.str.split("/").str[0]
    day = pd.DatetimeIndex(pd.to_datetime(keys.str.split("/").str[1], utc=True))
    truth = np.zeros(len(keys), dtype=bool)
    mean_hazard = np.zeros(len(keys))
    by_unit = {u: pd.DatetimeIndex(g["ts"]).asi8 for u, g in events.groupby("freezer_id")}
    first_index = int((first - REFERENCE).days)
    rates = {}
    for unit in np.unique(freezer):
        load = (
            intake[intake["freezer_id"] == unit]
            .set_index("day")["samples"]
            .reindex(pd.date_range(first, periods=days), fill_value=0)
        )
        rates[unit] = hazard(unit, first_index, days, seed, load.to_numpy(float))
    for i, (unit, d) in enumerate(zip(freezer, day)):
        start, end = d + pd.Timedelta(days=1), d + pd.Timedelta(days=1 + HORIZON)
        times = by_unit.get(unit, np.array([], dtype=np.int64))
        truth[i] = bool(((times >= start.value) & (times < end.value)).any())
        k = int((d - first).days) + 1
        mean_hazard[i] = rates[unit][k : k + HORIZON].mean()
    return truth, mean_hazard


def fit_family(rows: pd.DataFrame, family: str) -> tuple[object, float]:
    spec = get_model("freezer_excursion_risk")
    training_set = build_training_set(spec, rows)
    config = automl_config(SweepSettings(time_budget_s=5, max_trials=1, cv_folds=2), family=family, storage=None,
                           training_set=training_set)  # fmt: skip
    started = time.process_time()
    problem = prepare_problem(training_set.frame, config, holdout=training_set.holdout, groups=training_set.groups)
    model, _ = fit_final(problem, family, {}, 0)
    return model, time.process_time() - started


def auc(truth: np.ndarray, score: np.ndarray) -> float:
    return float(roc_auc_score(truth, score)) if 0 < truth.sum() < len(truth) else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[3, 5, 7])
    parser.add_argument("--cutoff", default="2025-09-01")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    spec = get_model("freezer_excursion_risk")
    results = []
    for seed in args.seeds:
        samples = generate_samples(args.rows, seed=seed)
        started = time.process_time()
        rows = labelled_rows_from_samples(samples)
        rows_cpu = time.process_time() - started
        day = rows.index.str.split("/").str[1]
        train, test = rows[day < args.cutoff], rows[day >= args.cutoff]
        observed = (test[LABEL] == EXCURSION).to_numpy()
        truth, mean_hazard = hidden_truth(samples, test.index, seed)
        history_rule = 1 - np.exp(-HORIZON * test["excursion_rate_all"].fillna(test["excursion_rate_all"].median()).to_numpy())
        scores = {"history rule 1-exp(-30λ)": history_rule, "oracle hazard": mean_hazard}
        cpu = {}
        for family in spec.swept_families():
            model, seconds = fit_family(train, family)
            classes = [str(c) for c in model.classes_]
            scores[family] = 1 - model.predict_proba(test[list(FEATURES)])[:, classes.index(QUIET)]
            cpu[family] = seconds
        for name, score in scores.items():
            results.append({"seed": seed, "scorer": name, "auc_observed": auc(observed, score), "auc_hidden": auc(truth, score),
                            "fit_cpu_s": cpu.get(name, float("nan"))})  # fmt: skip
        print(
            f"seed {seed}: {len(rows)} labelled freezer days ({rows_cpu:.1f} s CPU to build), train {len(train)}, "
            f"test {len(test)} (from {args.cutoff}); observed excursion share {observed.mean():.2f}, hidden {truth.mean():.2f}; "
            f"observed vs hidden label agreement {np.mean(observed == truth):.2f}"
        )
    table = pd.DataFrame(results)
    summary = table.groupby("scorer", sort=False).agg(
        auc_observed=("auc_observed", "mean"), auc_observed_min=("auc_observed", "min"), auc_hidden=("auc_hidden", "mean"),
        auc_hidden_min=("auc_hidden", "min"), fit_cpu_s=("fit_cpu_s", "mean"),
    )  # fmt: skip
    print(f"\n{args.rows} samples per seed, seeds {args.seeds}: mean (min) AUC on freezer days from {args.cutoff}")
    print(summary.round(3).to_markdown())


if __name__ == "__main__":
    main()
