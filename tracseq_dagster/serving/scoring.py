"""Scoring a feature frame with a registered model: probabilities and per-feature contributions.

The registered model is the engine's :class:`~tracseq_dagster.automl.LabelDecodingClassifier`
around a scikit-learn ``Pipeline`` (feature conversion → preprocessing → estimator). For the
gradient boosters the estimator's native booster answers directly, because that is where both
speed and attributions are. Two attribution methods for boosters, both in the raw score
(log-odds) of the ``pass`` class, both adding up with a bias to exactly that raw score:

* **Tree paths** (``tree_path``, the default; Saabas' method): along each tree's decision path,
  every split moves the node value; the move is credited to the split's feature. LightGBM's
  native ``pred_leaf`` gives each row's leaf per tree, and the credit of every leaf's path is
  precomputed once per model, so a row costs one lookup per tree. XGBoost has it natively
  (``approx_contribs``).
* **Tree SHAP** (``tree_shap``; XGBoost ``pred_contribs``, LightGBM ``pred_contrib``): the exact
  Shapley values. Consistent, but O(trees × leaves × depth²) per row: 7.5 ms per row on a
  1,200-tree champion here, against about 0.05 ms for tree paths. Choose it with
  ``TRACSEQ_ATTRIBUTION=tree_shap`` where latency does not matter.
* **Occlusion** (every other family: logistic regression, random forest, sklearn gradient
  boosting, MLP): a feature's contribution is how much the probability of ``pass`` changes when
  that feature alone is set to its typical training value (median, or most frequent category).
  Cheap (one extra prediction per feature, batched), model-agnostic, and signed the same way.

A negative contribution pushes the sample away from ``pass``: that is a risk factor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from tracseq_dagster.features import CATEGORICAL_FEATURES, FEATURE_NAMES, FEATURE_SPEC_BY_NAME, NUMERIC_FEATURES, FeatureColumns
from tracseq_dagster.serving.compiled_trees import CompiledForest

#: The class whose probability is the sample's quality probability.
PASS = "pass"

ContributionMethod = Literal["tree_path", "tree_shap", "occlusion"]
#: The one-time checks of the fast paths against the model's own (numpy input against the
#: pipeline, compiled trees against LightGBM) compare this many rows of the first batch: all of
#: a 100,000-row first batch cost LightGBM's own walk, ~75 µs a row, 7.5 s of CPU.
CHECKED_ROWS = 1000
#: What boosters use unless told otherwise (see the module docstring for the trade-off).
DEFAULT_TREE_ATTRIBUTION: ContributionMethod = "tree_path"


@dataclass(frozen=True)
class Scores:
    """Per row: class probabilities (columns ``classes``) and per-feature contributions."""

    classes: tuple[str, ...]
    probabilities: np.ndarray  # (n, k)
    contributions: np.ndarray  # (n, len(FEATURE_NAMES)), toward "pass"
    method: ContributionMethod

    @property
    def quality_probability(self) -> np.ndarray:
        return self.probabilities[:, self.classes.index(PASS)]

    @property
    def predicted_status(self) -> np.ndarray:
        return np.asarray(self.classes, dtype=object)[self.probabilities.argmax(axis=1)]


def reference_values(features: pd.DataFrame) -> dict[str, Any]:
    """Typical training values per feature (median; most frequent category): the occlusion baseline."""
    reference: dict[str, Any] = {}
    for name in NUMERIC_FEATURES:
        value = pd.to_numeric(features[name], errors="coerce").median()
        reference[name] = None if pd.isna(value) else float(value)
    for name in CATEGORICAL_FEATURES:
        mode = features[name].dropna().astype(str).mode()
        reference[name] = None if mode.empty else str(mode.iloc[0])
    return reference


class QualityScorer:
    """Scores feature frames (``FEATURE_NAMES`` columns) with one fitted model."""

    def __init__(self, model: Any, reference: dict[str, Any], tree_attribution: ContributionMethod = DEFAULT_TREE_ATTRIBUTION) -> None:
        if tree_attribution not in ("tree_path", "tree_shap"):
            raise ValueError(f"tree_attribution must be tree_path or tree_shap, not {tree_attribution!r}")
        self.model = model
        self.reference = reference
        self.classes: tuple[str, ...] = tuple(str(c) for c in model.classes_)
        if PASS not in self.classes:
            raise ValueError(f"the model's classes {self.classes} do not include {PASS!r}")
        self._pass = self.classes.index(PASS)
        pipeline = getattr(model, "estimator_", None)
        estimator = pipeline.steps[-1][1] if hasattr(pipeline, "steps") else None
        self._transform = pipeline[:-1] if estimator is not None else None
        self._estimator = estimator
        self._fast_input = _BoosterInput.of(pipeline) if self._native_kind() else None
        self.family = type(estimator).__name__ if estimator is not None else type(model).__name__
        self.method: ContributionMethod = tree_attribution if self._native_kind() else "occlusion"
        self._paths = _LeafPaths.of(self._estimator.booster_, self._pass, len(self.classes)) if (
            self._native_kind() == "lightgbm" and self.method == "tree_path") else None  # fmt: skip
        self._forest = self._paths.forest if self._paths is not None and self._paths.softmax_or_sigmoid else None
        self._forest_checked = False
        if self._forest is not None:  # compile (or load the cached compilation) now, not in the first request
            self._forest.raw_and_credit(np.zeros((1, self._forest.credit.shape[1])))

    def _native_kind(self) -> str | None:
        name = type(self._estimator).__name__
        if name == "LGBMClassifier":
            return "lightgbm"
        if name == "XGBClassifier":
            return "xgboost"
        return None

    def score(self, features: pd.DataFrame | FeatureColumns) -> Scores:
        """Probabilities and contributions of every row of ``features``: a frame with the
        ``FEATURE_NAMES`` columns, or :class:`FeatureColumns` (the same, without a frame's costs)."""
        kind = self._native_kind()
        if kind is not None:
            matrix = self._booster_matrix(features)
            if self._paths is not None and self._paths.softmax_or_sigmoid:
                # One pass through the trees gives both: the leaves of each row score and explain it.
                compiled = self._compiled_scores(matrix)
                if compiled is not None:
                    return compiled
                leaves = self._estimator.booster_.predict(matrix, pred_leaf=True)
                return Scores(self.classes, self._paths.probabilities(leaves), self._reorder(self._paths.contributions(leaves)), self.method)
            probabilities = self._estimator.predict_proba(matrix)
            return Scores(self.classes, probabilities, self._tree_contributions(kind, matrix), self.method)
        x = _feature_frame(features)
        probabilities = self.model.predict_proba(x)
        return Scores(self.classes, probabilities, self._occlusion(x, probabilities[:, self._pass]), "occlusion")

    def _compiled_scores(self, matrix: np.ndarray) -> Scores | None:
        """Scores from the compiled forest (:mod:`.compiled_trees`), checked once against LightGBM's raw scores."""
        if self._forest is None:
            return None
        raw, credit = self._forest.raw_and_credit(matrix)
        if not self._forest_checked:
            head = raw[:CHECKED_ROWS]
            expected = np.asarray(self._estimator.booster_.predict(matrix[:CHECKED_ROWS], raw_score=True)).reshape(head.shape)
            if not np.allclose(head, expected, rtol=0.0, atol=1e-9):
                self._forest = None  # for good: LightGBM's predictor answers from now on
                return None
            self._forest_checked = True
        return Scores(self.classes, self._paths.from_raw(raw), self._reorder(self._paths.sign * credit), self.method)

    def _booster_matrix(self, features: pd.DataFrame | FeatureColumns) -> np.ndarray:
        """The booster's input: the pipeline's own transform, or its plain-numpy equivalent.

        The pipeline's pandas steps cost about 20 ms per call whatever the rows; the
        equivalent (numbers as they are, categories through the fitted encoder's category
        lists) costs well under one. It is checked against the pipeline on the first batch
        (its first ``CHECKED_ROWS``) and dropped, for good, if they ever differ.
        """
        if self._fast_input is None:
            return np.asarray(self._transform.transform(_feature_frame(features)), dtype=float)
        fast = self._fast_input.matrix(features)
        if not self._fast_input.checked:
            slow = np.asarray(self._transform.transform(_feature_frame(features, rows=CHECKED_ROWS)), dtype=float)
            if fast[: len(slow)].shape != slow.shape or not np.allclose(fast[: len(slow)], slow, equal_nan=True):
                self._fast_input = None
                return np.asarray(self._transform.transform(_feature_frame(features)), dtype=float)
            self._fast_input.checked = True
        return fast

    def _tree_contributions(self, kind: str, matrix: np.ndarray) -> np.ndarray:
        """Contributions to the pass class's raw score, one column per feature (bias dropped).

        The booster's columns are the converter's order: numeric features, then categorical
        codes (see ``automl.preprocessing.ordinal_with_missing``).
        """
        n, width = matrix.shape
        if self._paths is not None:
            toward_pass = self._paths.contributions(self._estimator.booster_.predict(matrix, pred_leaf=True))
        else:
            if kind == "lightgbm":
                raw = np.asarray(self._estimator.booster_.predict(matrix, pred_contrib=True))
            else:
                import xgboost

                approx = self.method == "tree_path"
                raw = self._estimator.get_booster().predict(xgboost.DMatrix(matrix), pred_contribs=True, approx_contribs=approx)
            per_class = raw.reshape(n, -1, width + 1)
            if per_class.shape[1] == 1:  # binary: one margin, for the positive class (index 1)
                toward_pass = per_class[:, 0, :width] * (1.0 if self._pass == 1 else -1.0)
            else:
                toward_pass = per_class[:, self._pass, :width]
        return self._reorder(toward_pass)

    @staticmethod
    def _reorder(booster_columns: np.ndarray) -> np.ndarray:
        """Booster column order (numeric, then categorical) → FEATURE_NAMES order."""
        order = [*NUMERIC_FEATURES, *CATEGORICAL_FEATURES]
        return booster_columns[:, [order.index(name) for name in FEATURE_NAMES]]

    def _occlusion(self, x: pd.DataFrame, p_pass: np.ndarray) -> np.ndarray:
        """P(pass) minus P(pass) with one feature at its reference value, for every feature at once."""
        n = len(x)
        variants = pd.concat([x] * len(FEATURE_NAMES), ignore_index=True)
        for j, name in enumerate(FEATURE_NAMES):
            value = self.reference.get(name)
            rows = slice(j * n, (j + 1) * n)
            column = variants.columns.get_loc(name)
            variants.iloc[rows, column] = np.nan if value is None else value
        occluded = self.model.predict_proba(variants)[:, self._pass].reshape(len(FEATURE_NAMES), n).T
        return p_pass[:, None] - occluded


@dataclass(frozen=True)
class _LeafPaths:
    """Per tree of the pass class, each leaf's path credit per feature, and the trees' bias.

    LightGBM stores multiclass trees iteration by iteration, one per class: tree ``t`` belongs
    to class ``t % k``. A binary model has one tree per iteration, for the positive class.
    """

    trees: np.ndarray  # indices of the trees that score the pass class
    tables: tuple[np.ndarray, ...]  # per such tree: (leaves, features) credit of each leaf's path
    sign: float
    bias: float
    leaf_values: tuple[np.ndarray, ...]  # every tree's leaf values, for the raw score of each class
    per_iteration: int  # trees per boosting round (classes, or 1 for binary)
    softmax_or_sigmoid: bool  # the objective maps raw scores to probabilities the usual way
    forest: CompiledForest | None  # the same trees for the compiled kernel (None: a split it does not handle)

    @classmethod
    def of(cls, booster: Any, pass_index: int, n_classes: int) -> _LeafPaths:
        dump = booster.dump_model()
        width = dump["max_feature_idx"] + 1
        per_iteration = dump.get("num_tree_per_iteration", 1)
        own_class = pass_index if per_iteration > 1 else 1
        trees, tables, bias = [], [], 0.0
        leaf_values = []
        for t, info in enumerate(dump["tree_info"]):
            values = np.zeros(info["num_leaves"])
            _collect_leaf_values(info["tree_structure"], values)
            leaf_values.append(values)
            if per_iteration > 1 and t % per_iteration != own_class:
                continue
            table = np.zeros((info["num_leaves"], width))
            root = info["tree_structure"]
            root_value = root.get("internal_value", root.get("leaf_value", 0.0))
            bias += root_value
            stack = [(root, root_value, np.zeros(width))]
            while stack:
                node, value, credit = stack.pop()
                if "leaf_index" in node or "split_feature" not in node:
                    table[node.get("leaf_index", 0)] = credit
                    continue
                for side in ("left_child", "right_child"):
                    child = node[side]
                    child_value = child.get("internal_value", child.get("leaf_value", 0.0))
                    moved = credit.copy()
                    moved[node["split_feature"]] += child_value - value
                    stack.append((child, child_value, moved))
            trees.append(t)
            tables.append(table)
        sign = -1.0 if (per_iteration == 1 and pass_index == 0) else 1.0
        objective = str(dump.get("objective", "")).split()[0] if dump.get("objective") else ""
        usual = objective in ("multiclass", "softmax") if per_iteration > 1 else objective in ("binary",)
        forest = CompiledForest.of(dump, dict(zip(trees, tables, strict=True)))
        return cls(np.asarray(trees), tuple(tables), sign, sign * bias, tuple(leaf_values), per_iteration, usual, forest)

    def probabilities(self, leaves: np.ndarray) -> np.ndarray:
        """Class probabilities from the leaves: raw score per class, then softmax (sigmoid if binary)."""
        leaves = np.asarray(leaves, dtype=np.int64).reshape(len(leaves), -1)
        raw = np.zeros((len(leaves), self.per_iteration))
        for t, values in enumerate(self.leaf_values):
            raw[:, t % self.per_iteration] += values[leaves[:, t]]
        return self.from_raw(raw)

    def from_raw(self, raw: np.ndarray) -> np.ndarray:
        """Class probabilities from raw scores (rows × trees per iteration): softmax, or sigmoid if binary."""
        if self.per_iteration == 1:
            positive = 1.0 / (1.0 + np.exp(-raw[:, 0]))
            return np.column_stack([1.0 - positive, positive])
        raw -= raw.max(axis=1, keepdims=True)
        exp = np.exp(raw)
        return exp / exp.sum(axis=1, keepdims=True)

    def contributions(self, leaves: np.ndarray) -> np.ndarray:
        """Sum over the pass class's trees of each row's leaf credit (rows × features)."""
        leaves = np.asarray(leaves, dtype=np.int64).reshape(len(leaves), -1)
        total = np.zeros((len(leaves), self.tables[0].shape[1]))
        for column, table in zip(self.trees, self.tables, strict=True):
            total += table[leaves[:, column]]
        return self.sign * total


def _collect_leaf_values(node: dict[str, Any], values: np.ndarray) -> None:
    """Fill ``values[leaf_index]`` with the leaf values of a dumped LightGBM tree."""
    stack = [node]
    while stack:
        current = stack.pop()
        if "split_feature" in current:
            stack.extend((current["left_child"], current["right_child"]))
        else:
            values[current.get("leaf_index", 0)] = current["leaf_value"]


def _feature_frame(features: pd.DataFrame | FeatureColumns, rows: int | None = None) -> pd.DataFrame:
    """The ``FEATURE_NAMES`` columns as a frame, rows in their order (what a pipeline takes); the first ``rows`` if given."""
    if isinstance(features, FeatureColumns):
        head = features if rows is None else features.take(np.arange(min(len(features), rows)))
        return head.frame(sort=False)[list(FEATURE_NAMES)]
    return features[list(FEATURE_NAMES)].iloc[:rows]


def category_labels(column: pd.Series) -> np.ndarray:
    """A categorical feature column's labels as an object array, None where missing (read
    through the codes: ``astype(object).where(...)`` costs ~100 µs a column, a micro-batch's worth)."""
    labels = np.append(np.asarray(column.cat.categories, dtype=object), None)
    return labels[column.cat.codes.to_numpy()]  # code -1 (missing) picks the trailing None


class _BoosterInput:
    """The boosters' preprocessing (``FeatureConverter`` then ``ordinal_with_missing``) in numpy."""

    def __init__(self, numeric: list[str], categorical: list[str], categories: list[np.ndarray]) -> None:
        self.numeric = numeric
        self.categorical = categorical
        self.indexes = [pd.Index([str(c) for c in cats if not pd.isna(c)], dtype=object) for cats in categories]
        self._encodings: dict[str, np.ndarray] = {}
        self.checked = False

    @classmethod
    def of(cls, pipeline: Any) -> _BoosterInput | None:
        try:
            converter = pipeline.named_steps["features"]
            encoder = pipeline.named_steps["preprocess"].named_transformers_["categorical"]
            return cls(list(converter.numeric), list(converter.categorical), list(encoder.categories_))
        except (AttributeError, KeyError):
            return None  # another layout: the pipeline's own transform it is

    def matrix(self, x: pd.DataFrame | FeatureColumns) -> np.ndarray:
        if isinstance(x, FeatureColumns) and set(self.categorical) <= set(x.codes):
            return self._matrix_of_columns(x)
        if isinstance(x, FeatureColumns):
            x = x.frame(sort=False)
        numbers = x[self.numeric].to_numpy(dtype=np.float64, na_value=np.nan)
        numbers[~np.isfinite(numbers)] = np.nan
        codes = []
        for name, index in zip(self.categorical, self.indexes, strict=True):
            column = x[name]
            if isinstance(column.dtype, pd.CategoricalDtype):
                values = category_labels(column)
            else:
                values = column.astype(object).where(column.notna(), None).to_numpy(dtype=object)
            found = index.get_indexer(values).astype(np.float64)
            found[found < 0] = np.nan  # unseen or missing: the booster's missing branch
            codes.append(found)
        return np.column_stack([numbers, *codes]) if codes else numbers

    def _matrix_of_columns(self, x: FeatureColumns) -> np.ndarray:
        """The same matrix from plain arrays: categories go from the feature's codes to the encoder's."""
        matrix = np.empty((len(x), len(self.numeric) + len(self.categorical)))
        for j, name in enumerate(self.numeric):
            matrix[:, j] = x.numeric[name]
        for j, name in enumerate(self.categorical, start=len(self.numeric)):
            matrix[:, j] = self._encoded(name)[x.codes[name]]
        matrix[~np.isfinite(matrix)] = np.nan
        return matrix

    def _encoded(self, name: str) -> np.ndarray:
        """Per code of the feature's categories (and -1, last), its ordinal in the fitted encoder, NaN if unseen."""
        if name not in self._encodings:
            index = self.indexes[self.categorical.index(name)]
            found = index.get_indexer(list(FEATURE_SPEC_BY_NAME[name].categories or ())).astype(np.float64)
            found[found < 0] = np.nan
            self._encodings[name] = np.append(found, np.nan)
        return self._encodings[name]
