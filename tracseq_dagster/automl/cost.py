"""What a trial will cost, before it is fitted, and how many rows the sweep can afford.

Why: a budget checked only after a fit cannot stop the fit that blows it. Each family's fit time
grows with rows × features × the size of its configuration (trees, iterations, width), so:

* :func:`work_units` counts that work for one fold fit, from the configuration alone;
* :class:`CostModel` learns, per family, the seconds one unit takes *on this machine, now*
  (the median over the folds fitted so far, so one slow fold on a busy machine does not
  dominate), and :meth:`CostModel.estimate` turns a new configuration's units into seconds.
  Until a family has fitted a fold nothing is estimated: its first trial is its cheap default
  configuration (:meth:`~tracseq_dagster.automl.families.ModelFamily.default_params`), which
  calibrates the rest;
* :func:`auto_sweep_rows` is the automatic ``max_sweep_rows``: the trials see at most
  :data:`SWEEP_CELLS_PER_BUDGET_S` cells (rows × features, × classes for per-class boosting)
  per second of budget, so that a 30 s budget on 200,000 rows still runs many trials; the
  final model is refit on every training row.

The units are proportional, not absolute: only their ratio within one family matters.

A boosting fit is a fixed part plus a part per tree. The fixed part (binning the features into
histograms, building the library's dataset, the pipeline's preprocessing, scoring the fold)
does not grow with the trees; counting trees alone made a 4,096-tree configuration cost 41×
the 100-tree default that calibrates the rate, where it costs about 20×, and the sweep skipped
many-tree configurations it had time for (FLAML's mined 7,363-tree XGBoost configuration on
hotel_rates). So the boosters' units are ``cells × classes × (setup + trees × per-tree factor)``,
the setup in *default rounds* (:data:`SETUP_TREES`), and the one rate learnt per family still
absorbs the machine and its load.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

#: Sweep sample size: cells (rows × features × per-class factor) per second of budget.
SWEEP_CELLS_PER_BUDGET_S = 4_000
#: ... but never fewer rows than this (small budgets on wide tables would learn too little).
MIN_SWEEP_ROWS = 5_000
#: Epochs assumed for an MLP with early stopping (it stops after ~10 epochs without gain).
MLP_EPOCHS = 40
#: An MLP's fixed cost per mini-batch and layer, in multiply-adds. Measured 2026-12-07 on the
#: 192-row test table (load ~7): a (3 × 232) network's epoch took 2.7× the default (1 × 100)
#: network's, where counting multiply-adds alone said 45× (and skipped it, estimated at 65 s, for
#: a 0.2 s fit): on small tables numpy's per-batch overhead, not the arithmetic, is the cost.
MLP_BATCH_OVERHEAD = 4_000_000
#: A boosting fit's fixed part, in boosting rounds of the family's default configuration
#: (XGBoost: depth 6; every feature; one tree a class for multiclass). Measured 2026-12-07
#: 06:54–07:00 UTC (CPU time, one thread, load 1.3–3; BENCHMARKS.md, issue 18): one
#: fold fit plus its validation scoring of the default configuration at 25 / 100 / 400 / 1,600
#: rounds on a fold-sized sample of six benchmark tables, least squares
#: ``seconds = fixed + per_round × rounds``, fixed ÷ per_round:
#:
#: ===========  ================  ========  =======
#: table        fold rows × cols  LightGBM  XGBoost
#: ===========  ================  ========  =======
#: hotel_rates    7,384 × 26          150       76
#: diamonds      21,332 × 9            12      109
#: mpls_stops    17,454 × 11          136      130
#: credit_data    2,137 × 13           16      193
#: digits (10)      861 × 60          231      117
#: flights       16,000 × 12           88       90
#: ===========  ================  ========  =======
#:
#: Both families' median is 112–113 rounds: one constant for both. scikit-learn's histogram
#: boosting is left proportional: its ``max_iter`` stops at 300, and its CPU time under load
#: (OpenMP threads spinning) gave no consistent fixed part.
SETUP_TREES = 110.0


#: Above this many cells (rows × features × per-class factor) per second of budget, a trial is
#: scored on one validation split instead of k folds (the engine's ``validation="auto"``). FLAML's
#: rule (its ``eval_method="auto"``: cross-validation below 10 million cells per hour of budget, a
#: holdout above): on the benchmark's large tables at 60 s, five folds left FLAML's winning
#: configurations (a 7,363-tree XGBoost on hotel_rates) out of reach, one split puts them in it.
HOLDOUT_CELLS_PER_BUDGET_S = 10_000_000 / 3_600


def holdout_pays(rows: int, features: int, classes: int, budget_s: float) -> bool:
    """Whether ``rows`` × ``features`` are too many cells for k-fold trials in ``budget_s``."""
    per_row = max(features, 1) * (classes if classes > 2 else 1)
    return rows * per_row > budget_s * HOLDOUT_CELLS_PER_BUDGET_S


def auto_sweep_rows(train_rows: int, features: int, classes: int, budget_s: float) -> int | None:
    """The automatic ``max_sweep_rows``: None when every training row fits (see the module docstring)."""
    per_row = max(features, 1) * (classes if classes > 2 else 1)
    cap = max(int(budget_s * SWEEP_CELLS_PER_BUDGET_S / per_row), MIN_SWEEP_ROWS)
    return None if train_rows <= cap else cap


def work_units(family: str, params: dict[str, Any], rows: int, features: int, classes: int) -> float:
    """Proportional work of one fit of ``family`` with ``params`` on ``rows`` × ``features``."""
    per_class = classes if classes > 2 else 1
    cells = float(max(rows, 1) * max(features, 1))
    if family == "logistic":
        return cells * per_class
    if family == "random_forest":
        depth = min(float(params.get("max_depth") or 32), math.log2(max(rows, 2)))
        share = float(params.get("max_features", 1.0) or 1.0)
        drawn = 0.63 if params.get("bootstrap", True) else 1.0
        return float(params.get("n_estimators", 100)) * cells * share * drawn * depth
    if family == "gradient_boosting":
        return float(params.get("max_iter", 100)) * cells * per_class * float(params.get("max_features", 1.0))
    if family == "xgboost":
        depth = float(params.get("max_depth", 6)) / 6.0
        per_tree = depth * float(params.get("colsample_bytree", 1.0))
        return cells * per_class * (SETUP_TREES + float(params.get("n_estimators", 100)) * per_tree)
    if family == "lightgbm":
        per_tree = float(params.get("colsample_bytree", 1.0))
        return cells * per_class * (SETUP_TREES + float(params.get("n_estimators", 100)) * per_tree)
    if family == "mlp":
        width = float(params.get("width", 100))
        layers = float(params.get("n_layers", 1))
        batches = math.ceil(max(rows, 1) / float(params.get("batch_size", 200)))
        arithmetic = rows * (features * width + (layers - 1) * width * width + width * per_class)
        return MLP_EPOCHS * (arithmetic + batches * (layers + 1) * MLP_BATCH_OVERHEAD)
    return cells


class CostModel:
    """Seconds per work unit of each family, learnt from the folds fitted so far."""

    def __init__(self) -> None:
        self._rates: dict[str, list[float]] = {}

    def record(self, family: str, units: float, seconds: float) -> None:
        """Note that a fold of ``units`` work took ``seconds``."""
        if units > 0 and seconds > 0:
            self._rates.setdefault(family, []).append(seconds / units)

    def estimate(self, family: str, units: float) -> float | None:
        """Seconds one fit of ``units`` will take, or None before ``family`` has fitted anything."""
        rates = self._rates.get(family)
        return statistics.median(rates) * units if rates else None

    def learnt(self) -> dict[str, list[float]]:
        """Every rate recorded so far, per family (for another process's model to :meth:`merge`)."""
        return {family: list(rates) for family, rates in self._rates.items()}

    def merge(self, rates: dict[str, list[float]]) -> None:
        """Add rates learnt elsewhere (a worker process that swept other families)."""
        for family, values in rates.items():
            self._rates.setdefault(family, []).extend(values)
