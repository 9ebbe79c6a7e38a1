"""The wall-clock budget of one AutoML run, and how it is shared out.

The budget covers the whole run: preparation, the sweep, the final refit and the holdout
scoring. It is shared as follows:

* A **reserve** is held back at the end for the final refit and scoring. It starts at
  :data:`MIN_RESERVE_FRACTION` of the budget and grows as trials complete to the estimated
  refit time of the families that may be refit: for each, its best trial's mean fold fit time ×
  the refit's work against a fold's (more rows: every training row, not (k-1)/k of the sweep
  sample; and the rounds that grow with them, see the engine's ``FamilySweep._refit_work``).
  The final choice refits each of its candidates (the winner, the ensemble's members, the
  runner-up), so the reserve is their sum, plus the slowest once more for a fit on training and
  holdout rows, × a safety factor. Which families may be refit, the scheduler says
  (:meth:`Budget.refit_only`: the leaders); until it does, every family counts. A slow family far
  behind (an MLP at twice the leaders' error on diamonds) then no longer holds back a sixth of the
  budget, and the leaders' ensemble still has the time for its refits.
* The rest, the **sweep time**, is handed out one trial at a time by the engine's scheduler
  (:func:`~tracseq_dagster.automl.engine.schedule`): each turn's trial may take its family's
  priority-weighted part of the sweep time left (its *share*).
* Within a share, a trial starts only if its cost estimate (:mod:`.cost`) fits it, and a new
  trial of the same turn only if the share still fits one more trial of the median duration
  seen so far in that family (Optuna's ``timeout`` is set to the share as well). A running trial is abandoned between folds (recorded as pruned, reason
  ``"time budget"``) as soon as its remaining folds, at its pace so far, would end after the
  sweep time. A family whose share is empty when its turn comes runs no trial.
  Before a trial's first fold, its pace is not known yet: the median fold time of the family
  so far stands in, or, for a family's first trial, the median fold time of all families so far.
* With ``final_fit="all"`` the reserve also covers the second fit on training plus holdout
  rows (``refits`` > 1).
* The reserve never exceeds :data:`MAX_RESERVE_FRACTION` of the budget: the final refit fits
  in what is left however slow the winner, since it stops at the deadline (boosters and forests
  keep what they fitted, see :mod:`.deadline`) or is fitted on fewer rows (the others).
* Sweep folds stop at the end of their family's share (:mod:`.deadline`), and trials whose
  cost estimate (:attr:`Budget.cost`, :mod:`.cost`) does not fit the share are not started, so
  only a fold of a learner that cannot stop mid-fit (logistic, MLP) whose
  cost was underestimated can overrun.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

from tracseq_dagster.automl.cost import CostModel

#: Budgets below this cannot fit even one cross-validated trial plus the refit.
MIN_BUDGET_S = 2.0
#: Share of the budget always held back for the final refit and holdout scoring.
MIN_RESERVE_FRACTION = 0.04
#: Margin on the refit estimate (timing noise, a busy machine).
REFIT_SAFETY = 1.5
#: The reserve's ceiling (share of the budget): the final fit is bounded, not estimated alone. 30%:
#: a refit on 12x a trial's rows with its rounds grown (flights, 196,407 rows) reached 200
#: iterations and test AUC 0.775 in 20%, 400 and 0.783 in 30% (BENCHMARKS.md, issue 18).
MAX_RESERVE_FRACTION = 0.3


class Budget:
    """Deadlines of one run, measured with ``clock`` (``time.perf_counter``) from construction.

    The engine reads the time through :attr:`clock` too, so a test can run a sweep on a fake clock.
    """

    def __init__(self, total_s: float, refits: float = 1.0, clock: Callable[[], float] = time.perf_counter) -> None:
        self.total_s = total_s
        self.refits = refits  # final fits to reserve time for, in units of one training-rows refit
        self.clock = clock
        self.start = clock()
        self.deadline = self.start + total_s
        self._refit_s: dict[str | None, float] = {}  # family → its slowest best's refit estimate
        self._refit_only: set[str] | None = None  # the families the reserve covers (None: all)
        self._workers_reserve_s = 0.0  # the largest reserve a worker's budget reported (see merge)
        self._fold_seconds: dict[str, list[float]] = {}
        self.cost = CostModel()  # seconds per unit of work, per family, learnt from the folds

    def elapsed(self) -> float:
        """Seconds since the run started."""
        return self.clock() - self.start

    def reserve_refit(self, fold_fit_seconds: float, folds: int, family: str | None = None) -> None:
        """Grow the reserve to fit refitting ``family``'s model whose folds took ``fold_fit_seconds``
        each (a family's estimate never shrinks)."""
        estimate = fold_fit_seconds * folds / max(folds - 1, 1)  # one fit on every training row
        self._refit_s[family] = max(self._refit_s.get(family, 0.0), estimate)

    def refit_only(self, families: set[str]) -> None:
        """From now on the reserve covers the refits of ``families`` only (the scheduler's leaders)."""
        self._refit_only = set(families)

    @property
    def _reserve_s(self) -> float:
        """The covered families' refits on the training rows (the final choice refits each of its
        candidates: the winner, the ensemble's members, the runner-up), plus ``refits - 1`` more
        of the slowest (the chosen one's fit on training and holdout rows), × the safety factor."""
        counted = [seconds for family, seconds in self._refit_s.items() if self._refit_only is None or family in self._refit_only]
        refits = sum(counted) + (self.refits - 1) * max(counted) if counted and self.refits >= 1 else 0.0
        needed = max(MIN_RESERVE_FRACTION * self.total_s, REFIT_SAFETY * refits, self._workers_reserve_s)
        return min(needed, MAX_RESERVE_FRACTION * self.total_s)

    @property
    def sweep_deadline(self) -> float:
        """When the sweep must end: the deadline minus the refit reserve."""
        return self.deadline - self._reserve_s

    def sweep_left(self) -> float:
        """Seconds of sweep time left (may be negative)."""
        return self.sweep_deadline - self.clock()

    def family_share(self, families_left: int) -> float:
        """Seconds for the next family: an equal share of the sweep time still left."""
        return max(self.sweep_left(), 0.0) / max(families_left, 1)

    def record_fold(self, family: str, seconds: float) -> None:
        """Note how long one fold (fit and scoring) of ``family`` took."""
        self._fold_seconds.setdefault(family, []).append(seconds)

    def typical_fold_seconds(self, family: str) -> float:
        """Median fold time of ``family``, else of every family, else 0 (nothing known yet)."""
        own = self._fold_seconds.get(family)
        if own:
            return statistics.median(own)
        every = [s for times in self._fold_seconds.values() for s in times]
        return statistics.median(every) if every else 0.0

    def same_deadlines_as(self, start: float) -> None:
        """Share another process's run: the same start and deadline (``time.perf_counter`` is
        the system's monotonic clock on Linux, so its readings compare across processes)."""
        self.start = start
        self.deadline = start + self.total_s

    def learnt(self) -> tuple[dict[str, list[float]], dict[str, list[float]], float]:
        """What this budget learnt: fold times, cost rates and the reserve (see :meth:`merge`)."""
        return {f: list(s) for f, s in self._fold_seconds.items()}, self.cost.learnt(), self._reserve_s

    def merge(self, learnt: tuple[dict[str, list[float]], dict[str, list[float]], float]) -> None:
        """Add what a worker's budget learnt (its families' fold times and rates; the larger reserve)."""
        folds, rates, reserve = learnt
        for family, seconds in folds.items():
            self._fold_seconds.setdefault(family, []).extend(seconds)
        self.cost.merge(rates)
        self._workers_reserve_s = max(self._workers_reserve_s, reserve)
