"""The six model families: search space, preprocessing and estimator of each.

A family turns Optuna's suggestions into an unfitted scikit-learn ``Pipeline``
(``preprocess`` → ``model``). Every pipeline is built from the prepared frame's column kinds
(:class:`~tracseq_dagster.automl.preprocessing.FeatureColumns`), takes the user's raw columns
(the first step converts dtypes), is seeded, and uses at most
:func:`threads` threads (below) so that several families can share a machine.

Each family's :meth:`ModelFamily.default_params` is its library's default configuration (or,
where that is expensive, a known-good low-cost one): the engine runs it as the family's first
trial, so a sweep can never end below the defaults of the families it swept, and its fit time
calibrates the cost estimate of every later trial (:mod:`.cost`).

Threads: estimators use :func:`threads` (a context variable, 1 unless the engine says
otherwise with :func:`using_threads`): one thread where several sweeps share a machine
(Dagster runs one family per process), every core when one sweep has the machine.

Classification pipelines are trained on labels encoded 0..k-1 (the engine encodes once).
Class imbalance (majority/minority ≥ ``IMBALANCE_RATIO``, decided by the engine on the training
data) makes class weighting a tuned choice (the engine's ``balance_classes`` parameter: it helps
threshold metrics but can cost ranking quality and calibration). When chosen it is: ``class_weight="balanced"`` where the estimator has it,
``scale_pos_weight`` for binary XGBoost, and balanced sample weights passed to ``fit`` for
multiclass XGBoost and the MLP (see :meth:`ModelFamily.fit_params`).
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from lightgbm import LGBMClassifier, LGBMRegressor
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import Pipeline
from xgboost import XGBClassifier, XGBRegressor

from tracseq_dagster.automl.deadline import LightGBMDeadline, XGBoostDeadline
from tracseq_dagster.automl.preprocessing import (
    FeatureColumns,
    categorical_mask,
    feature_converter,
    ordinal_imputed,
    ordinal_with_missing,
    scaled_one_hot,
)
from tracseq_dagster.automl.tasks import TaskType, balanced_sample_weight, is_classification, positive_weight

if TYPE_CHECKING:  # annotations only: unpickling a served model must not import Optuna
    import optuna

#: Threads per estimator by default (and of the models handed back for serving).
N_JOBS = 1

_THREADS: ContextVar[int] = ContextVar("automl_threads", default=N_JOBS)


def threads() -> int:
    """Threads the estimators built now use (see the module docstring)."""
    return _THREADS.get()


@contextmanager
def using_threads(count: int) -> Iterator[None]:
    """Estimators built (and fitted, see the engine) inside this block use ``count`` threads."""
    token = _THREADS.set(max(int(count), 1))
    try:
        yield
    finally:
        _THREADS.reset(token)


#: The boosters' most rounds (the top of their ``n_estimators`` search), and where early stopping
#: ends a trial's fit at its best round instead (:mod:`.early_stopping`: on one split).
MOST_ROUNDS = 1000
MOST_ROUNDS_STOPPED_EARLY = 4096

_ROUNDS_CEILING: ContextVar[int] = ContextVar("automl_rounds_ceiling", default=MOST_ROUNDS)


def rounds_ceiling() -> int:
    """The top of the boosters' ``n_estimators`` search now (see :data:`MOST_ROUNDS`)."""
    return _ROUNDS_CEILING.get()


@contextmanager
def stopping_early(on: bool) -> Iterator[None]:
    """Suggestions inside this block are for fits that stop early (``on``): a higher ceiling."""
    token = _ROUNDS_CEILING.set(MOST_ROUNDS_STOPPED_EARLY if on else MOST_ROUNDS)
    try:
        yield
    finally:
        _ROUNDS_CEILING.reset(token)


Params = dict[str, Any]


