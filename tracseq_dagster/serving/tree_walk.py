"""Each row's leaf in every tree of a scikit-learn or XGBoost forest, found by one compiled walk.

Why: scikit-learn's own walk (``RandomForest*.apply``; histogram boosting's predictor, one call
per tree) costs 70–75 µs of CPU a row on the champions ``benchmarks/serving.py --per-family``
finds, and XGBoost's ``approx_contribs`` 245 µs: a tenth of what 100,000 rows/s on 2 cores
allows. The tree-path credit (:mod:`.forest_paths`) only needs each row's leaf, so this module
finds it for every family the same way, and exactly as the model's own walk does:

* **the decision is the model's own:** a row goes left when ``x <= threshold``, NaN goes to the
  split's missing side. Random forests and XGBoost read their input as float32 (the value is
  rounded to float32 first, as they do); XGBoost's ``x < t`` becomes ``x <= t⁻``, ``t⁻`` the
  float32 just below ``t``, which is the same test for every float32 ``x``. Histogram
  boosting's categorical splits keep their rule (a category in the left set goes left, a known
  one right, an unknown or negative one to the missing side) as a 256-entry table per split.
* **the walk has no data-dependent branch:** siblings sit side by side, so a level is
  ``node = first_child + went_right``; a leaf leads to itself (threshold +inf, NaN left), so
  eight rows walk a tree in lockstep and their independent loads overlap in the CPU, as in
  :mod:`.compiled_trees`. Blocks of rows go to every core.

:meth:`FlatTrees.leaves` answers the node numbers of the model's own tree arrays (what ``apply``
and ``pred_leaf`` answer), so the caller can check them against the model once
(:class:`.forest_paths.ForestPaths` does, on its first batch).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numba
import numpy as np

from tracseq_dagster.serving.threshold_bins import PARALLEL_ROWS

_LANES = 8  # rows walked in lockstep (written out in _block)
# numba's workqueue threading layer must not be entered by two Python threads at once.
_KERNEL_LOCK = threading.Lock()
#: Categories a categorical split's table covers (histogram boosting's own limit: 255 bins and NaN).
CATEGORIES = 256


@dataclass(frozen=True)
class TreeArrays:
    """One tree in the model's own node numbering: children (-1 at a leaf) and each split's rule."""

    left: np.ndarray
    right: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray  # goes left when x <= threshold
    nan_left: np.ndarray  # bool: where NaN goes
    category_left: dict[int, np.ndarray] | None = None  # categorical split node → (CATEGORIES,) bool: goes left


@dataclass(frozen=True)
class FlatTrees:
    """Every node of every tree, breadth first per tree so that siblings are adjacent."""

    records: np.ndarray  # int64 per node, what a level reads besides the threshold (see _record)
    threshold: np.ndarray  # float64; a leaf's is +inf
    category: np.ndarray  # int64: -1 for a numeric split, else the offset of its table in category_left
    category_left: np.ndarray  # uint8, CATEGORIES per categorical split
    roots: np.ndarray  # int64 per tree
    min_depth: np.ndarray  # int64 per tree: its shallowest leaf's depth
    number: np.ndarray  # int64 per node: its number in the model's own tree
    float32_input: bool  # the model reads its input as float32

    @classmethod
    def of(cls, trees: list[TreeArrays], float32_input: bool) -> FlatTrees:
        feature: list[int] = []
        threshold: list[float] = []
        first: list[int] = []
        nan_left: list[int] = []
        category: list[int] = []
        number: list[int] = []
        tables: list[np.ndarray] = []
        roots: list[int] = []
        min_depth: list[int] = []

        def add_slots(count: int, first_child: int) -> None:
            """``count`` new node slots, each a numeric leaf leading to ``first_child`` until filled in."""
            feature.extend([0] * count)
            threshold.extend([np.inf] * count)
            first.extend([first_child] * count)
            nan_left.extend([1] * count)
            category.extend([-1] * count)
            number.extend([0] * count)

        for tree in trees:
            root = len(feature)
            roots.append(root)
            shallowest: int | None = None
            add_slots(1, root)
            queue = [(0, root, 0)]  # (own node, flat slot, depth)
            for own, at, depth in queue:
                number[at] = own
                if tree.left[own] < 0:  # a leaf: leads to itself
                    first[at] = at
                    shallowest = depth if shallowest is None else min(shallowest, depth)
                    continue
                child = len(feature)
                add_slots(2, 0)
                feature[at] = int(tree.feature[own])
                threshold[at] = float(tree.threshold[own])
                first[at] = child
                nan_left[at] = int(bool(tree.nan_left[own]))
                if tree.category_left is not None and own in tree.category_left:
                    category[at] = len(tables) * CATEGORIES
                    tables.append(np.asarray(tree.category_left[own], dtype=np.uint8))
                queue += [(int(tree.left[own]), child, depth + 1), (int(tree.right[own]), child + 1, depth + 1)]
            min_depth.append(shallowest or 0)
        if max(feature, default=0) >= 1 << 16:
            raise ValueError("a tree splits on a feature past 65,535: too wide for the node records")
        category_ = np.asarray(category, dtype=np.int64)
        return cls(
            records=_record(
                np.asarray(feature, dtype=np.int64),
                np.asarray(nan_left, dtype=np.int64),
                category_ >= 0,
                np.asarray(first, dtype=np.int64),
            ),  # fmt: skip
            threshold=np.asarray(threshold, dtype=np.float64),
            category=category_,
            category_left=np.concatenate(tables) if tables else np.zeros(CATEGORIES, dtype=np.uint8),
            roots=np.asarray(roots, dtype=np.int64),
            min_depth=np.asarray(min_depth, dtype=np.int64),
            number=np.asarray(number, dtype=np.int64),
            float32_input=float32_input,
        )

    def leaves(self, matrix: np.ndarray) -> np.ndarray:
        """(rows, trees): each row's leaf in each tree, numbered as in the model's own tree."""
        x = np.asarray(matrix, dtype=np.float32 if self.float32_input else np.float64)
        x = np.ascontiguousarray(x, dtype=np.float64)
        out = np.empty((len(x), len(self.roots)), dtype=np.int64)
        walk = _walk if len(x) >= PARALLEL_ROWS else _walk_serial
        with _KERNEL_LOCK:
            walk(x, self.records, self.threshold, self.category, self.category_left, self.roots, self.min_depth, self.number, out)
        return out


def _record(feature: np.ndarray, nan_left: np.ndarray, categorical: np.ndarray, first: np.ndarray) -> np.ndarray:
    """Bits 0-15 the feature, 16 set when NaN goes right, 17 when the split is categorical, 18-63 the first child."""
    return feature | ((1 - nan_left) << 16) | (categorical.astype(np.int64) << 17) | (first << 18)


def float32_below(threshold: np.ndarray) -> np.ndarray:
    """Per threshold t (a float32), the float32 just below it: ``x < t`` is ``x <= t⁻`` for every float32 x."""
    t = np.asarray(threshold, dtype=np.float32)
    return np.nextafter(t, np.float32(-np.inf)).astype(np.float64)


@numba.njit(inline="always")
def _down(x: np.ndarray, r: int, node: int, records: np.ndarray, threshold: np.ndarray, category: np.ndarray,
          category_left: np.ndarray) -> int:  # fmt: skip  # pragma: no cover - compiled
    """One level down for row ``r`` (a leaf leads to itself)."""
    record = records[node]
    v = x[r, record & 0xFFFF]
    right = np.int64(not v <= threshold[node])  # NaN: right, unless its side is the left
    if v != v:
        right = (record >> 16) & 1
    elif (record >> 17) & 1:  # categorical: a negative code counts as missing
        if v < 0.0:
            right = (record >> 16) & 1
        else:
            right = 1 - np.int64(category_left[category[node] + (np.int64(v) & 255)])
    return (record >> 18) + right


@numba.njit(inline="always")
def _block(
    lo: int,
    hi: int,
    t: int,
    x: np.ndarray,
    records: np.ndarray,
    threshold: np.ndarray,
    category: np.ndarray,
    category_left: np.ndarray,
    roots: np.ndarray,
    min_depth: np.ndarray,
    number: np.ndarray,
    out: np.ndarray,
) -> None:  # pragma: no cover - compiled
    # Eight rows at a time; past the padding (hi) a lane repeats the last row, and is not stored.
    last = hi - 1
    r0, r1, r2, r3 = lo, min(lo + 1, last), min(lo + 2, last), min(lo + 3, last)
    r4, r5, r6, r7 = min(lo + 4, last), min(lo + 5, last), min(lo + 6, last), min(lo + 7, last)
    n0 = n1 = n2 = n3 = n4 = n5 = n6 = n7 = roots[t]
    level = 0
    while True:
        m0 = _down(x, r0, n0, records, threshold, category, category_left)
        m1 = _down(x, r1, n1, records, threshold, category, category_left)
        m2 = _down(x, r2, n2, records, threshold, category, category_left)
        m3 = _down(x, r3, n3, records, threshold, category, category_left)
        m4 = _down(x, r4, n4, records, threshold, category, category_left)
        m5 = _down(x, r5, n5, records, threshold, category, category_left)
        m6 = _down(x, r6, n6, records, threshold, category, category_left)
        m7 = _down(x, r7, n7, records, threshold, category, category_left)
        level += 1
        if level > min_depth[t] and (m0 == n0) & (m1 == n1) & (m2 == n2) & (m3 == n3) & (m4 == n4) & (m5 == n5) & (
                m6 == n6) & (m7 == n7):  # fmt: skip
            break
        n0, n1, n2, n3, n4, n5, n6, n7 = m0, m1, m2, m3, m4, m5, m6, m7
    out[r0, t] = number[n0]
    if lo + 1 < hi:
        out[r1, t] = number[n1]
    if lo + 2 < hi:
        out[r2, t] = number[n2]
    if lo + 3 < hi:
        out[r3, t] = number[n3]
    if lo + 4 < hi:
        out[r4, t] = number[n4]
    if lo + 5 < hi:
        out[r5, t] = number[n5]
    if lo + 6 < hi:
        out[r6, t] = number[n6]
    if lo + 7 < hi:
        out[r7, t] = number[n7]


@numba.njit(inline="always")
def _rows(b: int, x: np.ndarray, records: np.ndarray, threshold: np.ndarray, category: np.ndarray, category_left: np.ndarray,
          roots: np.ndarray, min_depth: np.ndarray, number: np.ndarray, out: np.ndarray) -> None:  # fmt: skip  # pragma: no cover - compiled
    """Rows 64b..64b+63, tree by tree (a tree's nodes stay in cache for the 64 rows)."""
    lo = b * 64
    hi = min(x.shape[0], lo + 64)
    for t in range(roots.shape[0]):
        for r in range(lo, hi, _LANES):
            _block(r, hi, t, x, records, threshold, category, category_left, roots, min_depth, number, out)


# Two kernels with their own names (see compiled_trees: numba's cache does not key on `parallel`).
@numba.njit(parallel=True, cache=True, nogil=True)
def _walk(x: np.ndarray, records: np.ndarray, threshold: np.ndarray, category: np.ndarray, category_left: np.ndarray,
          roots: np.ndarray, min_depth: np.ndarray, number: np.ndarray, out: np.ndarray) -> None:  # fmt: skip  # pragma: no cover - compiled
    for b in numba.prange((x.shape[0] + 63) // 64):
        _rows(b, x, records, threshold, category, category_left, roots, min_depth, number, out)


@numba.njit(cache=True, nogil=True)
def _walk_serial(x: np.ndarray, records: np.ndarray, threshold: np.ndarray, category: np.ndarray, category_left: np.ndarray,
                 roots: np.ndarray, min_depth: np.ndarray, number: np.ndarray, out: np.ndarray) -> None:  # fmt: skip  # pragma: no cover - compiled
    for b in range((x.shape[0] + 63) // 64):
        _rows(b, x, records, threshold, category, category_left, roots, min_depth, number, out)
