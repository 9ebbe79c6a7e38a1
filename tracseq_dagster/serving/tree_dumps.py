"""Histogram-boosting and XGBoost trees written as a LightGBM model dump, for the compiled kernels.

Why: :mod:`.compiled_trees` (node walk) and :mod:`.leaf_bitvectors` (QuickScorer's leaf bit
vectors, about 4 µs of CPU a row on a 1,200-tree forest) score and explain a forest in one pass
from LightGBM's ``dump_model()``. A boosted tree of scikit-learn or XGBoost is the same object
(numeric splits ``x <= threshold``, NaN to a side, one value per leaf, one class per tree), so
written in that format it gets the same kernels, and its leaves' path credits (the rows of
:attr:`.forest_paths.ForestPaths.leaf_credit`) become the per-leaf credit tables the kernels add.

Histogram boosting's categorical splits (a set of category codes goes left) become chains of
numeric splits on the code (:func:`_category_chain`). Random forests are not written so
(:func:`lightgbm_dump` is not called for them): every tree holds every class's fraction, not
one class's value; they keep the leaf walk of :mod:`.tree_walk`. The kernels read these trees
with ``zero=0.0`` (:class:`.compiled_trees.CompiledForest`): values as they are, not
LightGBM's "a magnitude up to 1e-35 is 0", which these models do not apply.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tracseq_dagster.serving.tree_walk import TreeArrays


def lightgbm_dump(trees: list[TreeArrays], leaf_values: list[np.ndarray], per_iteration: int, width: int) -> dict[str, Any]:
    """A ``dump_model()``-shaped dict of the trees (tree ``t`` adds to class ``t % per_iteration``);
    leaves are numbered (``leaf_index``) in the order of their own node numbers."""
    infos = []
    for tree, values in zip(trees, leaf_values, strict=True):
        split = tree.left >= 0
        categorical = tree.category_left or {}
        leaf_index = np.cumsum(~split) - 1

        def node(own: int) -> dict[str, Any]:
            if tree.left[own] < 0:
                return {"leaf_index": int(leaf_index[own]), "leaf_value": float(values[own])}
            left, right = node(int(tree.left[own])), node(int(tree.right[own]))
            if own in categorical:
                return _category_chain(int(tree.feature[own]), categorical[own], bool(tree.nan_left[own]), left, right)
            return {"split_feature": int(tree.feature[own]), "threshold": float(tree.threshold[own]), "decision_type": "<=",
                    "missing_type": "NaN", "default_left": bool(tree.nan_left[own]), "left_child": left, "right_child": right}  # fmt: skip

        infos.append({"num_leaves": int((~split).sum()), "tree_structure": node(0)})
    return {"max_feature_idx": width - 1, "num_tree_per_iteration": per_iteration, "tree_info": infos}


def _category_chain(feature: int, goes_left: np.ndarray, nan_left: bool, left: dict[str, Any], right: dict[str, Any]) -> dict[str, Any]:
    """A categorical split of histogram boosting as numeric splits on the category code.

    Its rule (see :func:`.forest_paths._category_tables`): code ``c`` goes left when
    ``goes_left[c]``; a negative code or NaN goes to the missing side. Over the codes in order
    (negative ones first), the runs of one direction are intervals; a balanced chain of
    ``x <= b⁻`` splits (b the first code of the upper part, ``b⁻`` the double below it: for
    codes, ``trunc(x) >= b`` is ``x > b⁻``) leads each interval to its side's subtree (a subtree
    reached from several intervals is repeated, its leaves keep their numbers). NaN goes left at
    every link: to the negative codes' interval, the missing side.
    """
    directions = np.concatenate([[nan_left], np.asarray(goes_left, dtype=bool)])  # index 0: negative codes
    starts = [0, *np.flatnonzero(directions[1:] != directions[:-1]) + 1]

    def chain(low: int, high: int) -> dict[str, Any]:
        if high - low == 1:
            return left if directions[starts[low]] else right
        middle = (low + high) // 2
        code = int(starts[middle]) - 1  # the first code of the upper part
        threshold = float(np.nextafter(float(code), -np.inf))  # code 0: negative values part from it
        return {"split_feature": feature, "threshold": threshold, "decision_type": "<=", "missing_type": "NaN",
                "default_left": True, "left_child": chain(low, middle), "right_child": chain(middle, high)}  # fmt: skip

    return chain(0, len(starts))