class ModelFamily(abc.ABC):
    """One model family: ``suggest`` a configuration, ``build`` its pipeline."""

    name: ClassVar[str]
    #: Trials that cover this family's search space; after them its sweep time goes to the
    #: other families. None: no such point (a space of several dimensions keeps paying).
    enough_trials: ClassVar[int | None] = None

    @abc.abstractmethod
    def suggest(self, trial: optuna.Trial, task: TaskType) -> Params:
        """Sample this family's hyperparameters from ``trial``."""

    @abc.abstractmethod
    def build(self, params: Params, task: TaskType, columns: FeatureColumns, *, seed: int, balance: bool) -> Pipeline:
        """An unfitted pipeline for ``params``; ``balance`` switches on class weighting."""

    def default_params(self, task: TaskType, columns: FeatureColumns) -> Params:
        """The family's first trial: library defaults, or a known-good low-cost configuration,
        as Optuna parameters (the names :meth:`suggest` gives the trial, values inside its space)."""
        return {}

    def zero_shot_params(self, config: dict[str, Any], task: TaskType, columns: FeatureColumns) -> Params | None:
        """A zero-shot configuration (:mod:`.zero_shot`, FLAML's parameter names) as this family's
        Optuna parameters, clipped into :meth:`suggest`'s space; None: the family has none."""
        return None

    def for_more_rows(self, params: Params, growth: float) -> Params:
        """``params`` for a final fit on ``growth`` times the rows one trial's fit saw (the refit
        after a sweep on a sample); unchanged unless the family says otherwise."""
        return params

    def larger_trees(self, params: Params, growth: float) -> Params | None:
        """A variant of ``params`` (already :meth:`for_more_rows`) with larger trees for ``growth``
        times the rows, for the final fit to try against ``params`` on its own validation split;
        None: the family has none."""
        return None

    def fit_params(self, y: np.ndarray, task: TaskType, *, balance: bool) -> dict[str, Any]:
        """Extra keyword arguments for ``pipeline.fit`` (sample weights where the estimator needs them).

        ``balance`` only ever applies to classification; for regression it is ignored.
        """
        return {}


def _clip(value: Any, low: float, high: float) -> float:
    return float(min(max(float(value), low), high))


#: The most trees a zero-shot configuration keeps (the spaces' bound): more are traded for a
#: proportionally higher learning rate (same rounds × rate), measured on the benchmark's tables
#: to score as the uncapped configuration (hotel_rates LightGBM 12.61 against 12.63 rmse).
ZERO_SHOT_MAX_TREES = MOST_ROUNDS


def _trees_and_rate(config: dict[str, Any], low_rate: float, high_rate: float) -> tuple[int, float]:
    """``n_estimators`` within :data:`ZERO_SHOT_MAX_TREES` and the learning rate scaled to match."""
    trees = int(config.get("n_estimators", 100))
    rate = float(config.get("learning_rate", 0.1))
    if trees > ZERO_SHOT_MAX_TREES:
        rate *= trees / ZERO_SHOT_MAX_TREES
        trees = ZERO_SHOT_MAX_TREES
    return max(trees, 8), _clip(rate, low_rate, high_rate)


def _pipeline(columns: FeatureColumns, preprocess: Any, model: Any) -> Pipeline:
    """``features`` (dtype conversion of the user's columns) → ``preprocess`` → ``model``."""
    return Pipeline([("features", feature_converter(columns)), ("preprocess", preprocess), ("model", model)])


class Logistic(ModelFamily):
    """Logistic regression (classification) or ridge regression: scaled, one-hot, L2-regularised."""

    name = "logistic"
    # One parameter on a log scale (two with class balancing): on credit_data its best after 15
    # trials was within 0.0001 AUC of its best after 171, which took a third of the sweep.
    enough_trials = 30

    def suggest(self, trial: optuna.Trial, task: TaskType) -> Params:
        if is_classification(task):
            return {"C": trial.suggest_float("C", 1e-4, 1e2, log=True)}
        return {"alpha": trial.suggest_float("alpha", 1e-3, 1e3, log=True)}

    def default_params(self, task: TaskType, columns: FeatureColumns) -> Params:
        return {"C": 1.0} if is_classification(task) else {"alpha": 1.0}

    def build(self, params: Params, task: TaskType, columns: FeatureColumns, *, seed: int, balance: bool) -> Pipeline:
        if is_classification(task):
            model: Any = LogisticRegression(
                **params, class_weight="balanced" if balance else None, max_iter=2000, random_state=seed
            )
        else:
            model = Ridge(**params, random_state=seed)
        return _pipeline(columns, scaled_one_hot(columns), model)


