"""The compiled leaf walk finds exactly the leaves the models' own walks find; boosted forests
of numeric splits take LightGBM's compiled kernels and answer what the walk answers.

For random forests and extra trees (float32 input, NaN sent by ``missing_go_to_left``),
histogram gradient boosting (float64, categorical splits with unknown and negative codes) and
XGBoost (``x < t`` in float32, NaN by ``default_left``; binary, multiclass, regression), each
on values placed exactly on, just below and just above every threshold (in float64 and after
rounding to float32), NaN, and 1, 130 and 2,100 rows (the serial and the parallel kernel):
:meth:`FlatTrees.leaves` must equal ``apply``/``pred_leaf``/the predictor's node numbers.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
import xgboost
from sklearn.ensemble import (
    ExtraTreesRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)

from tracseq_dagster.serving.forest_paths import CheckedLeaves, ForestPaths
from tracseq_dagster.serving.tree_dumps import _category_chain, split_by_size
from tracseq_dagster.serving.tree_walk import CATEGORIES

ROWS = (1, 130, 2100)


def training_data(seed: int = 0, n: int = 3000) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5))
    x[:, 3] = rng.integers(0, 6, size=n)  # a small integer code (categorical for histogram boosting)
    x[rng.random(n) < 0.1, 1] = np.nan
    y = (x[:, 0] + np.nan_to_num(x[:, 1], nan=1.5) + (x[:, 3] % 2) > 0.5).astype(int) + (x[:, 2] > 1.0)
    return x, y


def probe_rows(thresholds: dict[int, np.ndarray], n: int, seed: int = 1) -> np.ndarray:
    """Rows whose values sit on, just beside and around the float32 rounding of the forests' thresholds, and NaN."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5))
    x[:, 3] = rng.integers(-1, 9, size=n)  # codes seen and unseen, and a negative one
    for column, values in thresholds.items():
        values = values[np.abs(values) < 1e30]  # a forest's NaN-only split has threshold inf, which sklearn refuses as input
        if len(values) == 0:
            continue
        picked = rng.choice(values, size=n)
        nudge = rng.integers(0, 5, size=n)
        below32 = np.nextafter(picked.astype(np.float32), np.float32(-np.inf)).astype(np.float64)
        above32 = np.nextafter(picked.astype(np.float32), np.float32(np.inf)).astype(np.float64)
        candidates = np.stack([picked, np.nextafter(picked, -np.inf), np.nextafter(picked, np.inf), below32, above32])
        on_edge = rng.random(n) < 0.7
        x[on_edge, column] = candidates[nudge, np.arange(n)][on_edge]
    x[rng.random((n, 5)) < 0.08] = np.nan
    return x


def sklearn_thresholds(trees: list) -> dict[int, np.ndarray]:
    found: dict[int, list[float]] = {}
    for tree in trees:
        t = tree.tree_
        for node in np.flatnonzero(t.children_left >= 0):
            found.setdefault(int(t.feature[node]), []).append(float(t.threshold[node]))
    return {k: np.asarray(v) for k, v in found.items()}


def assert_compiled_equals_own(paths: ForestPaths, x: np.ndarray) -> None:
    leaves = paths.leaves
    assert isinstance(leaves, CheckedLeaves) and leaves.walk is not None
    np.testing.assert_array_equal(leaves.walk.leaves(x), np.asarray(leaves.own(x), dtype=np.int64).reshape(len(x), -1))


@pytest.mark.parametrize("rows", ROWS)
@pytest.mark.parametrize("model", ["forest_classifier", "forest_regressor", "extra_trees"])
def test_random_forest_leaves_equal_apply(model: str, rows: int) -> None:
    x, y = training_data()
    estimator = {
        "forest_classifier": RandomForestClassifier(n_estimators=12, max_depth=9, random_state=0),
        "forest_regressor": RandomForestRegressor(n_estimators=12, max_depth=12, random_state=0),
        "extra_trees": ExtraTreesRegressor(n_estimators=12, max_depth=7, random_state=0),
    }[model].fit(x, y.astype(float) if "regressor" in model or "extra" in model else y)
    target = 1 if model == "forest_classifier" else None
    paths = ForestPaths.of_random_forest(estimator, np.arange(5), 5, target)
    assert_compiled_equals_own(paths, probe_rows(sklearn_thresholds(estimator.estimators_), rows))


