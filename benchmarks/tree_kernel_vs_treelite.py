"""The serving tree kernel against treelite + tl2cgen (LightGBM compiled to C) on a champion-sized forest.

The forest is the one BENCHMARKS.md serves: LightGBM, 3 classes, 250 rounds (750 trees) of 42
leaves, on the 22-feature synthetic data of ``benchmarks/tree_kernels.py``. Both kernels must
reproduce LightGBM's raw scores bit for bit (checked on every batch size). Timed per call at
batch sizes 1, 32, 1,024 and 100,000 rows: median wall-clock and median CPU time per call
(CPU, because the machine is shared with other work; wall-clock for 100k rows, where both
kernels use threads).

What is compared is what serving needs from a call: our kernel's ``raw_and_credit`` returns the
raw scores *and* the per-feature credit (the risk factors) in one walk; tl2cgen's ``predict``
returns raw scores only (it has no contributions), so it is timed for the raw scores alone and
the ratio flatters it. treelite and tl2cgen are benchmark-only dependencies (not in a lock):

    .venv/bin/pip install treelite==4.8.1 tl2cgen==1.0.0
    .venv/bin/python benchmarks/tree_kernel_vs_treelite.py [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import tl2cgen
import treelite
from tree_kernels import synthetic  # benchmarks/ is on sys.path: this file runs as a script

BATCHES = (1, 32, 1024, 100_000)


def timed(call, repeats: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """Median wall and CPU seconds of ``call()``."""
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        call()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--threads", type=int, default=2, help="tl2cgen threads at 100k rows (ours: numba's, above its threshold)"
    )
    args = parser.parse_args()
    name, booster, paths, matrix = synthetic(42, max(BATCHES), 250)
    forest = paths.forest
    assert forest is not None
    expected = np.asarray(booster.predict(matrix, raw_score=True)).reshape(len(matrix), -1)

    started = time.perf_counter()
    model = treelite.frontend.from_lightgbm(booster)
    library = Path(tempfile.mkdtemp()) / "forest.so"
    tl2cgen.export_lib(model, toolchain="gcc", libpath=str(library), params={"parallel_comp": 16}, nthread=2)
    compile_s = time.perf_counter() - started
    serial, threaded = tl2cgen.Predictor(str(library), nthread=1), tl2cgen.Predictor(str(library), nthread=args.threads)

    def ours(x: np.ndarray) -> np.ndarray:
        return forest.raw_and_credit(x)[0]

    def theirs(x: np.ndarray) -> np.ndarray:
        predictor = threaded if len(x) >= 100_000 else serial
        return np.asarray(predictor.predict(tl2cgen.DMatrix(x, dtype="float64"), pred_margin=True)).reshape(len(x), -1)

    print(f"{name}: {booster.num_trees()} trees; tl2cgen compile (gcc, 16 units, 2 jobs) {compile_s:.0f} s wall")
    print(f"treelite {treelite.__version__}, tl2cgen {tl2cgen.__version__}")
    print(
        "| rows a call | ours (raw + credit) wall µs | ours CPU µs | tl2cgen (raw) wall µs | tl2cgen CPU µs | wall ratio tl2cgen/ours | bit-exact |"
    )
    print("|---:|---:|---:|---:|---:|---:|---|")
    for batch in BATCHES:
        x = matrix[:batch]
        exact = np.array_equal(ours(x), expected[:batch]) and np.array_equal(theirs(x), expected[:batch])
        repeats = 200 if batch <= 32 else 30 if batch <= 1024 else 5
        ours_wall, ours_cpu = timed(lambda: ours(x), repeats)
        their_wall, their_cpu = timed(lambda: theirs(x), repeats)
        print(f"| {batch:,} | {ours_wall * 1e6:,.0f} | {ours_cpu * 1e6:,.0f} | {their_wall * 1e6:,.0f} | {their_cpu * 1e6:,.0f} "
              f"| {their_wall / ours_wall:.2f} | {'yes' if exact else 'NO'} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
