"""The AutoML sweep: one seeded Optuna study per model family, cross-validated, on a budget.

``run_automl(frame, config)`` does, in order:

1. **Input checks** (:class:`AutoMLInputError` with a message naming the problem): unknown
   families or metric, a budget below :data:`~tracseq_dagster.automl.budget.MIN_BUDGET_S`, a
   missing / all-null / constant target, a class with a single member, no usable features.
   Rows whose target is null are dropped: they carry no label to learn from.
2. **Features**: :func:`~tracseq_dagster.automl.preprocessing.prepare_features` (ids, free text,
   constant and empty columns dropped; datetimes as days since the epoch).
3. **Holdout**: a split of ``holdout_fraction`` of the rows (stratified for classification,
   seeded) made first and never seen by the sweep; only the winner is scored on it.
4. **Sweep**: for each family in ``config.families``, in order, an Optuna study named
   ``f"{study_name}-{family}"`` (so each family can later run in its own process on a shared
   RDB storage) with a seeded multivariate TPE sampler and a median pruner. A trial
   cross-validates one configuration (stratified k-fold for classification, k-fold for
   regression, shuffled with the seed; the same folds for every trial), reporting the running
   mean score after every fold so that hopeless trials are pruned early. On a table large for
   the budget (FLAML's rule, ``config.validation``) a trial is instead fitted once and scored on
   one seeded validation split of the sweep rows: one fit per trial instead of k, and the
   boosters there stop early on the split's validation rows, the final fit growing the rounds
   they stopped at (:mod:`.early_stopping`). Given ``groups`` (rows
   that are near-duplicates, e.g. one freezer's neighbouring days), the holdout, the sweep sample
   and the folds keep every group whole (stratified group k-fold / group k-fold).
   ``max_trials`` is **per family**. Each family's first trial is its default configuration
   (:meth:`~tracseq_dagster.automl.families.ModelFamily.default_params`), so the winner's CV
   score is never below the best default's; the boosting families' second trial is a
   table-specific known-good point (:mod:`.zero_shot`, FLAML's mined portfolio). :func:`schedule` interleaves the families' trials
   one at a time: every family's default first, cheapest families first (:data:`CHEAP_FIRST`),
   then most of the time to the two best families so far, a little to the others. Time is
   shared as described in :mod:`~tracseq_dagster.automl.budget`; a trial whose estimated cost (:mod:`.cost`) does not
   fit what is left of its family's share is skipped, and a fold still fitting when the share
   ends is interrupted (:mod:`.deadline`), both recorded with the reason.
5. **Refit** of the best configuration of the best family on all training rows (on as many
   as the time left allows, should a fit outgrow the reserve: see :func:`_final_rows`), then
   its score on the holdout. The leaderboard has every family's best trial.
6. **Ensemble** (``config.ensemble``): a greedy weighted ensemble (Caruana et al. 2004) of the
   families' best trials, chosen on their out-of-fold predictions (the validation rows, on one
   split); it replaces the single
   winner only when its out-of-fold score is better and its members' refits fit the time left
   (:mod:`.ensemble`).

Processes: ``config.workers`` (default :func:`available_cores`, or 1 on budgets under
:data:`PARALLEL_MIN_BUDGET_S`) processes sweep side by side,
one thread each. The families are dealt round-robin, cheapest first (:data:`CHEAP_FIRST`), into
that many groups; this process runs the first group's :func:`schedule` while worker processes
(:mod:`.parallel`) run the others' on the same deadlines, and their trials reach ``on_trial``
as they end. Each family's study lives in one process, so with ``max_trials`` and a budget that
is not reached every family runs the same trials as with one worker. The refits then happen here.
``workers=1`` is the sweep in this process alone; :func:`sweep_family` (one family, the Dagster
path, whose callers run families in their own processes already) never starts workers.

Threads: ``config.n_jobs`` per fit (default one). Measured on the 2-core machine while other
work ran on it, two OpenMP threads made a LightGBM fold on 16,000 rows 6× *slower* (0.28 s →
1.8 s: spin-waiting threads on busy cores), so more threads are opt-in.

Determinism: estimators are seeded (and deterministic whatever their threads), the folds and the sampler are seeded,
and the only time-dependent decisions are the budget checks — so with the same data, seed
and ``max_trials`` and a budget that is not reached, two runs give the same trials and winner.
"""

from __future__ import annotations

import copyreg
import os
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import optuna
import pandas as pd
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GroupKFold, KFold, StratifiedGroupKFold, StratifiedKFold, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import LabelEncoder
from threadpoolctl import threadpool_limits

from tracseq_dagster.automl import parallel, zero_shot
from tracseq_dagster.automl.budget import MIN_BUDGET_S, Budget
from tracseq_dagster.automl.cost import auto_sweep_rows, holdout_pays, work_units
from tracseq_dagster.automl.deadline import (
    FitInterrupted,
    fit_deadline,
    fit_forest_in_chunks,
    fit_histogram_boosting,
    fit_histogram_boosting_in_chunks,
    grows_in_chunks,
    has_time_for,
    stops_by_itself,
    stops_by_scorer,
)
from tracseq_dagster.automl.early_stopping import (
    StoppedFit,
    fit_stopping_early,
    for_rows,
    lifted_ceiling,
    stops_early,
    with_found_rounds,
)
from tracseq_dagster.automl.ensemble import WeightedEnsemble, greedy_ensemble
from tracseq_dagster.automl.families import ALL_FAMILIES, FAMILIES, ModelFamily, stopping_early, threads, using_threads
from tracseq_dagster.automl.ladder import RungResult, chosen_by_climb, next_promotion, rung_rows
from tracseq_dagster.automl.model import LabelDecodingClassifier
from tracseq_dagster.automl.preprocessing import FeatureColumns, prepare_features
from tracseq_dagster.automl.tasks import (
    METRICS,
    Metric,
    TaskChoice,
    TaskType,
    detect_task,
    is_classification,
    is_imbalanced,
    resolve_metric,
)
from tracseq_dagster.sqlite_lock import first_use_lock

TrialState = Literal["complete", "pruned", "failed"]

#: The tuned choice of weighting classes, offered when the labels are imbalanced.
BALANCE_PARAM = "balance_classes"
#: Families that get the most sweep time (see :func:`schedule`).
EXPLOIT_FAMILIES = 2
#: Random trials before TPE starts modelling (per family study).
TPE_STARTUP_TRIALS = 8
#: The median pruner waits for this many finished trials, and never prunes after the first fold.
PRUNER_STARTUP_TRIALS = 5
PRUNER_WARMUP_FOLDS = 1
#: Round 1's order: families whose trials are usually cheapest first, so that the time a fast
#: family leaves of its share rolls over to the slow ones (a fixed order: reproducible).
CHEAP_FIRST = ("logistic", "lightgbm", "xgboost", "gradient_boosting", "mlp", "random_forest")
#: A family stops after this many trials in a row skipped for their estimated cost.
MAX_SKIPS_IN_A_ROW = 8
#: Held back from the final refit's deadline for the holdout scoring after it (share of budget).
SCORING_SHARE = 0.02
#: Holdout rows the leaderboard's prediction latency is timed on.
LATENCY_ROWS = 1_000
#: Families whose refit the budget's reserve covers: the best ones so far (the winner, the
#: ensemble's likely members, the runner-up promoted to every row; see :func:`schedule`).
REFIT_CONTENDERS = 3
#: Priority of the families ranked below the leaders and the next one (see :func:`schedule`).
LOW_PRIORITY = 0.25
#: A sweep sample above this many rows is cross-validated with at most LARGE_SAMPLE_FOLDS folds:
#: each fold still trains on thousands of rows, and a trial costs 3 fits instead of 5.
LARGE_SAMPLE_ROWS = 10_000
LARGE_SAMPLE_FOLDS = 3
#: ``validation="holdout"``: a trial fits on the rest of the sweep rows and scores on this share.
VALIDATION_FRACTION = 0.2
#: ``validation="auto"`` keeps k folds when one split would validate on fewer rows than this (or,
#: for classification, fewer rows of the rarest class than VALIDATION_MIN_CLASS_ROWS): scores on a
#: few hundred rows, or a few dozen positives, would choose by noise (caravan at 60 s: 42 positives).
VALIDATION_MIN_ROWS = 1_000
VALIDATION_MIN_CLASS_ROWS = 100
#: The default ``workers`` is 1 below this budget: starting the workers costs seconds of CPU on a
#: busy machine (10 s at load 10 on 2 cores, measured 2026-12-07, during which this process's
#: LightGBM fits took twice as long), which a short sweep cannot win back.
PARALLEL_MIN_BUDGET_S = 20.0
#: Share of the budget a run waits, at most, for its worker processes to start (see :mod:`.parallel`);
#: if they are not running by then, the run sweeps in its own process alone.
WORKERS_READY_SHARE = 0.1
#: Threads of :func:`fit_final` (the Dagster registration step; its callers may run side by side).
N_JOBS_FINAL = 1
#: A final fit that cannot stop mid-way gets fewer rows when its estimate exceeds this share of
#: the time it has (the estimate is a median: leave room for a slower fit).
FINAL_FIT_MARGIN = 0.6


class AutoMLInputError(ValueError):
    """The table or the configuration cannot be swept; the message says why."""


