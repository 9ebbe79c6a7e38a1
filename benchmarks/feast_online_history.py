"""What refreshing the Bento's history aggregates from Feast costs (serving/online_history.py).

A generated lab (``--rows`` samples and their runs) is applied and materialised into a Feast
project of its own on Redis (db 13), and a real ``feast serve`` answers over HTTP. Timed:

* one refresh of ``sample_quality``'s snapshot (operators, sites, freezers: three calls);
* one refresh of a run model's snapshot (the same, plus the instruments' failure windows);
* the request path's feature computation for 1 and 100 new samples against the packed and the
  refreshed snapshot (the refresh must not make a request slower: it is a dictionary either way).

Usage: python benchmarks/feast_online_history.py [--rows 5000] [--repeats 20]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from feast_support import clear_project, feature_server, materialized_store  # noqa: E402

from tracseq_dagster.feature_store import accepted_samples  # noqa: E402
from tracseq_dagster.features import HistorySnapshot, feature_columns  # noqa: E402
from tracseq_dagster.generator import generate_samples  # noqa: E402
from tracseq_dagster.run_history import RunHistorySnapshot  # noqa: E402
from tracseq_dagster.serving.feature_server import FeatureServer  # noqa: E402
from tracseq_dagster.serving.online_history import OnlineHistory  # noqa: E402


def timed_ms(call, repeats: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return {"p50_ms": round(statistics.median(times), 3), "max_ms": round(times[-1], 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "feast_online_history.json")
    args = parser.parse_args()
    os.environ.setdefault("DO_NOT_TRACK", "1")
    import tempfile

    results: dict[str, object] = {"rows": args.rows, "load_before": os.getloadavg()}
    with tempfile.TemporaryDirectory() as folder:
        lake, settings, _ = materialized_store(Path(folder), rows=args.rows, seed=5)
        try:
            with feature_server(settings) as url:
                samples, runs = accepted_samples(lake), lake.read_validated_runs()
                packed = HistorySnapshot.build(samples)
                packed_runs = RunHistorySnapshot.build(samples, runs)
                server = FeatureServer(url)
                online = OnlineHistory(packed, server)
                online_runs = OnlineHistory(packed_runs, server)
                online.refresh()  # warm the server's registry cache
                results["keys"] = {kind: len(online.keys(kind)) for kind in ("operator", "site", "freezer")}
                results["refresh_sample_snapshot"] = timed_ms(online.refresh, args.repeats)
                results["refresh_run_snapshot"] = timed_ms(online_runs.refresh, args.repeats)
                refreshed = online.refresh()
                moment = refreshed.cutoff + pd.Timedelta(hours=1)
                for n in (1, 100):
                    new = generate_samples(n, seed=7, id_offset=900_000)
                    for name, snapshot in (("packed", packed), ("refreshed", refreshed)):
                        results[f"features_{n}_{name}"] = timed_ms(
                            lambda s=snapshot, r=new: feature_columns(r, s, as_of=moment), args.repeats * 10
                        )
        finally:
            clear_project(settings)
    results["load_after"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
