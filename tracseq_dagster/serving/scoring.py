"""Scoring a feature frame with a registered model: values and per-feature contributions.

:class:`ModelScorer` serves any catalog model (``sample_quality``, ``sequencing_success``,
``turnaround_hours``, …): its value is P(target class) for a classifier and the prediction for
a regression model, and its contributions say, per feature, how much that feature moves the
answer. :class:`QualityScorer` is ``sample_quality``'s (target class ``pass``).

The registered model is the engine's :class:`~tracseq_dagster.automl.LabelDecodingClassifier`
around a scikit-learn ``Pipeline`` (feature conversion → preprocessing → estimator), or that
pipeline alone for regression. The pipeline's preprocessing is redone in numpy
(:mod:`.pipeline_arrays`, checked once against the pipeline's), which also says which
feature every estimator column comes from. Attributions by family, each exact (they add up,
with the scorer's ``bias``, to the model's own output) and cheap unless said otherwise:

* **LightGBM / XGBoost: tree paths** (``tree_path``, the default; Saabas' method), in the raw
  score (log-odds; for multiclass the target class's own raw score): along each tree's decision
  path, every split moves the node value; the move is credited to the split's feature.
  LightGBM's leaves come from the compiled forest (:mod:`.compiled_trees`) or ``pred_leaf``,
  and the credit of every leaf's path is precomputed once per model, so a row costs one lookup
  per tree. XGBoost's come from its trees like the forests' below (:mod:`.forest_paths`; its
  native ``approx_contribs`` when a tree uses a split those do not read).
  **Tree SHAP** (``tree_shap``; XGBoost ``pred_contribs``, LightGBM ``pred_contrib``): the
  exact Shapley values. Consistent, but O(trees × leaves × depth²) per row: 7.5 ms per row on a
  1,200-tree champion here, against about 0.05 ms for tree paths. Choose it with
  ``TRACSEQ_ATTRIBUTION=tree_shap`` where latency does not matter.
* **Random forest, sklearn histogram gradient boosting: tree paths** (``tree_path``) from the
  fitted trees (:mod:`.forest_paths`, leaves found by the compiled walk of :mod:`.tree_walk`):
  the forest's averaged probability of the target class (a random forest's output is a
  probability), the raw score for gradient boosting.
* **Linear models** (logistic regression, ridge): ``linear`` (:mod:`.linear_attribution`):
  coefficient × the move of each transformed column from the reference row, summed per
  feature: exact in the log-odds (multiclass: the target class against the others), or in
  the prediction's units.
* **Occlusion** (``occlusion``; the MLP, and any model whose layout is not recognised): a
  feature's contribution is how much the value (P(target), or the prediction) changes when
  that feature alone is set to its typical training value (median, or most frequent
  category). Model-agnostic, signed the same way, and not additive. For the MLP it is computed
  from the network's weights (:mod:`.mlp_occlusion`: the first layer once, then only the later
  layers per feature, about 5–9 µs a row); for other models by one extra prediction through
  the pipeline per feature.

A negative contribution pushes the answer down (away from the target class, or toward a
smaller prediction). For ``sample_quality``, a feature pushing away from ``pass`` is a risk
factor (:func:`.advice.top_risk_factors`; a zero contribution never is).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from tracseq_dagster.features import CATEGORICAL_FEATURES, FEATURE_NAMES, NUMERIC_FEATURES, FeatureColumns
from tracseq_dagster.serving.compiled_trees import CompiledForest
from tracseq_dagster.serving.forest_paths import CHECKED_ROWS, ForestPaths
from tracseq_dagster.serving.linear_attribution import LinearAttribution
from tracseq_dagster.serving.mlp_occlusion import MlpOcclusion
from tracseq_dagster.serving.pipeline_arrays import PreprocessArrays

#: The class whose probability is the sample's quality probability.
PASS = "pass"

#: "ensemble": a weighted ensemble's members' contributions, weighted (:mod:`.ensemble_scoring`).
ContributionMethod = Literal["tree_path", "tree_shap", "linear", "occlusion", "ensemble"]
#: What boosters use unless told otherwise (see the module docstring for the trade-off).
DEFAULT_TREE_ATTRIBUTION: ContributionMethod = "tree_path"
#: LightGBM objectives whose raw score is the prediction itself.
_IDENTITY_OBJECTIVES = frozenset({"regression", "regression_l2", "l2", "mean_squared_error", "mse", "regression_l1", "l1",
                                  "huber", "fair", "quantile", "mape"})  # fmt: skip


@dataclass(frozen=True)
class Scores:
    """Per row: class probabilities (columns ``classes``; none for regression), predictions
    (regression only) and per-feature contributions (columns: the scorer's feature names)."""

    classes: tuple[str, ...]
    probabilities: np.ndarray  # (n, k); (n, 0) for regression
    contributions: np.ndarray  # (n, features), toward the target class (or a larger prediction)
    method: ContributionMethod
    target: str | None = PASS
    predictions: np.ndarray | None = None  # (n,) regression only

    @property
    def values(self) -> np.ndarray:
        """P(target class), or the prediction."""
        if self.target is None:
            assert self.predictions is not None
            return self.predictions
        return self.probabilities[:, self.classes.index(self.target)]

    @property
    def quality_probability(self) -> np.ndarray:
        return self.values

    @property
    def predicted_status(self) -> np.ndarray:
        return np.asarray(self.classes, dtype=object)[self.probabilities.argmax(axis=1)]


def reference_values(features: pd.DataFrame, feature_names: tuple[str, ...] | list[str] | None = None) -> dict[str, Any]:
    """Typical training values per feature (median; most frequent category): the baseline of
    occlusion and of linear attributions. Without ``feature_names``, the sample features
    (kinds from their specs); with them, each column's kind from its dtype."""
    if feature_names is None:
        numeric, categorical = list(NUMERIC_FEATURES), list(CATEGORICAL_FEATURES)
    else:
        numeric = [n for n in feature_names if _is_number(features[n].dtype)]
        categorical = [n for n in feature_names if n not in numeric]
    reference: dict[str, Any] = {}
    for name in numeric:
        value = pd.to_numeric(features[name], errors="coerce").median()
        reference[name] = None if pd.isna(value) else float(value)
    for name in categorical:
        mode = features[name].dropna().astype(str).mode()
        reference[name] = None if mode.empty else str(mode.iloc[0])
    return reference


def _is_number(dtype: Any) -> bool:
    return (pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype)) and not isinstance(
        dtype, pd.CategoricalDtype
    )