class RandomForest(ModelFamily):
    """Random forest on median-imputed numbers and ordinal-coded categories."""

    name = "random_forest"

    def suggest(self, trial: optuna.Trial, task: TaskType) -> Params:
        return {
            "n_estimators": trial.suggest_int("n_estimators", 50, 300, step=50),
            "max_depth": trial.suggest_int("max_depth", 3, 20),
            "min_samples_leaf": trial.suggest_int("min_samples_leaf", 1, 20, log=True),
            "max_features": trial.suggest_float("max_features", 0.1, 1.0),
            "bootstrap": trial.suggest_categorical("bootstrap", [True, False]),
        }

    def default_params(self, task: TaskType, columns: FeatureColumns) -> Params:
        # scikit-learn's defaults grow 100 unbounded trees on every feature (regression): on a
        # large table one fold takes minutes. Low cost instead: 50 trees of depth 12 on
        # scikit-learn's classification share of the features (sqrt), half of them at least
        # for regression (its documented alternative to 1.0).
        width = max(len(columns.all), 1)
        share = max(min(np.sqrt(width) / width, 1.0), 0.1) if is_classification(task) else 0.5
        return {"n_estimators": 50, "max_depth": 12, "min_samples_leaf": 1, "max_features": float(share), "bootstrap": True}

    def build(self, params: Params, task: TaskType, columns: FeatureColumns, *, seed: int, balance: bool) -> Pipeline:
        if is_classification(task):
            model: Any = RandomForestClassifier(
                **params, class_weight="balanced" if balance else None, n_jobs=threads(), random_state=seed
            )
        else:
            model = RandomForestRegressor(**params, n_jobs=threads(), random_state=seed)
        return _pipeline(columns, ordinal_imputed(columns), model)


#: A gradient boosting final fit on at least this many times a trial's rows grows its iterations
#: (:meth:`GradientBoosting.for_more_rows`) and tries larger trees (:meth:`GradientBoosting.larger_trees`), up to these.
MORE_ROWS_GROWTH = 2.0
MORE_ROWS_MAX_ITER = 2000
MORE_ROWS_MAX_LEAVES = 1024


class GradientBoosting(ModelFamily):
    """scikit-learn's histogram gradient boosting, with native categorical and missing-value support."""

    name = "gradient_boosting"

    def for_more_rows(self, params: Params, growth: float) -> Params:
        """On many more rows than the trials saw, up to ``growth`` × the iterations, stopped early.

        The best number of rounds grows with the rows: on flights (196,407 training rows, a
        20,000-row sweep sample) the sample's winner, scikit-learn's default of 100 iterations,
        refit on every row scores holdout AUC 0.770; with 300 iterations 0.784, with 1,000 0.794
        (BENCHMARKS.md, issue 18). Early stopping on 10% of the rows (scikit-learn's own) stops it
        where more rounds no longer pay, and the refit's deadline stops it where time runs out.
        """
        if growth < MORE_ROWS_GROWTH:
            return params
        chosen = int(params.get("max_iter", 100))
        rounds = max(min(int(chosen * growth), MORE_ROWS_MAX_ITER), chosen)  # never fewer than the trials had
        return {**params, "max_iter": rounds, "early_stopping": True}

    def larger_trees(self, params: Params, growth: float) -> Params | None:
        """On many more rows: the same fit with ``growth`` × the leaves a tree (as many rows a leaf
        as the trials had), at most :data:`MORE_ROWS_MAX_LEAVES`.

        Whether larger trees pay depends on the table, so this is a candidate, not a rule: the
        final fit keeps it only where it scores better than ``params`` on the fit's own validation
        split (``engine._fit``). Measured on four benchmark tables with scikit-learn's defaults
        fitted on every training row with early stopping (BENCHMARKS.md, issue 18): on flights
        (interactions of 3,986 tail numbers, 105 destinations, days) 31 leaves reach test AUC
        0.779, 107 0.788, 372 0.792, 2,047 0.787; on diamonds, mpls_stops and hotel_rates larger
        trees lose (diamonds rmse 546 with 31 leaves, 558 with 372).
        """
        if growth < MORE_ROWS_GROWTH or not params.get("early_stopping"):
            return None
        leaves = int(params.get("max_leaf_nodes", 31))
        grown = max(min(int(leaves * growth), MORE_ROWS_MAX_LEAVES), leaves)
        return None if grown == leaves else {**params, "max_leaf_nodes": grown}

    def suggest(self, trial: optuna.Trial, task: TaskType) -> Params:
        return {
            "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.3, log=True),
            "max_iter": trial.suggest_int("max_iter", 50, 300, step=50),
            "max_leaf_nodes": trial.suggest_int("max_leaf_nodes", 8, 64, log=True),
            "min_samples_leaf": trial.suggest_int("min_samples_leaf", 5, 100, log=True),
            "l2_regularization": trial.suggest_float("l2_regularization", 1e-6, 10.0, log=True),
            "max_features": trial.suggest_float("max_features", 0.5, 1.0),
        }

    def default_params(self, task: TaskType, columns: FeatureColumns) -> Params:
        # scikit-learn's defaults (max_iter 100, 31 leaves, 20 rows a leaf, no L2, every feature).
        return {
            "learning_rate": 0.1,
            "max_iter": 100,
            "max_leaf_nodes": 31,
            "min_samples_leaf": 20,
            "l2_regularization": 1e-6,
            "max_features": 1.0,
        }

    def build(self, params: Params, task: TaskType, columns: FeatureColumns, *, seed: int, balance: bool) -> Pipeline:
        # Early stopping would carve a random validation split out of each fold; the sweep's
        # max_iter search plays that role, and a fixed setting keeps fold scores comparable.
        params = dict(params)
        early = bool(params.pop("early_stopping", False))  # only a final fit on more rows (for_more_rows)
        common = {"categorical_features": categorical_mask(columns), "early_stopping": early, "random_state": seed}
        if is_classification(task):
            model: Any = HistGradientBoostingClassifier(**params, **common, class_weight="balanced" if balance else None)
        else:
            model = HistGradientBoostingRegressor(**params, **common)
        return _pipeline(columns, ordinal_with_missing(columns), model)


