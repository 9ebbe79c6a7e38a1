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

* XGBoost: the raw score, as for histogram boosting; a split's expected value is the
  cover-weighted mean of its children's (what XGBoost's own ``approx_contribs`` uses).

Cost: a compiled walk (:mod:`.tree_walk`) finds each row's leaf per tree, exactly as the
model's own walk does (checked against it, ``apply``/``pred_leaf``/the predictor, on the first
batch and dropped for good if they ever differ); then a compiled walk from the leaf up to the
root adds each node's credit (:func:`_walk_up`): depth-many additions per tree and row, no
per-leaf table (a deep random forest has millions of leaves). The same pass adds each leaf's
values, so the probabilities come out of it too and the model is not walked a second time.
Before the compiled leaf walk, the models' own walks cost 71 µs of CPU a row for a random
forest of 150 trees 15 deep and 75 for histogram boosting of 750 trees
(``benchmarks/serving.py --per-family``); see BENCHMARKS.md for the compiled walk's.

Splits are credited on the estimator's columns; ``feature_of_column`` maps each to the served
feature it comes from (a number and its missing indicator, a category's one-hot or ordinal
column), see :mod:`.pipeline_arrays`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np

from tracseq_dagster.serving.compiled_trees import CompiledForest
from tracseq_dagster.serving.leaf_bitvectors import MAX_LEAVES
from tracseq_dagster.serving.threshold_bins import PARALLEL_ROWS
from tracseq_dagster.serving.tree_dumps import lightgbm_dump, split_by_size
from tracseq_dagster.serving.tree_walk import CATEGORIES, FlatTrees, TreeArrays, float32_below

#: Rows scored at a time: the leaf matrix (rows × trees) stays small (8192 × 900 trees ≈ 60 MB).
CHUNK_ROWS = 8192
#: Largest per-leaf credit table kept (a leaf's row replaces its walk up to the root); past it, walk up.
LEAF_TABLE_BYTES = 64 << 20
#: The one-time checks of every fast path against the model's own answers (here: leaves and
#: compiled kernels; in :mod:`.scoring`: numpy input, LightGBM's kernel, values) compare this many
#: rows of the first batch: all of a 100,000-row first batch cost LightGBM's own walk, ~75 µs a
#: row, 7.5 s of CPU.
CHECKED_ROWS = 1000


class CompiledPaths:
    """A boosted forest scored by :mod:`.compiled_trees` (its trees written as a LightGBM dump,
    :mod:`.tree_dumps`), checked once against the leaf walk and dropped for good if they differ.

    Trees small enough for the leaf bit vectors form one compiled forest, the others a second
    (node walk), so one large tree (a category chain repeats subtrees) does not send every tree
    to the slower kernel; their raw scores and credits are added.
    """

    def __init__(self, forests: list[CompiledForest], prepare: Callable[[np.ndarray], np.ndarray]) -> None:
        self.forests: list[CompiledForest] | None = forests
        self.prepare = prepare  # estimator input → what the trees compare (float32-rounded, or the booster's own columns)
        self.checked = False

    @property
    def forest(self) -> CompiledForest | None:
        """The forest of the small trees (the bit vectors'), or the only one; None once dropped."""
        return self.forests[0] if self.forests else None

    @classmethod
    def of(cls, trees: list[TreeArrays], leaf_values: list[np.ndarray], per_iteration: int, width: int,
           paths: ForestPaths, prepare: Callable[[np.ndarray], np.ndarray]) -> CompiledPaths | None:  # fmt: skip
        if paths.leaf_credit is None or paths.row_of_node is None:
            return None
        tables = {}  # per explaining tree, its leaves' credit rows in the dump's leaf order (own node numbers)
        for t, tree in enumerate(trees):
            if paths.explains[t]:
                tables[t] = paths.leaf_credit[paths.row_of_node[paths.offsets[t] + np.flatnonzero(tree.left < 0)]]
        whole = lightgbm_dump(trees, leaf_values, per_iteration, width)
        if whole is None:
            return None
        forests = []
        for numbers, dump in split_by_size(whole, MAX_LEAVES):
            own_tables = {i: tables[t] for i, t in enumerate(numbers) if t in tables}
            forest = CompiledForest.of(dump, own_tables, zero=0.0)  # these models read values as they are (see tree_dumps)
            if forest is None:
                return None
            forests.append(forest)
        return cls(forests, prepare)

    def outputs_and_contributions(self, matrix: np.ndarray, paths: ForestPaths) -> tuple[np.ndarray, np.ndarray] | None:
        if not self.forests:
            return None
        x = self.prepare(matrix)
        raw, credit = self.forests[0].raw_and_credit(x)
        for forest in self.forests[1:]:
            more_raw, more_credit = forest.raw_and_credit(x)
            raw += more_raw
            credit += more_credit
        outputs, contributions = raw + paths.base, paths.sign * credit
        if not self.checked:
            walked_outputs, walked_contributions = paths.walked(matrix[:CHECKED_ROWS])
            n = len(walked_outputs)
            if not (np.allclose(outputs[:n], walked_outputs, rtol=0.0, atol=1e-12)
                    and np.allclose(contributions[:n], walked_contributions, rtol=1e-9, atol=1e-9)):  # fmt: skip
                self.forests = None
                return None
            self.checked = True
        return outputs, contributions


