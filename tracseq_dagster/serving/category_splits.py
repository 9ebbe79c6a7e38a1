"""LightGBM's categorical splits for the compiled kernels: one 0/1 column per distinct split.

The AutoML's LightGBM splits categorical columns natively (``automl.families.native_categories``):
a split sends a *set* of category codes left (``decision_type == "=="``, ``threshold`` like
``"1||5||7"``). The kernels of :mod:`.compiled_trees` and :mod:`.leaf_bitvectors` only compare a
value's bin with a limit. Written as a chain of such comparisons over the codes, a set split
repeats its subtrees once per run of codes, and nested set splits multiply: trees of 15 leaves
drew 500 to 7,000 leaves. Instead each distinct (feature, set) split gets a derived column,
0 where LightGBM goes left and 1 where it goes right, binned directly once per row
(:meth:`CategorySplits.with_split_bins`, one table lookup per split), and the split becomes ``column <= 0.5``:
the trees keep their shape and size, both kernels walk them unchanged.

LightGBM's rule for a categorical split (checked against ``Booster.predict`` in
``tests/test_lightgbm_categorical_kernels.py``): NaN goes right; otherwise the value is truncated
toward zero to an integer code; a negative code goes right, a code in the set left, any other
code (unseen in training, past the largest) right.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numba
import numpy as np

#: Largest derived lookup table kept (splits × codes, one byte each); past it, LightGBM's predictor answers.
MAX_TABLE_BYTES = 64 << 20
#: Most distinct categorical splits compiled (each is a column binned for every row, whichever
#: trees the row visits). Measured (benchmarks/lightgbm_categorical_serving.py, BENCHMARKS.md):
#: 1,824 split columns of 100 trees cost 26.5 µs a row against 34.3 for LightGBM's own walk, so
#: the cap only bounds the binned rows' memory (rows × columns × 2 bytes) on far larger forests.
MAX_SPLIT_COLUMNS = 8192


@dataclass(frozen=True)
class CategorySplits:
    """Per distinct categorical split: the feature it reads and which codes go right."""

    source: np.ndarray  # int64 per split: the feature column it reads
    goes_right: np.ndarray  # uint8 (splits, codes): 1 where the code goes right (0: it is in the set)

    @classmethod
    def of(cls, dump: dict[str, Any]) -> tuple[dict[str, Any], CategorySplits | None] | None:
        """``dump`` with each categorical split on derived column ``width + k`` (``<= 0.5`` goes
        left), and the splits (None when there are none: the dump is returned as it is). None
        when there are more than ``MAX_SPLIT_COLUMNS`` distinct splits or the lookup table would
        exceed ``MAX_TABLE_BYTES``: LightGBM's own walk is then the cheaper."""
        width = dump["max_feature_idx"] + 1
        found: dict[tuple[int, str], int] = {}
        rewritten = [{**info, "tree_structure": _rewritten(info["tree_structure"], width, found)} for info in dump["tree_info"]]
        if not found:
            return dump, None
        if len(found) > MAX_SPLIT_COLUMNS:
            return None
        sets = [np.asarray([int(c) for c in threshold.split("||")], dtype=np.int64) for _, threshold in found]
        codes = max(int(s.max()) for s in sets) + 1
        if len(found) * codes > MAX_TABLE_BYTES:
            return None
        goes_right = np.ones((len(found), codes), dtype=np.uint8)
        for k, members in enumerate(sets):
            goes_right[k, members] = 0
        source = np.asarray([feature for feature, _ in found], dtype=np.int64)
        return {**dump, "max_feature_idx": width + len(found) - 1, "tree_info": rewritten}, cls(source, goes_right)

    def with_split_bins(self, x: np.ndarray, bins: np.ndarray) -> np.ndarray:
        """The features' ``bins`` (:func:`.threshold_bins.bin_rows` of ``x``) with one more column per
        split, binned directly: its one threshold is 0.5, so 1 (0.0, left) or 2 (1.0, right)."""
        return _with_split_bins(x, bins, self.source, self.goes_right)


def _rewritten(node: dict[str, Any], width: int, found: dict[tuple[int, str], int]) -> dict[str, Any]:
    """The subtree with its categorical splits on derived columns (numbered in ``found``)."""
    if "split_feature" not in node:
        return node
    left, right = _rewritten(node["left_child"], width, found), _rewritten(node["right_child"], width, found)
    if node.get("decision_type") != "==":
        return {**node, "left_child": left, "right_child": right}
    key = (int(node["split_feature"]), str(node["threshold"]))
    column = width + found.setdefault(key, len(found))
    return {**node, "split_feature": column, "threshold": 0.5, "decision_type": "<=", "missing_type": "None",
            "default_left": False, "left_child": left, "right_child": right}  # fmt: skip


@numba.njit(cache=True, nogil=True)
def _with_split_bins(x, bins, source, goes_right):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    n, width = x.shape
    codes = goes_right.shape[1]
    out = np.zeros((bins.shape[0], width + source.shape[0]), dtype=np.uint16)  # padding rows stay 0, as bin_rows'
    for r in range(n):
        for j in range(width):
            out[r, j] = bins[r, j]
        for k in range(source.shape[0]):
            value = x[r, source[k]]
            right = 1
            if value > -1.0 and value < codes:
                right = goes_right[k, int(value)]
            out[r, width + k] = 1 + right
    return out