class XGBoost(ModelFamily):
    """XGBoost (hist trees) on ordinal-coded categories, NaN handled natively."""

    name = "xgboost"

    def suggest(self, trial: optuna.Trial, task: TaskType) -> Params:
        return {
            # Log-scaled from a low floor, as FLAML's cost-frugal search: most random draws are
            # cheap, and the sampler raises the count where it pays.
            # Feature sampling down to a tenth and L2 up to 100 as LightGBM's (FLAML's spaces
            # go further still): wide tables of weak features, small noisy ones.
            "n_estimators": trial.suggest_int("n_estimators", 8, rounds_ceiling(), log=True),
            "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.3, log=True),
            "max_depth": trial.suggest_int("max_depth", 2, 10),
            "min_child_weight": trial.suggest_float("min_child_weight", 0.5, 20.0, log=True),
            "subsample": trial.suggest_float("subsample", 0.5, 1.0),
            "colsample_bytree": trial.suggest_float("colsample_bytree", 0.1, 1.0),
            "reg_lambda": trial.suggest_float("reg_lambda", 1e-3, 100.0, log=True),
            "reg_alpha": trial.suggest_float("reg_alpha", 1e-3, 10.0, log=True),
        }

    def default_params(self, task: TaskType, columns: FeatureColumns) -> Params:
        # XGBoost's defaults (100 trees, eta 0.3, depth 6, lambda 1; alpha 0 → the space's floor).
        return {
            "n_estimators": 100,
            "learning_rate": 0.3,
            "max_depth": 6,
            "min_child_weight": 1.0,
            "subsample": 1.0,
            "colsample_bytree": 1.0,
            "reg_lambda": 1.0,
            "reg_alpha": 1e-3,
        }

    def zero_shot_params(self, config: dict[str, Any], task: TaskType, columns: FeatureColumns) -> Params | None:
        # FLAML grows XGBoost's trees leaf-wise to max_leaves; this space is depth-wise: the
        # depth that holds that many leaves (log2, within 2..10). colsample_bylevel has no
        # counterpart here and is dropped.
        trees, rate = _trees_and_rate(config, 0.01, 0.3)
        leaves = max(int(config.get("max_leaves", 64)), 4)
        return {
            "n_estimators": trees,
            "learning_rate": rate,
            "max_depth": int(_clip(np.ceil(np.log2(leaves)), 2, 10)),
            "min_child_weight": _clip(config.get("min_child_weight", 1.0), 0.5, 20.0),
            "subsample": _clip(config.get("subsample", 1.0), 0.5, 1.0),
            "colsample_bytree": _clip(config.get("colsample_bytree", 1.0), 0.1, 1.0),
            "reg_lambda": _clip(config.get("reg_lambda", 1.0), 1e-3, 100.0),
            "reg_alpha": _clip(config.get("reg_alpha", 1e-3), 1e-3, 10.0),
        }

    def build(self, params: Params, task: TaskType, columns: FeatureColumns, *, seed: int, balance: bool) -> Pipeline:
        # max_bin 255 (not 256): at most 254 thresholds a feature, what the served leaf bit
        # vectors bin into a byte (serving/leaf_bitvectors.py); one fewer bin is no loss.
        common = {
            "tree_method": "hist",
            "max_bin": 255,
            "n_jobs": threads(),
            "random_state": seed,
            "verbosity": 0,
            "callbacks": [XGBoostDeadline()],  # no-op outside a fit deadline (see deadline.py)
        }
        if is_classification(task):
            model: Any = XGBClassifier(**params, **common)
        else:
            model = XGBRegressor(**params, **common)
        return _pipeline(columns, ordinal_with_missing(columns), model)

    def fit_params(self, y: np.ndarray, task: TaskType, *, balance: bool) -> dict[str, Any]:
        if not balance or not is_classification(task):
            return {}
        if task == "binary":
            # scale_pos_weight is a constructor argument, but it depends on the fold's labels;
            # row weights of the same ratio are equivalent and can be passed per fit.
            weights = np.where(np.asarray(y) == 1, positive_weight(y), 1.0)
            return {"model__sample_weight": weights}
        return {"model__sample_weight": balanced_sample_weight(y)}