class CheckedLeaves:
    """Leaves from the compiled walk, checked once against the model's own (``own``), which
    answers from then on if they ever differ."""

    def __init__(self, walk: FlatTrees | _Preprocessed | None, own: Callable[[np.ndarray], np.ndarray]) -> None:
        self.walk = walk
        self.own = own
        self.checked = False

    def __call__(self, matrix: np.ndarray) -> np.ndarray:
        if self.walk is None:
            return np.asarray(self.own(matrix), dtype=np.int64)
        leaves = self.walk.leaves(matrix)
        if not self.checked:
            head = np.asarray(self.own(matrix[:CHECKED_ROWS]), dtype=np.int64).reshape(leaves[:CHECKED_ROWS].shape)
            if not np.array_equal(head, leaves[:CHECKED_ROWS]):
                self.walk = None
                return np.asarray(self.own(matrix), dtype=np.int64)
            self.checked = True
        return leaves


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
    leaves: CheckedLeaves  # estimator input → (rows, trees) node numbers within each tree
    features: int
    compiled: CompiledPaths | None = None  # the same trees in LightGBM's compiled kernels, where they can be
    row_of_node: np.ndarray | None = None  # (nodes,) a leaf of an explaining tree: its row of leaf_credit; else -1
    leaf_credit: np.ndarray | None = None  # (leaves, features) each leaf's summed path credit (None: too large, walk up)

    def outputs_and_contributions(self, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(rows, outputs) raw outputs and (rows, features) contributions toward the target."""
        if self.compiled is not None:
            scored = self.compiled.outputs_and_contributions(matrix, self)
            if scored is not None:
                return scored
        return self.walked(matrix)

    def walked(self, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`outputs_and_contributions` by the leaf walk and the walk up to the roots."""
        n = len(matrix)
        outputs = np.zeros((n, self.values.shape[1]))
        credit = np.zeros((n, self.features))
        for start in range(0, n, CHUNK_ROWS):
            rows = slice(start, min(n, start + CHUNK_ROWS))
            leaves = np.ascontiguousarray(self.leaves(matrix[rows]), dtype=np.int64)
            if self.leaf_credit is not None:
                add = _add_leaf_rows if len(leaves) >= PARALLEL_ROWS else _add_leaf_rows_serial
                add(
                    leaves,
                    self.offsets,
                    self.row_of_node,
                    self.values,
                    self.explains,
                    self.leaf_credit,
                    outputs[rows],
                    credit[rows],
                )
            else:
                _walk_up(leaves, self.offsets, self.parent, self.feature, self.delta, self.values, self.explains,
                         outputs[rows], credit[rows])  # fmt: skip
        outputs += self.base
        return outputs, self.sign * credit

    @classmethod
    def of_random_forest(cls, forest: Any, feature_of_column: np.ndarray, features: int, target: int | None) -> ForestPaths:
        """A fitted ``RandomForest*``/``ExtraTrees*`` (or one decision tree): averaged class fractions, or predictions."""
        trees = list(getattr(forest, "estimators_", [forest]))
        n_trees = len(trees)
        parts, walked = [], []
        for tree in trees:
            t = tree.tree_
            missing = getattr(t, "missing_go_to_left", np.zeros(t.node_count, dtype=bool))
            walked.append(TreeArrays(t.children_left, t.children_right, t.feature, t.threshold, missing))
            value = np.asarray(t.value[:, 0, :], dtype=np.float64)
            if target is not None:  # class fractions, as predict_proba normalises them
                totals = value.sum(axis=1, keepdims=True)
                value = np.divide(value, totals, out=np.zeros_like(value), where=totals > 0)
            expected = value[:, target if target is not None else 0] / n_trees
            leaf = t.children_left < 0
            parent, split = _parents(t.children_left, t.children_right, t.feature)
            parts.append((parent, split, expected, np.where(leaf[:, None], value / n_trees, 0.0)))
        outputs = trees[0].tree_.value.shape[2] if target is not None else 1
        own = (lambda m: forest.apply(m)) if hasattr(forest, "estimators_") else (lambda m: forest.apply(m)[:, None])
        leaves = CheckedLeaves(FlatTrees.of(walked, float32_input=True), own)  # sklearn's trees read float32
        return cls._flatten(
            parts, feature_of_column, features, np.zeros(outputs), target or 0, 1.0, np.ones(n_trees, bool), leaves
        )

    @classmethod
    def of_hist_gradient_boosting(
        cls, booster: Any, feature_of_column: np.ndarray, features: int, target: int | None
    ) -> ForestPaths:
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
        known, f_idx_map = booster._bin_mapper.make_known_categories_bitsets()
        parts, explains, leaf_predictors, walked = [], [], [], []
        for iteration in booster._predictors:
            for k, predictor in enumerate(iteration):
                nodes = predictor.nodes
                left, right = nodes["left"].astype(np.int64), nodes["right"].astype(np.int64)
                leaf = nodes["is_leaf"].astype(bool)
                left[leaf], right[leaf] = -1, -1
                expected = _count_weighted(nodes["value"].astype(np.float64), nodes["count"].astype(np.float64), left, right)
                parent, split = _parents(
                    left, right, np.where(leaf, -1, internal[np.minimum(nodes["feature_idx"], len(internal) - 1)])
                )
                values = np.zeros((len(nodes), per_iteration))
                values[leaf, k] = nodes["value"][leaf]
                parts.append((parent, split, expected if k == own else np.zeros(len(nodes)), values))
                explains.append(k == own)
                numbered = nodes.copy()
                numbered["value"] = np.arange(len(nodes), dtype=np.float64)  # the "prediction" is the leaf's node number
                leaf_predictors.append(TreePredictor(numbered, predictor.binned_left_cat_bitsets, predictor.raw_left_cat_bitsets))
                walked.append(TreeArrays(left, right, nodes["feature_idx"], nodes["num_threshold"], nodes["missing_go_to_left"],
                                         _category_tables(nodes, predictor.raw_left_cat_bitsets, known, f_idx_map)))  # fmt: skip

        def own_leaves(matrix: np.ndarray) -> np.ndarray:
            # One OpenMP thread: after each of the hundreds of per-tree calls, idle OpenMP workers
            # spin; with all cores, 20,000 rows cost 718 µs of CPU a row here, against 75 on one.
            x = booster._preprocess_X(matrix, reset=False)
            out = np.empty((len(x), len(leaf_predictors)), dtype=np.int64)
            for t, predictor in enumerate(leaf_predictors):
                out[:, t] = predictor.predict(x, known, f_idx_map, 1)
            return out

        # histogram boosting reads float64, its own preprocessing applied (categorical columns first)
        walk = FlatTrees.of(walked, float32_input=False)
        leaves = CheckedLeaves(_Preprocessed(walk, booster), own_leaves)
        base = np.asarray(booster._baseline_prediction, dtype=np.float64).reshape(-1)
        sign = -1.0 if binary and target == 0 else 1.0
        paths = cls._flatten(parts, feature_of_column, features, base, own, sign, np.asarray(explains), leaves)
        leaf_values = [np.asarray(p.nodes["value"], dtype=np.float64) for iteration in booster._predictors for p in iteration]
        compiled = CompiledPaths.of(walked, leaf_values, per_iteration, booster.n_features_in_, paths,
                                    lambda m: booster._preprocess_X(m, reset=False))  # fmt: skip
        return dataclasses.replace(paths, compiled=compiled)

    @classmethod
    def of_xgboost(cls, model: Any, feature_of_column: np.ndarray, features: int, target: int | None) -> ForestPaths | None:
        """A fitted ``XGBClassifier``/``XGBRegressor`` of numeric splits: raw scores (margins).

        None for what its trees do not say alone: categorical splits, several trees per round
        (``num_parallel_tree``), or a regression objective whose prediction is not the margin.
        """
        import json

        import xgboost

        booster = model.get_booster()
        learner = json.loads(booster.save_raw("json"))["learner"]
        gbm = learner["gradient_booster"]
        objective = learner["objective"]["name"]
        if gbm.get("name") != "gbtree" or (target is None and objective not in ("reg:squarederror", "reg:linear")):
            return None
        trees, tree_class = gbm["model"]["trees"], gbm["model"]["tree_info"]
        if any(any(t["split_type"]) for t in trees) or int(gbm["model"]["gbtree_model_param"].get("num_parallel_tree", 1)) != 1:
            return None
        outputs = max(int(learner["learner_model_param"]["num_class"]), 1)
        binary = target is not None and outputs == 1
        own = 0 if (target is None or binary) else target
        parts, explains, walked = [], [], []
        for tree, k in zip(trees, tree_class, strict=True):
            left, right = np.asarray(tree["left_children"], dtype=np.int64), np.asarray(tree["right_children"], dtype=np.int64)
            leaf = left < 0
            condition = np.asarray(tree["split_conditions"], dtype=np.float32)  # at a leaf: its value
            leaf_value = np.where(leaf, condition.astype(np.float64), 0.0)
            expected = _count_weighted(leaf_value, np.asarray(tree["sum_hessian"], dtype=np.float64), left, right)
            split_column = np.where(leaf, -1, np.asarray(tree["split_indices"], dtype=np.int64))
            parent, split = _parents(left, right, split_column)
            values = np.zeros((len(left), outputs))
            values[leaf, k] = leaf_value[leaf]
            parts.append((parent, split, expected if k == own else np.zeros(len(left)), values))
            explains.append(k == own)
            # XGBoost goes left when x < condition (float32): x <= the float32 below it
            walked.append(TreeArrays(left, right, np.maximum(split_column, 0), float32_below(condition),
                                     np.asarray(tree["default_left"], dtype=bool)))  # fmt: skip

        def own_leaves(matrix: np.ndarray) -> np.ndarray:
            return np.asarray(booster.predict(xgboost.DMatrix(matrix), pred_leaf=True), dtype=np.int64).reshape(len(matrix), -1)

        leaves = CheckedLeaves(FlatTrees.of(walked, float32_input=True), own_leaves)
        # The base margin (base_score on the margin's scale) is what the model adds to its leaves.
        probe = np.zeros((1, int(learner["learner_model_param"]["num_feature"])))
        margin = np.asarray(booster.predict(xgboost.DMatrix(probe), output_margin=True), dtype=np.float64).reshape(-1)
        summed = np.zeros(outputs)
        for t, leaf_index in enumerate(own_leaves(probe)[0]):
            summed += parts[t][3][leaf_index]
        base = margin - summed
        sign = -1.0 if binary and target == 0 else 1.0
        paths = cls._flatten(parts, feature_of_column, features, base, own, sign, np.asarray(explains), leaves)
        if list(tree_class) != [t % outputs for t in range(len(trees))]:  # the kernels' order of classes
            return paths
        leaf_values = [np.asarray(tree["split_conditions"], dtype=np.float32).astype(np.float64) for tree in trees]
        compiled = CompiledPaths.of(walked, leaf_values, outputs, int(learner["learner_model_param"]["num_feature"]), paths,
                                    lambda m: np.asarray(m, dtype=np.float32).astype(np.float64))  # fmt: skip
        return dataclasses.replace(paths, compiled=compiled)

    @classmethod
    def _flatten(cls, parts: Sequence[tuple[np.ndarray, ...]], feature_of_column: np.ndarray, features: int, base: np.ndarray,
                 target_column: int, sign: float, explains: np.ndarray, leaves: CheckedLeaves) -> ForestPaths:  # fmt: skip
        sizes = np.array([len(p[0]) for p in parts])
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        parent = np.concatenate([np.where(p[0] >= 0, p[0] + o, -1) for p, o in zip(parts, offsets, strict=True)])
        split = np.concatenate([p[1] for p in parts])
        expected = np.concatenate([p[2] for p in parts])
        feature = np.where(parent >= 0, feature_of_column[np.maximum(split, 0)], 0).astype(np.int64)
        delta = np.where(parent >= 0, expected - expected[np.maximum(parent, 0)], 0.0)
        roots = offsets
        bias = sign * (float(expected[roots].sum()) + float(base[target_column]))
        parent = parent.astype(np.int64)
        row_of_node, leaf_credit = _leaf_credit(parent, feature, delta, offsets, sizes, explains, features)
        return cls(offsets, parent, feature, delta, np.concatenate([p[3] for p in parts]), explains.astype(np.bool_), base,
                   bias, target_column, sign, leaves, features, row_of_node=row_of_node, leaf_credit=leaf_credit)  # fmt: skip


class _Preprocessed:
    """A walk over the columns a histogram booster reads (its ``_preprocess_X``: categorical columns first)."""

    def __init__(self, walk: FlatTrees, booster: Any) -> None:
        self.walk, self.booster = walk, booster

    def leaves(self, matrix: np.ndarray) -> np.ndarray:
        return self.walk.leaves(self.booster._preprocess_X(matrix, reset=False))


def _category_tables(
    nodes: np.ndarray, left_bitsets: np.ndarray, known: np.ndarray, f_idx_map: np.ndarray
) -> dict[int, np.ndarray]:
    """Per categorical split of a histogram-boosting tree: which category codes go left.

    Its predictor's rule: a category in the split's left set goes left; else a category known
    at training goes right; else (unknown) it goes where missing values go.
    """
    codes = np.arange(CATEGORIES)

    def members(bitset: np.ndarray) -> np.ndarray:
        return ((np.asarray(bitset, dtype=np.uint32)[codes // 32] >> (codes % 32).astype(np.uint32)) & 1).astype(bool)

    tables = {}
    for node in np.flatnonzero(nodes["is_categorical"] & ~nodes["is_leaf"].astype(bool)):
        goes_left = members(left_bitsets[nodes["bitset_idx"][node]])
        known_here = members(known[f_idx_map[nodes["feature_idx"][node]]])
        tables[int(node)] = np.where(goes_left, True, np.where(known_here, False, bool(nodes["missing_go_to_left"][node])))
    return tables


def _leaf_credit(parent: np.ndarray, feature: np.ndarray, delta: np.ndarray, offsets: np.ndarray, sizes: np.ndarray,
                 explains: np.ndarray, features: int) -> tuple[np.ndarray | None, np.ndarray | None]:  # fmt: skip
    """Each explaining tree's leaves' path credit as table rows (None, None past ``LEAF_TABLE_BYTES``)."""
    leaf = np.ones(len(parent), dtype=bool)
    leaf[parent[parent >= 0]] = False
    leaf &= np.repeat(np.asarray(explains, dtype=bool), sizes)
    if int(leaf.sum()) * features * 8 > LEAF_TABLE_BYTES:
        return None, None
    row_of_node = np.where(leaf, np.cumsum(leaf) - 1, -1).astype(np.int64)
    table = np.zeros((int(leaf.sum()), features))
    _sum_paths(parent, feature, delta, row_of_node, table)
    return row_of_node, table


@numba.njit(cache=True, nogil=True)
def _sum_paths(parent, feature, delta, row_of_node, table):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    """Per leaf with a row: the credit of every node from it up to the root, into its row."""
    for node in range(parent.shape[0]):
        row = row_of_node[node]
        if row >= 0:
            walk = node
            while parent[walk] >= 0:
                table[row, feature[walk]] += delta[walk]
                walk = parent[walk]


@numba.njit(inline="always")
def _add_leaf_row(i, leaves, offsets, row_of_node, values, explains, table, outputs, credit):  # type: ignore[no-untyped-def]  # pragma: no cover
    for t in range(leaves.shape[1]):
        node = offsets[t] + leaves[i, t]
        for o in range(values.shape[1]):
            outputs[i, o] += values[node, o]
        if explains[t]:
            row = row_of_node[node]
            for j in range(table.shape[1]):
                credit[i, j] += table[row, j]


# Two kernels with their own names (numba's cache does not key on `parallel`; see compiled_trees).
@numba.njit(parallel=True, cache=True, nogil=True)
def _add_leaf_rows(leaves, offsets, row_of_node, values, explains, table, outputs, credit):  # type: ignore[no-untyped-def]  # pragma: no cover
    """For every row and tree: add the leaf's values and its row of path credit."""
    for i in numba.prange(leaves.shape[0]):
        _add_leaf_row(i, leaves, offsets, row_of_node, values, explains, table, outputs, credit)


@numba.njit(cache=True, nogil=True)
def _add_leaf_rows_serial(leaves, offsets, row_of_node, values, explains, table, outputs, credit):  # type: ignore[no-untyped-def]  # pragma: no cover
    for i in range(leaves.shape[0]):
        _add_leaf_row(i, leaves, offsets, row_of_node, values, explains, table, outputs, credit)


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
            expected[node] = (
                (weight[a] * expected[a] + weight[b] * expected[b]) / total if total > 0 else 0.5 * (expected[a] + expected[b])
            )
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
