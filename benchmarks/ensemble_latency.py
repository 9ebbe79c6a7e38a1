"""Latency of one ``sample_quality`` prediction: a served AutoML ensemble against its best single member.

Why: an ensemble answers through every member (:mod:`tracseq_dagster.serving.ensemble_scoring`),
so a one-record request costs roughly the sum of its members' scoring; this measures by how much,
through the same predictor the Bento calls (features against the packed history, scoring, risk
factors, recommendations), not through HTTP (the service adds the same overhead to both).

Each model is the engine's pipeline at its family's default configuration, fit on generated
samples, packed in a bundle laid out as ``export_bundle`` writes one (warm-up rows included, so
the compiled kernels are ready before the first timed request). Usage::

    .venv/bin/python benchmarks/ensemble_latency.py [--requests 400] [--rows 3000]
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import statistics
import tempfile
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tracseq_dagster.automl import FAMILIES, fit_final, prepare_problem
from tracseq_dagster.automl.ensemble import WeightedEnsemble
from tracseq_dagster.automl.model import LabelDecodingClassifier
from tracseq_dagster.features import FEATURE_NAMES, HistorySnapshot, compute_features
from tracseq_dagster.generator import generate_samples
from tracseq_dagster.models.sample_quality import training_set_from_features
from tracseq_dagster.serving.bundle import BundleInfo, ModelCard
from tracseq_dagster.serving.predictor import SampleQualityPredictor
from tracseq_dagster.serving.scoring import reference_values
from tracseq_dagster.serving.warm_up import write_warm_up_rows
from tracseq_dagster.training import SweepSettings, automl_config

#: What is compared: each family alone, and ensembles of LightGBM (usually the best single model here)
#: with the others (weights as Caruana's selection might give them; latency does not depend on the values).
CONTENDERS: dict[str, dict[str, float]] = {
    "lightgbm (single)": {"lightgbm": 1.0},
    "logistic (single)": {"logistic": 1.0},
    "random_forest (single)": {"random_forest": 1.0},
    "mlp (single)": {"mlp": 1.0},
    "ensemble lightgbm+logistic": {"lightgbm": 0.6, "logistic": 0.4},
    "ensemble lightgbm+logistic+random_forest": {"lightgbm": 0.5, "logistic": 0.3, "random_forest": 0.2},
    "ensemble lightgbm+logistic+mlp": {"lightgbm": 0.5, "logistic": 0.3, "mlp": 0.2},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400, help="one-record requests timed per contender")
    parser.add_argument("--rows", type=int, default=3000, help="generated training samples")
    args = parser.parse_args()

    start = pd.Timestamp.now(tz="UTC").normalize() - pd.Timedelta(days=400)
    samples = generate_samples(args.rows, seed=21, start=start)
    features = compute_features(samples, samples, as_of=None).reset_index()
    training_set = training_set_from_features(features, ("bench",))
    config = automl_config(SweepSettings(), family="lightgbm", storage=None, training_set=training_set)
    problem = prepare_problem(training_set.frame, config, holdout=training_set.holdout)
    families = sorted({f for weights in CONTENDERS.values() for f in weights})
    pipelines = {
        f: fit_final(problem, f, FAMILIES[f].default_params(problem.task, problem.columns), 0)[0].estimator_ for f in families
    }
    requests = json.loads(
        generate_samples(args.requests, seed=7, start=start, id_offset=800_000)
        .drop(columns=["qc_status"])
        .to_json(orient="records", date_format="iso")
    )

    rows = []
    with tempfile.TemporaryDirectory(prefix="ensemble-latency-") as folder:
        for name, weights in CONTENDERS.items():
            if len(weights) == 1:
                model: Any = LabelDecodingClassifier.from_fitted(pipelines[next(iter(weights))], np.asarray(problem.classes))
            else:
                ensemble = WeightedEnsemble([pipelines[f] for f in weights], list(weights.values()), problem.task)
                model = LabelDecodingClassifier.from_fitted(ensemble, np.asarray(problem.classes))
            bundle = _bundle(Path(folder) / name.replace(" ", "_"), model, samples, features, name)
            loaded = time.perf_counter()
            predictor = SampleQualityPredictor(bundle)
            load_s = time.perf_counter() - loaded
            timings = []
            for record in requests:
                began = time.perf_counter()
                answer = predictor.predict([record])[0]
                timings.append((time.perf_counter() - began) * 1000.0)
            assert answer.response["attribution"] == predictor.variants["champion"].scorer.method
            timings.sort()
            rows.append(
                {
                    "model": name,
                    "attribution": predictor.variants["champion"].scorer.method,
                    "p50 ms": round(statistics.median(timings), 3),
                    "p95 ms": round(timings[int(0.95 * (len(timings) - 1))], 3),
                    "load + warm-up s": round(load_s, 2),
                }
            )
    table = pd.DataFrame(rows)
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}, "
          f"{os.cpu_count()} cores, {args.requests} one-record requests each")  # fmt: skip
    print(table.to_markdown(index=False))


def _bundle(folder: Path, model: Any, samples: pd.DataFrame, features: pd.DataFrame, name: str) -> Path:
    """A serving bundle with ``model`` as champion, laid out as ``export_bundle`` writes one."""
    (folder / "champion").mkdir(parents=True)
    (folder / "champion" / "model.pkl").write_bytes(pickle.dumps(model))
    card = ModelCard("sample_quality", "1", "champion", name, "bench", {}, "bench", "bench", len(features))
    (folder / "champion" / "card.json").write_text(json.dumps(asdict(card)))
    snapshot = HistorySnapshot.build(samples)
    snapshot.save(folder / "history")
    (folder / "reference.json").write_text(json.dumps(reference_values(features)))
    write_warm_up_rows(features, FEATURE_NAMES, folder)
    info = BundleInfo("v1-bench", card, None, snapshot.cutoff.isoformat(), len(samples), "now")
    (folder / "bundle.json").write_text(json.dumps(asdict(info)))
    return folder


if __name__ == "__main__":
    main()
