"""Both compiled tree kernels against LightGBM itself, on boosters trained here for the edge cases:
NaN going left and right, NaN read as 0, values exactly on thresholds and within 1e-35 of 0,
partial and parallel blocks, binary and multiclass, trees of 32, 64 and 128 leaves, and the
forests too large for the leaf bit vectors."""

from __future__ import annotations

import dataclasses

import lightgbm as lgb
import numpy as np
import pytest

from tracseq_dagster.serving.compiled_trees import CompiledForest, _internal_nodes
from tracseq_dagster.serving.scoring import _LeafPaths
from tracseq_dagster.serving.threshold_bins import ZERO_THRESHOLD


def _booster(
    classes: int, *, leaves: int = 31, use_missing: bool = True, max_bin: int = 63, rounds: int = 25, seed: int = 3
) -> lgb.Booster:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(3000, 6))
    x[:, 4] = rng.integers(0, 5, size=3000)  # few values: rows land exactly on thresholds
    x[rng.random(3000) < 0.2, 1] = np.nan
    x[rng.random(3000) < 0.1, 3] = np.nan
    signal = x[:, 0] + np.nan_to_num(x[:, 1], nan=2.0) - 0.5 * x[:, 4] + np.where(np.isnan(x[:, 3]), -1.5, x[:, 3])
    y = np.digitize(signal, np.quantile(signal, np.linspace(0, 1, classes + 1)[1:-1]))
    params = {"objective": "binary" if classes == 2 else "multiclass", "num_leaves": leaves, "min_data_in_leaf": 5,
              "use_missing": use_missing, "max_bin": max_bin, "verbose": -1, "seed": seed}  # fmt: skip
    if classes > 2:
        params["num_class"] = classes
    return lgb.train(params, lgb.Dataset(x, y), num_boost_round=rounds)


def _rows(booster: lgb.Booster, n: int, seed: int = 11) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6))
    x[:, 4] = rng.integers(-1, 6, size=n)
    for j in (0, 1, 3, 5):
        x[rng.random(n) < 0.15, j] = np.nan
    dump = booster.dump_model()
    thresholds = [
        n["threshold"] for info in dump["tree_info"] for n in _internal_nodes(info["tree_structure"]) if n["split_feature"] == 2
    ]
    x[::3, 2] = np.resize(thresholds, len(x[::3]))  # exactly on a split's threshold: that goes left
    tiny = [ZERO_THRESHOLD, -ZERO_THRESHOLD, 1e-36, -1e-36, 2e-35, -2e-35, 0.0]  # LightGBM reads |x| <= 1e-35f as 0
    x[1::3, 2] = np.resize(tiny, len(x[1::3]))
    return x


def _forest(booster: lgb.Booster, classes: int) -> tuple[_LeafPaths, CompiledForest]:
    paths = _LeafPaths.of(booster, pass_index=1, n_classes=classes)
    assert paths.forest is not None
    return paths, paths.forest


@pytest.mark.parametrize("classes", [2, 3])
@pytest.mark.parametrize("use_missing", [True, False])
@pytest.mark.parametrize(("leaves", "words"), [(31, 1), (48, 2), (120, 4)])  # leaf words per row: 32, 64, 128 leaves
def test_leaf_bitvectors_give_lightgbms_raw_scores_and_the_node_walks_credits(
    classes: int, use_missing: bool, leaves: int, words: int
) -> None:
    booster = _booster(classes, use_missing=use_missing, leaves=leaves)
    paths, forest = _forest(booster, classes)
    assert forest.bitvectors is not None and forest.bitvectors.words.max() == words  # the trees really are that large
    for n in (1, 33, 130, 2100):  # one row (the node walk's), partial blocks, the parallel kernel
        x = _rows(booster, n)
        raw, credit = forest.raw_and_credit(x)
        np.testing.assert_array_equal(raw, np.asarray(booster.predict(x, raw_score=True)).reshape(raw.shape))
        np.testing.assert_array_equal(paths.sign * credit, paths.contributions(booster.predict(x, pred_leaf=True)))
        walked_raw, walked_credit = dataclasses.replace(forest, bitvectors=None).raw_and_credit(x)
        np.testing.assert_array_equal(raw, walked_raw)
        np.testing.assert_array_equal(credit, walked_credit)


@pytest.mark.parametrize(("leaves", "max_bin", "rounds"), [(200, 63, 25), (31, 1023, 150)])
def test_forests_too_large_for_the_bitvectors_keep_the_exact_node_walk(leaves: int, max_bin: int, rounds: int) -> None:
    """More than 128 leaves in a tree, or more than 254 thresholds of a feature: the node walk answers, as exactly."""
    booster = _booster(2, leaves=leaves, max_bin=max_bin, rounds=rounds)
    dump = booster.dump_model()
    most_leaves = max(info["num_leaves"] for info in dump["tree_info"])
    most_cuts = max(len({n["threshold"] for info in dump["tree_info"] for n in _internal_nodes(info["tree_structure"]) if n["split_feature"] == j})
                    for j in range(6))  # fmt: skip
    assert most_leaves > 128 or most_cuts > 254  # the booster really is outside the vector kernel's bounds
    paths, forest = _forest(booster, 2)
    assert forest.bitvectors is None
    x = _rows(booster, 700)
    raw, credit = forest.raw_and_credit(x)
    np.testing.assert_array_equal(raw, np.asarray(booster.predict(x, raw_score=True)).reshape(raw.shape))
    np.testing.assert_array_equal(paths.sign * credit, paths.contributions(booster.predict(x, pred_leaf=True)))


def test_single_records_take_the_node_walk_with_the_bitvectors_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    """Below BITVECTOR_MIN_ROWS rows the node walk answers (a bit-vector call scores a whole 64-row
    block); forced through the bit vectors, the same rows get the same bits."""
    import tracseq_dagster.serving.compiled_trees as compiled_trees

    booster = _booster(3, use_missing=True, leaves=48)
    _, forest = _forest(booster, 3)
    assert forest.bitvectors is not None and compiled_trees.BITVECTOR_MIN_ROWS > 1
    calls: list[int] = []
    score = type(forest.bitvectors).score
    monkeypatch.setattr(
        type(forest.bitvectors), "score", lambda self, bins, *a: (calls.append(len(bins)), score(self, bins, *a))[1]
    )
    x = _rows(booster, compiled_trees.BITVECTOR_MIN_ROWS - 1)
    walked = forest.raw_and_credit(x)
    assert not calls  # the node walk answered
    monkeypatch.setattr(compiled_trees, "BITVECTOR_MIN_ROWS", 1)
    vectored = forest.raw_and_credit(x)
    assert calls  # the bit vectors answered
    np.testing.assert_array_equal(walked[0], vectored[0])
    np.testing.assert_array_equal(walked[1], vectored[1])
