"""Histogram-boosting and XGBoost trees written as a LightGBM model dump, for the compiled kernels.

Why: :mod:`.compiled_trees` (node walk) and :mod:`.leaf_bitvectors` (QuickScorer's leaf bit
vectors, about 4 µs of CPU a row on a 1,200-tree forest) score and explain a forest in one pass
from LightGBM's ``dump_model()``. A boosted tree of scikit-learn or XGBoost is the same object
(numeric splits ``x <= threshold``, NaN to a side, one value per leaf, one class per tree), so
written in that format it gets the same kernels, and its leaves' path credits (the rows of
:attr:`.forest_paths.ForestPaths.leaf_credit`) become the per-leaf credit tables the kernels add.

What cannot be written so is refused (:func:`lightgbm_dump` returns None) and keeps the leaf
walk of :mod:`.tree_walk`: categorical splits (histogram boosting), random forests (every tree
holds every class's fraction, not one class's value), and thresholds within LightGBM's 1e-35
of zero (the kernels read such values as 0, as LightGBM does, which these models do not).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tracseq_dagster.serving.threshold_bins import ZERO_THRESHOLD
from tracseq_dagster.serving.tree_walk import TreeArrays


def lightgbm_dump(trees: list[TreeArrays], leaf_values: list[np.ndarray], per_iteration: int, width: int) -> dict[str, Any] | None:
    """A ``dump_model()``-shaped dict of the trees (tree ``t`` adds to class ``t % per_iteration``);
    leaves are numbered (``leaf_index``) in the order of their own node numbers. None: see the module docstring."""
    infos = []
    for tree, values in zip(trees, leaf_values, strict=True):
        split = tree.left >= 0
        if tree.category_left:
            return None
        thresholds = np.asarray(tree.threshold, dtype=np.float64)[split]
        if np.any(np.abs(thresholds) <= ZERO_THRESHOLD):
            return None
        leaf_index = np.cumsum(~split) - 1

        def node(own: int) -> dict[str, Any]:
            if tree.left[own] < 0:
                return {"leaf_index": int(leaf_index[own]), "leaf_value": float(values[own])}
            return {"split_feature": int(tree.feature[own]), "threshold": float(tree.threshold[own]), "decision_type": "<=",
                    "missing_type": "NaN", "default_left": bool(tree.nan_left[own]),
                    "left_child": node(int(tree.left[own])), "right_child": node(int(tree.right[own]))}  # fmt: skip

        infos.append({"num_leaves": int((~split).sum()), "tree_structure": node(0)})
    return {"max_feature_idx": width - 1, "num_tree_per_iteration": per_iteration, "tree_info": infos}
