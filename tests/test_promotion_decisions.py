"""The promotion gate's other rules and its readable outcome (the mutants test_promotion_gate.py left alive).

Scores are binary fractions so that the printed numbers are exact.
"""

from __future__ import annotations

from tracseq_dagster.evaluation import Evaluation, SliceScore
from tracseq_dagster.promotion import GateCheck, GateDecision, GatePolicy, decide

POLICY = GatePolicy(min_improvement=0.0625, max_slice_regression=0.125, max_brier=0.25, max_ece=0.125)


def evaluation(
    score: float,
    *,
    metric: str = "roc_auc",
    slices: dict[str, float | None] | None = None,
    brier: float | None = 0.125,
    ece: float | None = 0.0625,
    greater_is_better: bool = True,
) -> Evaluation:
    return Evaluation(
        metric=metric, greater_is_better=greater_is_better, score=score, rows=400, brier=brier, ece=ece,
        slices={name: SliceScore(rows=100, score=value) for name, value in (slices or {}).items()},
    )  # fmt: skip


def test_default_policy() -> None:
    assert GatePolicy() == GatePolicy(min_improvement=0.002, max_slice_regression=0.02, max_brier=0.5, max_ece=0.15)


def test_a_first_model_is_promoted_when_calibrated_with_every_rule_named() -> None:
    decision = decide(evaluation(0.75), None, POLICY)
    assert decision.promote
    assert [(c.rule, c.passed, c.reason) for c in decision.checks] == [
        ("beats the champion", True, "no champion yet; challenger roc_auc = 0.7500"),
        ("no slice regresses", True, "no champion to compare slices with"),
        ("Brier score bound", True, "Brier 0.1250, bound 0.25"),
        ("calibration error bound", True, "ECE 0.0625, bound 0.125"),
    ]
    assert decision.headline() == "promotion gate passed (4/4 rules)"
    assert decision.reasons[0] == "PASS beats the champion: no champion yet; challenger roc_auc = 0.7500"
    assert decision.summary() == "promote — " + "; ".join(decision.reasons)
    assert decision.as_dict() == {
        "promote": True,
        "checks": [{"rule": c.rule, "passed": c.passed, "reason": c.reason} for c in decision.checks],
    }


def test_models_scored_with_different_metrics_are_never_compared() -> None:
    champion = evaluation(0.25, metric="average_precision")
    decision = decide(evaluation(0.75), champion, POLICY)
    assert not decision.promote
    assert decision.checks[0] == GateCheck(
        "beats the champion", False, "models scored with different metrics (roc_auc vs average_precision)"
    )
    assert decision.headline() == "promotion gate failed (3/4 rules)"
    assert decision.summary().startswith("keep the champion — FAIL beats the champion: models scored with different")


def test_an_uncalibrated_first_model_is_not_promoted_on_either_bound() -> None:
    brier = decide(evaluation(0.75, brier=0.5), None, POLICY)
    assert not brier.promote and [c.passed for c in brier.checks] == [True, True, False, True]
    assert brier.checks[2].reason == "Brier 0.5000, bound 0.25"
    ece = decide(evaluation(0.75, ece=0.25), None, POLICY)
    assert not ece.promote and [c.passed for c in ece.checks] == [True, True, True, False]
    assert ece.checks[3].reason == "ECE 0.2500, bound 0.125"
    assert decide(evaluation(0.75, brier=0.25, ece=0.125), None, POLICY).promote  # both exactly on their bounds


def test_calibration_is_checked_only_when_both_numbers_are_known() -> None:
    regression = decide(evaluation(0.5, metric="rmse", brier=None, ece=None, greater_is_better=False), None, POLICY)
    assert [c.rule for c in regression.checks] == ["beats the champion", "no slice regresses"]
    for brier, ece in [(0.125, None), (None, 0.0625)]:
        decision = decide(evaluation(0.75, brier=brier, ece=ece), None, POLICY)
        assert [c.rule for c in decision.checks] == ["beats the champion", "no slice regresses"]


def test_slices_are_counted_and_those_without_both_scores_skipped() -> None:
    champion = evaluation(0.5, slices={"DNA": 0.5, "RNA": 0.5, "FFPE": None, "blood": 0.5, "tissue": 0.5})
    challenger = evaluation(0.75, slices={"cfDNA": 0.75, "FFPE": 0.75, "DNA": 0.625, "RNA": None, "blood": 0.5, "tissue": 0.5})
    decision = decide(challenger, champion, POLICY)
    # cfDNA (no champion slice), FFPE (no champion score) and RNA (no challenger score) are skipped,
    # and the loop goes on after them: DNA, blood and tissue are compared.
    assert decision.promote, decision.summary()
    assert decision.checks[1] == GateCheck("no slice regresses", True, "3 slices compared, none worse by more than 0.125")


def test_every_regressing_slice_is_named() -> None:
    champion = evaluation(0.5, slices={"DNA": 0.75, "RNA": 0.75, "blood": 0.5})
    challenger = evaluation(0.75, slices={"DNA": 0.5, "RNA": 0.5, "blood": 0.5})
    check = decide(challenger, champion, POLICY).checks[1]
    assert check == GateCheck(
        "no slice regresses", False, "worse by more than 0.125 on DNA 0.5000 vs 0.7500 (-0.2500), RNA 0.5000 vs 0.7500 (-0.2500)"
    )


def test_a_slice_exactly_at_the_allowed_regression_passes() -> None:
    champion = evaluation(0.5, slices={"DNA": 0.75})
    assert decide(evaluation(0.75, slices={"DNA": 0.625}), champion, POLICY).checks[1].passed
    assert not decide(evaluation(0.75, slices={"DNA": 0.5}), champion, POLICY).checks[1].passed


def test_the_overall_reason_shows_both_scores_the_rows_and_the_verdict() -> None:
    champion = evaluation(0.5)
    better = decide(evaluation(0.625), champion, POLICY).checks[0]
    assert better.reason == (
        "roc_auc 0.6250 vs champion 0.5000 on the same 400 holdout rows: gain +0.1250, at least the required 0.0625"
    )
    worse = decide(evaluation(0.5), champion, POLICY).checks[0]
    assert worse.reason.endswith("gain +0.0000, less than the required 0.0625") and not worse.passed


def test_an_empty_decision_reads_sensibly() -> None:
    assert GateDecision(promote=False).headline() == "promotion gate failed (0/0 rules)"
    assert GateDecision(promote=False).as_dict() == {"promote": False, "checks": []}
