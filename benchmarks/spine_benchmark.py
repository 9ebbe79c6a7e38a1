"""Time generate → parse → validate → features (and the whole Dagster path) at scale.

Each size runs in its own process so its peak memory (max RSS) is its own. Two views:

* ``stages``: the domain functions the assets call, timed one by one, for one export
  of N rows (parse to Parquet, row-level validation, Great Expectations suite, features).
* ``dagster``: ``tracseq ingest``'s code path on an embedded SQLite instance: the real
  jobs, asset checks and lake writes, N rows split over 4 files, then sample_features.

``--messy`` writes the exports the way a real LIMS does (semicolons and decimal commas,
BOM, day-first dates, extra and reordered columns) instead of clean CSV.

Usage: python benchmarks/spine_benchmark.py --rows 100000 1000000 [--messy]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"


MESSY = os.getenv("TRACSEQ_BENCH_MESSY") == "1"


def run_stages(rows: int, work: Path) -> dict:
    import pandas as pd

    from tracseq_dagster.expectations import run_expectation_suite
    from tracseq_dagster.features import compute_features
    from tracseq_dagster.generator import generate_exports
    from tracseq_dagster.landing import content_hash
    from tracseq_dagster.parsing import parse_export_to_parquet
    from tracseq_dagster.validation import validate_samples

    timings: dict[str, float] = {}
    start = time.perf_counter()
    (path,) = generate_exports(rows, "csv", work / "landing", seed=11, messy=MESSY)
    timings["generate_csv_s"] = time.perf_counter() - start

    start = time.perf_counter()
    file_hash = content_hash(str(path))
    summary = parse_export_to_parquet(str(path), work / "raw.parquet", file_hash=file_hash)
    timings["ingest_s"] = time.perf_counter() - start

    start = time.perf_counter()
    frame = pd.read_parquet(work / "raw.parquet")
    issues_path = work / "raw.issues.parquet"
    issues = pd.read_parquet(issues_path) if issues_path.exists() else None
    result = validate_samples(frame, issues, None)
    timings["validate_s"] = time.perf_counter() - start
    del frame

    start = time.perf_counter()
    features = compute_features(result.valid, result.valid, as_of=None)
    timings["features_s"] = time.perf_counter() - start
    timings["spine_total_s"] = timings["ingest_s"] + timings["validate_s"] + timings["features_s"]

    start = time.perf_counter()
    gx = run_expectation_suite(result.valid)
    timings["gx_suite_s"] = time.perf_counter() - start
    return {
        "rows": rows,
        "messy": MESSY,
        "file_mb": round(path.stat().st_size / 1e6, 1),
        "parsed": summary.rows,
        "accepted": len(result.valid),
        "features": len(features),
        "gx_success": gx.success,
        **{k: round(v, 2) for k, v in timings.items()},
        "rows_per_s": round(rows / timings["spine_total_s"]),
    }


def run_dagster(rows: int, work: Path) -> dict:
    os.environ["DAGSTER_HOME"] = str(work / "dagster_home")
    import dagster as dg

    from tracseq_dagster.definitions import build_definitions
    from tracseq_dagster.generator import generate_exports
    from tracseq_dagster.ingest import build_features, ingest_folder
    from tracseq_dagster.instance import ensure_embedded_home

    ensure_embedded_home(work / "dagster_home")
    generate_exports(rows, "csv", work / "landing", seed=11, files=4, messy=MESSY)
    defs = build_definitions(lake_dir=str(work / "lake"), landing_url=str(work / "landing"))
    with dg.DagsterInstance.get() as instance:
        start = time.perf_counter()
        outcomes = ingest_folder(work / "landing", defs=defs, instance=instance)
        ingest_s = time.perf_counter() - start
        start = time.perf_counter()
        ok = build_features(defs=defs, instance=instance).success
        features_s = time.perf_counter() - start
    total = ingest_s + features_s
    return {
        "rows": rows,
        "files": len(outcomes),
        "all_succeeded": ok and all(o.status == "ingested" for o in outcomes),
        "ingest_validate_checks_s": round(ingest_s, 2),
        "features_s": round(features_s, 2),
        "total_s": round(total, 2),
        "rows_per_s": round(rows / total),
    }


def child(mode: str, rows: int) -> None:
    with tempfile.TemporaryDirectory(prefix="tracseq-bench-") as tmp:
        result = (run_stages if mode == "stages" else run_dagster)(rows, Path(tmp))
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--modes", nargs="+", default=["stages", "dagster"], choices=["stages", "dagster"])
    parser.add_argument("--messy", action="store_true", help="messy LIMS CSV instead of clean CSV")
    parser.add_argument("--child", nargs=2, metavar=("MODE", "ROWS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]))
        return
    env = {**os.environ, "DO_NOT_TRACK": "1", "GX_ANALYTICS_ENABLED": "False", "DAGSTER_DISABLE_TELEMETRY": "1"}
    env["TRACSEQ_BENCH_MESSY"] = "1" if args.messy else "0"
    results = []
    for mode in args.modes:
        for rows in args.rows:
            out = subprocess.run(
                [sys.executable, __file__, "--child", mode, str(rows)], capture_output=True, text=True, env=env, check=False
            )
            if out.returncode != 0:
                sys.exit(f"{mode} {rows} failed:\n{out.stderr[-3000:]}")
            result = {"mode": mode, **json.loads(out.stdout.strip().splitlines()[-1])}
            print(json.dumps(result), flush=True)
            results.append(result)
    OUT.mkdir(exist_ok=True)
    meta = {"machine": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()}
    (OUT / f"spine{'-messy' if args.messy else ''}.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2))


if __name__ == "__main__":
    main()