@dataclass
class AutoMLConfig:
    """What to learn and how hard to try.

    ``max_trials`` is per family; ``time_budget_s`` covers the whole run (sweep, refit and
    holdout scoring). ``storage`` is an Optuna RDB URL (``sqlite:///…``, ``postgresql://…``);
    ``None`` keeps the studies in memory. ``study_name`` defaults to a fresh unique name.
    ``max_sweep_rows`` caps the training rows the trials cross-validate on (a seeded, stratified
    sample): on large tables a single fold fit could otherwise outlast the budget. ``None``
    (the default) chooses it from the budget and the table's width
    (:func:`~tracseq_dagster.automl.cost.auto_sweep_rows`); a number overrides that. The final
    model is refit on every training row (unless that fit alone would overrun the budget).
    ``validation``: how a trial is scored. ``"cv"``: ``cv_folds``-fold cross-validation (3 folds on a
    sweep sample above :data:`LARGE_SAMPLE_ROWS`); ``"holdout"``: one seeded split, fitted on
    the rest and scored on :data:`VALIDATION_FRACTION` of the sweep rows, so a trial costs one fit
    instead of k; ``"auto"`` (the default) chooses the holdout when the sweep rows are too many cells
    for the budget (:func:`~tracseq_dagster.automl.cost.holdout_pays`, FLAML's rule) and the split
    still validates on enough rows (:data:`VALIDATION_MIN_ROWS`, :data:`VALIDATION_MIN_CLASS_ROWS`);
    with ``groups`` it always cross-validates.
    ``n_jobs``: threads per fit (None: see the module docstring). ``ladder``: successive halving on rows
    when the trials see a sample (:mod:`.ladder`): the best third of a family's configurations are
    cross-validated again on three times the rows, and so on up to every training row; the
    family's final configuration is rung 0's best, replaced only by one that beat it on a higher rung both
    completed (:func:`.ladder.chosen_by_climb`). ``workers``: processes that
    sweep side by side (None: :func:`available_cores`, or 1 on budgets under
    :data:`PARALLEL_MIN_BUDGET_S`; 1: only this process; never more than the families). ``ensemble``: whether a
    weighted ensemble of the families' best trials may replace the single winner (it does only
    when its out-of-fold score is better).
    ``final_fit="all"`` refits the winner once more on training *and* holdout rows after the
    holdout score is taken, as FLAML's ``retrain_full`` does: the returned model has seen more
    data, and ``holdout_score`` then describes the training-rows fit. Keep ``"train"`` where
    the holdout must stay unseen (the registry's promotion gate scores models on it).
    """

    target: str
    task: TaskChoice = "auto"
    metric: str | None = None
    families: tuple[str, ...] = ALL_FAMILIES
    time_budget_s: float = 60.0
    max_trials: int | None = None
    cv_folds: int = 5
    validation: Literal["auto", "cv", "holdout"] = "auto"
    holdout_fraction: float = 0.2
    max_sweep_rows: int | None = None
    final_fit: Literal["train", "all"] = "train"
    seed: int = 0
    storage: str | None = None
    study_name: str | None = None
    n_jobs: int | None = None
    ensemble: bool = True
    workers: int | None = None
    ladder: bool = True


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@dataclass
class TrialRecord:
    """One trial of one family. ``cv_mean`` of a pruned trial is the mean of the folds it ran;
    ``fit_seconds`` is the time spent fitting all its folds. A trial abandoned because the time
    budget ran out is ``"pruned"`` with ``reason="time budget"``, one skipped for its estimated
    cost or interrupted mid-fold with a reason that says so; an estimator error is ``"failed"``.
    ``start_s`` / ``end_s``: when the trial ran, in seconds since the run started; ``pid``: the
    process that ran it (several when ``workers`` > 1)."""

    family: str
    number: int
    params: dict[str, Any]
    cv_mean: float | None
    cv_std: float | None
    fold_scores: list[float]
    fit_seconds: float
    state: TrialState
    reason: str | None = None  # why it did not complete: the pruner, the time budget, or the error
    start_s: float = 0.0
    end_s: float = 0.0
    pid: int = 0
    rung: int = 0  # 0: a trial on the sweep sample; above: a configuration promoted to more rows (:mod:`.ladder`)
    rows: int = 0  # rows it cross-validated on
    rounds: int | None = None  # a booster stopped early on one split: its best number of rounds (:mod:`.early_stopping`)


@dataclass
class LeaderboardRow:
    """A family's best complete trial. ``fit_seconds`` is the mean time of one fold fit;
    ``predict_latency_ms`` is per row, predicting the holdout in one batch."""

    family: str
    best_trial: int
    cv_mean: float
    cv_std: float
    fit_seconds: float
    predict_latency_ms: float
    trials: int


@dataclass
class AutoMLResult:
    """The outcome of :func:`run_automl`; ``model`` predicts in the target's own labels.

    ``best_family`` is the family of the returned model: the CV winner (``leaderboard[0]``),
    ``"ensemble"`` (then ``best_params`` is ``{"weights": …}``, as ``ensemble_weights``), or,
    when the trials saw a sample of the training rows, the runner-up if its refit on every row
    scored better on the holdout.
    """

    task: TaskType
    metric: str
    greater_is_better: bool
    leaderboard: list[LeaderboardRow]
    trials: list[TrialRecord]
    best_family: str
    best_params: dict[str, Any]
    model: Any
    holdout_score: float
    holdout_size: int
    wall_seconds: float
    feature_columns: list[str]
    dropped_columns: dict[str, str] = field(default_factory=dict)
    classes: list[Any] | None = None
    study_names: dict[str, str] = field(default_factory=dict)
    sweep_rows: int = 0  # training rows the trials cross-validated on (the rest: refit only)
    validation: str = ""  # how the trials were scored on them: "5-fold", "3-fold" or "holdout 20%"
    final_rows: int = 0  # training rows the returned model was fitted on
    ensemble_weights: dict[str, float] | None = None  # family → weight, when an ensemble won


@dataclass
class Problem:
    """The prepared problem: features, encoded target, holdout and folds.

    Made once by :func:`prepare_problem`; every family sweep and the final fit use the same
    one, so they see the same holdout and the same folds.
    """

    task: TaskType
    metric: Metric
    columns: FeatureColumns
    x_train: pd.DataFrame
    y_train: np.ndarray
    x_holdout: pd.DataFrame
    y_holdout: np.ndarray
    folds: list[tuple[np.ndarray, np.ndarray]]  # indices into x_sweep / y_sweep (one pair: a holdout split)
    classes: np.ndarray | None
    balance: bool  # imbalanced labels: the sweep tunes whether to weight classes
    x_sweep: pd.DataFrame  # the rows trials cross-validate on: x_train, or a sample of it
    y_sweep: np.ndarray
    groups_sweep: np.ndarray | None = None  # the group of each sweep row: no group is split across folds
    # The ladder's rungs above the sweep sample, made on first use: rows → (x, y, folds).
    rung_data: dict[int, tuple[pd.DataFrame, np.ndarray, list[tuple[np.ndarray, np.ndarray]]]] = field(default_factory=dict)

    @property
    def validation(self) -> str:
        """How the trials are scored, for people: ``"5-fold"`` or ``"holdout 20%"``."""
        if len(self.folds) == 1:
            return f"holdout {len(self.folds[0][1]) / len(self.y_sweep):.0%}"
        return f"{len(self.folds)}-fold"

    @property
    def scored(self) -> np.ndarray:
        """Positions in ``y_sweep`` that a fold validates, in order: every row under k-fold
        cross-validation, the validation rows of a holdout split. Out-of-fold outputs exist there only."""
        return np.sort(np.concatenate([valid for _, valid in self.folds]))


def run_automl(
    frame: pd.DataFrame,
    config: AutoMLConfig,
    *,
    holdout: pd.Series | None = None,
    groups: pd.Series | None = None,
    on_trial: Callable[[TrialRecord], None] | None = None,
) -> AutoMLResult:
    """Sweep the configured families on ``frame`` and return the leaderboard and refit winner.

    ``holdout`` optionally fixes which rows are held out (a boolean Series aligned with
    ``frame``); by default a seeded split of ``config.holdout_fraction`` is made.
    ``groups`` optionally names the group of every row (a Series aligned with ``frame``): rows of
    one group are never split between holdout and training nor between folds (see :func:`prepare_problem`).
    ``on_trial`` is called after every trial (complete, pruned or failed), e.g. for progress.
    Raises :class:`AutoMLInputError` for unusable input or a budget too small to finish a trial.
    """
    # A fit on training + holdout rows costs about 1 / (1 - holdout_fraction) training-rows refits.
    extra = 1.0 / (1.0 - config.holdout_fraction) if config.final_fit == "all" else 0.0
    budget = Budget(config.time_budget_s, refits=1.0 + extra)
    helpers = _worker_count(config) - 1
    if helpers > 0 and budget.clock is time.perf_counter:
        parallel.warm_up(helpers)  # the workers start while the table is prepared
    with using_threads(config.n_jobs or 1):
        return _run(frame, config, budget, holdout, groups, on_trial)


def _worker_count(config: AutoMLConfig) -> int:
    """Processes that sweep: ``config.workers`` (default: the cores, on budgets of at least
    :data:`PARALLEL_MIN_BUDGET_S`), at most one per family."""
    if config.workers is None and config.time_budget_s < PARALLEL_MIN_BUDGET_S:
        return 1
    wanted = config.workers if config.workers is not None else available_cores()
    return max(1, min(wanted, len(config.families)))


def _run(
    frame: pd.DataFrame,
    config: AutoMLConfig,
    budget: Budget,
    holdout: pd.Series | None,
    groups: pd.Series | None,
    on_trial: Callable[[TrialRecord], None] | None,
) -> AutoMLResult:
    problem = prepare_problem(frame, config, holdout=holdout, groups=groups)
    base_name = config.study_name or f"tracseq-automl-{uuid.uuid4().hex[:8]}"

    workers = _worker_count(config)
    if budget.clock is not time.perf_counter:
        workers = 1  # a test's fake clock cannot be shared with other processes
    if workers > 1 and not parallel.pool(workers - 1).wait_ready(WORKERS_READY_SHARE * budget.total_s - budget.elapsed()):
        # The first sweep of a process starts the workers (the fork server imports the engine:
        # 1.5 s on a quiet machine, over 5 s at load 6 on 2 cores). A group handed to a worker that
        # is not up yet would lose that time, so this sweep runs alone; the workers keep starting
        # for the next one.
        workers = 1
    report = _serialised(on_trial) if workers > 1 else on_trial
    sweeps = [
        FamilySweep(FAMILIES[name], problem, config, budget, f"{base_name}-{name}", report, ladder=config.ladder)
        for name in config.families
    ]
    if workers > 1:
        _schedule_side_by_side(sweeps, problem, config, budget, workers, report)
    else:
        schedule(sweeps, problem, budget)

    finished = [s for s in sweeps if s.best is not None]
    if not finished:
        raise _nothing_finished([r for s in sweeps for r in s.records], config.time_budget_s)
    finished = rank_sweeps(finished, problem)
    final = _final_model(finished, problem, config, budget)
    leaderboard = [s.leaderboard_row(final.refits.get(s.family)) for s in finished]
    model, final_rows = final.model, final.rows
    if config.final_fit == "all":
        model, final_rows = _fit_all_rows_within(final, problem, config.seed, budget)

    return AutoMLResult(
        task=problem.task,
        metric=problem.metric.name,
        greater_is_better=problem.metric.greater_is_better,
        leaderboard=leaderboard,
        trials=[r for s in sweeps for r in s.records],
        best_family=final.family,
        best_params=dict(final.params),
        model=_decoded(model, problem),
        holdout_score=final.holdout_score,
        holdout_size=len(problem.y_holdout),
        wall_seconds=budget.elapsed(),
        feature_columns=problem.columns.all,
        dropped_columns=dict(problem.columns.dropped),
        classes=None if problem.classes is None else problem.classes.tolist(),
        study_names={s.family: s.study_name for s in sweeps},
        sweep_rows=len(problem.y_sweep),
        validation=problem.validation,
        final_rows=final_rows,
        ensemble_weights=dict(final.weights) if final.weights else None,
    )