#: LightGBM's tuned choice between native categorical splits and ordinal codes (a parameter of its trials).
NATIVE_CATEGORIES = "native_categories"


def native_categories(columns: FeatureColumns) -> dict[str, Any]:
    """LightGBM's ``categorical_column``: every categorical column (wide ones too) split natively.

    Why: an ordinal code is an arbitrary order (alphabetical), so a threshold on it groups
    unrelated categories and a 100-value column needs many splits to isolate the few values
    that matter; LightGBM's native split sorts the categories by their gradient statistics and
    sends any subset left in one split (with its own smoothing: ``cat_smooth``,
    ``min_data_per_group``). It is what FLAML and a default ``LGBMRegressor`` on pandas
    ``category`` columns do. The columns are those of :func:`.preprocessing.ordinal_with_missing`
    (numeric first, then categorical and wide codes; missing and unseen categories are NaN,
    which LightGBM's categorical splits send right, as it does negative codes).

    The name is the alias (not ``categorical_feature``): LightGBM passes either to its Dataset,
    but warns that ``categorical_feature`` "will be ignored" when it is a constructor argument.
    """
    first = len(columns.numeric)
    coded = list(range(first, first + len(columns.categorical) + len(columns.wide)))
    return {"categorical_column": coded} if coded else {}


class LightGBM(ModelFamily):
    """LightGBM (leaf-wise boosting), categories split natively (:func:`native_categories`),
    NaN handled natively."""

    name = "lightgbm"

    def suggest(self, trial: optuna.Trial, task: TaskType) -> Params:
        # FLAML's LightGBM space, bounded where serving or the budget needs it: leaves from 4
        # (cheap, strongly regularised trees for small or noisy tables) up to 128, the served
        # leaf bit vectors' limit (serving/leaf_bitvectors.py); trees from 8 up to 1,000 (log:
        # most random draws are cheap; the cost estimates skip the ones a share cannot pay);
        # feature sampling down to a tenth (wide tables of weak features) and L2 up to 100.
        return {
            "n_estimators": trial.suggest_int("n_estimators", 8, rounds_ceiling(), log=True),
            "learning_rate": trial.suggest_float("learning_rate", 0.005, 0.5, log=True),
            "num_leaves": trial.suggest_int("num_leaves", 4, 128, log=True),
            "min_child_samples": trial.suggest_int("min_child_samples", 2, 128, log=True),
            "subsample": trial.suggest_float("subsample", 0.5, 1.0),
            "colsample_bytree": trial.suggest_float("colsample_bytree", 0.1, 1.0),
            "reg_lambda": trial.suggest_float("reg_lambda", 1e-3, 100.0, log=True),
            # Native categorical splits or ordinal codes (see native_categories): a tuned choice,
            # because neither wins everywhere. Measured with the default configuration on the
            # benchmark's tables (20,000-row samples): native 13.70 vs codes 14.38 rmse on
            # hotel_rates (98-167-value columns that drive the price), but 0.690 vs 0.728 AUC on
            # flights (a 3,271-value tail number: about 6 rows a category, which native splits
            # overfit). Without categorical columns the choice changes nothing.
            NATIVE_CATEGORIES: trial.suggest_categorical(NATIVE_CATEGORIES, [True, False]),
        }

    def default_params(self, task: TaskType, columns: FeatureColumns) -> Params:
        # LightGBM's defaults (100 trees, rate 0.1, 31 leaves, 20 rows a leaf; lambda 0 → the floor),
        # categories split natively as LightGBM does by default for pandas categorical columns.
        return {
            "n_estimators": 100,
            "learning_rate": 0.1,
            "num_leaves": 31,
            "min_child_samples": 20,
            "subsample": 1.0,
            "colsample_bytree": 1.0,
            "reg_lambda": 1e-3,
            NATIVE_CATEGORIES: True,
        }

    def zero_shot_params(self, config: dict[str, Any], task: TaskType, columns: FeatureColumns) -> Params | None:
        # FLAML's LightGBM portfolio has no row sampling (subsample 1.0) and tunes max_bin and
        # reg_alpha, which this space keeps at LightGBM's defaults (255 bins, no L1).
        trees, rate = _trees_and_rate(config, 0.005, 0.5)
        return {
            "n_estimators": trees,
            "learning_rate": rate,
            "num_leaves": int(_clip(config.get("num_leaves", 31), 4, 128)),
            "min_child_samples": int(_clip(config.get("min_child_samples", 20), 2, 128)),
            "subsample": 1.0,
            "colsample_bytree": _clip(config.get("colsample_bytree", 1.0), 0.1, 1.0),
            "reg_lambda": _clip(config.get("reg_lambda", 1e-3), 1e-3, 100.0),
            NATIVE_CATEGORIES: True,
        }

    def build(self, params: Params, task: TaskType, columns: FeatureColumns, *, seed: int, balance: bool) -> Pipeline:
        # subsample only acts with subsample_freq > 0; deterministic=True pins LightGBM's
        # otherwise thread-order-dependent histogram sums. Parameters without the native choice
        # (stored before it existed, hand-written) split natively, LightGBM's default.
        params = dict(params)
        native = bool(params.pop(NATIVE_CATEGORIES, True))
        common: dict[str, Any] = {
            "subsample_freq": 1,
            "n_jobs": threads(),
            "random_state": seed,
            "deterministic": True,
            "verbose": -1,
            **(native_categories(columns) if native else {}),
        }
        if is_classification(task):
            model: Any = LGBMClassifier(**params, **common, class_weight="balanced" if balance else None)
        else:
            model = LGBMRegressor(**params, **common)
        return _pipeline(columns, ordinal_with_missing(columns), model)

    def fit_params(self, y: np.ndarray, task: TaskType, *, balance: bool) -> dict[str, Any]:
        return {"model__callbacks": [LightGBMDeadline()]}  # no-op outside a fit deadline


