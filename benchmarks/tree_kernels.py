"""CPU per row of the two compiled tree kernels against LightGBM's own predictor, in process.

Forests: the served champion, when `benchmarks/serving.py` has built the product (its bundle
under benchmarks/out/serving, rows from generated records through the service's own feature
code), and LightGBM boosters trained here on synthetic data of the same shape (22 features, 3
classes, 400 rounds) with 24, 48 and 120 leaves a tree: one, two and four leaf words per row
for the bit vectors.

Each kernel scores the rows in chunks of 1,000 (below the parallel threshold: one thread, so
CPU time is the kernel's), best of three; every answer is checked against LightGBM's raw scores.

Usage: python benchmarks/tree_kernels.py [--rows 20000] [--rounds 400]
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import lightgbm as lgb
import numpy as np

from tracseq_dagster.serving.compiled_trees import CompiledForest
from tracseq_dagster.serving.scoring import _LeafPaths

ROOT = Path(__file__).resolve().parents[1]
CHUNK = 1000


def champion(rows: int) -> tuple[str, lgb.Booster, _LeafPaths, np.ndarray] | None:
    """The served champion and its booster matrix for ``rows`` generated records, if the product is built."""
    bundles = sorted(
        (ROOT / "benchmarks/out/serving/bentoml/models/tracseq_predictions").glob("v*"), key=lambda p: p.stat().st_mtime
    )
    if not bundles:
        return None
    from serving import arrow_body  # benchmarks/ is on sys.path: this file runs as a script

    from tracseq_dagster.serving import columnar
    from tracseq_dagster.serving.predictor import CHAMPION, SampleQualityPredictor

    predictor = SampleQualityPredictor(bundles[-1])
    scorer = predictor.variants[CHAMPION].scorer
    valid = columnar.validate_table(columnar.read_table(arrow_body(rows, seed=7), columnar.ARROW_STREAM))
    matrix = scorer._booster_matrix(predictor._features(valid.frame, None))
    booster = scorer._estimator.booster_
    return f"champion {bundles[-1].name}", booster, scorer._paths, matrix


def synthetic(leaves: int, rows: int, rounds: int) -> tuple[str, lgb.Booster, _LeafPaths, np.ndarray]:
    """A 3-class booster with ``leaves`` leaves a tree on 22 synthetic features (some NaN), and fresh rows."""
    rng = np.random.default_rng(leaves)

    def features(n: int) -> np.ndarray:
        x = rng.normal(size=(n, 22))
        x[:, 15:] = rng.integers(0, 6, size=(n, 7))  # coded categories, as the service's booster input
        x[rng.random(n) < 0.05, 3] = np.nan
        return x

    x = features(20_000)
    signal = x[:, 0] + 0.5 * x[:, 1] * x[:, 2] - np.nan_to_num(x[:, 3]) + 0.3 * x[:, 15] + rng.normal(scale=0.5, size=len(x))
    y = np.digitize(signal, np.quantile(signal, [1 / 3, 2 / 3]))
    params = {"objective": "multiclass", "num_class": 3, "num_leaves": leaves, "min_data_in_leaf": 5, "verbose": -1, "seed": 1}
    booster = lgb.train(params, lgb.Dataset(x, y), num_boost_round=rounds)
    return f"synthetic, {leaves} leaves", booster, _LeafPaths.of(booster, pass_index=2, n_classes=3), features(rows)


def cpu_per_row(forest: CompiledForest, matrix: np.ndarray) -> float:
    """µs of CPU per row, best of three passes over ``matrix`` in 1,000-row chunks."""
    forest.raw_and_credit(matrix[:CHUNK])  # compiled or loaded from numba's cache
    best = float("inf")
    for _ in range(3):
        start = time.process_time()
        for at in range(0, len(matrix), CHUNK):
            forest.raw_and_credit(matrix[at : at + CHUNK])
        best = min(best, time.process_time() - start)
    return best / len(matrix) * 1e6


def lightgbm_per_row(booster: lgb.Booster, matrix: np.ndarray) -> float:
    """µs of CPU per row of LightGBM's own raw scores, one thread."""
    start = time.process_time()
    booster.predict(matrix, raw_score=True, num_threads=1)
    return (time.process_time() - start) / len(matrix) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=400)
    args = parser.parse_args()
    cases = [case for case in [champion(args.rows)] if case is not None]
    cases += [synthetic(leaves, args.rows, args.rounds) for leaves in (24, 48, 120)]
    print("| forest | trees | most leaves a tree | leaf bit vectors µs/row | node walk µs/row | LightGBM raw scores µs/row |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, booster, paths, matrix in cases:
        forest = paths.forest
        assert forest is not None and forest.bitvectors is not None, name
        expected = np.asarray(booster.predict(matrix, raw_score=True)).reshape(len(matrix), -1)
        for kernel in (forest, dataclasses.replace(forest, bitvectors=None)):
            raw, _ = kernel.raw_and_credit(matrix)
            assert np.array_equal(raw, expected), f"{name}: a kernel differs from LightGBM"
        most = max(info["num_leaves"] for info in booster.dump_model()["tree_info"])
        print(f"| {name} | {booster.num_trees():,} | {most} | {cpu_per_row(forest, matrix):.1f} "
              f"| {cpu_per_row(dataclasses.replace(forest, bitvectors=None), matrix):.1f} "
              f"| {lightgbm_per_row(booster, matrix[:2000]):.1f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