def _cheapness(family: str) -> int:
    return CHEAP_FIRST.index(family) if family in CHEAP_FIRST else len(CHEAP_FIRST)


def schedule(sweeps: list[FamilySweep], problem: Problem, budget: Budget) -> None:
    """Interleave the families' trials, one at a time, until the sweep time is spent.

    Every turn goes to the family with the least sweep time spent per unit of priority (ties:
    :data:`CHEAP_FIRST`). A family that has not run yet has priority 1, so every family's
    default trial comes first, cheapest families first; after that the :data:`EXPLOIT_FAMILIES`
    best families still in the schedule have priority 1, the next one 1/2, the others
    :data:`LOW_PRIORITY`, so the leaders get most of the time and no family is starved. A turn's
    trial may take the chosen family's priority-weighted part of the sweep time left (a leader's
    at least 1/:data:`EXPLOIT_FAMILIES` of it, so that a leader's larger configurations are tried
    at all on a large table); a trial estimated to take longer is skipped, a fold that does take
    longer is interrupted. The refit reserve covers the :data:`REFIT_CONTENDERS` best families
    only. A family leaves the schedule when it reached ``max_trials`` or its own
    ``enough_trials`` (a search space that is covered), when its typical trial no longer fits
    the sweep time left, or after :data:`MAX_SKIPS_IN_A_ROW` skipped trials in a row.
    """
    active = list(sweeps)
    while active and budget.sweep_left() > 0:
        finished = rank_sweeps([s for s in sweeps if s.best is not None], problem)
        budget.refit_only({s.family for s in finished[:REFIT_CONTENDERS]})
        ranked = [s for s in finished if s in active]
        priority = {s.family: _priority(s, ranked) for s in active}
        chosen = min(active, key=lambda s: (s.spent / priority[s.family], _cheapness(s.family)))
        # A leader's trial may take up to 1/EXPLOIT_FAMILIES of the sweep time left; others less.
        part = max(priority[chosen.family] / sum(priority.values()), priority[chosen.family] / EXPLOIT_FAMILIES)
        share = max(budget.sweep_left(), 0.0) * part
        chosen.run(share_s=share, max_new_trials=1)
        if chosen.done:
            active.remove(chosen)


def _serialised(on_trial: Callable[[TrialRecord], None] | None) -> Callable[[TrialRecord], None] | None:
    """``on_trial`` called by one thread at a time (this process's sweep, and the workers' relay)."""
    if on_trial is None:
        return None
    lock = threading.Lock()

    def call(record: TrialRecord) -> None:
        with lock:
            on_trial(record)

    return call


def family_groups(families: list[str], workers: int) -> list[list[str]]:
    """``families`` dealt into ``workers`` groups, cheapest first (:data:`CHEAP_FIRST`), round-robin,
    so that every group starts with a cheap family and the boosters land in different groups."""
    ordered = sorted(families, key=_cheapness)
    return [group for group in (ordered[i::workers] for i in range(workers)) if group]


def _schedule_side_by_side(
    sweeps: list[FamilySweep],
    problem: Problem,
    config: AutoMLConfig,
    budget: Budget,
    workers: int,
    on_trial: Callable[[TrialRecord], None] | None,
) -> None:
    """:func:`schedule` on ``workers`` groups of families at once: the first here, the others in
    worker processes on the same deadlines; their sweeps' outcomes are then adopted here."""
    by_name = {s.family: s for s in sweeps}
    groups = family_groups([s.family for s in sweeps], workers)
    pool = parallel.pool(len(groups) - 1)
    portable = _for_workers(problem, config)
    with parallel.relay(pool, on_trial) as run:
        futures = [
            pool.submit(
                _sweep_group,
                portable,
                config,
                group,
                [by_name[f].study_name for f in group],
                budget.start,
                budget.refits,
                run,
                optuna.logging.get_verbosity(),
            )
            for group in groups[1:]
        ]
        try:
            schedule([by_name[f] for f in groups[0]], problem, budget)
        finally:
            outcomes = [future.result() for future in futures]
    for group, (states, learnt) in zip(groups[1:], outcomes, strict=True):
        for family, state in zip(group, states, strict=True):
            by_name[family].adopt(state)
        budget.merge(learnt)


def _for_workers(problem: Problem, config: AutoMLConfig) -> Problem:
    """What a worker's sweep needs of ``problem``, so that less is pickled: not the holdout, nor
    the training rows beyond the sweep sample unless the ladder climbs to them (their number
    stays, through ``y_train``)."""
    climbs = config.ladder and problem.groups_sweep is None and len(problem.y_sweep) < len(problem.y_train)
    x_train = problem.x_train if climbs else problem.x_train.iloc[:0]
    return replace(problem, x_train=x_train, x_holdout=problem.x_holdout.iloc[:0], rung_data={})


def _metric_by_name(name: str) -> Metric:
    return METRICS[name]


# A problem goes to the workers pickled, and some metrics' scores are lambdas: a metric travels by name.
copyreg.pickle(Metric, lambda metric: (_metric_by_name, (metric.name,)))


def _sweep_group(
    problem: Problem,
    config: AutoMLConfig,
    families: list[str],
    study_names: list[str],
    start: float,
    refits: float,
    run: str,
    verbosity: int,
) -> tuple[list[dict[str, Any]], Any]:
    """In a worker process: :func:`schedule` on ``families``, on the caller's deadlines (and
    with the caller's Optuna log level: a worker's log lines end up in the caller's stderr)."""
    optuna.logging.set_verbosity(verbosity)
    budget = Budget(config.time_budget_s, refits=refits)
    budget.same_deadlines_as(start)
    report = parallel.sender(run)
    with using_threads(config.n_jobs or 1):
        sweeps = [
            FamilySweep(FAMILIES[f], problem, config, budget, n, report, ladder=config.ladder)
            for f, n in zip(families, study_names, strict=True)
        ]
        schedule(sweeps, problem, budget)
    return [s.outcome() for s in sweeps], budget.learnt()


def _priority(sweep: FamilySweep, ranked: list[FamilySweep]) -> float:
    if sweep.best is None:
        return 1.0 if not sweep.records else LOW_PRIORITY
    rank = ranked.index(sweep)
    return 1.0 if rank < EXPLOIT_FAMILIES else 0.5 if rank == EXPLOIT_FAMILIES else LOW_PRIORITY


def sweep_family(
    problem: Problem,
    family: str,
    config: AutoMLConfig,
    *,
    budget: Budget | None = None,
    families_left: int = 1,
    study_name: str | None = None,
    on_trial: Callable[[TrialRecord], None] | None = None,
) -> FamilySweep:
    """Run one family's study on ``problem``: the unit a Dagster partition or a worker runs.

    With no ``budget``, the family has ``config.time_budget_s`` to itself (its refit happens
    elsewhere, so no refit reserve beyond the minimum is held back). Processes that pass the
    same ``study_name`` and an RDB ``config.storage`` add trials to one shared study.
    Fits use ``config.n_jobs`` threads, one by default: the callers run families side by side.
    """
    if family not in FAMILIES:
        raise AutoMLInputError(f"unknown model family {family}; choose from {', '.join(ALL_FAMILIES)}")
    budget = budget or Budget(config.time_budget_s, refits=0.0)
    name = study_name or f"{config.study_name or 'tracseq-automl'}-{family}"
    with using_threads(config.n_jobs or 1):
        sweep = FamilySweep(FAMILIES[family], problem, config, budget, name, on_trial)
        sweep.run(share_s=budget.family_share(families_left))
    return sweep


def rank_sweeps(sweeps: list[FamilySweep], problem: Problem) -> list[FamilySweep]:
    """Finished family sweeps, best CV mean first (ties: the earlier family)."""
    sign = 1.0 if problem.metric.greater_is_better else -1.0
    return sorted(sweeps, key=lambda s: -sign * s.best_record.cv_mean)  # type: ignore[union-attr,operator]


def fit_final(problem: Problem, family: str, params: dict[str, Any], seed: int) -> tuple[Any, float]:
    """The winning configuration refit on every training row, in the user's labels, and its holdout score."""
    with using_threads(N_JOBS_FINAL):
        refit, score = _refit(FAMILIES[family], params, problem, seed)
    return _decoded(refit, problem), score


def predict_scores(model: Any, x: pd.DataFrame, metric: Metric) -> np.ndarray:
    """What ``metric`` scores: class probabilities or predictions (bounded threads, no warnings)."""
    return _output(model, x, metric)


def _nothing_finished(records: list[TrialRecord], budget_s: float) -> AutoMLInputError:
    errors = [r.reason for r in records if r.state == "failed"]
    if errors and len(errors) == len(records):
        return AutoMLInputError(f"every trial failed; the first with {errors[0]}")
    return AutoMLInputError(
        f"time budget of {budget_s:g} s is too small: no trial completed "
        f"({len(records)} started); raise the budget or lower cv_folds"
    )


def _decoded(model: Pipeline, problem: Problem) -> Any:
    return model if problem.classes is None else LabelDecodingClassifier.from_fitted(model, problem.classes)


# -- input -------------------------------------------------------------------------------------


def prepare_study_storage(storage: str) -> None:
    """Create Optuna's tables in an RDB storage before workers share it.

    Workers that open an empty database at the same moment race to create the schema
    (PostgreSQL: duplicate ``studydirection`` type). Whoever fans the sweep out (the
    Dagster run, an operator) calls this once first; afterwards any number of processes
    or machines can run ``run_automl`` on the same ``storage`` and ``study_name``. For SQLite
    the first use is serialised across processes (:mod:`tracseq_dagster.sqlite_lock`).
    """
    with first_use_lock(storage):
        optuna.storages.RDBStorage(storage)


def _check_config(config: AutoMLConfig) -> None:
    unknown = [f for f in config.families if f not in FAMILIES]
    if unknown:
        raise AutoMLInputError(f"unknown model families {', '.join(unknown)}; choose from {', '.join(ALL_FAMILIES)}")
    if not config.families:
        raise AutoMLInputError("no model families requested")
    if len(set(config.families)) != len(config.families):
        raise AutoMLInputError("a model family is requested twice")
    if not config.time_budget_s >= MIN_BUDGET_S:
        raise AutoMLInputError(
            f"time budget of {config.time_budget_s:g} s is too small for even one trial (minimum {MIN_BUDGET_S:g} s)"
        )
    if config.max_trials is not None and config.max_trials < 1:
        raise AutoMLInputError(f"max_trials must be at least 1, not {config.max_trials}")
    if config.max_sweep_rows is not None and config.max_sweep_rows < 50:
        raise AutoMLInputError(f"max_sweep_rows must be at least 50, not {config.max_sweep_rows}")
    if config.cv_folds < 2:
        raise AutoMLInputError(f"cv_folds must be at least 2, not {config.cv_folds}")
    if config.validation not in ("auto", "cv", "holdout"):
        raise AutoMLInputError(f"validation must be auto, cv or holdout, not {config.validation!r}")
    if not 0.0 < config.holdout_fraction <= 0.5:
        raise AutoMLInputError(f"holdout_fraction must be in (0, 0.5], not {config.holdout_fraction}")
    if config.final_fit not in ("train", "all"):
        raise AutoMLInputError(f"final_fit must be train or all, not {config.final_fit!r}")
    if config.task not in ("auto", "binary", "multiclass", "regression"):
        raise AutoMLInputError(f"task must be auto, binary, multiclass or regression, not {config.task!r}")