class MLP(ModelFamily):
    """A scikit-learn multi-layer perceptron (Adam, early stopping) on scaled, one-hot input."""

    name = "mlp"

    def suggest(self, trial: optuna.Trial, task: TaskType) -> Params:
        layers = trial.suggest_int("n_layers", 1, 3)
        width = trial.suggest_int("width", 16, 256, log=True)
        return {
            "hidden_layer_sizes": tuple([width] * layers),
            "alpha": trial.suggest_float("alpha", 1e-6, 1e-1, log=True),
            "learning_rate_init": trial.suggest_float("learning_rate_init", 1e-4, 1e-2, log=True),
            "batch_size": trial.suggest_categorical("batch_size", [32, 64, 128]),
        }

    def default_params(self, task: TaskType, columns: FeatureColumns) -> Params:
        # scikit-learn's defaults (one layer of 100, alpha 1e-4, rate 1e-3; batch 200 → 128).
        return {"n_layers": 1, "width": 100, "alpha": 1e-4, "learning_rate_init": 1e-3, "batch_size": 128}

    def build(self, params: Params, task: TaskType, columns: FeatureColumns, *, seed: int, balance: bool) -> Pipeline:
        params = _mlp_params(params)
        common = {"early_stopping": True, "max_iter": 300, "n_iter_no_change": 10, "random_state": seed}
        model: Any = MLPClassifier(**params, **common) if is_classification(task) else MLPRegressor(**params, **common)
        return _pipeline(columns, scaled_one_hot(columns), model)

    def fit_params(self, y: np.ndarray, task: TaskType, *, balance: bool) -> dict[str, Any]:
        return {"model__sample_weight": balanced_sample_weight(y)} if balance and is_classification(task) else {}


def _mlp_params(params: Params) -> Params:
    """Accept both the suggested form and Optuna's stored form (``n_layers`` + ``width``)."""
    params = dict(params)
    if "n_layers" in params:
        params["hidden_layer_sizes"] = tuple([params.pop("width")] * params.pop("n_layers"))
    return params


FAMILIES: dict[str, ModelFamily] = {
    f.name: f for f in (Logistic(), RandomForest(), GradientBoosting(), XGBoost(), LightGBM(), MLP())
}
ALL_FAMILIES: tuple[str, ...] = tuple(FAMILIES)