@pytest.mark.parametrize("rows", ROWS)
def test_histogram_boosting_leaves_equal_its_predictor_with_categorical_splits(rows: int) -> None:
    x, y = training_data()
    mask = np.array([False, False, False, True, False])
    booster = HistGradientBoostingClassifier(max_iter=15, max_leaf_nodes=20, categorical_features=mask, random_state=0).fit(x, y)
    assert any(node["is_categorical"] and not node["is_leaf"] for it in booster._predictors for p in it for node in p.nodes)
    paths = ForestPaths.of_hist_gradient_boosting(booster, np.arange(5), 5, 1)
    thresholds: dict[int, list[float]] = {}
    for iteration in booster._predictors:
        for predictor in iteration:
            for node in predictor.nodes:
                if not node["is_leaf"] and not node["is_categorical"]:
                    thresholds.setdefault(int(node["feature_idx"]), []).append(float(node["num_threshold"]))
    # the booster's own preprocessing moves the categorical column first: thresholds are of its columns
    order = np.concatenate([np.flatnonzero(mask), np.flatnonzero(~mask)])
    probe = probe_rows({int(order[k]): np.asarray(v) for k, v in thresholds.items()}, rows)
    assert_compiled_equals_own(paths, probe)


@pytest.mark.parametrize("rows", ROWS)
@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_xgboost_leaves_equal_pred_leaf(task: str, rows: int) -> None:
    x, y = training_data()
    if task == "binary":
        model = xgboost.XGBClassifier(n_estimators=15, max_depth=5, tree_method="hist").fit(x, (y > 0).astype(int))
        target: int | None = 1
    elif task == "multiclass":
        model = xgboost.XGBClassifier(n_estimators=10, max_depth=4, tree_method="hist").fit(x, y)
        target = 2
    else:
        model = xgboost.XGBRegressor(n_estimators=15, max_depth=6, tree_method="hist").fit(x, y.astype(float))
        target = None
    paths = ForestPaths.of_xgboost(model, np.arange(5), 5, target)
    assert paths is not None
    frame = model.get_booster().trees_to_dataframe()
    splits = frame[frame["Feature"] != "Leaf"]
    thresholds = {int(f[1:]): g["Split"].to_numpy(dtype=np.float64) for f, g in splits.groupby("Feature")}
    assert_compiled_equals_own(paths, probe_rows(thresholds, rows))


def test_a_walk_that_disagrees_once_is_dropped_for_the_models_own() -> None:
    x, y = training_data()
    forest = RandomForestClassifier(n_estimators=5, max_depth=6, random_state=0).fit(x, y)
    paths = ForestPaths.of_random_forest(forest, np.arange(5), 5, 1)
    leaves = paths.leaves
    assert leaves.walk is not None
    honest = leaves.walk
    # a walk that sends everything to the left of its first split
    leaves.walk = type("Wrong", (), {"leaves": lambda self, m: np.zeros((len(m), 5), dtype=np.int64) + 1})()
    probe = probe_rows(sklearn_thresholds(forest.estimators_), 50)
    np.testing.assert_array_equal(leaves(probe), forest.apply(probe))
    assert leaves.walk is None  # for good
    np.testing.assert_array_equal(honest.leaves(probe), forest.apply(probe))


def assert_compiled_kernels_equal_the_walk(paths: ForestPaths, x: np.ndarray) -> None:
    assert paths.compiled is not None and paths.compiled.forest is not None
    outputs, contributions = paths.outputs_and_contributions(x)
    assert paths.compiled.forest is not None and paths.compiled.checked  # agreed on the first batch
    walked_outputs, walked_contributions = paths.walked(x)
    np.testing.assert_allclose(outputs, walked_outputs, rtol=0.0, atol=1e-12)
    np.testing.assert_allclose(contributions, walked_contributions, rtol=1e-9, atol=1e-9)
    assert np.abs(contributions).sum() > 0


