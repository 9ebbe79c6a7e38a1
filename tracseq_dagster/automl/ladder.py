"""Successive halving on rows inside a family's sweep: which configuration sees more rows next.

Why: on a large table the trials cross-validate on a sample (the sweep sample, see
:func:`~tracseq_dagster.automl.cost.auto_sweep_rows`) so that many of them fit in the budget, but
a ranking made on a sample can change with more rows. The ladder's rungs are the sweep sample,
then :data:`ETA` times more rows per rung, up to every training row (:func:`rung_rows`). A
configuration is promoted one rung up when it is in the best 1/:data:`ETA` of the configurations
that completed its rung and was not promoted yet (asynchronous successive halving, Li et al.
2020, "A System for Massively Parallel Hyperparameter Tuning"): no rung waits for another to
fill, so the scheduler can interleave promotions with new trials, and a rung costs about as
much as the one below it (1/ETA of the configurations, ETA times the rows).

Each family climbs its own ladder: the family's final configuration is chosen by
:func:`chosen_by_climb` (from the sweep sample's best, replaced by the best of the next rung only
where it met that one on the same rows), while families
are still ranked against each other on the sweep sample (rung 0), where every family has trials.
This module is the arithmetic; the engine evaluates a promotion as it does a trial.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: Rows grow by this factor per rung, and the best 1/ETA of a rung are promoted.
ETA = 3


@dataclass(frozen=True)
class RungResult:
    """One configuration's outcome on one rung; ``score`` is None when it did not complete there
    (skipped for its cost or interrupted), which also keeps it from being promoted twice."""

    number: int  # the Optuna trial that proposed the configuration
    params: dict[str, Any]
    score: float | None


def rung_rows(sweep_rows: int, train_rows: int, eta: int = ETA) -> list[int]:
    """Rows of each rung: the sweep sample, then ``eta`` times more each rung, ending at every
    training row (a single rung when the sweep already sees every row)."""
    rows = [sweep_rows]
    while rows[-1] < train_rows:
        rows.append(min(rows[-1] * eta, train_rows))
    return rows


def next_promotion(rungs: list[list[RungResult]], greater_is_better: bool, eta: int = ETA) -> tuple[int, RungResult] | None:
    """The rung to evaluate next and the configuration to promote to it, or None.

    From the highest rung down (finishing a climb first): a configuration among the best
    ``len(complete) // eta`` of a rung that has no result on the rung above yet.
    """
    for rung in reversed(range(len(rungs) - 1)):
        complete = [r for r in rungs[rung] if r.score is not None]
        top = sorted(complete, key=lambda r: _ordered(r, greater_is_better))[: len(complete) // eta]
        above = {r.number for r in rungs[rung + 1]}
        for candidate in top:
            if candidate.number not in above:
                return rung + 1, candidate
    return None


def chosen_by_climb(rungs: list[list[RungResult]], greater_is_better: bool) -> RungResult | None:
    """The family's configuration: rung 0's best, replaced by the best of the next rung only when
    it completed that rung as well (compared on the same rows, and lost or won), and so on up.

    Why not simply the best of the highest rung reached: a promotion can be skipped for its cost
    (a 1,000-tree configuration on every row), and then a weaker configuration that was cheap
    enough to climb would win without ever meeting the better one on the same rows. Measured on
    hotel_rates at 60 s (load 5): the zero-shot LightGBM configuration led the sweep sample
    (rmse 14.00), its promotion was skipped, and a 110-tree configuration that climbed was refit
    instead (test rmse 13.68; the zero-shot one refit the same way: 12.61).
    """
    complete = [r for r in rungs[0] if r.score is not None] if rungs else []
    if not complete:
        return None
    incumbent = min(complete, key=lambda r: _ordered(r, greater_is_better))
    for results in rungs[1:]:
        complete = [r for r in results if r.score is not None]
        if not any(r.number == incumbent.number for r in complete):
            break
        incumbent = min(complete, key=lambda r: _ordered(r, greater_is_better))
    return incumbent


def _ordered(result: RungResult, greater_is_better: bool) -> float:
    """Sort key: the best result first (complete results only)."""
    assert result.score is not None
    return -result.score if greater_is_better else result.score
