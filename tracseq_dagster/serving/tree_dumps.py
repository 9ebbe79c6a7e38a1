"""Histogram-boosting and XGBoost trees written as a LightGBM model dump, for the compiled kernels.

Why: :mod:`.compiled_trees` (node walk) and :mod:`.leaf_bitvectors` (QuickScorer's leaf bit
vectors, about 4 µs of CPU a row on a 1,200-tree forest) score and explain a forest in one pass
from LightGBM's ``dump_model()``. A boosted tree of scikit-learn or XGBoost is the same object
(numeric splits ``x <= threshold``, NaN to a side, one value per leaf, one class per tree), so
written in that format it gets the same kernels, and its leaves' path credits (the rows of
:attr:`.forest_paths.ForestPaths.leaf_credit`) become the per-leaf credit tables the kernels add.

Histogram boosting's categorical splits (a set of category codes goes left) become chains of
numeric splits on the code (:func:`_category_chain`); a chain repeats subtrees, so a forest is
split by tree size (:func:`split_by_size`) and its small trees keep the leaf bit vectors. Random forests are not written so
(:func:`lightgbm_dump` is not called for them): every tree holds every class's fraction, not
one class's value; they keep the leaf walk of :mod:`.tree_walk`. The kernels read these trees
with ``zero=0.0`` (:class:`.compiled_trees.CompiledForest`): values as they are, not
LightGBM's "a magnitude up to 1e-35 is 0", which these models do not apply.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tracseq_dagster.serving.tree_walk import TreeArrays

#: A tree whose category chains would draw more leaves than this is not written (the forest
#: keeps the leaf walk): chains repeat subtrees, and nested chains multiply, so a feature of
#: many categories with alternating sets could draw millions.
MAX_DRAWN_LEAVES = 1024


def lightgbm_dump(
    trees: list[TreeArrays], leaf_values: list[np.ndarray], per_iteration: int, width: int
) -> dict[str, Any] | None:
    """A ``dump_model()``-shaped dict of the trees (tree ``t`` adds to class ``t % per_iteration``);
    leaves are numbered (``leaf_index``) in the order of their own node numbers. None when a tree
    would draw more than ``MAX_DRAWN_LEAVES`` leaves."""
    if any(_drawn_leaves_of(tree) > MAX_DRAWN_LEAVES for tree in trees):
        return None
    infos: list[dict[str, Any]] = []
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

        infos.append({"num_leaves": int((~split).sum()), "tree_structure": node(0), "class": len(infos) % per_iteration})
    return {"max_feature_idx": width - 1, "num_tree_per_iteration": per_iteration, "tree_info": infos}


def split_by_size(dump: dict[str, Any], max_leaves: int) -> list[tuple[list[int], dict[str, Any]]]:
    """The dump's trees in groups: those of at most ``max_leaves`` drawn leaves (a subtree a
    category chain repeats counts each time), then the others; per group its tree numbers and
    its own dump (each tree keeps its class). Empty groups are left out."""
    small = [t for t, info in enumerate(dump["tree_info"]) if _drawn_leaves(info["tree_structure"]) <= max_leaves]
    large = [t for t in range(len(dump["tree_info"])) if t not in set(small)]
    return [(trees, {**dump, "tree_info": [dump["tree_info"][t] for t in trees]}) for trees in (small, large) if trees]


def _drawn_leaves_of(tree: TreeArrays) -> int:
    """The leaves :func:`lightgbm_dump` would draw for the tree, counted without drawing them:
    a chain leads ``k`` of its intervals to a side, so that side's subtree is drawn ``k`` times."""
    drawn: dict[int, int] = {}
    order = []  # every node, parents before children
    stack = [0]
    while stack:
        node = stack.pop()
        order.append(node)
        if tree.left[node] >= 0:
            stack += [int(tree.left[node]), int(tree.right[node])]
    for node in reversed(order):
        if tree.left[node] < 0:
            drawn[node] = 1
            continue
        left, right = drawn[int(tree.left[node])], drawn[int(tree.right[node])]
        if tree.category_left is not None and node in tree.category_left:
            _, sides = _intervals(tree.category_left[node], bool(tree.nan_left[node]))
            drawn[node] = int(sides.sum()) * left + int((~sides).sum()) * right
        else:
            drawn[node] = left + right
    return drawn[0]


def _intervals(goes_left: np.ndarray, nan_left: bool) -> tuple[np.ndarray, np.ndarray]:
    """The runs of one direction over the codes, negative codes first (index 0, the missing
    side; code ``c`` is index ``c + 1``): each run's first index, and whether it goes left."""
    directions = np.concatenate([[nan_left], np.asarray(goes_left, dtype=bool)])
    starts = np.concatenate([[0], np.flatnonzero(directions[1:] != directions[:-1]) + 1])
    return starts, directions[starts]


def _drawn_leaves(node: dict[str, Any]) -> int:
    if "split_feature" not in node:
        return 1
    return _drawn_leaves(node["left_child"]) + _drawn_leaves(node["right_child"])


def _category_chain(
    feature: int, goes_left: np.ndarray, nan_left: bool, left: dict[str, Any], right: dict[str, Any]
) -> dict[str, Any]:
    """A categorical split of histogram boosting as numeric splits on the category code.

    Its rule (see :func:`.forest_paths._category_tables`): code ``c`` goes left when
    ``goes_left[c]``; a negative code or NaN goes to the missing side. Over the codes in order
    (negative ones first), the runs of one direction are intervals; a balanced chain of
    ``x <= b⁻`` splits (b the first code of the upper part, ``b⁻`` the double below it: for
    codes, ``trunc(x) >= b`` is ``x > b⁻``) leads each interval to its side's subtree (a subtree
    reached from several intervals is repeated, its leaves keep their numbers). NaN goes left at
    every link: to the negative codes' interval, the missing side.
    """
    starts, sides = _intervals(goes_left, nan_left)

    def chain(low: int, high: int) -> dict[str, Any]:
        if high - low == 1:
            return left if sides[low] else right
        middle = (low + high) // 2
        code = int(starts[middle]) - 1  # the first code of the upper part
        threshold = float(np.nextafter(float(code), -np.inf))  # code 0: negative values part from it
        return {"split_feature": feature, "threshold": threshold, "decision_type": "<=", "missing_type": "NaN",
                "default_left": True, "left_child": chain(low, middle), "right_child": chain(middle, high)}  # fmt: skip

    return chain(0, len(starts))
