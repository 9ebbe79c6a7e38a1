"""The promotion gate in the metric's own direction, and exactly on its boundaries.

Scores are binary fractions (0.25, 0.0625, …) so that differences are exact in floating
point: a challenger that gains exactly ``min_improvement`` sits on the boundary, not a
rounding error away from it.
"""

from __future__ import annotations

import pytest

from tracseq_dagster.evaluation import Evaluation, SliceScore
from tracseq_dagster.promotion import GatePolicy, decide

LOWER_IS_BETTER = ("rmse", "log_loss")


def evaluation(
    metric: str,
    score: float,
    *,
    greater_is_better: bool,
    slices: dict[str, float] | None = None,
    brier: float | None = None,
    ece: float | None = None,
) -> Evaluation:
    return Evaluation(
        metric=metric,
        greater_is_better=greater_is_better,
        score=score,
        rows=400,
        brier=brier,
        ece=ece,
        slices={name: SliceScore(rows=100, score=value) for name, value in (slices or {}).items()},
    )


def overall(decision) -> bool:  # type: ignore[no-untyped-def]
    (check,) = [c for c in decision.checks if c.rule == "beats the champion"]
    return check.passed


@pytest.mark.parametrize("metric", LOWER_IS_BETTER)
def test_lower_is_better_a_worse_challenger_is_refused_and_a_better_one_promoted(metric: str) -> None:
    policy = GatePolicy(min_improvement=0.0625, max_slice_regression=0.5, max_brier=1.0, max_ece=1.0)
    calibration = {"brier": 0.25, "ece": 0.0625} if metric == "log_loss" else {}
    champion = evaluation(metric, 0.5, greater_is_better=False, **calibration)

    worse = decide(evaluation(metric, 0.75, greater_is_better=False, **calibration), champion, policy)
    assert not worse.promote
    assert not overall(worse)
    assert "gain -0.2500" in worse.checks[0].reason

    better = decide(evaluation(metric, 0.25, greater_is_better=False, **calibration), champion, policy)
    assert better.promote, better.summary()
    assert "gain +0.2500" in better.checks[0].reason


def test_lower_is_better_the_same_score_does_not_gain() -> None:
    champion = evaluation("rmse", 3.0, greater_is_better=False)
    same = decide(evaluation("rmse", 3.0, greater_is_better=False), champion, GatePolicy(min_improvement=0.25))
    assert not same.promote
    assert "gain +0.0000" in same.checks[0].reason


@pytest.mark.parametrize("greater_is_better", [True, False])
def test_a_gain_exactly_on_the_margin_is_promoted_and_a_hair_below_is_not(greater_is_better: bool) -> None:
    margin = 0.0625
    policy = GatePolicy(min_improvement=margin, max_slice_regression=0.5, max_brier=1.0, max_ece=1.0)
    metric = "roc_auc" if greater_is_better else "rmse"
    champion_score = 0.75
    step = margin if greater_is_better else -margin
    champion = evaluation(metric, champion_score, greater_is_better=greater_is_better)

    on_margin = evaluation(metric, champion_score + step, greater_is_better=greater_is_better)
    assert (on_margin.score - champion_score) * (1 if greater_is_better else -1) == margin  # exact, no rounding
    decision = decide(on_margin, champion, policy)
    assert decision.promote, decision.summary()
    assert "at least the required 0.0625" in decision.checks[0].reason

    just_below = evaluation(
        metric, champion_score + step - (2**-20 if greater_is_better else -(2**-20)), greater_is_better=greater_is_better
    )
    refused = decide(just_below, champion, policy)
    assert not refused.promote
    assert "less than the required 0.0625" in refused.checks[0].reason


@pytest.mark.parametrize("greater_is_better", [True, False])
def test_a_slice_worse_by_exactly_the_allowed_regression_passes_and_a_hair_more_fails(greater_is_better: bool) -> None:
    allowed = 0.125
    policy = GatePolicy(min_improvement=0.0, max_slice_regression=allowed, max_brier=1.0, max_ece=1.0)
    metric = "roc_auc" if greater_is_better else "rmse"
    worse = -allowed if greater_is_better else allowed  # in the metric's units, the bad direction
    champion = evaluation(metric, 0.5, greater_is_better=greater_is_better, slices={"DNA": 0.5, "RNA": 0.5})

    at_limit = evaluation(metric, 0.5, greater_is_better=greater_is_better, slices={"DNA": 0.5 + worse, "RNA": 0.5})
    assert decide(at_limit, champion, policy).promote

    beyond = evaluation(metric, 0.5, greater_is_better=greater_is_better, slices={"DNA": 0.5 + worse * (1 + 2**-10), "RNA": 0.5})
    decision = decide(beyond, champion, policy)
    assert not decision.promote
    (slices,) = [c for c in decision.checks if c.rule == "no slice regresses"]
    assert not slices.passed and "DNA" in slices.reason


def test_lower_is_better_slices_judge_in_the_metric_direction() -> None:
    """A challenger whose rmse rises on one slice regressed there, even if its overall rmse fell."""
    policy = GatePolicy(min_improvement=0.0625, max_slice_regression=0.125, max_brier=1.0, max_ece=1.0)
    champion = evaluation("rmse", 2.0, greater_is_better=False, slices={"DNA": 2.0, "RNA": 2.0})
    challenger = evaluation("rmse", 1.5, greater_is_better=False, slices={"DNA": 1.0, "RNA": 2.5})
    decision = decide(challenger, champion, policy)
    assert overall(decision)
    assert not decision.promote
    assert "RNA 2.5000 vs 2.0000 (-0.5000)" in decision.summary()


def test_calibration_bounds_are_inclusive() -> None:
    policy = GatePolicy(max_brier=0.25, max_ece=0.125)
    on_bounds = evaluation("log_loss", 0.5, greater_is_better=False, brier=0.25, ece=0.125)
    assert decide(on_bounds, None, policy).promote
    above = evaluation("log_loss", 0.5, greater_is_better=False, brier=0.25, ece=0.125 + 2**-20)
    assert not decide(above, None, policy).promote