def test_boosted_forests_of_numeric_splits_take_the_leaf_bitvector_kernel() -> None:
    """Histogram boosting without categorical splits, and XGBoost (max_bin 255, as the AutoML
    trains it) in every task: the compiled kernels, to the walk's own numbers on 2,100 probe rows."""
    x, y = training_data()
    booster = HistGradientBoostingClassifier(max_iter=15, max_leaf_nodes=20, random_state=0).fit(x, y)
    paths = ForestPaths.of_hist_gradient_boosting(booster, np.arange(5), 5, 2)
    assert paths.compiled is not None and paths.compiled.forest.bitvectors is not None
    assert_compiled_kernels_equal_the_walk(paths, probe_rows({0: np.linspace(-1, 1, 9)}, 2100))
    for task, model, target in (
        ("binary", xgboost.XGBClassifier(n_estimators=15, max_depth=5, max_bin=255), 0),
        ("multiclass", xgboost.XGBClassifier(n_estimators=10, max_depth=4, max_bin=255), 1),
        ("regression", xgboost.XGBRegressor(n_estimators=15, max_depth=6, max_bin=255), None),
    ):
        labels = (y > 0).astype(int) if task == "binary" else y if task == "multiclass" else y.astype(float)
        model.fit(x, labels)
        paths = ForestPaths.of_xgboost(model, np.arange(5), 5, target)
        assert paths is not None and paths.compiled is not None and paths.compiled.forest.bitvectors is not None, task
        frame = model.get_booster().trees_to_dataframe()
        splits = frame[frame["Feature"] != "Leaf"]
        thresholds = {int(f[1:]): g["Split"].to_numpy(dtype=np.float64) for f, g in splits.groupby("Feature")}
        assert_compiled_kernels_equal_the_walk(paths, probe_rows(thresholds, 2100))


@pytest.mark.parametrize("target", [0, 2])
def test_categorical_splits_become_chains_of_numeric_splits(target: int) -> None:
    """Histogram boosting with categorical splits takes the compiled kernels too: on codes seen,
    unseen (6-8), negative (-1) and NaN, the same outputs and credits as the leaf walk."""
    x, y = training_data()
    mask = np.array([False, False, False, True, False])
    booster = HistGradientBoostingClassifier(max_iter=15, max_leaf_nodes=20, categorical_features=mask, random_state=0).fit(x, y)
    paths = ForestPaths.of_hist_gradient_boosting(booster, np.arange(5), 5, target)
    assert paths.compiled is not None
    probe = probe_rows({0: np.linspace(-1, 1, 9)}, 2100)
    assert {-1.0, 0.0, 5.0, 8.0} <= set(np.unique(probe[:, 3]))
    assert_compiled_kernels_equal_the_walk(paths, probe)
    np.testing.assert_allclose(paths.outputs_and_contributions(probe)[0], booster._raw_predict(probe), rtol=0.0, atol=1e-12)


def test_random_forests_keep_the_walk() -> None:
    x, y = training_data()
    forest = RandomForestClassifier(n_estimators=3, max_depth=4, random_state=0).fit(x, y)
    assert ForestPaths.of_random_forest(forest, np.arange(5), 5, 1).compiled is None


