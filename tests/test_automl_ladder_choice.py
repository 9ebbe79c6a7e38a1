"""Which configuration a family refits after the ladder (automl/ladder.py chosen_by_climb): the sweep
sample's best, replaced only by one that met it on more rows."""

from __future__ import annotations

from tracseq_dagster.automl.ladder import RungResult, chosen_by_climb


def _rung(scores: dict[int, float | None]) -> list[RungResult]:
    return [RungResult(number, {"n": number}, score) for number, score in scores.items()]


def test_a_configuration_that_never_met_the_best_on_more_rows_does_not_replace_it() -> None:
    # Trial 0 leads the sample; its promotion was skipped (None); trial 1 climbed alone.
    rungs = [_rung({0: 14.0, 1: 14.6, 2: 15.1}), _rung({0: None, 1: 14.2}), []]
    assert chosen_by_climb(rungs, greater_is_better=False) == rungs[0][0]


def test_the_best_is_replaced_by_one_that_beat_it_on_the_same_rows() -> None:
    rungs = [_rung({0: 0.90, 1: 0.89, 2: 0.70}), _rung({0: 0.91, 1: 0.93}), _rung({1: 0.94})]
    # 1 beat 0 on rung 1; 1 is alone on rung 2 (it is the incumbent there): chosen.
    assert chosen_by_climb(rungs, greater_is_better=True) == rungs[2][0]
    # ... and when 0 wins the head-to-head on rung 1, a rung 2 it never reached does not matter.
    rungs = [_rung({0: 0.90, 1: 0.89}), _rung({0: 0.95, 1: 0.93}), _rung({1: 0.96})]
    assert chosen_by_climb(rungs, greater_is_better=True) == rungs[1][0]


def test_nothing_complete_nothing_chosen() -> None:
    assert chosen_by_climb([], greater_is_better=True) is None
    assert chosen_by_climb([_rung({0: None}), []], greater_is_better=True) is None
