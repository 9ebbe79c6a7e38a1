"""A LightGBM forest flattened into arrays and scored by compiled (numba) kernels.

LightGBM's own predictor costs about 75 µs of CPU per row on a 1,200-tree champion here
(``pred_leaf`` also materialises a rows × trees leaf matrix: 480 MB for 100,000 rows), which
caps batch scoring near 13,000 rows/s per core. This kernel walks every tree for a block of
rows at a time (the block's independent walks overlap in the CPU), adds each leaf's value to
its class's raw score and, for the trees of the ``pass`` class, each leaf's path credit to the
row's per-feature contributions (the tree-path attribution of :mod:`.scoring`): scores and
explanations in one pass, no leaf matrix, rows spread over all cores.

Two kernels, the same answers to the bit: forests whose trees have at most 128 leaves are
scored 64 rows at a time with leaf bit vectors (:mod:`.leaf_bitvectors`, about 4 µs of CPU
per row on that champion); the others, and micro-batches of fewer than ``BITVECTOR_MIN_ROWS``
rows (single records), by the node walk below.

How a level of the node walk costs little (about 16 µs of CPU per row on that champion, against 20 for a plain
walk of float thresholds): the rows are first *binned* (:func:`.threshold_bins.bin_rows`), per
feature, as the number of the forest's thresholds of that feature below the value (NaN as bin 0), so a split
``x <= threshold`` becomes a comparison of small integers; a node is one 64-bit record (feature,
threshold bin, where NaN goes, first child), siblings are adjacent (the child is
``first + went_right``), and a leaf is a node that leads to itself, so a walk needs no branch.

It reproduces LightGBM's numerical decision exactly (``x <= threshold`` in double precision;
missing type ``NaN``: NaN follows ``default_left``; ``None``: NaN counts as 0; magnitudes up to
LightGBM's 1e-35 count as 0, as its predictor reads them), and sums the
trees in LightGBM's order. Categorical splits (a set of codes goes left) read a derived 0/1
column per distinct split (:mod:`.category_splits`). Forests with zero-as-missing splits are not compiled
(:meth:`CompiledForest.of` returns None) and keep LightGBM's predictor; :class:`.scoring.QualityScorer` also checks the kernel against
LightGBM's raw scores on the first batch (its first ``CHECKED_ROWS``) and drops it, for good, if they
ever differ.
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np

from tracseq_dagster.serving.category_splits import CategorySplits
from tracseq_dagster.serving.leaf_bitvectors import LeafBitvectors
from tracseq_dagster.serving.threshold_bins import PAD_ROWS, PARALLEL_ROWS, ZERO_THRESHOLD, bin_rows

_BLOCK = 64
assert PAD_ROWS % _BLOCK == 0  # a block never reads past the binned rows
_LANES = 8  # rows walked in lockstep (written out in _step_lanes)
#: Below this many rows the node walk answers: the bit vectors score a whole 64-row block per
#: call (about 300 µs of CPU for 1 row on a 750-tree champion, against 90 for the node walk,
#: which stops at the last row); from 32 rows on they are the cheaper (BENCHMARKS.md).
BITVECTOR_MIN_ROWS = 32
# A node record (int64, see _node): bits 0-15 the feature, bit 16 set when NaN goes right,
# bits 17-32 the limit its bin is compared with (a leaf's is _LEAF_LIMIT, which no bin passes),
# bits 33-63 the first child (the right child follows it; a leaf's is itself).
_FEATURE_BITS = 16
_LIMIT_SHIFT = 17
_LIMIT_MASK = 0xFFFF
_CHILD_SHIFT = 33
_LEAF_LIMIT = _LIMIT_MASK
# numba's default (workqueue) threading layer must not be entered by two Python threads at
# once, and the service scores on several (micro-batches, batch routes): one kernel at a time,
# each already using every core.
_KERNEL_LOCK = threading.Lock()


@dataclass(frozen=True)
class CompiledForest:
    """Every node of every tree as one record (see ``_node``), and what the leaves add up to."""

    nodes: np.ndarray  # int64 records; each tree's nodes together, siblings adjacent
    roots: np.ndarray  # int64, per tree: its root node
    min_depth: np.ndarray  # int64, per tree: its shallowest leaf's depth (levels walked without checking)
    leaf_of_node: np.ndarray  # int64, per node: its leaf (LightGBM's order over all trees), -1 if internal
    cuts: np.ndarray  # float64 (features, most thresholds): each feature's distinct thresholds ascending, +inf padded
    cut_count: np.ndarray  # int64, per feature: how many of its cuts are real
    tree_class: np.ndarray  # int32, per tree: the class whose raw score it adds to
    explains: np.ndarray  # bool, per tree: its leaves' credit goes into the contributions
    leaf_value: np.ndarray  # float64, per leaf (all trees)
    credit: np.ndarray  # float64, (leaves, features): each leaf's path credit (zeros for trees that do not explain)
    n_classes: int
    bitvectors: LeafBitvectors | None = None  # the same splits for the vector kernel, when its trees are small enough
    zero: float = ZERO_THRESHOLD  # magnitudes read as 0: LightGBM's rule; 0.0 for trees of models that read values as they are
    categories: CategorySplits | None = None  # categorical splits: their derived columns follow the features in ``cuts``

    @classmethod
    def of(cls, dump: dict[str, Any], tree_tables: dict[int, np.ndarray], zero: float = ZERO_THRESHOLD) -> CompiledForest | None:
        """From ``Booster.dump_model()`` and the credit table (leaves × features) of each explaining tree
        (``zero``: see the field; other models' trees in that format, :mod:`.tree_dumps`, pass 0.0)."""
        width = dump["max_feature_idx"] + 1  # the features credited; categorical splits' columns follow
        derived = CategorySplits.of(dump)
        if derived is None:
            return None  # their lookup table would be too large: LightGBM's predictor it is
        dump, categories = derived
        columns = dump["max_feature_idx"] + 1
        if columns > 1 << _FEATURE_BITS:
            return None
        per_iteration = dump.get("num_tree_per_iteration", 1)
        splits = [n for info in dump["tree_info"] for n in _internal_nodes(info["tree_structure"])]
        if any(n.get("decision_type") != "<=" or str(n.get("missing_type", "None")) not in ("None", "NaN") for n in splits):
            return None  # a zero-as-missing split (or a decision type LightGBM may add): LightGBM's predictor it is
        thresholds = [sorted({float(n["threshold"]) for n in splits if n["split_feature"] == j}) for j in range(columns)]
        if max(map(len, thresholds), default=0) >= _LEAF_LIMIT:
            return None
        cuts = np.full((columns, max(map(len, thresholds), default=0) + 1), np.inf)
        for j, feature_thresholds in enumerate(thresholds):
            cuts[j, : len(feature_thresholds)] = feature_thresholds
        bin_of = [{value: k for k, value in enumerate(values)} for values in thresholds]
        nodes: list[int] = []
        leaf_of_node: list[int] = []
        roots: list[int] = []
        min_depth: list[int] = []
        leaf_value: list[np.ndarray] = []
        credit: list[np.ndarray] = []
        leaf_base = 0
        for t, info in enumerate(dump["tree_info"]):
            leaves = info["num_leaves"]
            table = tree_tables.get(t)
            credit.append(table if table is not None else np.zeros((leaves, width)))
            values = np.zeros(leaves)
            roots.append(len(nodes))
            nodes.append(0)
            leaf_of_node.append(-1)
            shallowest = None
            queue = [(info["tree_structure"], roots[-1], 0)]  # breadth first: siblings get adjacent slots
            for node, at, depth in queue:
                if "split_feature" not in node:
                    values[node.get("leaf_index", 0)] = node["leaf_value"]
                    nodes[at] = _node(0, False, _LEAF_LIMIT, at)
                    leaf_of_node[at] = leaf_base + node.get("leaf_index", 0)
                    shallowest = depth if shallowest is None else min(shallowest, depth)
                    continue
                first = len(nodes)
                nodes += [0, 0]
                leaf_of_node += [-1, -1]
                threshold = float(node["threshold"])
                # NaN follows default_left; with missing type None LightGBM reads it as 0.
                nan_left = bool(node["default_left"]) if str(node.get("missing_type", "None")) == "NaN" else threshold >= 0.0
                cut = bin_of[node["split_feature"]][threshold]  # x <= threshold exactly when x's bin is at most cut + 1
                nodes[at] = _node(node["split_feature"], not nan_left, cut if not nan_left else cut + 1, first)
                queue += [(node["left_child"], first, depth + 1), (node["right_child"], first + 1, depth + 1)]
            min_depth.append(shallowest or 0)
            leaf_value.append(values)
            leaf_base += leaves
        n_trees = len(roots)
        forest = cls(
            nodes=np.asarray(nodes, dtype=np.int64),
            roots=np.asarray(roots, dtype=np.int64),
            min_depth=np.asarray(min_depth, dtype=np.int64),
            leaf_of_node=np.asarray(leaf_of_node, dtype=np.int64),
            cuts=cuts,
            cut_count=np.asarray([len(v) for v in thresholds], dtype=np.int64),
            # a dump's trees add to class t % per_iteration, unless a tree names its class (tree_dumps' groups)
            tree_class=np.asarray(
                [info.get("class", t % per_iteration) for t, info in enumerate(dump["tree_info"])], dtype=np.int32
            ),
            explains=np.asarray([t in tree_tables for t in range(n_trees)], dtype=np.bool_),
            leaf_value=np.concatenate(leaf_value) if leaf_value else np.zeros(0),
            credit=np.ascontiguousarray(np.concatenate(credit)) if credit else np.zeros((0, width)),
            n_classes=per_iteration,
            zero=zero,
            categories=categories,
        )
        return dataclasses.replace(forest, bitvectors=LeafBitvectors.of(forest))

    def fields(self, node: int) -> tuple[int, int, int, int]:
        """A node's feature, whether NaN goes right (0/1), limit and first child (a leaf's: itself)."""
        record = int(self.nodes[node])
        return (record & ((1 << _FEATURE_BITS) - 1), (record >> _FEATURE_BITS) & 1, (record >> _LIMIT_SHIFT) & _LIMIT_MASK,
                record >> _CHILD_SHIFT)  # fmt: skip

    def raw_and_credit(self, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per row: the raw score of each class (rows × classes) and the summed path credit (rows × features)."""
        x = np.ascontiguousarray(matrix, dtype=np.float64)
        if self.categories is None:
            bins = bin_rows(x, self.cuts, self.cut_count, self.zero)
        else:  # the features binned, then each categorical split's column binned directly
            width = x.shape[1]
            bins = self.categories.with_split_bins(x, bin_rows(x, self.cuts[:width], self.cut_count[:width], self.zero))
        raw = np.zeros((len(x), self.n_classes))
        contributions = np.zeros((len(x), self.credit.shape[1]))
        # Waking the thread pool costs more than walking a micro-batch: small batches walk on this thread.
        parallel = len(x) >= PARALLEL_ROWS
        with _KERNEL_LOCK:
            if self.bitvectors is not None and len(x) >= BITVECTOR_MIN_ROWS:
                self.bitvectors.score(bins, self, raw, contributions, parallel)
            else:
                walk = _walk if parallel else _walk_serial
                walk(bins, self.nodes, self.roots, self.min_depth, self.leaf_of_node, self.tree_class,
                     self.explains, self.leaf_value, self.credit, raw, contributions)  # fmt: skip
        return raw, contributions


def _internal_nodes(root: dict[str, Any]) -> list[dict[str, Any]]:
    """The split nodes of a dumped LightGBM tree."""
    found, stack = [], [root]
    while stack:
        node = stack.pop()
        if "split_feature" in node:
            found.append(node)
            stack += [node["left_child"], node["right_child"]]
    return found


def _node(feature: int, nan_right: bool, limit: int, first_child: int) -> int:
    """One node record. The row goes to ``first_child + 1`` (right) when its bin of ``feature``,
    less 1 if ``nan_right`` (so that NaN's bin 0 wraps to the top), is above ``limit``."""
    return feature | (int(nan_right) << _FEATURE_BITS) | (limit << _LIMIT_SHIFT) | (first_child << _CHILD_SHIFT)


@numba.njit(inline="always")
def _step(bins: np.ndarray, r: int, node: int, nodes: np.ndarray) -> tuple[int, bool]:  # pragma: no cover - compiled
    """One level down for row ``r``, without a branch (a leaf leads to itself); and whether ``node`` was a leaf."""
    record = nodes[node]
    limit = (record >> _LIMIT_SHIFT) & _LIMIT_MASK
    # bin 0 (NaN) minus the NaN-goes-right bit wraps to 0xFFFF, above every limit but a leaf's
    code = (np.int64(bins[r, record & 0xFFFF]) - ((record >> _FEATURE_BITS) & 1)) & _LIMIT_MASK
    return (record >> _CHILD_SHIFT) + (code > limit), limit == _LEAF_LIMIT


@numba.njit(inline="always")
def _step_lanes(bins: np.ndarray, r: int, n0: int, n1: int, n2: int, n3: int, n4: int, n5: int, n6: int, n7: int,
                nodes: np.ndarray) -> tuple[int, int, int, int, int, int, int, int, bool]:  # fmt: skip  # pragma: no cover - compiled
    """One level down for the eight rows from ``r`` (one per lane); and whether all were at their leaf."""
    n0, d0 = _step(bins, r, n0, nodes)
    n1, d1 = _step(bins, r + 1, n1, nodes)
    n2, d2 = _step(bins, r + 2, n2, nodes)
    n3, d3 = _step(bins, r + 3, n3, nodes)
    n4, d4 = _step(bins, r + 4, n4, nodes)
    n5, d5 = _step(bins, r + 5, n5, nodes)
    n6, d6 = _step(bins, r + 6, n6, nodes)
    n7, d7 = _step(bins, r + 7, n7, nodes)
    return n0, n1, n2, n3, n4, n5, n6, n7, d0 & d1 & d2 & d3 & d4 & d5 & d6 & d7


@numba.njit(inline="always")
def _finish(r: int, hi: int, node: int, k: int, explains: bool, leaf_of_node: np.ndarray, leaf_value: np.ndarray,
            credit: np.ndarray, raw: np.ndarray, contributions: np.ndarray) -> None:  # fmt: skip  # pragma: no cover - compiled
    if r < hi:
        leaf = leaf_of_node[node]
        raw[r, k] += leaf_value[leaf]
        if explains:
            for j in range(credit.shape[1]):
                contributions[r, j] += credit[leaf, j]


@numba.njit(inline="always")
def _walk_block(b: int, all_bins: np.ndarray, nodes: np.ndarray, roots: np.ndarray, min_depth: np.ndarray,
                leaf_of_node: np.ndarray, tree_class: np.ndarray, explains: np.ndarray, leaf_value: np.ndarray,
                credit: np.ndarray, raw: np.ndarray, contributions: np.ndarray) -> None:  # fmt: skip  # pragma: no cover - compiled
    # Eight rows walk each tree in lockstep: their loads are independent, so the CPU overlaps
    # them (eight is what the registers hold), and no branch depends on a comparison. Down to
    # the tree's shallowest leaf no row can have finished; below it, the block stops once all have.
    lo = b * _BLOCK
    hi = min(raw.shape[0], lo + _BLOCK)
    bins = all_bins[lo : lo + _BLOCK]  # padded: always a whole block
    for t in range(roots.shape[0]):
        k, e = tree_class[t], explains[t]
        for r in range(0, _BLOCK, _LANES):
            if lo + r >= hi:
                break
            n0 = n1 = n2 = n3 = n4 = n5 = n6 = n7 = roots[t]
            for _ in range(min_depth[t]):
                n0, n1, n2, n3, n4, n5, n6, n7, _ = _step_lanes(bins, r, n0, n1, n2, n3, n4, n5, n6, n7, nodes)
            done = False
            while not done:  # until a level finds every row already at its leaf
                n0, n1, n2, n3, n4, n5, n6, n7, done = _step_lanes(bins, r, n0, n1, n2, n3, n4, n5, n6, n7, nodes)
            row = lo + r
            _finish(row, hi, n0, k, e, leaf_of_node, leaf_value, credit, raw, contributions)
            _finish(row + 1, hi, n1, k, e, leaf_of_node, leaf_value, credit, raw, contributions)
            _finish(row + 2, hi, n2, k, e, leaf_of_node, leaf_value, credit, raw, contributions)
            _finish(row + 3, hi, n3, k, e, leaf_of_node, leaf_value, credit, raw, contributions)
            _finish(row + 4, hi, n4, k, e, leaf_of_node, leaf_value, credit, raw, contributions)
            _finish(row + 5, hi, n5, k, e, leaf_of_node, leaf_value, credit, raw, contributions)
            _finish(row + 6, hi, n6, k, e, leaf_of_node, leaf_value, credit, raw, contributions)
            _finish(row + 7, hi, n7, k, e, leaf_of_node, leaf_value, credit, raw, contributions)


# Two kernels with their own names, not one Python function compiled twice: numba's on-disk
# cache is keyed by the function's name, source line and signature, not by `parallel`, so a
# serial twin of the same function loaded the parallel machine code from the cache, and every
# micro-batch woke OpenMP threads that then spun for milliseconds on this 2-core machine.
@numba.njit(parallel=True, cache=True, nogil=True)
def _walk(bins: np.ndarray, nodes: np.ndarray, roots: np.ndarray, min_depth: np.ndarray, leaf_of_node: np.ndarray,
          tree_class: np.ndarray, explains: np.ndarray, leaf_value: np.ndarray, credit: np.ndarray, raw: np.ndarray,
          contributions: np.ndarray) -> None:  # fmt: skip  # pragma: no cover - compiled
    for b in numba.prange(bins.shape[0] // _BLOCK):
        _walk_block(b, bins, nodes, roots, min_depth, leaf_of_node, tree_class, explains, leaf_value, credit,
                    raw, contributions)  # fmt: skip


@numba.njit(cache=True, nogil=True)
def _walk_serial(bins: np.ndarray, nodes: np.ndarray, roots: np.ndarray, min_depth: np.ndarray, leaf_of_node: np.ndarray,
                 tree_class: np.ndarray, explains: np.ndarray, leaf_value: np.ndarray, credit: np.ndarray, raw: np.ndarray,
                 contributions: np.ndarray) -> None:  # fmt: skip  # pragma: no cover - compiled
    for b in range(bins.shape[0] // _BLOCK):
        _walk_block(b, bins, nodes, roots, min_depth, leaf_of_node, tree_class, explains, leaf_value, credit,
                    raw, contributions)  # fmt: skip