def test_a_split_at_zero_reads_tiny_values_as_they_are() -> None:
    """XGBoost's ``x < 0`` (a count feature's first cut) becomes ``x <= -5e-324``·ish; the kernels
    must not read magnitudes up to 1e-35 as 0 (LightGBM's rule) for these trees."""
    rng = np.random.default_rng(3)
    x = np.column_stack([rng.integers(0, 4, 3000).astype(float) - 1.0, rng.normal(size=3000)])  # -1, 0, 1, 2
    y = (x[:, 0] < 0).astype(int) ^ (x[:, 1] > 1.5)
    model = xgboost.XGBClassifier(n_estimators=8, max_depth=3, max_bin=255).fit(x, y)
    frame = model.get_booster().trees_to_dataframe()
    assert (frame.loc[frame["Feature"] == "f0", "Split"] == 0.0).any()  # the split at 0 this test is about
    paths = ForestPaths.of_xgboost(model, np.arange(2), 2, 1)
    assert paths is not None and paths.compiled is not None and paths.compiled.forest.zero == 0.0
    tiny = np.array([-1e-36, -1e-40, -1e-45, 1e-40, 0.0, -0.0, -1.0, 1.0])
    probe = np.column_stack([np.tile(tiny, 50), rng.normal(size=400)])
    assert_compiled_kernels_equal_the_walk(paths, probe)
    margins = model.predict(probe, output_margin=True)
    np.testing.assert_allclose(paths.outputs_and_contributions(probe)[0][:, 0], margins, rtol=1e-6, atol=1e-6)


def test_compiled_kernels_that_disagree_once_are_dropped_for_the_walk() -> None:
    x, y = training_data()
    model = xgboost.XGBClassifier(n_estimators=10, max_depth=4, max_bin=255).fit(x, (y > 0).astype(int))
    paths = ForestPaths.of_xgboost(model, np.arange(5), 5, 1)
    assert paths is not None and paths.compiled is not None
    forest = paths.compiled.forest
    paths.compiled.forests = [dataclasses.replace(forest, leaf_value=forest.leaf_value + 1e-6,
                                                  bitvectors=dataclasses.replace(forest.bitvectors))]  # fmt: skip
    probe = x[:300]
    outputs, _ = paths.outputs_and_contributions(probe)
    assert paths.compiled.forest is None  # for good
    np.testing.assert_allclose(outputs, paths.walked(probe)[0], rtol=0.0, atol=0.0)


