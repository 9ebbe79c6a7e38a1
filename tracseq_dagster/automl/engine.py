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
   mean score after every fold so that hopeless trials are pruned early.
   ``max_trials`` is **per family**. Two rounds: round 1 gives every family an equal part of
   half the sweep time; round 2 gives the rest to the two best families so far, continuing
   their studies. Time is shared as described in :mod:`~tracseq_dagster.automl.budget`.
5. **Refit** of the best configuration of the best family on all training rows, then its
   score on the holdout. The leaderboard has every family's best trial.

Determinism: estimators are seeded and single-threaded, the folds and the sampler are seeded,
and the only time-dependent decisions are the budget checks — so with the same data, seed
and ``max_trials`` and a budget that is not reached, two runs give the same trials and winner.
"""

from __future__ import annotations

import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import optuna
import pandas as pd
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import KFold, StratifiedKFold, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import LabelEncoder
from threadpoolctl import threadpool_limits

from tracseq_dagster.automl.budget import MIN_BUDGET_S, Budget
from tracseq_dagster.automl.families import ALL_FAMILIES, FAMILIES, N_JOBS, ModelFamily
from tracseq_dagster.automl.model import LabelDecodingClassifier
from tracseq_dagster.automl.preprocessing import FeatureColumns, prepare_features
from tracseq_dagster.sqlite_lock import first_use_lock
from tracseq_dagster.automl.tasks import (
    Metric,
    TaskChoice,
    TaskType,
    detect_task,
    is_classification,
    is_imbalanced,
    resolve_metric,
)

TrialState = Literal["complete", "pruned", "failed"]

#: The tuned choice of weighting classes, offered when the labels are imbalanced.
BALANCE_PARAM = "balance_classes"
#: Share of the sweep time that round 1 spreads over every family; the rest goes to the leaders.
EXPLORE_SHARE = 0.5
#: Families that share round 2.
EXPLOIT_FAMILIES = 2
#: Random trials before TPE starts modelling (per family study).
TPE_STARTUP_TRIALS = 8
#: The median pruner waits for this many finished trials, and never prunes after the first fold.
PRUNER_STARTUP_TRIALS = 5
PRUNER_WARMUP_FOLDS = 1


class AutoMLInputError(ValueError):
    """The table or the configuration cannot be swept; the message says why."""


@dataclass
class AutoMLConfig:
    """What to learn and how hard to try.

    ``max_trials`` is per family; ``time_budget_s`` covers the whole run (sweep, refit and
    holdout scoring). ``storage`` is an Optuna RDB URL (``sqlite:///…``, ``postgresql://…``);
    ``None`` keeps the studies in memory. ``study_name`` defaults to a fresh unique name.
    ``max_sweep_rows`` caps the training rows the trials cross-validate on (a seeded, stratified
    sample): on large tables a single fold fit could otherwise outlast the budget. The final
    model is always refit on every training row.
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
    holdout_fraction: float = 0.2
    max_sweep_rows: int | None = None
    final_fit: Literal["train", "all"] = "train"
    seed: int = 0
    storage: str | None = None
    study_name: str | None = None


@dataclass
class TrialRecord:
    """One trial of one family. ``cv_mean`` of a pruned trial is the mean of the folds it ran;
    ``fit_seconds`` is the time spent fitting all its folds. A trial abandoned because the time
    budget ran out is ``"pruned"`` with ``reason="time budget"``; an estimator error is ``"failed"``."""

    family: str
    number: int
    params: dict[str, Any]
    cv_mean: float | None
    cv_std: float | None
    fold_scores: list[float]
    fit_seconds: float
    state: TrialState
    reason: str | None = None  # why it did not complete: the pruner, the time budget, or the error


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
    """The outcome of :func:`run_automl`; ``model`` predicts in the target's own labels."""

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
    folds: list[tuple[np.ndarray, np.ndarray]]  # indices into x_sweep / y_sweep
    classes: np.ndarray | None
    balance: bool  # imbalanced labels: the sweep tunes whether to weight classes
    x_sweep: pd.DataFrame  # the rows trials cross-validate on: x_train, or a sample of it
    y_sweep: np.ndarray


def run_automl(
    frame: pd.DataFrame,
    config: AutoMLConfig,
    *,
    holdout: pd.Series | None = None,
    on_trial: Callable[[TrialRecord], None] | None = None,
) -> AutoMLResult:
    """Sweep the configured families on ``frame`` and return the leaderboard and refit winner.

    ``holdout`` optionally fixes which rows are held out (a boolean Series aligned with
    ``frame``); by default a seeded split of ``config.holdout_fraction`` is made.
    ``on_trial`` is called after every trial (complete, pruned or failed), e.g. for progress.
    Raises :class:`AutoMLInputError` for unusable input or a budget too small to finish a trial.
    """
    # A fit on training + holdout rows costs about 1 / (1 - holdout_fraction) training-rows refits.
    extra = 1.0 / (1.0 - config.holdout_fraction) if config.final_fit == "all" else 0.0
    budget = Budget(config.time_budget_s, refits=1.0 + extra)
    problem = prepare_problem(frame, config, holdout=holdout)
    base_name = config.study_name or f"tracseq-automl-{uuid.uuid4().hex[:8]}"

    # Round 1 explores: every family gets an equal part of EXPLORE_SHARE of the sweep time.
    # Round 2 exploits: the sweep time left goes to the EXPLOIT_FAMILIES best families so far,
    # whose studies continue where they stopped (a slow family that rarely wins no longer
    # holds a sixth of the budget).
    explore_deadline = budget.clock() + EXPLORE_SHARE * max(budget.sweep_left(), 0.0)
    sweeps: list[FamilySweep] = []
    for index, name in enumerate(config.families):
        left = len(config.families) - index
        share = max(explore_deadline - budget.clock(), 0.0) / left
        sweep = FamilySweep(FAMILIES[name], problem, config, budget, f"{base_name}-{name}", on_trial)
        sweep.run(share_s=share)
        sweeps.append(sweep)
    # With no completed trial anywhere yet (slow families, a short budget), everyone goes on.
    leaders = rank_sweeps([s for s in sweeps if s.best is not None], problem)[:EXPLOIT_FAMILIES] or sweeps
    for index, sweep in enumerate(leaders):
        sweep.run(share_s=budget.family_share(len(leaders) - index))

    finished = [s for s in sweeps if s.best is not None]
    if not finished:
        raise _nothing_finished([r for s in sweeps for r in s.records], config.time_budget_s)
    finished = rank_sweeps(finished, problem)
    winner = finished[0]

    refit, holdout_score = _refit(FAMILIES[winner.family], winner.best.params, problem, config.seed)  # type: ignore[union-attr]
    leaderboard = [s.leaderboard_row(refit if s is winner else None) for s in finished]
    if config.final_fit == "all":
        refit = _fit_all_rows(FAMILIES[winner.family], winner.best.params, problem, config.seed)  # type: ignore[union-attr]

    return AutoMLResult(
        task=problem.task,
        metric=problem.metric.name,
        greater_is_better=problem.metric.greater_is_better,
        leaderboard=leaderboard,
        trials=[r for s in sweeps for r in s.records],
        best_family=winner.family,
        best_params=dict(winner.best.params),  # type: ignore[union-attr]
        model=_decoded(refit, problem),
        holdout_score=holdout_score,
        holdout_size=len(problem.y_holdout),
        wall_seconds=budget.elapsed(),
        feature_columns=problem.columns.all,
        dropped_columns=dict(problem.columns.dropped),
        classes=None if problem.classes is None else problem.classes.tolist(),
        study_names={s.family: s.study_name for s in sweeps},
    )


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
    """
    if family not in FAMILIES:
        raise AutoMLInputError(f"unknown model family {family}; choose from {', '.join(ALL_FAMILIES)}")
    budget = budget or Budget(config.time_budget_s, refits=0.0)
    name = study_name or f"{config.study_name or 'tracseq-automl'}-{family}"
    sweep = FamilySweep(FAMILIES[family], problem, config, budget, name, on_trial)
    sweep.run(share_s=budget.family_share(families_left))
    return sweep


def rank_sweeps(sweeps: list[FamilySweep], problem: Problem) -> list[FamilySweep]:
    """Finished family sweeps, best CV mean first (ties: the earlier family)."""
    sign = 1.0 if problem.metric.greater_is_better else -1.0
    return sorted(sweeps, key=lambda s: -sign * s.best_record.cv_mean)  # type: ignore[union-attr,operator]


def fit_final(problem: Problem, family: str, params: dict[str, Any], seed: int) -> tuple[Any, float]:
    """The winning configuration refit on every training row, in the user's labels, and its holdout score."""
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
    if not 0.0 < config.holdout_fraction <= 0.5:
        raise AutoMLInputError(f"holdout_fraction must be in (0, 0.5], not {config.holdout_fraction}")
    if config.final_fit not in ("train", "all"):
        raise AutoMLInputError(f"final_fit must be train or all, not {config.final_fit!r}")
    if config.task not in ("auto", "binary", "multiclass", "regression"):
        raise AutoMLInputError(f"task must be auto, binary, multiclass or regression, not {config.task!r}")


def prepare_problem(frame: pd.DataFrame, config: AutoMLConfig, *, holdout: pd.Series | None = None) -> Problem:
    """Check the table, choose the features, encode the target, split off the holdout, make the folds.

    ``holdout``: a boolean Series aligned with ``frame`` fixing the held-out rows (e.g. a
    stable hash of the sample id, so a sample is held out in every retraining); by default a
    seeded split of ``config.holdout_fraction``, stratified for classification.
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
    else:
        x_train, x_holdout, y_train, y_holdout = _fixed_split(features, y, holdout, classes)
    x_sweep, y_sweep = _sweep_sample(x_train, y_train, classes is not None, config)
    folds = _folds(x_sweep, y_sweep, task, config)
    balance = classes is not None and is_imbalanced(y_train)
    return Problem(task, metric, columns, x_train, y_train, x_holdout, y_holdout, folds, classes, balance, x_sweep, y_sweep)


def _sweep_sample(
    x: pd.DataFrame, y: np.ndarray, classification: bool, config: AutoMLConfig
) -> tuple[pd.DataFrame, np.ndarray]:
    """At most ``config.max_sweep_rows`` training rows for the trials (stratified, seeded)."""
    limit = config.max_sweep_rows
    if limit is None or len(y) <= limit:
        return x, y
    keep, _ = train_test_split(
        np.arange(len(y)), train_size=limit, random_state=config.seed, stratify=y if classification else None
    )
    keep = np.sort(keep)
    return x.iloc[keep], y[keep]


def _fixed_split(
    features: pd.DataFrame, y: np.ndarray, holdout: pd.Series, classes: np.ndarray | None
) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray, np.ndarray]:
    mask = holdout.reindex(features.index).fillna(False).astype(bool).to_numpy()
    if mask.all() or not mask.any():
        raise AutoMLInputError(f"the holdout mask selects {int(mask.sum())} of {len(mask)} labelled rows; it must select some, not all")
    if classes is not None:
        missing = sorted(set(range(len(classes))) - set(y[mask].tolist()))
        if missing:
            names = ", ".join(repr(classes[i]) for i in missing)
            raise AutoMLInputError(f"the holdout has no rows of class {names}; it cannot score the model on them")
    return features[~mask], features[mask], y[~mask], y[mask]


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


def _folds(x: pd.DataFrame, y: np.ndarray, task: TaskType, config: AutoMLConfig) -> list[tuple[np.ndarray, np.ndarray]]:
    if is_classification(task):
        # Fewer folds than the rarest class has rows would leave that class out of some fold.
        smallest = int(np.bincount(y).min())
        k = min(config.cv_folds, smallest)
        if k < 2:
            raise AutoMLInputError(
                f"the rarest class has only {smallest} row(s) left after the holdout split; "
                "cross-validation needs at least 2 (collect more rows or lower holdout_fraction)"
            )
        splitter: Any = StratifiedKFold(n_splits=k, shuffle=True, random_state=config.seed)
    else:
        if len(y) < 2 * config.cv_folds:
            raise AutoMLInputError(f"only {len(y)} training rows; {config.cv_folds}-fold cross-validation needs more")
        splitter = KFold(n_splits=config.cv_folds, shuffle=True, random_state=config.seed)
    return list(splitter.split(x, y))


# -- the sweep ---------------------------------------------------------------------------------


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
        self.study: optuna.Study | None = None

    def run(self, share_s: float) -> None:
        """Run trials until ``max_trials``, the family's time share or the sweep time runs out.

        Called again (the second round of :func:`run_automl`), it continues the same study:
        the sampler keeps what it learnt and ``max_trials`` counts every round's trials.
        """
        remaining = None if self.config.max_trials is None else self.config.max_trials - len(self.records)
        if share_s <= 0.0 or remaining == 0:
            return
        self._family_deadline = self.budget.clock() + share_s
        if self.study is None:
            self.study = self._create_study()
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
            pruner=optuna.pruners.MedianPruner(
                n_startup_trials=PRUNER_STARTUP_TRIALS, n_warmup_steps=PRUNER_WARMUP_FOLDS
            ),
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
            pipeline = self.model_family.build(params, data.task, data.columns, seed=self.config.seed, balance=balance)
            y_fold = data.y_sweep[train]
            started = self.budget.clock()
            with _quiet_and_bounded():
                pipeline.fit(
                    data.x_sweep.iloc[train],
                    y_fold,
                    **self.model_family.fit_params(y_fold, data.task, balance=balance),
                )
                fit_seconds += self.budget.clock() - started
                score = data.metric.score(data.y_sweep[valid], _output(pipeline, data.x_sweep.iloc[valid], data.metric))
            if not np.isfinite(score):
                raise ValueError(f"fold {fold} scored {score}")
            self.budget.record_fold(self.family, self.budget.clock() - started)
            scores.append(float(score))
            trial.set_user_attr("fold_scores", scores)
            trial.set_user_attr("fit_seconds", fit_seconds)
            trial.report(float(np.mean(scores)), fold)
            if trial.should_prune():
                trial.set_user_attr("reason", f"pruned after fold {fold}: running mean below the median")
                raise optuna.TrialPruned()
        self._candidate = pipeline
        return float(np.mean(scores))

    def _after_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        state: TrialState = {
            optuna.trial.TrialState.COMPLETE: "complete",
            optuna.trial.TrialState.PRUNED: "pruned",
        }.get(trial.state, "failed")
        scores = [float(s) for s in trial.user_attrs.get("fold_scores", [])]
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
        )
        self.records.append(record)
        self._durations.append(self._trial_seconds)
        if state == "complete" and self._is_better(record.cv_mean):  # type: ignore[arg-type]
            self.best, self.best_record, self._best_value = trial, record, record.cv_mean
            self._best_model = self._candidate
            # The refit sees every training row, more than the sweep sample when it is capped.
            scale = len(self.data.y_train) / len(self.data.y_sweep)
            self.budget.reserve_refit(record.fit_seconds / len(scores) * scale, len(self.data.folds))
        self._candidate = None
        if self.on_trial is not None:
            self.on_trial(record)
        if trial.user_attrs.get("family_out_of_time"):
            # The time left cannot fit this family's folds at its typical pace; it only shrinks,
            # so every further trial would be abandoned the same way: stop the study.
            study.stop()
            return
        # Stop when another trial of typical length would overrun this family's share or the sweep.
        typical = float(np.median(self._durations)) if self._durations else 0.0
        now = self.budget.clock()
        if now + typical > min(self._family_deadline, self.budget.sweep_deadline):
            study.stop()

    def _is_better(self, value: float) -> bool:
        if self._best_value is None:
            return True
        return value > self._best_value if self.data.metric.greater_is_better else value < self._best_value

    def leaderboard_row(self, refit: Pipeline | None) -> LeaderboardRow:
        """This family's best trial; latency from ``refit`` when given, else the best fold model."""
        record = self.best_record
        assert record is not None and self._best_model is not None
        model = refit if refit is not None else self._best_model
        started = time.perf_counter()
        _output(model, self.data.x_holdout, self.data.metric)
        latency_ms = (time.perf_counter() - started) * 1000.0 / max(len(self.data.x_holdout), 1)
        return LeaderboardRow(
            family=self.family,
            best_trial=record.number,
            cv_mean=float(record.cv_mean),  # type: ignore[arg-type]
            cv_std=float(record.cv_std),  # type: ignore[arg-type]
            fit_seconds=record.fit_seconds / max(len(record.fold_scores), 1),
            predict_latency_ms=latency_ms,
            trials=len(self.records),
        )


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
    """A final model: ``params`` (with the tuned class weighting) built and fitted on ``x``, ``y``."""
    params, balance = _without_balance(params)
    pipeline = family.build(params, problem.task, problem.columns, seed=seed, balance=balance)
    with _quiet_and_bounded():
        pipeline.fit(x, y, **family.fit_params(y, problem.task, balance=balance))
    return pipeline


def _without_balance(params: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """The family's own parameters, and whether to weight classes (the tuned ``BALANCE_PARAM``)."""
    own = {k: v for k, v in params.items() if k != BALANCE_PARAM}
    return own, bool(params.get(BALANCE_PARAM, False))


@contextmanager
def _quiet_and_bounded() -> Iterator[None]:
    """Fit or predict on at most ``N_JOBS`` native threads, without per-fit warning noise.

    Some estimators (HistGradientBoosting, numpy's BLAS) take every core through OpenMP/BLAS
    unless told otherwise; on a shared machine that oversubscribes and makes fit times erratic.
    Non-converged MLP/logistic fits are scored like any other: the sweep judges them.
    """
    with threadpool_limits(limits=N_JOBS), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", UserWarning)
        yield


def _output(model: Any, x: pd.DataFrame, metric: Metric) -> np.ndarray:
    """What ``metric`` scores: class probabilities or predictions."""
    with _quiet_and_bounded():
        return np.asarray(model.predict_proba(x) if metric.needs_proba else model.predict(x))