def prepare_problem(
    frame: pd.DataFrame, config: AutoMLConfig, *, holdout: pd.Series | None = None, groups: pd.Series | None = None
) -> Problem:
    """Check the table, choose the features, encode the target, split off the holdout, make the folds.

    ``holdout``: a boolean Series aligned with ``frame`` fixing the held-out rows (e.g. a
    stable hash of the sample id, so a sample is held out in every retraining); by default a
    seeded split of ``config.holdout_fraction``, stratified for classification.

    ``groups``: a Series aligned with ``frame`` naming each row's group (e.g. the catalog's
    ``HOLDOUT_GROUP``: freezer and month for a freezer's days, the sample for its runs). Rows of
    one group are near-duplicates (neighbouring days share most of their label window, runs of
    one sample share its features), so a model scored on a group it trained on looks better
    than it is, and the sweep then prefers the family that memorises best. With groups, the
    default holdout, the sweep sample and the folds keep every group whole (stratified group
    k-fold for classification, group k-fold for regression), and a fixed ``holdout`` must not
    split a group either. Without groups nothing changes.
    """
    _check_config(config)
    target = config.target
    if target not in frame.columns:
        raise AutoMLInputError(f"target column {target!r} is missing; columns are {', '.join(map(str, frame.columns))}")
    labelled = frame[frame[target].notna()]
    if labelled.empty:
        raise AutoMLInputError(f"target column {target!r} is all null")
    y_raw = labelled[target]
    if y_raw.nunique() == 1:
        value = y_raw.iloc[0]
        shown = value.item() if isinstance(value, np.generic) else value  # 1, not np.int64(1)
        raise AutoMLInputError(f"target column {target!r} is constant (every row is {shown!r})")
    task = _resolve_task(y_raw, config)
    try:
        metric = resolve_metric(task, config.metric)
    except (KeyError, ValueError) as error:
        raise AutoMLInputError(str(error.args[0])) from error
    group_of = None if groups is None else _aligned_groups(groups, labelled.index)

    # The columns are chosen on the converted frame; the pipelines take the raw columns and
    # convert them themselves, so the returned model accepts frames like the input.
    _, columns = prepare_features(labelled, target)
    features = labelled[columns.all]
    if not columns.all:
        reasons = "; ".join(f"{c}: {why}" for c, why in columns.dropped.items()) or "the table has only the target"
        raise AutoMLInputError(f"no usable feature columns ({reasons})")

    classes: np.ndarray | None = None
    if is_classification(task):
        labels = y_raw.astype(str) if y_raw.dtype == object else y_raw
        counts = labels.value_counts()
        single = counts[counts < 2]
        if not single.empty:
            names = ", ".join(repr(c) for c in single.index)
            raise AutoMLInputError(
                f"target column {target!r} has a class with a single member ({names}); "
                "every class needs at least 2 rows (better: many more) to be split and learned"
            )
        encoder = LabelEncoder().fit(labels.to_numpy())
        classes = encoder.classes_
        y = encoder.transform(labels.to_numpy()).astype(np.int64)
    else:
        y = y_raw.astype("float64").to_numpy()

    if holdout is None and group_of is not None:
        holdout = pd.Series(_group_holdout(y, group_of, classes is not None, config), index=features.index)
    if holdout is None:
        try:
            x_train, x_holdout, y_train, y_holdout = train_test_split(
                features,
                y,
                test_size=config.holdout_fraction,
                random_state=config.seed,
                stratify=y if classes is not None else None,
            )
        except ValueError as error:
            raise AutoMLInputError(f"cannot make a holdout split of {len(y)} labelled rows: {error}") from error
        groups_train = None
    else:
        x_train, x_holdout, y_train, y_holdout, groups_train = _fixed_split(features, y, holdout, classes, group_of)
    x_sweep, y_sweep, groups_sweep = _sweep_sample(x_train, y_train, classes is not None, config, groups_train)
    folds = _folds(x_sweep, y_sweep, task, config, groups_sweep)
    balance = classes is not None and is_imbalanced(y_train)
    return Problem(
        task, metric, columns, x_train, y_train, x_holdout, y_holdout, folds, classes, balance, x_sweep, y_sweep, groups_sweep
    )


def _aligned_groups(groups: pd.Series, index: pd.Index) -> np.ndarray:
    """The group of every labelled row (as strings); a row without a group is an input error."""
    if not isinstance(groups, pd.Series):
        raise AutoMLInputError(f"groups must be a pandas Series aligned with the frame, not {type(groups).__name__}")
    if not groups.index.is_unique:
        raise AutoMLInputError("the groups Series repeats an index value; it must be aligned with the frame's rows")
    aligned = groups.reindex(index)
    missing = aligned.isna()
    if missing.any():
        raise AutoMLInputError(
            f"{int(missing.sum())} of {len(index)} labelled rows have no group (first: row {index[missing.to_numpy()][0]!r}); "
            "every row needs one"
        )
    return aligned.astype(str).to_numpy()


def _group_holdout(y: np.ndarray, groups: np.ndarray, classification: bool, config: AutoMLConfig) -> np.ndarray:
    """A seeded holdout of about ``config.holdout_fraction`` of the rows made of whole groups
    (one fold of a stratified group k-fold with ``round(1 / fraction)`` folds)."""
    n_groups = len(np.unique(groups))
    k = max(2, round(1.0 / config.holdout_fraction))
    if n_groups < k:
        raise AutoMLInputError(
            f"only {n_groups} distinct group(s); a holdout of whole groups with holdout_fraction "
            f"{config.holdout_fraction:g} needs at least {k}"
        )
    splitter: Any = (
        StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=config.seed)
        if classification
        else GroupKFold(n_splits=k, shuffle=True, random_state=config.seed)
    )
    _, held = next(iter(splitter.split(np.zeros(len(y)), y, groups)))
    mask = np.zeros(len(y), dtype=bool)
    mask[held] = True
    return mask


def _sweep_sample(
    x: pd.DataFrame, y: np.ndarray, classification: bool, config: AutoMLConfig, groups: np.ndarray | None = None
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray | None]:
    """At most ``config.max_sweep_rows`` training rows for the trials (stratified, seeded);
    with ``None``, the automatic cap of :func:`~tracseq_dagster.automl.cost.auto_sweep_rows`.
    With ``groups``: whole groups, in a seeded order, as long as they fit the cap (at least one)."""
    limit = config.max_sweep_rows
    if limit is None:
        classes = int(y.max()) + 1 if classification else 1
        limit = auto_sweep_rows(len(y), x.shape[1], classes, config.time_budget_s)
    if limit is None or len(y) <= limit:
        return x, y, groups
    if groups is not None:
        names, codes, sizes = np.unique(groups, return_inverse=True, return_counts=True)
        order = np.random.default_rng(config.seed).permutation(len(names))
        fits = np.cumsum(sizes[order]) <= limit
        fits[0] = True
        keep = np.flatnonzero(np.isin(codes, order[fits]))
        return x.iloc[keep], y[keep], groups[keep]
    keep, _ = train_test_split(
        np.arange(len(y)), train_size=limit, random_state=config.seed, stratify=y if classification else None
    )
    keep = np.sort(keep)
    return x.iloc[keep], y[keep], None


def _fixed_split(
    features: pd.DataFrame,
    y: np.ndarray,
    holdout: pd.Series,
    classes: np.ndarray | None,
    groups: np.ndarray | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray, np.ndarray, np.ndarray | None]:
    mask = holdout.reindex(features.index).fillna(False).astype(bool).to_numpy()
    if mask.all() or not mask.any():
        raise AutoMLInputError(
            f"the holdout mask selects {int(mask.sum())} of {len(mask)} labelled rows; it must select some, not all"
        )
    if classes is not None:
        missing = sorted(set(range(len(classes))) - set(y[mask].tolist()))
        if missing:
            names = ", ".join(repr(classes[i]) for i in missing)
            raise AutoMLInputError(f"the holdout has no rows of class {names}; it cannot score the model on them")
    if groups is not None:
        split = np.intersect1d(groups[mask], groups[~mask])
        if len(split):
            raise AutoMLInputError(
                f"the holdout splits {len(split)} group(s) between holdout and training (first: {split[0]!r}); "
                "hold out whole groups (e.g. hash the group, not the row key)"
            )
    return features[~mask], features[mask], y[~mask], y[mask], None if groups is None else groups[~mask]


def _resolve_task(y: pd.Series, config: AutoMLConfig) -> TaskType:
    detected = detect_task(y)
    if config.task == "auto":
        return detected
    numeric = pd.api.types.is_numeric_dtype(y) and not pd.api.types.is_bool_dtype(y)
    if config.task == "regression" and not numeric:
        raise AutoMLInputError(f"target column {config.target!r} is not numeric ({y.dtype}); cannot do regression")
    distinct = y.nunique()
    if config.task == "binary" and distinct != 2:
        raise AutoMLInputError(f"target column {config.target!r} has {distinct} classes, not 2; cannot do binary")
    if config.task == "multiclass" and distinct < 3:
        raise AutoMLInputError(f"target column {config.target!r} has {distinct} classes; use binary, not multiclass")
    return config.task


