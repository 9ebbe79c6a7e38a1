"""Online read latency of the aggregates the Bento would read from Feast, warm.

A generated lab (samples and runs) goes through the Feast repository (entity tables, apply,
materialisation into Redis); then, from this process, through Feast's Python SDK:

* ``aggregates``: one ``get_online_features`` call for the operator, site, freezer and
  instrument rates (four feature views) of 1 or 100 entity rows;
* ``sample_features``: ``FeastFeatureStore.get_many`` (the ``/features`` documents) of 1 or 100
  samples;

(A per-request reader with a per-entity TTL cache was measured here too; the Bento refreshes its
history aggregates in the background instead: ``benchmarks/feast_online_history.py``.)

The answers are checked (every aggregate of the 100 rows found) before anything is timed.

Each case: 50 warm-up calls, then ``--calls`` timed calls; p50, p95, p99 and mean in ms.

Usage: python benchmarks/feast_online.py [--rows 5000] [--calls 400] [--redis redis://127.0.0.1:6379/13]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd

from tracseq_dagster.feature_repo.config import FeastSettings
from tracseq_dagster.feature_repo.definitions import repo_objects
from tracseq_dagster.feature_repo.materialization import materialize_with_statistics
from tracseq_dagster.feature_repo.store import apply_repo, open_store
from tracseq_dagster.feature_repo.tables import write_feature_tables
from tracseq_dagster.feature_store import build_feature_table
from tracseq_dagster.generator import generate_samples
from tracseq_dagster.lake import RUNS, Lake
from tracseq_dagster.run_generator import generate_runs
from tracseq_dagster.serving.online_store import FeastFeatureStore

OUT = Path(__file__).resolve().parent / "out"
AGGREGATES = ["operator_history:operator_failure_rate", "site_history:site_failure_rate",
              "freezer_history:freezer_utilisation", "instrument_history:instrument_failure_rate"]  # fmt: skip


def lab(root: Path, rows: int) -> Lake:
    lake = Lake(root)
    samples = generate_samples(rows, seed=7)
    runs = generate_runs(samples, seed=7)
    lake.write_record("s" * 16, "samples.csv", len(samples))
    lake.write_table(lake.validated_path("s" * 16), samples)
    lake.write_record("r" * 16, "runs.csv", len(runs), kind=RUNS)
    lake.write_table(lake.validated_path("r" * 16), runs)
    lake.write_table(lake.features_path, build_feature_table(lake))
    return lake


def timed(call, calls: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    for _ in range(50):
        call()
    seconds = []
    for _ in range(calls):
        started = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - started)
    ms = np.asarray(seconds) * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)),
            "p99_ms": float(np.percentile(ms, 99)), "mean_ms": float(ms.mean())}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/13")
    args = parser.parse_args()
    import redis

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        lake = lab(root / "lake", args.rows)
        setup = time.perf_counter()
        tables = write_feature_tables(lake)
        settings = FeastSettings(str(root / "data"), f"bench{uuid.uuid4().hex[:8]}", None, args.redis)
        store = open_store(settings)
        apply_repo(store, repo_objects(lake.root))
        started = time.perf_counter()
        materialized = materialize_with_statistics(store, settings.folder)
        materialize_s = time.perf_counter() - started
        samples = lake.read_validated()
        runs = lake.read_validated_runs()
        rng = np.random.default_rng(0)
        picks = rng.choice(len(samples), 100, replace=False)
        rows = [{"operator_id": str(samples["operator_id"].iloc[i]), "site": str(samples["site"].iloc[i]),
                 "freezer": str(samples["storage_location"].iloc[i]).split("/")[0],
                 "instrument_id": str(runs["instrument_id"].iloc[i % len(runs)])} for i in picks]  # fmt: skip
        ids = [str(samples["sample_id"].iloc[i]) for i in picks]
        reader = FeastFeatureStore(store)

        client = redis.Redis.from_url(args.redis)
        answer = store.get_online_features(features=AGGREGATES, entity_rows=rows).to_dict()
        missing = {f: sum(v is None for v in answer[f.split(":")[1]]) for f in AGGREGATES}
        assert not any(missing.values()), f"aggregates missing online: {missing}"
        assert len(reader.get_many(ids)) == len(ids)

        results = {
            "rows": args.rows,
            "calls": args.calls,
            "entity_tables": tables,
            "materialized_rows": materialized.rows,
            "setup_s": round(started - setup, 2),
            "materialize_s": round(materialize_s, 2),
            "aggregates_1": timed(
                lambda: store.get_online_features(features=AGGREGATES, entity_rows=rows[:1]).to_dict(), args.calls
            ),
            "aggregates_100": timed(
                lambda: store.get_online_features(features=AGGREGATES, entity_rows=rows).to_dict(), args.calls
            ),
            "sample_features_1": timed(lambda: reader.get_many(ids[:1]), args.calls),
            "sample_features_100": timed(lambda: reader.get_many(ids), args.calls),
            "measured_at": pd.Timestamp.now(tz="UTC").isoformat(),
        }
        stale = list(client.scan_iter(match=f"*{settings.project}*".encode(), count=1000))
        if stale:
            client.delete(*stale)
    OUT.mkdir(exist_ok=True)
    (OUT / "feast_online.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
