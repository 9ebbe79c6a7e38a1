"""Serving the run models: their features against the full packed history vs a RunHistorySnapshot.

Generates the demo's scale (50,000 samples and their runs), then times, for
``sequencing_success`` and ``turnaround_hours``:

* ``serving_features`` for one request row and for a batch of 1,000, from the packed frames
  (before: ``ServingRows.history`` None) and from the snapshot (after), prediction times after
  the history's last event, as serving sees them;
* the snapshot's build, save and load;
* with ``--route``: one record through ``POST /models/{name}/predict`` in process (Starlette's
  TestClient over the catalog routes, a quick logistic/LightGBM fit packed like the Bento packs
  it), the predictor with and without its snapshot.

Usage: ``.venv/bin/python benchmarks/run_history.py [--samples 50000] [--route]``. Prints a
Markdown table for BENCHMARKS.md ("Serving the run models").
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # catalog_support: the serving tests' packing of a quick fit

from tracseq_dagster.generator import generate_samples  # noqa: E402
from tracseq_dagster.models import sequencing_success, turnaround_hours  # noqa: E402
from tracseq_dagster.models.spec import ServingRows  # noqa: E402
from tracseq_dagster.run_generator import generate_runs  # noqa: E402
from tracseq_dagster.run_history import RunHistorySnapshot  # noqa: E402


def timings(call: Callable[[], object], repeat: int) -> np.ndarray:
    call()  # warm caches (the snapshot's lookups are built on first use)
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        out.append(time.perf_counter() - start)
    return np.array(out)


def shown(seconds: np.ndarray) -> str:
    median, p99 = np.median(seconds), np.quantile(seconds, 0.99)
    unit, scale = ("ms", 1e3) if median >= 1e-3 else ("µs", 1e6)
    return f"{median * scale:,.1f} {unit} (p99 {p99 * scale:,.1f})"


def requests_after(samples: pd.DataFrame, runs: pd.DataFrame, cutoff: pd.Timestamp, n: int, seed: int) -> dict[str, ServingRows]:
    """``n`` request rows per model, predicted after the cutoff: libraries of known samples (re-runs
    and queued first runs) on known instruments and kits, and newly received samples."""
    rng = np.random.default_rng(seed)
    known = samples.sample(n, random_state=seed, replace=n > len(samples)).drop_duplicates("sample_id").reset_index(drop=True)
    t = cutoff + pd.to_timedelta(rng.integers(60, 3 * 86_400, size=len(known)), unit="s")
    libraries = known.assign(
        run_id=pd.array([f"RUN-2099-{i:05d}" for i in range(len(known))], dtype="string"),
        instrument_id=pd.array(rng.choice(runs["instrument_id"].unique(), len(known)), dtype="string"),
        library_kit=pd.array(rng.choice(runs["library_kit"].unique(), len(known)), dtype="string"),
        library_prep_ts=t,
    )
    not_yet = pd.Series(pd.NaT, index=known.index, dtype="datetime64[ns, UTC]")
    new = known.assign(sample_id=pd.array([f"TS-2099-{i:06d}" for i in range(len(known))], dtype="string"), received_ts=t,
                       extraction_ts=not_yet, sequencing_ts=not_yet)  # just received  # fmt: skip
    return {
        "sequencing_success": ServingRows(libraries, samples, runs, pd.DatetimeIndex(t)),
        "turnaround_hours": ServingRows(new, samples, runs, pd.DatetimeIndex(t)),
    }


def take(rows: ServingRows, n: int, history: object) -> ServingRows:
    return ServingRows(rows.requests.head(n).reset_index(drop=True), rows.samples, rows.runs, rows.as_of[:n], history)


def route_latency(samples: pd.DataFrame, runs: pd.DataFrame, repeat: int) -> list[str]:
    """One record through POST /models/{name}/predict in process, with and without the snapshot."""
    from catalog_support import pack, records_of
    from starlette.applications import Starlette
    from starlette.testclient import TestClient

    from tracseq_dagster.models import get_model
    from tracseq_dagster.serving.catalog_predictor import ServedCatalog
    from tracseq_dagster.serving.catalog_routes import CatalogService, catalog_routes
    from tracseq_dagster.serving.catalog_schema import request_columns

    folder = Path(tempfile.mkdtemp(prefix="run-history-bench-"))
    try:
        pack(
            folder,
            "sequencing_success",
            sequencing_success.labelled_rows_from_exports(samples, runs),
            samples,
            runs,
            ("lightgbm",),
        )
        pack(folder, "turnaround_hours", turnaround_hours.labelled_rows_from_exports(samples, runs), samples, runs, ("lightgbm",))
        start = time.perf_counter()
        served = ServedCatalog(folder)
        load_s = time.perf_counter() - start
        client = TestClient(Starlette(routes=catalog_routes(lambda: CatalogService(served, lambda rows: None))))
        cutoff = max(p.history.cutoff for p in served.models.values())
        rows = requests_after(samples, runs, cutoff, 50, seed=3)
        lines = [f"catalog load (both run models, snapshots built): {load_s:.2f} s"]
        for name, serving_rows in rows.items():
            predictor = served.models[name]
            body = records_of(serving_rows.requests.head(1), request_columns(get_model(name)))[0]

            def post(name: str = name, body: dict = body) -> None:
                response = client.post(f"/models/{name}/predict", json=body)
                assert response.status_code == 200, response.text

            snapshot = predictor.history
            predictor.history = None
            before = timings(post, max(3, repeat // 20))
            predictor.history = snapshot
            after = timings(post, repeat)
            lines.append(f"| `POST /models/{name}/predict`, one record | {shown(before)} | {shown(after)} |")
        return lines
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--route", action="store_true")
    args = parser.parse_args()

    samples = generate_samples(args.samples, seed=7, start=pd.Timestamp.now(tz="UTC").normalize() - pd.Timedelta(days=400))
    runs = generate_runs(samples, seed=7)
    print(f"history: {len(samples):,} samples, {len(runs):,} run rows")

    start = time.perf_counter()
    snapshot = RunHistorySnapshot.build(samples, runs)
    build_s = time.perf_counter() - start
    folder = Path(tempfile.mkdtemp(prefix="run-history-"))
    snapshot.save(folder)
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    start = time.perf_counter()
    RunHistorySnapshot.load(folder)
    load_s = time.perf_counter() - start
    shutil.rmtree(folder)
    print(f"snapshot: build {build_s:.2f} s, {size / 1e6:.1f} MB on disk, load {load_s * 1e3:.0f} ms; "
          f"windows {len(snapshot.window_table):,} events, samples table {len(snapshot.sample_table):,} rows")  # fmt: skip

    rows = requests_after(samples, runs, snapshot.cutoff, 1000, seed=1)
    print("\n| call | full history (before) | snapshot (after) |\n|---|---|---|")
    for name, module in (("sequencing_success", sequencing_success), ("turnaround_hours", turnaround_hours)):
        for n in (1, 1000):
            full = take(rows[name], n, None)
            fast = take(rows[name], n, snapshot)
            pd.testing.assert_frame_equal(module.serving_features(fast), module.serving_features(full), check_exact=True)
            before = timings(lambda full=full, module=module: module.serving_features(full), 5 if n > 1 else 10)
            after = timings(lambda fast=fast, module=module: module.serving_features(fast), args.repeat if n == 1 else 20)
            print(f"| `{name}.serving_features`, {n:,} row{'s' if n > 1 else ''} | {shown(before)} | {shown(after)} |")
    if args.route:
        for line in route_latency(samples, runs, args.repeat):
            print(line)


if __name__ == "__main__":
    main()
