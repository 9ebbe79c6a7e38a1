"""Several worker processes share one Optuna study in PostgreSQL (the scale-out path).

Each worker is its own process running the same engine against the PostgreSQL server on
127.0.0.1:5432 (in a database of the test's own); the study ends up with the trials of
both, numbered without collisions.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import optuna
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer

from tracseq_dagster.automl import AutoMLConfig, prepare_study_storage, run_automl

pytestmark = pytest.mark.slow

TRIALS_PER_WORKER = 5


def _worker(args: tuple[str, int]) -> list[int]:
    storage, seed = args
    data = load_breast_cancer(as_frame=True)
    frame = pd.concat([data.data, data.target.rename("malignant")], axis=1)
    config = AutoMLConfig(
        target="malignant",
        families=("logistic",),
        time_budget_s=120,
        max_trials=TRIALS_PER_WORKER,
        cv_folds=3,
        seed=seed,
        storage=storage,
        study_name="shared-sweep",
    )
    result = run_automl(frame, config)
    return [t.number for t in result.trials]


def test_two_worker_processes_contribute_to_one_postgres_study(postgres_url: str) -> None:
    storage = postgres_url.replace("postgresql://", "postgresql+psycopg2://")
    prepare_study_storage(storage)  # once, before the fan-out: concurrent schema creation races
    with ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn")) as pool:
        first, second = pool.map(_worker, [(storage, 1), (storage, 2)])

    assert len(first) == len(second) == TRIALS_PER_WORKER, "each worker ran its own trials"
    assert not set(first) & set(second), "trial numbers are allocated by the shared storage, never twice"
    (summary,) = optuna.get_all_study_summaries(storage)
    study = optuna.load_study(study_name=summary.study_name, storage=storage)
    assert summary.study_name.startswith("shared-sweep")
    assert sorted(t.number for t in study.trials) == sorted(first + second)
    assert len(study.trials) == 2 * TRIALS_PER_WORKER
