"""The boosters' cost estimate: a fixed part plus a part per tree (:mod:`tracseq_dagster.automl.cost`)."""

from __future__ import annotations

import pytest

from tracseq_dagster.automl.cost import SETUP_TREES, CostModel, work_units

BOOSTERS = ["lightgbm", "xgboost"]
#: hotel_rates, one fold: 7,384 rows × 26 features, regression (the CPU seconds measured for the
#: default configuration at 100 and 1,600 trees, 2026-12-07, cost.py's SETUP_TREES table).
ROWS, FEATURES = 7_384, 26
MEASURED_S = {"lightgbm": (0.223, 1.617), "xgboost": (0.200, 1.950)}


def _units(family: str, trees: int, rows: int = ROWS, classes: int = 1, **params: float) -> float:
    return work_units(family, {"n_estimators": trees, **params}, rows, FEATURES, classes)


@pytest.mark.parametrize("family", BOOSTERS)
def test_a_booster_costs_a_fixed_part_plus_a_part_per_tree(family: str) -> None:
    one, two, three = (_units(family, trees) for trees in (100, 200, 300))
    per_tree = (two - one) / 100
    assert three - two == pytest.approx(two - one)  # linear in the trees
    fixed = one - 100 * per_tree
    assert fixed == pytest.approx(SETUP_TREES * per_tree) and fixed > 0  # the setup, in default trees
    # 4,096 trees cost (4,096 + setup) / (100 + setup) times the default, not 41 times.
    assert _units(family, 4096) / one == pytest.approx((4096 + SETUP_TREES) / (100 + SETUP_TREES))
    assert 15 < _units(family, 4096) / one < 30


@pytest.mark.parametrize("family", BOOSTERS)
def test_the_whole_fit_grows_with_rows_and_classes(family: str) -> None:
    assert _units(family, 500, rows=2 * ROWS) == pytest.approx(2 * _units(family, 500))
    assert _units(family, 500, classes=10) == pytest.approx(10 * _units(family, 500))  # one tree a class
    assert _units(family, 500, classes=2) == pytest.approx(_units(family, 500))  # binary: one tree


def test_depth_and_feature_sampling_scale_the_trees_not_the_setup() -> None:
    deep, shallow = _units("xgboost", 1000, max_depth=6), _units("xgboost", 1000, max_depth=3)
    setup = _units("xgboost", 0, max_depth=6)
    assert setup == _units("xgboost", 0, max_depth=3) == _units("xgboost", 0, colsample_bytree=0.5)
    assert shallow - setup == pytest.approx((deep - setup) / 2)
    assert _units("lightgbm", 1000, colsample_bytree=0.5) - setup == pytest.approx((_units("lightgbm", 1000) - setup) / 2)


@pytest.mark.parametrize("family", BOOSTERS)
def test_learnt_from_the_default_the_many_tree_estimate_is_near_the_measured_time(family: str) -> None:
    default_s, many_s = MEASURED_S[family]
    model = CostModel()
    assert model.estimate(family, _units(family, 1600)) is None  # nothing learnt yet
    model.record(family, _units(family, 100), default_s)
    estimate = model.estimate(family, _units(family, 1600))
    assert estimate is not None
    # Within 25% of the measured 1,600-tree fit; trees alone said 16× the default (1.6–2.2× too much).
    assert estimate == pytest.approx(many_s, rel=0.25)
    assert abs(default_s * 16 - many_s) > 0.5 * many_s
