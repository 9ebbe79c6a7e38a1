"""Serving a LightGBM with native categorical splits: the compiled kernels against LightGBM's own walk.

Why: the AutoML's LightGBM may split categorical columns natively (a set of codes goes left,
``automl.families.native_categories``). Before, :class:`.compiled_trees.CompiledForest` refused
such forests and the scorer fell back to ``Booster.predict(pred_leaf=True)`` plus the leaf-credit
tables; now each distinct set split reads a derived 0/1 column (:mod:`.category_splits`). This
measures what that is worth, per row, for scores and risk factors together.

The models: the AutoML LightGBM pipeline (``FAMILIES["lightgbm"]``, its default configuration
but for the number of trees, ``--trees``: 31 leaves, native categories) fitted on a generated
table of 20,000 rows: three numbers, a 6-value and a 40-value categorical and a 150-value wide
one, all driving a binary label. Timed: :meth:`ModelScorer.score` on a frame of ``--rows`` rows
(after the one-time checks) and on single records, with the compiled forest (forced, whatever
``MAX_SPLIT_COLUMNS`` says) and with it switched off (LightGBM's walk), best of ``--repeats``.
Both answers are compared (same probabilities to 1e-12, same contributions to 1e-9) before
anything is timed. "served by" is what the scorer chooses with the cap.

Usage: python benchmarks/lightgbm_categorical_serving.py [--rows 10000] [--repeats 5] [--trees 3 10 100]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import pandas as pd
from sklearn.preprocessing import LabelEncoder

from tracseq_dagster.automl.families import FAMILIES
from tracseq_dagster.automl.model import LabelDecodingClassifier
from tracseq_dagster.automl.preprocessing import prepare_features
from tracseq_dagster.serving import category_splits
from tracseq_dagster.serving.scoring import ModelScorer, reference_values


def table(rows: int, seed: int = 0) -> pd.DataFrame:
    """Three numbers and three categoricals (6, 40 and 150 values) behind a binary label."""
    rng = np.random.default_rng(seed)
    kind, site, agent = rng.integers(0, 6, rows), rng.integers(0, 40, rows), rng.integers(0, 150, rows)
    numbers = rng.normal(size=(rows, 3))
    logit = rng.normal(0, 1, 6)[kind] + rng.normal(0, 1, 40)[site] + rng.normal(0, 1, 150)[agent] + numbers @ [1.0, -0.5, 0.25]
    frame = pd.DataFrame(numbers, columns=["age", "volume", "purity"])
    frame["kind"] = [f"K{k}" for k in kind]
    frame["site"] = [f"S{s}" for s in site]
    frame["agent"] = [f"A{a}" for a in agent]
    frame.loc[rng.random(rows) < 0.05, "site"] = None
    frame["label"] = np.where(rng.random(rows) < 1 / (1 + np.exp(-logit)), "pass", "fail")
    return frame


def best_seconds(run: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000, help="rows of the timed batch")
    parser.add_argument("--repeats", type=int, default=5, help="timings per case (the best is kept)")
    parser.add_argument("--trees", type=int, nargs="+", default=[3, 10, 100], help="n_estimators of each model")
    args = parser.parse_args()

    frame = table(20_000)
    features, columns = prepare_features(frame, "label")
    family = FAMILIES["lightgbm"]
    encoder = LabelEncoder().fit(frame["label"])
    names = list(columns.all)
    batch = table(args.rows, seed=1)[names]
    one = batch.iloc[:1]
    print("| trees | distinct categorical splits | served by | compiled kernel | compiled µs/row (batch) "
          "| LightGBM's walk µs/row (batch) | compiled ms (1 record) | LightGBM's walk ms (1 record) |")  # fmt: skip
    print("|---:|---:|---|---|---:|---:|---:|---:|")
    for trees in args.trees:
        params = {**family.default_params("binary", columns), "n_estimators": trees}
        pipeline = family.build(params, "binary", columns, seed=0, balance=False)
        model = LabelDecodingClassifier.from_fitted(pipeline.fit(features, encoder.transform(frame["label"])), encoder.classes_)
        served = ModelScorer(model, names, reference_values(frame, names), "pass")
        capped = category_splits.MAX_SPLIT_COLUMNS
        category_splits.MAX_SPLIT_COLUMNS = 1_000_000  # the compiled forest, however many splits
        try:
            compiled = ModelScorer(model, names, reference_values(frame, names), "pass")
        finally:
            category_splits.MAX_SPLIT_COLUMNS = capped
        walked = ModelScorer(model, names, reference_values(frame, names), "pass")
        walked._forest = None  # LightGBM's own walk (pred_leaf) and the leaf-credit tables: the fallback
        forest = compiled._forest
        assert forest is not None and forest.categories is not None
        fast, slow = compiled.score(batch), walked.score(batch)  # also the one-time checks
        assert compiled._forest is not None and compiled._forest_checked
        np.testing.assert_allclose(fast.probabilities, slow.probabilities, rtol=0, atol=1e-12)
        np.testing.assert_allclose(fast.contributions, slow.contributions, rtol=1e-9, atol=1e-9)
        timings = []
        for scorer in (compiled, walked):
            timings.append(best_seconds(lambda s=scorer: s.score(batch), args.repeats) / args.rows * 1e6)
            timings.append(best_seconds(lambda s=scorer: s.score(one), args.repeats * 4) * 1e3)
        kernel = "leaf bit vectors" if forest.bitvectors is not None else "node walk"
        by = "compiled" if served._forest is not None else "LightGBM's walk"
        print(f"| {trees} | {len(forest.categories.source)} | {by} | {kernel} | {timings[0]:.2f} | {timings[2]:.2f} "
              f"| {timings[1]:.3f} | {timings[3]:.3f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
