"""Wide categoricals (more values than one-hot can take, fewer than an id has): the tree families
see them as codes, the one-hot families leave them out, and the sweep learns from them."""

from __future__ import annotations

import numpy as np
import optuna
import pandas as pd

from tracseq_dagster.automl import FAMILIES, AutoMLConfig, prepare_features, run_automl
from tracseq_dagster.automl.preprocessing import MAX_CATEGORIES

optuna.logging.set_verbosity(optuna.logging.WARNING)


def airports(rows: int = 3_000, seed: int = 0) -> pd.DataFrame:
    """Delay driven mostly by which of 120 airports a flight leaves from."""
    rng = np.random.default_rng(seed)
    effect = rng.normal(0, 2, 120)
    airport = rng.integers(0, 120, rows)
    distance = rng.uniform(100, 2_000, rows)
    delay = effect[airport] + distance / 1_000 + rng.normal(0, 0.5, rows)
    return pd.DataFrame(
        {
            "airport": [f"A{a:03d}" for a in airport],
            "distance": distance,
            "flight_id": [f"F{i}" for i in range(rows)],
            "delay": delay,
        }
    )


def test_wide_categoricals_are_codes_for_trees_and_left_out_of_one_hot() -> None:
    frame = airports()
    features, columns = prepare_features(frame, "delay")
    assert frame["airport"].nunique() > MAX_CATEGORIES
    assert columns.wide == ("airport",) and columns.categorical == () and "flight_id" in columns.dropped
    assert columns.all == ["distance", "airport"] and list(features.columns) == columns.all
    y = frame["delay"].to_numpy()
    linear = FAMILIES["logistic"].build({"alpha": 1.0}, "regression", columns, seed=0, balance=False).fit(frame, y)
    assert linear[:-1].transform(frame.head(5)).shape[1] == 1  # distance, scaled (nothing missing): no airports
    boosted = FAMILIES["lightgbm"].build({"n_estimators": 50}, "regression", columns, seed=0, balance=False).fit(frame, y)
    assert boosted[:-1].transform(frame.head(5)).shape[1] == 2  # distance and the airport's code
    histogram = FAMILIES["gradient_boosting"].build({"max_iter": 20}, "regression", columns, seed=0, balance=False).fit(frame, y)
    assert np.isfinite(histogram.predict(frame.head(5))).all()


def test_the_sweep_learns_from_a_wide_categorical() -> None:
    frame = airports()
    result = run_automl(frame, AutoMLConfig(target="delay", families=("logistic", "lightgbm"), time_budget_s=10, max_trials=4))
    # Distance alone leaves the airports' spread (rmse about 2); their codes explain most of it.
    assert result.holdout_score < 1.2, result.holdout_score
    assert "airport" in result.feature_columns