def _folds(
    x: pd.DataFrame, y: np.ndarray, task: TaskType, config: AutoMLConfig, groups: np.ndarray | None = None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The trials' folds on ``x``, ``y``: k folds, or one holdout split (see ``AutoMLConfig.validation``)."""
    classes = int(y.max()) + 1 if is_classification(task) else 1
    rarest = int(np.bincount(y).min()) if is_classification(task) else None
    if groups is None and _one_split(len(y), x.shape[1], classes, rarest, config):
        train, valid = train_test_split(
            np.arange(len(y)),
            test_size=VALIDATION_FRACTION,
            random_state=config.seed,
            stratify=y if is_classification(task) else None,
        )
        return [(np.sort(train), np.sort(valid))]
    folds = config.cv_folds if len(y) <= LARGE_SAMPLE_ROWS else min(config.cv_folds, LARGE_SAMPLE_FOLDS)
    if groups is not None:
        return _group_folds(x, y, task, config, groups, folds)
    if is_classification(task):
        # Fewer folds than the rarest class has rows would leave that class out of some fold.
        smallest = int(np.bincount(y).min())
        k = min(folds, smallest)
        if k < 2:
            raise AutoMLInputError(
                f"the rarest class has only {smallest} row(s) left after the holdout split; "
                "cross-validation needs at least 2 (collect more rows or lower holdout_fraction)"
            )
        splitter: Any = StratifiedKFold(n_splits=k, shuffle=True, random_state=config.seed)
    else:
        if len(y) < 2 * config.cv_folds:
            raise AutoMLInputError(f"only {len(y)} training rows; {config.cv_folds}-fold cross-validation needs more")
        splitter = KFold(n_splits=folds, shuffle=True, random_state=config.seed)
    return list(splitter.split(x, y))


def _one_split(rows: int, width: int, classes: int, rarest: int | None, config: AutoMLConfig) -> bool:
    """Whether trials on ``rows`` rows score on one holdout split (``config.validation``; "auto":
    see ``AutoMLConfig``). ``rarest``: rows of the rarest class (None: regression)."""
    if config.validation != "auto":
        return config.validation == "holdout"
    if not holdout_pays(rows, width, classes, config.time_budget_s):
        return False
    valid_rows = VALIDATION_FRACTION * rows
    valid_rarest = valid_rows if rarest is None else VALIDATION_FRACTION * rarest
    return valid_rows >= VALIDATION_MIN_ROWS and valid_rarest >= VALIDATION_MIN_CLASS_ROWS


def _group_folds(
    x: pd.DataFrame, y: np.ndarray, task: TaskType, config: AutoMLConfig, groups: np.ndarray, folds: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Folds of whole groups: stratified group k-fold (classification) or group k-fold, seeded.

    A classification fold must see every class in its validation rows (its score is undefined
    otherwise): ``k`` is at most the number of groups holding the rarest class, and a split that
    still leaves a class out of a fold is an input error rather than a silent NaN score.
    """
    n_groups = len(np.unique(groups))
    if is_classification(task):
        holding = min(len(np.unique(groups[y == c])) for c in np.unique(y))
        k = min(folds, n_groups, holding)
        if k < 2:
            raise AutoMLInputError(
                f"grouped cross-validation needs every class in at least 2 groups; after the holdout split the rarest "
                f"class is in {holding} of {n_groups} group(s) (collect more groups or lower holdout_fraction)"
            )
        splitter: Any = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=config.seed)
    else:
        k = min(folds, n_groups)
        if k < 2:
            raise AutoMLInputError(f"only {n_groups} group(s) after the holdout split; grouped cross-validation needs 2")
        splitter = GroupKFold(n_splits=k, shuffle=True, random_state=config.seed)
    made = list(splitter.split(x, y, groups))
    if is_classification(task):
        classes = np.unique(y)
        for number, (_, valid) in enumerate(made):
            lacking = np.setdiff1d(classes, y[valid])
            if len(lacking):
                raise AutoMLInputError(
                    f"grouped fold {number + 1} of {k} has no validation rows of class index {int(lacking[0])}: "
                    "too few groups hold that class (collect more groups or lower cv_folds)"
                )
    return made


# -- the sweep ---------------------------------------------------------------------------------


def zero_shot_start(family: ModelFamily, data: Problem) -> dict[str, Any] | None:
    """The family's zero-shot configuration for this table (:mod:`.zero_shot`: FLAML's mined
    portfolio, matched on the training rows, features, classes and numeric share), as Optuna
    parameters of its space; None when the family or task has no portfolio."""
    columns = data.columns
    width = max(len(columns.all), 1)
    meta = zero_shot.meta_features(
        len(data.y_train), width, 0 if data.classes is None else len(data.classes), len(columns.numeric) / width
    )
    config = zero_shot.suggest(family.name, data.task, meta)
    return None if config is None else family.zero_shot_params(config, data.task, columns)


class FamilySweep:
    """One family's Optuna study: runs trials, records them, keeps the best trial's fold model.

    ``family`` is the family's name; ``best`` / ``best_record`` its best complete trial (None
    when no trial completed); ``records`` every trial it ran.
    """

    def __init__(
        self,
        family: ModelFamily,
        data: Problem,
        config: AutoMLConfig,
        budget: Budget,
        study_name: str,
        on_trial: Callable[[TrialRecord], None] | None,
        ladder: bool = False,
    ) -> None:
        self.family = family.name
        self.model_family = family
        self.data = data
        self.config = config
        self.budget = budget
        self.study_name = study_name
        self.on_trial = on_trial
        self.records: list[TrialRecord] = []
        self.best: optuna.trial.FrozenTrial | None = None
        self.best_record: TrialRecord | None = None
        self._best_value: float | None = None
        self._best_model: Pipeline | None = None  # fitted on the last fold: for predict latency
        self._candidate: Pipeline | None = None
        self._durations: list[float] = []
        self._trial_seconds = 0.0  # the last trial's, measured by _objective
        self._family_deadline = 0.0
        self._skips_in_a_row = 0
        self.spent = 0.0  # seconds of this family's trials so far
        self.done = False  # no further trial can run in this sweep (see run)
        self._candidate_oof: np.ndarray | None = None
        self.best_oof: np.ndarray | None = None  # the best trial's out-of-fold output on y_sweep
        # Trial number → the best rounds early stopping found for it and the rows it fitted then.
        self.rounds: dict[int, tuple[int, int]] = {}
        self.at_ceiling: set[int] = set()  # trials that grew to their n_estimators, still improving
        self.study: optuna.Study | None = None
        # Successive halving on rows (:mod:`.ladder`): each rung's results, rung 0 the sweep sample.
        self.rung_rows = rung_rows(len(data.y_sweep), len(data.y_train)) if ladder and data.groups_sweep is None else []
        self.rungs: list[list[RungResult]] = [[] for _ in self.rung_rows]

    def chosen_params(self) -> dict[str, Any]:
        """The configuration to refit: :func:`.ladder.chosen_by_climb` (the sweep's best unless
        it met a better one on more rows)."""
        climbed = chosen_by_climb(self.rungs, self.data.metric.greater_is_better)
        if climbed is not None:
            return self._with_rounds(climbed.number, climbed.params)
        assert self.best is not None
        return self._with_rounds(self.best.number, self.best.params)

    def _refit_work(self, trial: optuna.trial.FrozenTrial) -> float:
        """How many times one of ``trial``'s fits the refit on every training row is: more rows
        (more than the sweep sample, when it is capped), and the rounds that grow with them
        (:func:`.early_stopping.for_rows`, ``ModelFamily.for_more_rows``)."""
        data = self.data
        fitted, rows = len(data.folds[0][0]), len(data.y_train)
        params, _ = _without_balance(self._with_rounds(trial.number, dict(trial.params)))
        planned = self.model_family.for_more_rows(for_rows(params, rows), rows / fitted)
        stopped = trial.user_attrs.get("grown")
        grown = params if stopped is None else {**params, "n_estimators": stopped}
        classes = 1 if data.classes is None else len(data.classes)
        width = len(data.columns.all)
        return work_units(self.family, planned, rows, width, classes) / work_units(self.family, grown, fitted, width, classes)

    def _with_rounds(self, number: int, params: dict[str, Any]) -> dict[str, Any]:
        """Trial ``number``'s ``params``, with the rounds early stopping chose for it (:mod:`.early_stopping`)."""
        if number not in self.rounds:
            return dict(params)
        rounds, rows = self.rounds[number]
        return with_found_rounds(params, rounds, rows)

    def fold_model(self, params: dict[str, Any]) -> Pipeline | None:
        """The best trial's model from the sweep's last fold (fitted on that fold's training rows),
        when ``params`` is the best trial's configuration; else None. None too when the trial
        stopped early: an XGBoost booster keeps the patience's rounds beyond the best, which the
        served trees would count, and the refit carries grown rounds, not the fold model's."""
        if self.best is None or self.best.number in self.rounds or dict(self.best.params) != params:
            return None
        return self._best_model

    def run(self, share_s: float, max_new_trials: int | None = None) -> None:
        """Run trials until ``max_trials`` (or ``max_new_trials`` more), the family's time share
        or the sweep time runs out.

        Called again (the scheduler's next turn), it continues the same study: the sampler
        keeps what it learnt and ``max_trials`` counts every turn's trials. :attr:`done` says
        whether the family can run no more trials in this sweep.
        """
        if share_s > 0.0 and self._promote(share_s):
            return
        trials = sum(r.rung == 0 for r in self.records)
        ceilings = [c for c in (self.config.max_trials, self.model_family.enough_trials) if c is not None]
        remaining = max(min(ceilings) - trials, 0) if ceilings else None
        if remaining == 0:
            self.done = True
        if share_s <= 0.0 or remaining == 0:
            return
        if max_new_trials is not None:
            remaining = max_new_trials if remaining is None else min(remaining, max_new_trials)
        self._family_deadline = self.budget.clock() + share_s
        if self.study is None:
            self.study = self._create_study()
            defaults = self.model_family.default_params(self.data.task, self.data.columns)
            if defaults and not self.study.get_trials(deepcopy=False):
                # A fresh study starts at the family's default: the sweep never ends below it;
                # then, for the boosters, at the table-specific zero-shot point (zero_shot_start).
                starts = [defaults]
                suggested = zero_shot_start(self.model_family, self.data)
                if suggested is not None and suggested != defaults:
                    starts.append(suggested)
                for start in starts:
                    self.study.enqueue_trial({**start, BALANCE_PARAM: False} if self.data.balance else start)
        self.study.optimize(
            self._objective,
            n_trials=remaining,
            timeout=share_s,
            catch=(Exception,),
            callbacks=[self._after_trial],
        )

    def _create_study(self) -> optuna.Study:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = optuna.samplers.TPESampler(
                # A study resumed or shared in RDB storage already holds trials: offsetting the
                # seed by their number keeps this worker from re-sampling the points its
                # predecessors drew first (a fresh study keeps the plain seed: reproducible).
                seed=self.config.seed + self._existing_trials(),
                multivariate=True,
                n_startup_trials=TPE_STARTUP_TRIALS,
                constant_liar=True,  # several workers on one study do not sample the same point
            )
        return optuna.create_study(
            storage=self.config.storage,
            sampler=sampler,
            pruner=optuna.pruners.MedianPruner(n_startup_trials=PRUNER_STARTUP_TRIALS, n_warmup_steps=PRUNER_WARMUP_FOLDS),
            study_name=self.study_name,
            direction="maximize" if self.data.metric.greater_is_better else "minimize",
            load_if_exists=True,
        )

    def _existing_trials(self) -> int:
        if self.config.storage is None:
            return 0
        try:
            study = optuna.load_study(study_name=self.study_name, storage=self.config.storage)
        except KeyError:  # no such study yet
            return 0
        return len(study.get_trials(deepcopy=False))

    def _objective(self, trial: optuna.Trial) -> float:
        started = self.budget.clock()
        try:
            return self._cross_validate(trial)
        except optuna.TrialPruned:
            raise
        except Exception as error:
            # Optuna records the trial as failed (``catch``); keep the reason for the record.
            trial.set_user_attr("reason", f"{type(error).__name__}: {error}")
            raise
        finally:
            self._trial_seconds = self.budget.clock() - started  # on the budget's clock, for _after_trial

    def _cross_validate(self, trial: optuna.Trial) -> float:
        """Score one configuration fold by fold, reporting the running mean to the pruner."""
        data = self.data
        with stopping_early(len(data.folds) == 1):
            params = self.model_family.suggest(trial, data.task)
        if data.balance:
            # Whether to weight classes is itself tuned: weighting helps threshold metrics on
            # imbalanced labels but can cost ranking quality and calibration.
            params[BALANCE_PARAM] = trial.suggest_categorical(BALANCE_PARAM, [False, True])
        params, balance = _without_balance(params)
        scores: list[float] = []
        fit_seconds = 0.0
        trial.set_user_attr("fit_seconds", 0.0)
        trial_started = self.budget.clock()
        classes = 1 if data.classes is None else len(data.classes)
        units = work_units(self.family, dict(trial.params), len(data.folds[0][0]), len(data.columns.all), classes)
        estimate = self.budget.cost.estimate(self.family, units)
        share_end = min(self._family_deadline, self.budget.sweep_deadline)
        if estimate is not None and trial_started + estimate * len(data.folds) > share_end:
            # This configuration's estimated folds do not fit what is left of the share: a
            # cheaper one may, so only this trial is skipped (the family stops after a few).
            trial.set_user_attr(
                "reason",
                f"skipped: estimated {estimate * len(data.folds):.1f} s, "
                f"{max(share_end - trial_started, 0.0):.1f} s left of the family's share",
            )
            trial.set_user_attr("skipped", True)
            raise optuna.TrialPruned("cost estimate")
        oof = self._oof_buffer()
        for fold, (train, valid) in enumerate(data.folds):
            # Do not start (or abandon) a trial whose remaining folds, at this trial's pace or
            # else the typical fold time seen so far, cannot end before the sweep must:
            # finishing it would eat the refit's reserve.
            now = self.budget.clock()
            pace = (now - trial_started) / fold if fold else self.budget.typical_fold_seconds(self.family)
            if now + pace * (len(data.folds) - fold) > self.budget.sweep_deadline:
                trial.set_user_attr("reason", "time budget")
                # Before the first fold the pace is the family's typical one: no trial fits any
                # more. After it, only this (slow) configuration does not; a cheaper one may.
                trial.set_user_attr("family_out_of_time", fold == 0)
                raise optuna.TrialPruned("time budget")
            if fold and now + pace * (len(data.folds) - fold) > share_end:
                # At its own pace this trial's remaining folds overrun the family's share. The
                # boosters' and forests' folds would be interrupted at its end anyway; the MLP
                # and linear fits cannot stop mid-way, and a first trial (no cost estimate yet:
                # an MLP default took 40 s of a 60 s budget on 9,230 rows) would otherwise run
                # on to the end of the sweep.
                trial.set_user_attr("reason", f"abandoned after fold {fold - 1}: at {pace:.1f} s a fold its share ends first")
                raise optuna.TrialPruned("share")
            pipeline = self.model_family.build(params, data.task, data.columns, seed=self.config.seed, balance=balance)
            y_fold = data.y_sweep[train]
            started = self.budget.clock()
            with _quiet_and_bounded(), fit_deadline(share_end, self.budget.clock, graceful=False):
                try:
                    stopped = _fit_for_score(
                        pipeline,
                        (data.x_sweep.iloc[train], y_fold),
                        (data.x_sweep.iloc[valid], data.y_sweep[valid]),
                        self.model_family.fit_params(y_fold, data.task, balance=balance),
                        one_split=len(data.folds) == 1,
                    )
                except FitInterrupted:
                    trial.set_user_attr("reason", f"interrupted in fold {fold}: the fit reached the end of the family's share")
                    raise optuna.TrialPruned("interrupted") from None
                fit_seconds += self.budget.clock() - started
                output = _output(pipeline, data.x_sweep.iloc[valid], data.metric)
                if oof is not None:
                    oof[valid] = output
                score = data.metric.score(data.y_sweep[valid], output)
            if not np.isfinite(score):
                raise ValueError(f"fold {fold} scored {score}")
            self.budget.record_fold(self.family, self.budget.clock() - started)
            if stopped is not None:  # it grew fewer rounds than its ceiling
                units = work_units(
                    self.family, {**trial.params, "n_estimators": stopped.grown}, len(train), len(data.columns.all), classes
                )
                trial.set_user_attr("rounds", stopped.best)
                trial.set_user_attr("grown", stopped.grown)
            self.budget.cost.record(self.family, units, self.budget.clock() - started)
            scores.append(float(score))
            trial.set_user_attr("fold_scores", scores)
            trial.set_user_attr("fit_seconds", fit_seconds)
            trial.report(float(np.mean(scores)), fold)
            if trial.should_prune():
                trial.set_user_attr("reason", f"pruned after fold {fold}: running mean below the median")
                raise optuna.TrialPruned()
        self._candidate = pipeline
        self._candidate_oof = oof
        return float(np.mean(scores))

    def _oof_buffer(self) -> np.ndarray | None:
        """Room for a trial's out-of-fold output (for the ensemble), where it can be averaged."""
        data = self.data
        if not (self.config.ensemble and _ensemble_output(data.metric, data.task)):
            return None
        shape = (len(data.y_sweep),) if data.classes is None else (len(data.y_sweep), len(data.classes))
        return np.zeros(shape)

    def _after_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        states: dict[optuna.trial.TrialState, TrialState] = {
            optuna.trial.TrialState.COMPLETE: "complete",
            optuna.trial.TrialState.PRUNED: "pruned",
        }
        state: TrialState = states.get(trial.state, "failed")
        scores = [float(s) for s in trial.user_attrs.get("fold_scores", [])]
        now = self.budget.clock()
        record = TrialRecord(
            family=self.family,
            number=trial.number,
            params=dict(trial.params),
            cv_mean=float(np.mean(scores)) if scores else None,
            cv_std=float(np.std(scores)) if scores else None,
            fold_scores=scores,
            fit_seconds=float(trial.user_attrs.get("fit_seconds", 0.0)),
            state=state,
            reason=trial.user_attrs.get("reason"),
            start_s=now - self._trial_seconds - self.budget.start,
            end_s=now - self.budget.start,
            pid=os.getpid(),
            rows=len(self.data.y_sweep),
            rounds=trial.user_attrs.get("rounds"),
        )
        self.records.append(record)
        if state == "complete" and record.rounds is not None:
            self.rounds[trial.number] = (int(record.rounds), len(self.data.folds[0][0]))
            if trial.user_attrs.get("grown") == trial.params.get("n_estimators"):
                self.at_ceiling.add(trial.number)
        if state == "complete" and self.rungs:
            self.rungs[0].append(RungResult(trial.number, dict(trial.params), record.cv_mean))
        skipped = bool(trial.user_attrs.get("skipped"))
        self._skips_in_a_row = self._skips_in_a_row + 1 if skipped else 0
        self.spent += self._trial_seconds
        if not skipped:
            self._durations.append(self._trial_seconds)
        if state == "complete" and self._is_better(record.cv_mean):  # type: ignore[arg-type]
            self.best, self.best_record, self._best_value = trial, record, record.cv_mean
            self._best_model = self._candidate
            self.best_oof = self._candidate_oof
            self.budget.reserve_refit(record.fit_seconds / len(scores) * self._refit_work(trial), 1, self.family)
        self._candidate = None
        self._candidate_oof = None
        if self.on_trial is not None:
            self.on_trial(record)
        if self._skips_in_a_row >= MAX_SKIPS_IN_A_ROW:
            self.done = True  # what is left fits no configuration the sampler proposes
            study.stop()
            return
        if trial.user_attrs.get("family_out_of_time"):
            # The time left cannot fit this family's folds at its typical pace; it only shrinks,
            # so every further trial would be abandoned the same way: stop the study.
            self.done = True
            study.stop()
            return
        # Stop when another trial of typical length would overrun this family's share or the sweep.
        typical = float(np.median(self._durations)) if self._durations else 0.0
        now = self.budget.clock()
        if now + typical > self.budget.sweep_deadline:
            self.done = True
        if now + typical > min(self._family_deadline, self.budget.sweep_deadline):
            study.stop()

    def _promote(self, share_s: float) -> bool:
        """Evaluate the ladder's next promotion, if one is due (:mod:`.ladder`); False when none is
        or it was skipped for its estimated cost (the turn then goes to a new trial)."""
        if not self.rungs:
            return False
        due = next_promotion(self.rungs, self.data.metric.greater_is_better)
        if due is None:
            return False
        rung, candidate = due
        x, y, folds = self._rung(rung)
        params, balance = _without_balance(candidate.params)
        if candidate.number in self.at_ceiling:
            params = {**params, "n_estimators": lifted_ceiling(int(params["n_estimators"]))}
        classes = 1 if self.data.classes is None else len(self.data.classes)
        units = work_units(self.family, dict(candidate.params), len(folds[0][0]), len(self.data.columns.all), classes)
        estimate = self.budget.cost.estimate(self.family, units)
        started = self.budget.clock()
        share_end = min(started + share_s, self.budget.sweep_deadline)
        scores: list[float] = []
        fit_seconds = 0.0
        reason: str | None = None
        stopped: StoppedFit | None = None
        if estimate is None or started + estimate * len(folds) > share_end:
            needed = "unknown" if estimate is None else f"{estimate * len(folds):.1f} s"
            reason = f"skipped: estimated {needed}, {max(share_end - started, 0.0):.1f} s left of the family's share"
        for fold, (train, valid) in enumerate(folds if reason is None else []):
            pipeline = self.model_family.build(params, self.data.task, self.data.columns, seed=self.config.seed, balance=balance)
            fold_started = self.budget.clock()
            with _quiet_and_bounded(), fit_deadline(share_end, self.budget.clock, graceful=False):
                try:
                    stopped = _fit_for_score(
                        pipeline,
                        (x.iloc[train], y[train]),
                        (x.iloc[valid], y[valid]),
                        self.model_family.fit_params(y[train], self.data.task, balance=balance),
                        one_split=len(folds) == 1,
                    )
                except FitInterrupted:
                    reason = f"interrupted in fold {fold}: the fit reached the end of the family's share"
                    break
                score = float(self.data.metric.score(y[valid], _output(pipeline, x.iloc[valid], self.data.metric)))
            fit_seconds += self.budget.clock() - fold_started
            if stopped is not None:  # it grew fewer rounds than its ceiling
                units = work_units(
                    self.family,
                    {**candidate.params, "n_estimators": stopped.grown},
                    len(train),
                    len(self.data.columns.all),
                    classes,
                )
            self.budget.cost.record(self.family, units, self.budget.clock() - fold_started)
            scores.append(score)
        ended = self.budget.clock()
        complete = reason is None and all(np.isfinite(scores))
        if complete and stopped is not None:
            self.rounds[candidate.number] = (stopped.best, len(folds[0][0]))
        self.rungs[rung].append(RungResult(candidate.number, candidate.params, float(np.mean(scores)) if complete else None))
        self.spent += ended - started
        record = TrialRecord(
            family=self.family,
            number=candidate.number,
            params=dict(candidate.params),
            cv_mean=float(np.mean(scores)) if scores else None,
            cv_std=float(np.std(scores)) if scores else None,
            fold_scores=scores,
            fit_seconds=fit_seconds,
            state="complete" if complete else "pruned",
            reason=reason if reason or complete else "a fold scored a non-finite value",
            start_s=started - self.budget.start,
            end_s=ended - self.budget.start,
            pid=os.getpid(),
            rung=rung,
            rows=len(y),
            rounds=None if stopped is None else stopped.best,
        )
        self.records.append(record)
        if self.on_trial is not None:
            self.on_trial(record)
        return reason is None or not reason.startswith("skipped")

    def _rung(self, rung: int) -> tuple[pd.DataFrame, np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
        """The rows and folds of ``rung`` (a seeded, stratified sample of the training rows, or all)."""
        rows = self.rung_rows[rung]
        data = self.data
        if rows not in data.rung_data:
            x, y = data.x_train, data.y_train
            if rows < len(y):
                x, y = _sample_rows(x, y, rows, data.classes is not None, self.config.seed)
            data.rung_data[rows] = (x, y, _folds(x, y, data.task, self.config))
        return data.rung_data[rows]

    #: What :meth:`outcome` carries from a worker's sweep back to the caller's.
    OUTCOME = (
        "records",
        "best",
        "best_record",
        "_best_value",
        "_best_model",
        "best_oof",
        "_durations",
        "spent",
        "done",
        "rungs",
        "rounds",
    )

    def outcome(self) -> dict[str, Any]:
        """What this sweep found, picklable (no study, problem or callback): see :meth:`adopt`."""
        return {name: getattr(self, name) for name in self.OUTCOME}

    def adopt(self, outcome: dict[str, Any]) -> None:
        """Take over the outcome of this family's sweep run in a worker process."""
        for name in self.OUTCOME:
            setattr(self, name, outcome[name])

    def _is_better(self, value: float) -> bool:
        if self._best_value is None:
            return True
        return value > self._best_value if self.data.metric.greater_is_better else value < self._best_value

    def leaderboard_row(self, refit: Pipeline | None) -> LeaderboardRow:
        """This family's best trial; latency from ``refit`` when given, else the best fold model."""
        record = self.best_record
        assert record is not None and self._best_model is not None
        model = refit if refit is not None else self._best_model
        # Timed on a bounded slice: this runs after the budget's deadline, once per family, and
        # predicting a 40,000-row holdout with six families' models took 3.5 s of a 30 s budget.
        rows = self.data.x_holdout.iloc[:LATENCY_ROWS]
        started = time.perf_counter()
        _output(model, rows, self.data.metric)
        latency_ms = (time.perf_counter() - started) * 1000.0 / max(len(rows), 1)
        return LeaderboardRow(
            family=self.family,
            best_trial=record.number,
            cv_mean=float(record.cv_mean),  # type: ignore[arg-type]
            cv_std=float(record.cv_std),  # type: ignore[arg-type]
            fit_seconds=record.fit_seconds / max(len(record.fold_scores), 1),
            predict_latency_ms=latency_ms,
            trials=len(self.records),
        )


@dataclass
class _Final:
    """The model :func:`run_automl` returns, before label decoding.

    ``refits``: each member family's refit pipeline (one, unless an ensemble won); ``fits``:
    (family, params) of each member, for ``final_fit="all"``; ``weights``: the ensemble's, else
    empty; ``rows``: training rows the members were fitted on (fewer than all only when time ran short).
    """

    model: Any
    holdout_score: float
    rows: int
    refits: dict[str, Pipeline]
    fits: list[tuple[ModelFamily, dict[str, Any]]]
    weights: dict[str, float]
    family: str = ""  # the single family kept (the winner, or the promoted runner-up), or "ensemble"
    params: dict[str, Any] = field(default_factory=dict)  # its parameters (the ensemble's: its weights)


def _final_model(finished: list[FamilySweep], problem: Problem, config: AutoMLConfig, budget: Budget) -> _Final:
    """Refit the candidates on every training row within the budget and keep the best on the holdout.

    The candidates: the winner; the ensemble, when it beat the winner out of fold
    (:func:`_ensemble_members`); and, when the trials saw only a sample of the training rows, the
    runner-up family's best (:func:`_promoted`): the second rung of a successive halving on rows,
    since a ranking made on a sample can change on every row. Choosing among these at most
    three on the holdout makes its score slightly optimistic; the registry's promotion gate
    does not use this path (it refits one family with :func:`fit_final`).
    """
    by_family = {s.family: s for s in finished}
    winner = finished[0]
    members = _ensemble_members(finished, problem, config, budget)
    names = list(dict.fromkeys([winner.family, *(s.family for s, _ in members)]))
    singles = [winner.family, *_promoted(finished, names, problem, config, budget)]
    names = list(dict.fromkeys([*names, *singles]))
    fits = {n: (FAMILIES[n], by_family[n].chosen_params()) for n in names}
    end = budget.deadline - SCORING_SHARE * budget.total_s - _later_fits_s(list(fits.values()), problem, budget, config)
    refits: dict[str, Pipeline] = {}
    used: dict[str, int] = {}
    for index, name in enumerate(names):
        # Each fit gets an equal part of the time left (a later one inherits what an earlier leaves).
        until = budget.clock() + max(end - budget.clock(), 0.0) / (len(names) - index)
        member, params = fits[name]
        fitted = _bounded_fit(member, params, problem, problem.x_train, problem.y_train, config.seed, budget, until)
        refits[name], used[name] = _unless_cut_short(fitted, by_family[name].fold_model(params), problem)
    sign = 1.0 if problem.metric.greater_is_better else -1.0
    options: list[_Final] = [
        _Final(refits[n], _holdout_score(refits[n], problem), used[n], {n: refits[n]}, [fits[n]], {}, n, dict(fits[n][1]))
        for n in singles
    ]
    if members:
        weights = {s.family: w for s, w in members}
        ensemble = WeightedEnsemble([refits[f] for f in weights], list(weights.values()), problem.task)
        options.append(
            _Final(
                ensemble,
                _holdout_score(ensemble, problem),
                min(used[f] for f in weights),
                {f: refits[f] for f in weights},
                [fits[f] for f in weights],
                weights,
                "ensemble",
                {"weights": dict(weights)},
            )
        )
    # The first of the best: the winner, unless a candidate scores strictly better on the holdout.
    return max(options, key=lambda option: sign * option.holdout_score)


def _promoted(finished: list[FamilySweep], taken: list[str], problem: Problem, config: AutoMLConfig, budget: Budget) -> list[str]:
    """The runner-up family, refit on every row too when the trials saw only a sample of them
    (and its refit, with those already planned, fits the time left)."""
    if len(problem.y_sweep) >= len(problem.y_train):
        return []
    runner = next((s for s in finished if s.family not in taken), None)
    if runner is None:
        return []
    planned = [(FAMILIES[n], next(s for s in finished if s.family == n).chosen_params()) for n in [*taken, runner.family]]
    estimates = [_fit_estimate(f, p, problem, len(problem.y_train), budget) for f, p in planned]
    if any(e is None for e in estimates):
        return []
    needed = sum(estimates) + _later_fits_s(planned, problem, budget, config)  # type: ignore[arg-type]
    left = budget.deadline - SCORING_SHARE * budget.total_s - budget.clock()
    return [runner.family] if needed * 1.2 <= left else []


def _ensemble_members(
    finished: list[FamilySweep], problem: Problem, config: AutoMLConfig, budget: Budget
) -> list[tuple[FamilySweep, float]]:
    """The families of the greedy ensemble with their weights, or [] when it does not beat the
    best family out of fold or its members' refits do not fit the time left."""
    candidates = [s for s in finished if s.best_oof is not None]
    if not config.ensemble or len(candidates) < 2 or candidates[0] is not finished[0]:
        return []
    scored = problem.scored
    weights, score = greedy_ensemble([s.best_oof[scored] for s in candidates], problem.y_sweep[scored], problem.metric)  # type: ignore[index]
    single = float(np.mean(_oof_score(candidates[0], problem)))
    gain = score - single if problem.metric.greater_is_better else single - score
    members = [(s, float(w)) for s, w in zip(candidates, weights, strict=True) if w > 0]
    if gain <= 0 or len(members) < 2:
        return []
    fits = [(FAMILIES[s.family], s.chosen_params()) for s, _ in members]
    needed = sum(_fit_estimate(f, p, problem, len(problem.y_train), budget) or np.inf for f, p in fits)
    needed += _later_fits_s(fits, problem, budget, config)
    left = budget.deadline - SCORING_SHARE * budget.total_s - budget.clock()
    return members if needed * 1.2 <= left else []


def _oof_score(sweep: FamilySweep, problem: Problem) -> float:
    scored = problem.scored
    return problem.metric.score(problem.y_sweep[scored], sweep.best_oof[scored])  # type: ignore[index]


def _later_fits_s(
    fits: list[tuple[ModelFamily, dict[str, Any]]], problem: Problem, budget: Budget, config: AutoMLConfig
) -> float:
    """Time to leave for the ``final_fit="all"`` fits after the holdout scoring (0 for ``"train"``)."""
    if config.final_fit != "all":
        return 0.0
    rows = len(problem.y_train) + len(problem.y_holdout)
    return sum(_fit_estimate(f, p, problem, rows, budget) or 0.0 for f, p in fits)


def _fit_estimate(family: ModelFamily, params: dict[str, Any], problem: Problem, rows: int, budget: Budget) -> float | None:
    """Estimated seconds of one fit of ``params`` on ``rows`` rows (None: the family never fitted)."""
    classes = 1 if problem.classes is None else len(problem.classes)
    return budget.cost.estimate(family.name, work_units(family.name, params, rows, len(problem.columns.all), classes))


@dataclass(frozen=True)
class _Fitted:
    """A final fit: the pipeline, the rows it was fitted on, and whether its deadline passed
    while it fitted (a booster or forest then kept only the trees grown so far)."""

    pipeline: Pipeline
    rows: int
    cut_short: bool


def _bounded_fit(
    family: ModelFamily,
    params: dict[str, Any],
    problem: Problem,
    x: pd.DataFrame,
    y: np.ndarray,
    seed: int,
    budget: Budget,
    until: float,
) -> _Fitted:
    """``params`` fitted on ``x``, ``y`` by ``until``, with the rows it was fitted on.

    Boosters and forests stop at ``until`` and keep what they fitted (:mod:`.deadline`). The
    others cannot stop mid-fit: when their estimated fit exceeds :data:`FINAL_FIT_MARGIN` of the
    time left, they are fitted on a seeded (stratified) sample that fits it, never smaller than
    the sweep's sample.
    """
    estimate = _fit_estimate(family, params, problem, len(y), budget)
    available = until - budget.clock()
    stoppable = family.name in ("lightgbm", "xgboost", "random_forest", "gradient_boosting")
    if not stoppable and estimate is not None and estimate > FINAL_FIT_MARGIN * max(available, 0.0):
        keep = max(int(len(y) * FINAL_FIT_MARGIN * max(available, 0.0) / estimate), min(len(problem.y_sweep), len(y)))
        if keep < len(y):
            x, y = _sample_rows(x, y, keep, problem.classes is not None, seed)
    with fit_deadline(until, budget.clock, graceful=True) as deadline:
        pipeline = _fit(family, params, problem, x, y, seed)
        cut_short = deadline.passed()
    return _Fitted(pipeline, len(y), cut_short)


def _unless_cut_short(fitted: _Fitted, fold_model: Pipeline | None, problem: Problem) -> tuple[Pipeline, int]:
    """The refit and its rows, unless its deadline cut it short and the sweep's fold model of the
    same configuration scores better on the holdout (then that model and its rows).

    A booster or histogram boosting stopped at its deadline keeps the iterations it had: on the
    largest benchmark table under load (flights, 245,509 training rows) gradient boosting's
    training-rows refit scored holdout AUC 0.68 where its CV said 0.71. The fold model was fitted
    to the end, on fewer rows; the holdout decides between the two.
    """
    if not fitted.cut_short or fold_model is None:
        return fitted.pipeline, fitted.rows
    sign = 1.0 if problem.metric.greater_is_better else -1.0
    if sign * _holdout_score(fold_model, problem) > sign * _holdout_score(fitted.pipeline, problem):
        return fold_model, len(problem.folds[-1][0])
    return fitted.pipeline, fitted.rows


def _sample_rows(x: pd.DataFrame, y: np.ndarray, rows: int, classification: bool, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    try:
        keep, _ = train_test_split(np.arange(len(y)), train_size=rows, random_state=seed, stratify=y if classification else None)
    except ValueError:  # a class too small to stratify: a plain seeded sample
        keep = np.random.default_rng(seed).choice(len(y), size=rows, replace=False)
    keep = np.sort(keep)
    return x.iloc[keep], y[keep]


def _holdout_score(model: Any, problem: Problem) -> float:
    return float(problem.metric.score(problem.y_holdout, _output(model, problem.x_holdout, problem.metric)))


def _fit_all_rows_within(final: _Final, problem: Problem, seed: int, budget: Budget) -> tuple[Any, int]:
    """``final_fit="all"``: every member refit on training and holdout rows, within the budget.

    When a member's deadline passes while it fits, the refit is dropped and the model fitted on
    the training rows (the one the holdout scored) is returned: a booster stopped after a few of
    its trees is far worse than the same configuration on 20% fewer rows (measured: one LightGBM
    tree, rmse 60 instead of 13 on a regression benchmark table, when the refit's cost estimate
    was low on a loaded machine).
    """
    x = pd.concat([problem.x_train, problem.x_holdout])
    y = np.concatenate([problem.y_train, problem.y_holdout])
    end = budget.deadline
    fitted: list[Pipeline] = []
    rows = len(y)
    for index, (member, params) in enumerate(final.fits):
        until = budget.clock() + max(end - budget.clock(), 0.0) / (len(final.fits) - index)
        refit = _bounded_fit(member, params, problem, x, y, seed, budget, until)
        if refit.cut_short:
            return final.model, final.rows
        fitted.append(refit.pipeline)
        rows = min(rows, refit.rows)
    if final.weights:
        return WeightedEnsemble(fitted, list(final.weights.values()), problem.task), rows
    return fitted[0], rows


def _refit(family: ModelFamily, params: dict[str, Any], problem: Problem, seed: int) -> tuple[Pipeline, float]:
    """``params`` fitted on every training row (encoded labels), and the holdout score."""
    pipeline = _fit(family, params, problem, problem.x_train, problem.y_train, seed)
    score = problem.metric.score(problem.y_holdout, _output(pipeline, problem.x_holdout, problem.metric))
    return pipeline, float(score)


def _fit_all_rows(family: ModelFamily, params: dict[str, Any], problem: Problem, seed: int) -> Pipeline:
    """``params`` fitted on training and holdout rows together (``final_fit="all"``)."""
    x = pd.concat([problem.x_train, problem.x_holdout])
    y = np.concatenate([problem.y_train, problem.y_holdout])
    return _fit(family, params, problem, x, y, seed)


def _fit(family: ModelFamily, params: dict[str, Any], problem: Problem, x: pd.DataFrame, y: np.ndarray, seed: int) -> Pipeline:
    """A final model: ``params`` (with the tuned class weighting) built and fitted on ``x``, ``y``;
    rounds found by early stopping grown with the rows (:func:`.early_stopping.for_rows`), and on
    many more rows than a trial fitted, as the family adapts them (``ModelFamily.for_more_rows``).

    Where the family offers larger trees for the rows (``ModelFamily.larger_trees``), they are
    fitted first, then ``params`` when the time left holds :data:`ANOTHER_FIT_FACTOR` times that
    fit, and the better on the fit's own validation split is kept (both stop early on the same
    seeded split): the larger trees first, because where they pay the rows are many and time short.
    """
    params, balance = _without_balance(params)
    growth = len(y) / len(problem.folds[0][0])
    params = family.for_more_rows(for_rows(params, len(y)), growth)
    larger = family.larger_trees(params, growth)
    started = time.perf_counter()
    kept = _built_and_fitted(family, larger or params, problem, x, y, seed, balance)
    if larger is None or not has_time_for(ANOTHER_FIT_FACTOR * (time.perf_counter() - started)):
        return kept
    pipeline = _built_and_fitted(family, params, problem, x, y, seed, balance)
    return pipeline if _own_validation_score(pipeline) > _own_validation_score(kept) else kept


def _built_and_fitted(
    family: ModelFamily, params: dict[str, Any], problem: Problem, x: pd.DataFrame, y: np.ndarray, seed: int, balance: bool
) -> Pipeline:
    pipeline = family.build(params, problem.task, problem.columns, seed=seed, balance=balance)
    with _quiet_and_bounded():
        _fit_pipeline(pipeline, x, y, family.fit_params(y, problem.task, balance=balance))
    return pipeline


#: A second candidate of a final fit (``_fit``) starts only with this many times the first's fit
#: time left before its deadline, so that it rarely ends cut short.
ANOTHER_FIT_FACTOR = 2.0


def _own_validation_score(pipeline: Pipeline) -> float:
    """The last score on the validation split a self-stopping fit held out (greater is better:
    scikit-learn's histogram boosting records the negative loss)."""
    return float(pipeline.steps[-1][1].validation_score_[-1])


def _without_balance(params: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """The family's own parameters, and whether to weight classes (the tuned ``BALANCE_PARAM``)."""
    own = {k: v for k, v in params.items() if k != BALANCE_PARAM}
    return own, bool(params.get(BALANCE_PARAM, False))


@contextmanager
def _quiet_and_bounded() -> Iterator[None]:
    """Fit or predict on at most :func:`threads` native threads, without per-fit warning noise.

    Some estimators (HistGradientBoosting, numpy's BLAS) take every core through OpenMP/BLAS
    unless told otherwise; on a shared machine that oversubscribes and makes fit times erratic.
    Non-converged MLP/logistic fits are scored like any other: the sweep judges them.
    """
    with threadpool_limits(limits=threads()), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", UserWarning)
        yield


def _output(model: Any, x: pd.DataFrame, metric: Metric) -> np.ndarray:
    """What ``metric`` scores: class probabilities or predictions."""
    with _quiet_and_bounded():
        return np.asarray(model.predict_proba(x) if metric.needs_proba else model.predict(x))


def _ensemble_output(metric: Metric, task: TaskType) -> bool:
    """Whether an ensemble can be chosen for ``metric``: it averages what the metric scores
    (probabilities, or regression values), not labels."""
    return metric.needs_proba or not is_classification(task)


def _fit_for_score(
    pipeline: Pipeline,
    train: tuple[pd.DataFrame, np.ndarray],
    valid: tuple[pd.DataFrame, np.ndarray],
    fit_params: dict[str, Any],
    *,
    one_split: bool,
) -> StoppedFit | None:
    """Fit a trial's ``pipeline`` on ``train``, to be scored on ``valid``. A booster scored on one
    split stops early on its validation rows (:mod:`.early_stopping`): what it found is returned."""
    if one_split and stops_early(pipeline.steps[-1][1]):
        return fit_stopping_early(pipeline, *train, *valid, fit_params)
    _fit_pipeline(pipeline, *train, fit_params)
    return None


def _fit_pipeline(pipeline: Pipeline, x: pd.DataFrame, y: np.ndarray, fit_params: dict[str, Any]) -> Pipeline:
    """Fit ``pipeline``; a forest grows its trees in batches and histogram boosting checks after
    every iteration, so that a deadline can stop them (:mod:`.deadline`)."""
    if grows_in_chunks(pipeline.steps[-1][1]):
        return fit_forest_in_chunks(pipeline, x, y, **fit_params)
    if stops_by_scorer(pipeline.steps[-1][1]):
        return fit_histogram_boosting(pipeline, x, y, **fit_params)
    if stops_by_itself(pipeline.steps[-1][1]):
        return fit_histogram_boosting_in_chunks(pipeline, x, y, **fit_params)
    return pipeline.fit(x, y, **fit_params)
