"""Trials per minute per model family, and what a short sweep reaches.

For each family alone, ``run_automl`` with a fixed wall-clock budget on two tables:
scikit-learn's bundled breast cancer set (binary, 569 rows) and the synthetic lab data
(features of generated samples, target qc_status, 3 classes). Records completed and
pruned trials, trials per minute, CV and holdout score, and the engine's wall time
against the budget. ``--all-families`` adds one row per table for the whole engine (every
family, the scheduler sharing the budget), which is how ``tracseq automl`` runs.

To compare with another version of the engine, run the script with that version first on
``PYTHONPATH`` (e.g. ``git archive <commit> tracseq_dagster | tar -x -C /tmp/old`` and
``PYTHONPATH=/tmp/old``): options the older engine lacks (``--n-jobs``) are left out then.

Usage: python benchmarks/automl_trials_per_minute.py [--budget-s 20] [--lab-rows 5000]
           [--n-jobs N] [--all-families] [--out automl_trials.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

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


def tables(lab_rows: int) -> dict[str, tuple[pd.DataFrame, str]]:
    cancer = load_breast_cancer(as_frame=True)
    return {
        "breast_cancer": (pd.concat([cancer.data, cancer.target.rename("malignant")], axis=1), "malignant"),
        "lab_qc_status": (lab_table(lab_rows), LABEL_COLUMN),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget-s", type=float, default=20.0)
    parser.add_argument("--lab-rows", type=int, default=5000)
    parser.add_argument("--n-jobs", type=int, default=None, help="threads per fit (engines that have the option)")
    parser.add_argument("--all-families", action="store_true", help="also one run of every family together per table")
    parser.add_argument("--out", default="automl_trials.json", help="file name under benchmarks/out/")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    extra: dict[str, Any] = {} if args.n_jobs is None else {"n_jobs": args.n_jobs}
    rows = []
    runs = [(family,) for family in ALL_FAMILIES] + ([tuple(ALL_FAMILIES)] if args.all_families else [])
    for name, (frame, target) in tables(args.lab_rows).items():
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


if __name__ == "__main__":
    main()
