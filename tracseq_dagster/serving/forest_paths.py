"""Tree-path (Saabas) attributions of scikit-learn's forests: random forests and histogram gradient boosting.

Along a row's path through a tree, every split moves the expected output from the node's to
the child's; the move is credited to the split's feature. Over a tree the moves add up to the
leaf's value minus the root's, so over the forest the credits plus a bias (the roots) add up
exactly to the model's output:

* random forests: the averaged class probability of the target class (each tree's node values
  are the class fractions sklearn predicts with), or the averaged prediction for a regressor;
* histogram gradient boosting: the raw score (log-odds for binary, the target class's own raw
  score for multiclass, as for LightGBM in :mod:`.scoring`; the prediction for squared-error
  regression). sklearn stores no expected value at a split node, so it is the training-count
  weighted mean of its children's (the leaves hold the shrunk values that are summed).

Cost: the model's own tree walk gives each row's leaf per tree (``apply`` for forests; for
histogram boosting its own compiled predictor, on one thread, over copies of the trees whose
"leaf values" are node numbers), then a compiled walk from the leaf up to the root adds each node's credit
(:func:`_walk_up`): depth-many additions per tree and row, no per-leaf table (a deep random
forest has millions of leaves). The same pass adds each leaf's values, so the probabilities
come out of it too and the model is not walked a second time. Measured on the benchmark's
champions (``benchmarks/serving.py --per-family``): 71 µs of CPU a row for a random forest of
150 trees 15 deep, 75 for histogram boosting of 750 trees; the trees' own walk is most of it.

Splits are credited on the estimator's columns; ``feature_of_column`` maps each to the served
feature it comes from (a number and its missing indicator, a category's one-hot or ordinal
column), see :mod:`.pipeline_arrays`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np

#: Rows scored at a time: the leaf matrix (rows × trees) stays small (8192 × 900 trees ≈ 60 MB).
CHUNK_ROWS = 8192


@dataclass(frozen=True)
class ForestPaths:
    """One forest's nodes, flattened: parent, credited feature, credit toward the target, leaf values."""

    offsets: np.ndarray  # (trees,) first flat node of each tree
    parent: np.ndarray  # (nodes,) flat parent, -1 at a root
    feature: np.ndarray  # (nodes,) served feature credited for reaching this node (its parent's split)
    delta: np.ndarray  # (nodes,) expected target output here minus at the parent
    values: np.ndarray  # (nodes, outputs) what a leaf adds to each output
    explains: np.ndarray  # (trees,) bool: the tree moves the target output (others are only summed)
    base: np.ndarray  # (outputs,) constant added to the outputs
    bias: float  # the target output at the roots: what the contributions add to
    target_column: int  # the output the contributions explain
    sign: float  # +1, or -1 when a binary model's one output is the other class's log-odds
    leaves: Callable[[np.ndarray], np.ndarray]  # estimator input → (rows, trees) node numbers within each tree
    features: int

    def outputs_and_contributions(self, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(rows, outputs) raw outputs and (rows, features) contributions toward the target."""
        n = len(matrix)
        outputs = np.zeros((n, self.values.shape[1]))
        credit = np.zeros((n, self.features))
        for start in range(0, n, CHUNK_ROWS):
            rows = slice(start, min(n, start + CHUNK_ROWS))
            leaves = np.ascontiguousarray(self.leaves(matrix[rows]), dtype=np.int64)
            _walk_up(leaves, self.offsets, self.parent, self.feature, self.delta, self.values, self.explains,
                     outputs[rows], credit[rows])  # fmt: skip
        outputs += self.base
        return outputs, self.sign * credit

    @classmethod
    def of_random_forest(cls, forest: Any, feature_of_column: np.ndarray, features: int, target: int | None) -> ForestPaths:
        """A fitted ``RandomForest*``/``ExtraTrees*`` (or one decision tree): averaged class fractions, or predictions."""
        trees = list(getattr(forest, "estimators_", [forest]))
        n_trees = len(trees)
        parts = []
        for tree in trees:
            t = tree.tree_
            value = np.asarray(t.value[:, 0, :], dtype=np.float64)
            if target is not None:  # class fractions, as predict_proba normalises them
                totals = value.sum(axis=1, keepdims=True)
                value = np.divide(value, totals, out=np.zeros_like(value), where=totals > 0)
            expected = value[:, target if target is not None else 0] / n_trees
            leaf = t.children_left < 0
            parent, split = _parents(t.children_left, t.children_right, t.feature)
            parts.append((parent, split, expected, np.where(leaf[:, None], value / n_trees, 0.0)))
        outputs = trees[0].tree_.value.shape[2] if target is not None else 1
        return cls._flatten(parts, feature_of_column, features, np.zeros(outputs), target or 0, 1.0, np.ones(n_trees, bool),
                            lambda m: forest.apply(m) if hasattr(forest, "estimators_") else forest.apply(m)[:, None])  # fmt: skip

    @classmethod
    def of_hist_gradient_boosting(cls, booster: Any, feature_of_column: np.ndarray, features: int, target: int | None) -> ForestPaths:
        """A fitted ``HistGradientBoosting*``: raw scores (see the module docstring)."""
        from sklearn.ensemble._hist_gradient_boosting.predictor import TreePredictor

        per_iteration = booster.n_trees_per_iteration_
        binary = target is not None and per_iteration == 1
        own = 0 if (target is None or binary) else target
        # the booster's own preprocessor puts categorical columns first: its feature i is our column internal[i]
        categorical = getattr(booster, "_is_categorical_remapped", None)
        mask = getattr(booster, "is_categorical_", None)
        internal = np.arange(booster.n_features_in_) if categorical is None or mask is None else \
            np.concatenate([np.flatnonzero(mask), np.flatnonzero(~np.asarray(mask))])  # fmt: skip
        parts, explains, leaf_predictors = [], [], []
        for iteration in booster._predictors:
            for k, predictor in enumerate(iteration):
                nodes = predictor.nodes
                left, right = nodes["left"].astype(np.int64), nodes["right"].astype(np.int64)
                leaf = nodes["is_leaf"].astype(bool)
                left[leaf], right[leaf] = -1, -1
                expected = _count_weighted(nodes["value"].astype(np.float64), nodes["count"].astype(np.float64), left, right)
                parent, split = _parents(left, right, np.where(leaf, -1, internal[np.minimum(nodes["feature_idx"], len(internal) - 1)]))
                values = np.zeros((len(nodes), per_iteration))
                values[leaf, k] = nodes["value"][leaf]
                parts.append((parent, split, expected if k == own else np.zeros(len(nodes)), values))
                explains.append(k == own)
                numbered = nodes.copy()
                numbered["value"] = np.arange(len(nodes), dtype=np.float64)  # the "prediction" is the leaf's node number
                leaf_predictors.append(TreePredictor(numbered, predictor.binned_left_cat_bitsets, predictor.raw_left_cat_bitsets))
        known, f_idx_map = booster._bin_mapper.make_known_categories_bitsets()

        def leaves(matrix: np.ndarray) -> np.ndarray:
            # One OpenMP thread: after each of the hundreds of per-tree calls, idle OpenMP workers
            # spin; with all cores, 20,000 rows cost 718 µs of CPU a row here, against 75 on one.
            x = booster._preprocess_X(matrix, reset=False)
            out = np.empty((len(x), len(leaf_predictors)), dtype=np.int64)
            for t, predictor in enumerate(leaf_predictors):
                out[:, t] = predictor.predict(x, known, f_idx_map, 1)
            return out

        base = np.asarray(booster._baseline_prediction, dtype=np.float64).reshape(-1)
        sign = -1.0 if binary and target == 0 else 1.0
        return cls._flatten(parts, feature_of_column, features, base, own, sign, np.asarray(explains), leaves)

    @classmethod
    def _flatten(cls, parts: list[tuple[np.ndarray, ...]], feature_of_column: np.ndarray, features: int, base: np.ndarray,
                 target_column: int, sign: float, explains: np.ndarray, leaves: Callable[[np.ndarray], np.ndarray]) -> ForestPaths:  # fmt: skip
        sizes = np.array([len(p[0]) for p in parts])
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        parent = np.concatenate([np.where(p[0] >= 0, p[0] + o, -1) for p, o in zip(parts, offsets, strict=True)])
        split = np.concatenate([p[1] for p in parts])
        expected = np.concatenate([p[2] for p in parts])
        feature = np.where(parent >= 0, feature_of_column[np.maximum(split, 0)], 0).astype(np.int64)
        delta = np.where(parent >= 0, expected - expected[np.maximum(parent, 0)], 0.0)
        roots = offsets
        bias = sign * (float(expected[roots].sum()) + float(base[target_column]))
        return cls(offsets, parent.astype(np.int64), feature, delta, np.concatenate([p[3] for p in parts]),
                   explains.astype(np.bool_), base, bias, target_column, sign, leaves, features)  # fmt: skip


def _parents(left: np.ndarray, right: np.ndarray, split_feature: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per node: its parent (-1 at the root) and the column its parent splits on (-1 at the root)."""
    parent = np.full(len(left), -1, dtype=np.int64)
    nodes = np.flatnonzero(left >= 0)
    parent[left[nodes]] = nodes
    parent[right[nodes]] = nodes
    split = np.where(parent >= 0, np.asarray(split_feature)[np.maximum(parent, 0)], -1)
    return parent, split


def _count_weighted(value: np.ndarray, count: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Leaves keep their value; a split node gets its children's training-count weighted mean (children come after parents)."""
    expected = value.copy()
    weight = count.copy()
    for node in range(len(value) - 1, -1, -1):
        if left[node] >= 0:
            a, b = left[node], right[node]
            total = weight[a] + weight[b]
            expected[node] = (weight[a] * expected[a] + weight[b] * expected[b]) / total if total > 0 else 0.5 * (expected[a] + expected[b])
            weight[node] = total
    return expected


@numba.njit(cache=True, nogil=True)
def _walk_up(leaves, offsets, parent, feature, delta, values, explains, outputs, credit):  # type: ignore[no-untyped-def]
    """For every row and tree: add the leaf's values, and each node's credit from the leaf up to the root."""
    n, trees = leaves.shape
    width = values.shape[1]
    for i in range(n):
        for t in range(trees):
            node = offsets[t] + leaves[i, t]
            for o in range(width):
                outputs[i, o] += values[node, o]
            if explains[t]:
                while parent[node] >= 0:
                    credit[i, feature[node]] += delta[node]
                    node = parent[node]