def test_leaf_credit_rows_equal_the_walk_up_to_the_roots() -> None:
    """A leaf's precomputed path credit (one row added per tree) is the same as adding every move
    on its path; past LEAF_TABLE_BYTES the forest walks up instead."""
    x, y = training_data()
    forest = RandomForestClassifier(n_estimators=20, max_depth=10, random_state=0).fit(x, y)
    paths = ForestPaths.of_random_forest(forest, np.array([0, 1, 2, 3, 3]), 4, 2)  # two columns credit one feature
    assert paths.leaf_credit is not None
    probe = probe_rows(sklearn_thresholds(forest.estimators_), 2100)
    outputs, contributions = paths.walked(probe)
    up_outputs, up_contributions = dataclasses.replace(paths, leaf_credit=None, row_of_node=None).walked(probe)
    np.testing.assert_allclose(outputs, up_outputs, rtol=0.0, atol=1e-15)
    np.testing.assert_allclose(contributions, up_contributions, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(outputs, forest.predict_proba(probe), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(contributions.sum(axis=1) + paths.bias, forest.predict_proba(probe)[:, 2], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("nan_left", [True, False])
def test_a_category_chain_routes_every_code_as_histogram_boosting_does(nan_left: bool) -> None:
    """Codes (whole or not: the booster truncates), negative values and NaN, through the chain's splits."""
    goes_left = np.zeros(CATEGORIES, dtype=bool)
    goes_left[[0, 2, 3, 7, 200]] = True
    chain = _category_chain(4, goes_left, nan_left, {"leaf_index": 0}, {"leaf_index": 1})

    def route(x: float) -> int:
        node = chain
        while "split_feature" in node:
            assert node["split_feature"] == 4 and node["decision_type"] == "<="
            left = node["default_left"] if np.isnan(x) else x <= node["threshold"]
            node = node["left_child"] if left else node["right_child"]
        return node["leaf_index"]

    missing_side = 0 if nan_left else 1
    assert route(np.nan) == missing_side and route(-1.0) == missing_side and route(-0.25) == missing_side
    for code in [0.0, 0.75, 1.0, 1.5, 2.0, 2.99, 3.0, 4.0, 6.999, 7.0, 7.5, 8.0, 199.9, 200.0, 200.5, 201.0, 255.0]:
        assert route(code) == (0 if goes_left[int(code)] else 1), code


def test_forests_split_by_drawn_size_and_trees_keep_their_class() -> None:
    """split_by_size: trees of at most MAX_LEAVES drawn leaves, then the others, each with its class."""

    def tree(leaves: int) -> dict[str, Any]:  # a left-leaning chain of `leaves` leaves
        node: dict[str, Any] = {"leaf_index": 0, "leaf_value": 0.0}
        for k in range(1, leaves):
            node = {
                "split_feature": 0,
                "threshold": float(k),
                "left_child": node,
                "right_child": {"leaf_index": k, "leaf_value": 1.0},
            }
        return node

    sizes = [3, 200, 5, 129, 128]
    dump = {"max_feature_idx": 0, "num_tree_per_iteration": 3,
            "tree_info": [{"num_leaves": n, "tree_structure": tree(n), "class": t % 3} for t, n in enumerate(sizes)]}  # fmt: skip
    groups = split_by_size(dump, 128)
    assert [numbers for numbers, _ in groups] == [[0, 2, 4], [1, 3]]
    assert [info["class"] for info in groups[1][1]["tree_info"]] == [1, 0]


def test_a_forest_whose_category_chains_would_explode_keeps_the_walk() -> None:
    """Alternating sets over 60 categories, nested: the chains would draw far more than
    MAX_DRAWN_LEAVES leaves, so the forest is not written (quickly), and the walk answers exactly."""
    rng = np.random.default_rng(5)
    n = 6000
    x = np.column_stack([rng.integers(0, 60, n).astype(float), rng.normal(size=n), rng.normal(size=n)])
    y = ((x[:, 0] % 2 == 0) ^ (x[:, 1] > 0)).astype(int) + ((x[:, 0] % 3 == 0) & (x[:, 2] > 0))
    booster = HistGradientBoostingClassifier(max_iter=20, max_leaf_nodes=100, min_samples_leaf=5,
                                             categorical_features=np.array([True, False, False]), random_state=0).fit(x, y)  # fmt: skip
    paths = ForestPaths.of_hist_gradient_boosting(booster, np.arange(3), 3, 1)
    assert paths.compiled is None
    probe = np.column_stack([rng.integers(-1, 64, 500).astype(float), rng.normal(size=500), rng.normal(size=500)])
    np.testing.assert_allclose(paths.outputs_and_contributions(probe)[0], booster._raw_predict(probe), rtol=0.0, atol=1e-12)


def test_histogram_boosting_trees_larger_than_the_bit_vectors_hold_are_walked_exactly() -> None:
    """A refit on many more rows may grow trees of up to 1,024 leaves (``GradientBoosting.larger_trees``):
    those over the leaf bit vectors' 128 are walked, and every answer is the booster's own."""
    rng = np.random.default_rng(7)
    x = np.column_stack([rng.integers(0, 60, 20_000).astype(float), rng.normal(size=(20_000, 2))])
    y = np.sin(x[:, 0]) * x[:, 1] + 0.5 * np.cos(3 * x[:, 2]) + 0.1 * rng.normal(size=20_000)
    booster = HistGradientBoostingRegressor(max_iter=5, max_leaf_nodes=372, min_samples_leaf=5, random_state=0).fit(x, y)
    leaves = [int(p.nodes["is_leaf"].sum()) for it in booster._predictors for p in it]
    assert max(leaves) > 128
    paths = ForestPaths.of_hist_gradient_boosting(booster, np.arange(3), 3, None)
    probe = np.column_stack([rng.integers(-1, 64, 500).astype(float), rng.normal(size=(500, 2))])
    probe[::17, 1] = np.nan
    np.testing.assert_allclose(
        paths.outputs_and_contributions(probe)[0].ravel(), booster._raw_predict(probe).ravel(), rtol=0.0, atol=1e-12
    )
