"""Training sets through Feast's point-in-time join against today's, per catalog model: time and equality.

A generated lab (samples and runs) goes through the Feast repository (tables, apply; no online
store needed: SQLite). For each catalog model, ``load_training_set`` (the project's tables) and
``feast_training_set`` (``get_historical_features`` over the file/Dask offline store) are each
timed ``--repeat`` times; the fingerprints must be equal.

Usage: python benchmarks/feast_training.py [--rows 5000] [--repeat 2]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import pandas as pd
from feast_online import OUT, lab

from tracseq_dagster.feature_repo.config import FeastSettings
from tracseq_dagster.feature_repo.definitions import repo_objects
from tracseq_dagster.feature_repo.store import apply_repo, open_store
from tracseq_dagster.feature_repo.tables import write_feature_tables
from tracseq_dagster.feature_repo.training_rows import feast_training_set
from tracseq_dagster.models import catalog
from tracseq_dagster.training_set import load_training_set


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    results: dict[str, object] = {"rows": args.rows, "measured_at": pd.Timestamp.now(tz="UTC").isoformat()}
    with tempfile.TemporaryDirectory() as folder:
        lake = lab(Path(folder) / "lake", args.rows)
        write_feature_tables(lake)
        store = open_store(FeastSettings(str(Path(folder) / "data"), "bench", None, None))
        apply_repo(store, repo_objects(lake.root))
        for name, spec in catalog().items():
            timings: dict[str, list[float]] = {"today_s": [], "feast_s": []}
            for _ in range(args.repeat):
                started = time.perf_counter()
                today = load_training_set(lake, spec)
                timings["today_s"].append(round(time.perf_counter() - started, 2))
                started = time.perf_counter()
                through_feast = feast_training_set(store, lake, spec)
                timings["feast_s"].append(round(time.perf_counter() - started, 2))
            assert through_feast.fingerprint == today.fingerprint, name
            results[name] = {"training_rows": today.rows, **timings, "equal": True}
    OUT.mkdir(exist_ok=True)
    (OUT / "feast_training.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