class ModelScorer:
    """Scores feature frames (the ``feature_names`` columns) with one fitted catalog model.

    ``target_class`` is the class whose probability is the value (None: a regression model).
    ``reference`` holds typical training values (:func:`reference_values`). Attributes a caller
    may read: ``method`` (see the module docstring), ``bias`` (what exact contributions add to,
    None for occlusion) and ``units`` (of the contributions).
    """

    def __init__(self, model: Any, feature_names: tuple[str, ...] | list[str], reference: dict[str, Any],
                 target_class: str | None, tree_attribution: ContributionMethod = DEFAULT_TREE_ATTRIBUTION) -> None:  # fmt: skip
        if tree_attribution not in ("tree_path", "tree_shap"):
            raise ValueError(f"tree_attribution must be tree_path or tree_shap, not {tree_attribution!r}")
        self.model = model
        self.feature_names = tuple(feature_names)
        self.reference = reference
        self.target = target_class
        if target_class is None:
            if hasattr(model, "classes_"):
                raise ValueError("a classifier needs a target class (None is for regression models)")
            self.classes: tuple[str, ...] = ()
            self._target = None
        else:
            if not hasattr(model, "classes_"):
                raise ValueError(f"target class {target_class!r} given for a regression model")
            self.classes = tuple(str(c) for c in model.classes_)
            if target_class not in self.classes:
                raise ValueError(f"the model's classes {self.classes} do not include {target_class!r}")
            self._target = self.classes.index(target_class)
        pipeline = getattr(model, "estimator_", model)
        estimator = pipeline.steps[-1][1] if hasattr(pipeline, "steps") else None
        self._transform = pipeline[:-1] if estimator is not None else None
        self._estimator = estimator
        self.family = type(estimator).__name__ if estimator is not None else type(model).__name__
        arrays = PreprocessArrays.of(pipeline) if estimator is not None else None
        self._fast_input = arrays
        converter: Any = pipeline.named_steps.get("features") if hasattr(pipeline, "named_steps") else None
        columns = [*converter.numeric, *converter.categorical] if hasattr(converter, "numeric") else None
        if columns is not None and not set(columns) <= set(self.feature_names):
            raise ValueError(f"the model reads features not given: {sorted(set(columns) - set(self.feature_names))}")
        # where each converter column (the model's features, numeric then categorical) sits among ours
        self._position = np.array([self.feature_names.index(c) for c in columns], dtype=np.int64) if columns is not None else None
        kind = self._kind(arrays)
        self._linear: LinearAttribution | None = None
        self._trees: ForestPaths | None = None
        self._mlp: MlpOcclusion | None = None
        self._outputs_checked = False
        if kind == "linear":
            assert arrays is not None and self._position is not None
            baseline = arrays.transform(self._reference_frame())[0]
            self._linear = LinearAttribution.of(
                estimator, self._position[arrays.origins], baseline, self._target, len(self.feature_names)
            )
        elif kind in ("random_forest", "hist_gradient_boosting"):
            assert arrays is not None and self._position is not None
            build = ForestPaths.of_random_forest if kind == "random_forest" else ForestPaths.of_hist_gradient_boosting
            self._trees = build(estimator, self._position[arrays.origins], len(self.feature_names), self._target)
        elif kind == "mlp":
            assert arrays is not None and self._position is not None
            baseline = arrays.transform(self._reference_frame())[0]
            self._mlp = MlpOcclusion.of(
                estimator, self._position[arrays.origins], baseline, self._target, len(self.feature_names)
            )
        elif kind == "xgboost" and tree_attribution == "tree_path":
            assert self._position is not None
            columns_feature = self._position[arrays.origins] if arrays is not None else self._position
            self._trees = ForestPaths.of_xgboost(estimator, columns_feature, len(self.feature_names), self._target)
        self._native = kind if kind == "lightgbm" or (kind == "xgboost" and self._trees is None) else None
        self.method: ContributionMethod = (tree_attribution if self._native else "tree_path" if self._trees is not None
                                           else "linear" if self._linear is not None else "occlusion")  # fmt: skip
        own = self._target if self._target is not None else 1  # a binary booster's one output is class 1's
        self._paths = _LeafPaths.of(self._fitted.booster_, own, max(len(self.classes), 1)) if (
            self._native == "lightgbm" and self.method == "tree_path") else None  # fmt: skip
        self._forest = self._paths.forest if self._paths is not None and self._compiled_ok() else None
        self._forest_checked = False
        if self._forest is not None:  # compile (or load the cached compilation) now, not in the first request
            self._forest.raw_and_credit(np.zeros((1, self._forest.credit.shape[1])))

    @property
    def _fitted(self) -> Any:
        """The pipeline's estimator (scikit-learn, LightGBM or XGBoost: untyped). The native and traced
        paths ask for it; they exist only when the model is a pipeline, so there is one."""
        assert self._estimator is not None
        return self._estimator

    @property
    def _steps_before(self) -> Any:
        """The pipeline without its estimator: the slow but authoritative transform to its input matrix."""
        assert self._transform is not None
        return self._transform

    def _kind(self, arrays: PreprocessArrays | None) -> str | None:
        name = type(self._estimator).__name__
        if self._position is None:  # not an AutoML pipeline: its columns cannot be named, occlusion it is
            return None
        if name in ("LGBMClassifier", "LGBMRegressor"):
            return "lightgbm"
        if name in ("XGBClassifier", "XGBRegressor"):
            return "xgboost"
        if arrays is None:  # the estimator's columns cannot be traced back to features
            return None
        if name.startswith(("RandomForest", "ExtraTrees")):
            return "random_forest"
        if name.startswith("HistGradientBoosting"):
            return "hist_gradient_boosting"
        if name.startswith("MLP"):
            return "mlp"
        if hasattr(self._estimator, "coef_") and hasattr(self._estimator, "intercept_"):
            return "linear"
        return None

    def _compiled_ok(self) -> bool:
        """The compiled forest answers raw scores; they are what we serve when the objective maps them the usual way."""
        assert self._paths is not None
        if self._target is None:
            return str(getattr(self._estimator, "objective_", "")) in _IDENTITY_OBJECTIVES
        return self._paths.softmax_or_sigmoid

    @property
    def bias(self) -> float | None:
        """What the contributions add up to the model's output with (None: occlusion, or tree SHAP's per-row bias)."""
        if self._linear is not None:
            return self._linear.bias
        if self._trees is not None:
            return self._trees.bias
        return self._paths.bias if self._paths is not None else None

    @property
    def units(self) -> str:
        """What a contribution is measured in."""
        if self._target is None:
            return "prediction"
        if self.method == "occlusion" or self.family.startswith(("RandomForest", "ExtraTrees")):
            return "probability"
        return "log-odds"

    def score(self, features: pd.DataFrame | FeatureColumns) -> Scores:
        """Values and contributions of every row of ``features``: a frame with the ``feature_names``
        columns, or (sample features only) :class:`FeatureColumns`, the same without a frame's costs."""
        if self._native is not None:
            return self._native_scores(self._native, self._matrix(features))
        if self._linear is not None or self._trees is not None or self._mlp is not None:
            scores = self._traced_scores(self._matrix(features))
            if scores is not None:
                return scores
        return self._occlusion_scores(_feature_frame(features, self.feature_names))

    def _scores(self, probabilities_or_predictions: np.ndarray, contributions: np.ndarray, method: ContributionMethod) -> Scores:
        if self._target is None:
            n = len(probabilities_or_predictions)
            return Scores((), np.empty((n, 0)), contributions, method, None, probabilities_or_predictions)
        return Scores(self.classes, probabilities_or_predictions, contributions, method, self.target)

    def _native_scores(self, kind: str, matrix: np.ndarray) -> Scores:
        if self._paths is not None and self._forest is not None:
            # One pass through the trees gives both: the leaves of each row score and explain it.
            compiled = self._compiled_scores(matrix)
            if compiled is not None:
                return compiled
        if self._paths is not None and self._paths.softmax_or_sigmoid and self._target is not None:
            leaves = self._fitted.booster_.predict(matrix, pred_leaf=True)
            return self._scores(self._paths.probabilities(leaves), self._reorder(self._paths.contributions(leaves)), self.method)
        values = self._fitted.predict(matrix) if self._target is None else self._fitted.predict_proba(matrix)
        return self._scores(np.asarray(values, dtype=np.float64), self._tree_contributions(kind, matrix), self.method)

    def _compiled_scores(self, matrix: np.ndarray) -> Scores | None:
        """Scores from the compiled forest (:mod:`.compiled_trees`), checked once against LightGBM's raw scores."""
        if self._forest is None:
            return None
        raw, credit = self._forest.raw_and_credit(matrix)
        if not self._forest_checked:
            head = raw[:CHECKED_ROWS]
            expected = np.asarray(self._fitted.booster_.predict(matrix[:CHECKED_ROWS], raw_score=True)).reshape(head.shape)
            if not np.allclose(head, expected, rtol=0.0, atol=1e-9):
                self._forest = None  # for good: LightGBM's predictor answers from now on
                return None
            self._forest_checked = True
        paths = self._paths
        assert paths is not None  # the compiled forest is built from the leaf paths
        values = raw[:, 0].copy() if self._target is None else paths.from_raw(raw)
        return self._scores(values, self._reorder(paths.sign * credit), self.method)

    def _matrix(self, features: pd.DataFrame | FeatureColumns) -> np.ndarray:
        """The estimator's input: the pipeline's own transform, or its plain-numpy equivalent.

        The pipeline's pandas steps cost about 20 ms per call whatever the rows; the
        equivalent (:mod:`.pipeline_arrays`) costs well under one. It is checked against the
        pipeline on the first batch (its first ``CHECKED_ROWS``) and dropped, for good, if they
        ever differ.
        """
        if self._fast_input is None:
            return np.asarray(self._steps_before.transform(_feature_frame(features, self.feature_names)), dtype=float)
        fast = self._fast_input.transform(features)
        if not self._fast_input.checked:
            slow = np.asarray(
                self._steps_before.transform(_feature_frame(features, self.feature_names, rows=CHECKED_ROWS)), dtype=float
            )
            if not self._fast_input.agrees(fast[: len(slow)], slow):
                self._fast_input = None
                return np.asarray(self._steps_before.transform(_feature_frame(features, self.feature_names)), dtype=float)
            self._fast_input.checked = True
        return fast

    _booster_matrix = _matrix  # the boosters' name for it

    def _traced_scores(self, matrix: np.ndarray) -> Scores | None:
        """Linear, forest or MLP scores from the estimator's input matrix, checked once against the
        estimator's own answers (None: they differed, and occlusion on the pipeline answers from now on)."""
        if self._linear is not None:
            contributions = self._linear.contributions(matrix)
            values = self._linear.output(matrix) if self._target is None else self._linear.probabilities(matrix)
        elif self._mlp is not None:
            values, contributions = self._mlp.outputs_and_contributions(matrix)
        else:
            assert self._trees is not None  # score() traces only with one of the three
            outputs, contributions = self._trees.outputs_and_contributions(matrix)
            values = self._forest_values(outputs)
        if not self._outputs_checked:
            head = matrix[:CHECKED_ROWS]
            own = self._fitted.predict(head) if self._target is None else self._fitted.predict_proba(head)
            # XGBoost computes in float32; everything else in float64
            tolerance = 1e-5 if self.family.startswith("XGB") else 1e-9
            if not np.allclose(values[: len(head)], own, rtol=tolerance, atol=tolerance):
                self._linear = self._trees = self._mlp = None
                self.method = "occlusion"
                return None
            self._outputs_checked = True
        return self._scores(values, contributions, self.method)

    def _forest_values(self, outputs: np.ndarray) -> np.ndarray:
        """Probabilities or predictions from a forest's summed outputs."""
        if self.family.startswith(("RandomForest", "ExtraTrees")):
            return outputs[:, 0] if self._target is None else outputs
        if self._target is None:  # histogram boosting's link (identity for squared error); XGBoost: the margin
            if self.family.startswith("XGB"):
                return outputs[:, 0].copy()
            return np.asarray(self._fitted._loss.link.inverse(outputs[:, 0]), dtype=np.float64)
        if outputs.shape[1] == 1:
            positive = 1.0 / (1.0 + np.exp(-outputs[:, 0]))
            return np.column_stack([1.0 - positive, positive])
        z = outputs - outputs.max(axis=1, keepdims=True)
        exp = np.exp(z)
        return exp / exp.sum(axis=1, keepdims=True)

    def _tree_contributions(self, kind: str, matrix: np.ndarray) -> np.ndarray:
        """Contributions to the target's raw score, one column per feature (bias dropped).

        The booster's columns are the converter's order: numeric features, then categorical
        codes (see ``automl.preprocessing.ordinal_with_missing``).
        """
        n, width = matrix.shape
        if self._paths is not None:
            toward = self._paths.contributions(self._fitted.booster_.predict(matrix, pred_leaf=True))
        else:
            if kind == "lightgbm":
                raw = np.asarray(self._fitted.booster_.predict(matrix, pred_contrib=True))
            else:
                import xgboost

                approx = self.method == "tree_path"
                raw = self._fitted.get_booster().predict(xgboost.DMatrix(matrix), pred_contribs=True, approx_contribs=approx)
            per_class = raw.reshape(n, -1, width + 1)
            if per_class.shape[1] == 1:  # binary: one margin, for the positive class (index 1); regression: the prediction
                toward = per_class[:, 0, :width] * (-1.0 if self._target == 0 else 1.0)
            else:
                toward = per_class[:, self._target, :width]
        return self._reorder(toward)

    def _reorder(self, booster_columns: np.ndarray) -> np.ndarray:
        """Booster column order (the converter's: numeric, then categorical) → ``feature_names`` order."""
        out = np.zeros((len(booster_columns), len(self.feature_names)))
        out[:, self._position] = booster_columns
        return out

    def _reference_frame(self) -> pd.DataFrame:
        """The reference as a one-row frame (None: missing), in the dtypes the converter reads."""
        row = {name: [np.nan if self.reference.get(name) is None else self.reference[name]] for name in self.feature_names}
        return pd.DataFrame(row)

    def _occlusion_scores(self, x: pd.DataFrame) -> Scores:
        if self._target is None:
            predictions = self._predict_value(x)
            return self._scores(predictions, self._occlusion(x, predictions), "occlusion")
        probabilities = self.model.predict_proba(x)
        return self._scores(probabilities, self._occlusion(x, probabilities[:, self._target]), "occlusion")

    def _predict_value(self, x: pd.DataFrame) -> np.ndarray:
        if self._target is None:
            return np.asarray(self.model.predict(x), dtype=np.float64)
        return self.model.predict_proba(x)[:, self._target]

    def _occlusion(self, x: pd.DataFrame, values: np.ndarray) -> np.ndarray:
        """The value minus the value with one feature at its reference, for every feature at once."""
        n = len(x)
        names = self.feature_names
        variants = pd.concat([x] * len(names), ignore_index=True)
        for j, name in enumerate(names):
            value = self.reference.get(name)
            rows = slice(j * n, (j + 1) * n)
            column = variants.columns.get_loc(name)
            variants.iloc[rows, column] = np.nan if value is None else value
        occluded = self._predict_value(variants).reshape(len(names), n).T
        return values[:, None] - occluded


class QualityScorer(ModelScorer):
    """``sample_quality``'s scorer: the sample features, toward ``pass``."""

    def __init__(
        self, model: Any, reference: dict[str, Any], tree_attribution: ContributionMethod = DEFAULT_TREE_ATTRIBUTION
    ) -> None:
        super().__init__(model, FEATURE_NAMES, reference, PASS, tree_attribution)


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


def _feature_frame(features: pd.DataFrame | FeatureColumns, names: tuple[str, ...], rows: int | None = None) -> pd.DataFrame:
    """The ``names`` columns as a frame, rows in their order (what a pipeline takes); the first ``rows`` if given."""
    if isinstance(features, FeatureColumns):
        head = features if rows is None else features.take(np.arange(min(len(features), rows)))
        return head.frame(sort=False)[list(names)]
    return features[list(names)].iloc[:rows]
