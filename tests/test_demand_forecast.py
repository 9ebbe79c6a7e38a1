"""The demand forecast on small hand-made histories: a constant series, a weekly pattern, the
interval, sparse / short / silent series, a week without data, bad input; the whole-number
count intervals (the rule on exact Poisson probabilities, over-dispersion, coverage of Poisson
series over many draws)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from tracseq_dagster.operations.count_intervals import dispersion, empirical_interval, negbin_interval
from tracseq_dagster.operations.demand_backtest import backtest
from tracseq_dagster.operations.demand_forecast import (
    CONFORMAL_INTERVALS,
    EMPIRICAL_INTERVALS,
    FALLBACK,
    LEVEL,
    MODEL_INTERVALS,
    QUANTILE_INTERVALS,
    TOTAL,
    DemandInputError,
    daily_counts,
    forecast_demand,
    forecast_series,
    weekly_totals,
)

START = pd.Timestamp("2025-03-03")  # a Monday


def samples_from_counts(counts: list[int] | np.ndarray, sample_type: str = "DNA", site: str = "SITE-BOS") -> pd.DataFrame:
    """One sample row per arrival: ``counts[d]`` samples received on day d after START, at noon UTC."""
    days = np.repeat(np.arange(len(counts)), np.asarray(counts, dtype=int))
    received = (START + pd.to_timedelta(days, unit="D") + pd.Timedelta(hours=12)).tz_localize("UTC")
    return pd.DataFrame({"received_ts": received, "sample_type": sample_type, "site": site})


def series(values: np.ndarray, uid: str = "s") -> pd.DataFrame:
    return pd.DataFrame({"unique_id": uid, "ds": pd.date_range(START, periods=len(values), freq="D"), "y": values.astype(float)})


def test_a_constant_series_forecasts_that_constant() -> None:
    result = forecast_demand(samples_from_counts([3] * 70))
    assert len(result.forecast) == 2 * 14  # the pair and the lab total
    assert np.allclose(result.forecast["forecast"], 3.0)
    assert np.allclose(result.forecast["lo"], 3.0) and np.allclose(result.forecast["hi"], 3.0)
    assert set(result.forecast["model"]) == {"constant (3 a day)"}
    assert result.forecast["ds"].min() == START + pd.Timedelta(days=70)


def test_a_weekly_pattern_is_recovered() -> None:
    rng = np.random.default_rng(1)
    pattern = np.array([12.0, 12, 12, 12, 12, 4, 1])
    values = np.tile(pattern, 16) + rng.normal(0, 0.5, 16 * 7)
    forecast, models = forecast_series(series(values))
    assert models["model"].iloc[0] in {"AutoETS", "AutoTheta", "SeasonalNaive"}
    weekday = forecast["ds"].dt.dayofweek.to_numpy()
    assert np.allclose(forecast["forecast"].to_numpy(), pattern[weekday], atol=1.5)
    assert forecast.loc[weekday == 6, "forecast"].max() < forecast.loc[weekday < 5, "forecast"].min() / 3


def test_the_interval_holds_most_future_days() -> None:
    rng = np.random.default_rng(7)
    rate = np.tile([8.0, 8, 8, 8, 8, 3, 1], 20)
    parts = [series(rng.poisson(rate).astype(float), uid=f"s{i}") for i in range(5)]
    history = pd.concat(parts, ignore_index=True)
    cut = history["ds"].max() - pd.Timedelta(days=14)
    forecast, _ = forecast_series(history[history["ds"] <= cut])
    joined = forecast.merge(history, on=["unique_id", "ds"])
    assert len(joined) == 5 * 14
    inside = ((joined["y"] >= joined["lo"]) & (joined["y"] <= joined["hi"])).mean()
    assert 0.65 <= inside <= 1.0, inside
    assert (joined["lo"] <= joined["forecast"]).all() and (joined["forecast"] <= joined["hi"]).all()


def test_sparse_and_short_series_fall_back_to_the_recent_mean() -> None:
    sparse = np.zeros(100, dtype=int)
    sparse[[10, 40, 80, 90, 95]] = 1  # five samples in 100 days
    short = [4] * 10  # ten days of history
    samples = pd.concat(
        [samples_from_counts(sparse, "FFPE", "SITE-MIA"), samples_from_counts([0] * 90 + short, "RNA", "SITE-SEA")]
    )
    result = forecast_demand(samples)
    models = result.models.set_index(["sample_type", "site"])["model"]
    assert models[("FFPE", "SITE-MIA")] == FALLBACK and models[("RNA", "SITE-SEA")] == FALLBACK
    ffpe = result.forecast[result.forecast["sample_type"] == "FFPE"]
    assert np.allclose(ffpe["forecast"], 3 / 28)  # three samples in the last 28 days
    # Poisson(0.107): no sample on 89.8 % of days; [0, 0] is the whole-number interval nearest 80 %.
    assert (ffpe["lo"] == 0).all() and (ffpe["hi"] == 0).all()
    rna = result.forecast[result.forecast["sample_type"] == "RNA"]
    # Poisson(4): [2, 6] holds 79.7 % ([2, 7], the quantile interval, 85.7 %).
    assert np.allclose(rna["forecast"], 4.0) and (rna["lo"] == 2).all() and (rna["hi"] == 6).all()


def test_a_silent_series_forecasts_zero_and_says_why() -> None:
    # DNA from this site sent nothing in the last 40 days, while RNA from another site still arrives.
    samples = pd.concat([samples_from_counts([2] * 30 + [0] * 40), samples_from_counts([1] * 70, "RNA", "SITE-NYC")])
    silent = forecast_demand(samples).forecast.query("sample_type == 'DNA'")
    assert len(silent) == 14 and (silent["forecast"] == 0).all() and (silent["hi"] == 0).all()
    assert silent["model"].str.startswith("zero (no sample in the last 28 days").all()


def test_a_week_without_data_is_zeros_not_a_gap() -> None:
    counts = np.tile([6, 6, 6, 6, 6, 2, 1], 12)
    counts[35:42] = 0  # the lab was closed for a week
    history = daily_counts(samples_from_counts(counts))
    pair = history[history["sample_type"] == "DNA"]
    assert len(pair) == len(counts) and (pair["ds"].diff().dropna() == pd.Timedelta(days=1)).all()
    assert pair["y"].iloc[35:42].sum() == 0
    result = forecast_demand(samples_from_counts(counts))
    assert result.forecast["forecast"].notna().all() and (result.forecast["forecast"] >= 0).all()


def test_the_lab_total_is_its_own_series_and_weeks_sum_it() -> None:
    samples = pd.concat([samples_from_counts([2] * 70, "DNA"), samples_from_counts([1] * 70, "RNA", "SITE-NYC")])
    result = forecast_demand(samples)
    total = result.forecast[(result.forecast["sample_type"] == TOTAL) & (result.forecast["site"] == TOTAL)]
    assert np.allclose(total["forecast"], 3.0) and (result.forecast["level"] == LEVEL).all()
    weeks = weekly_totals(result.forecast)
    assert len(weeks) == 2 and np.allclose(weeks["forecast"], 21.0)
    assert list(result.models["sample_type"])[-1] == TOTAL  # the total listed last


def test_only_samples_received_by_as_of_are_used() -> None:
    samples = samples_from_counts([1] * 60 + [50] * 10)
    result = forecast_demand(samples, as_of=START + pd.Timedelta(days=59))
    assert result.as_of == START + pd.Timedelta(days=59)
    assert result.history["y"].max() == 1


def test_bad_input_is_a_clear_error() -> None:
    with pytest.raises(DemandInputError, match="unknown interval method 'normal'"):
        forecast_series(series(np.ones(70)), intervals="normal")
    with pytest.raises(DemandInputError, match="no column site"):
        forecast_demand(pd.DataFrame({"received_ts": [], "sample_type": []}))
    with pytest.raises(DemandInputError, match="no validated sample"):
        forecast_demand(pd.DataFrame({"received_ts": [], "sample_type": [], "site": []}))
    with pytest.raises(DemandInputError, match="on or before as_of 2024-01-01"):
        forecast_demand(samples_from_counts([1] * 5), as_of=pd.Timestamp("2024-01-01"))


def test_the_backtest_scores_the_forecast_against_seasonal_naive() -> None:
    rng = np.random.default_rng(3)
    rate = np.tile([10.0, 10, 10, 10, 10, 3, 1], 16)
    history = pd.concat([series(rng.poisson(rate).astype(float), uid=f"s{i}") for i in range(3)], ignore_index=True)
    scores = {s.model: s for s in backtest(history, n_origins=2, fixed_models=False)}
    assert set(scores) == {"selected", "SeasonalNaive"}
    assert scores["SeasonalNaive"].relative_mae == 1.0
    assert scores["selected"].mase < scores["SeasonalNaive"].mase and scores["selected"].relative_mae < 1.0
    assert scores["selected"].series == 3 and scores["selected"].origins == 2 and 0.5 <= scores["selected"].coverage <= 1.0


def test_whole_number_intervals_nearest_the_level_on_poisson_means() -> None:
    # Exact Poisson probabilities of the bounds, over a fine grid of means from 0.2 to 8 a day.
    means = np.linspace(0.2, 8.0, 400)
    lo, hi = negbin_interval(means, 0.0, LEVEL)
    q_lo, q_hi = negbin_interval(means, 0.0, LEVEL, nearest=False)
    assert (lo == np.round(lo)).all() and (hi == np.round(hi)).all() and (lo <= hi).all()
    held = stats.poisson.cdf(hi, means) - stats.poisson.cdf(lo - 1, means)
    quantile_held = stats.poisson.cdf(q_hi, means) - stats.poisson.cdf(q_lo - 1, means)
    assert (quantile_held >= 0.8 - 1e-9).all() and quantile_held.mean() > 0.86  # the quantile rule over-covers
    assert abs(held.mean() - 0.8) < 0.03, held.mean()
    # Hand cases: mean 1 -> [0, 1] (73.6 %, [0, 2] would be 92.0 %), mean 4 -> [2, 6] (79.7 %).
    hand_lo, hand_hi = negbin_interval(np.array([1.0, 4.0, 0.0]), 0.0, LEVEL)
    assert list(hand_lo) == [0, 2, 0] and list(hand_hi) == [1, 6, 0]


def test_over_dispersion_is_measured_from_the_errors() -> None:
    rng = np.random.default_rng(5)
    mean = np.full(4000, 5.0)
    assert dispersion(rng.poisson(mean).astype(float), mean) < 0.02  # Poisson: none
    size = 2.0  # negative binomial with alpha = 1 / size = 0.5
    wide = rng.negative_binomial(size, size / (size + mean)).astype(float)
    assert dispersion(wide, mean) == pytest.approx(0.5, abs=0.08)
    lo, hi = empirical_interval(np.array([5.0]), rng.poisson(5.0, 4000) - 5.0, LEVEL)
    assert (lo[0], hi[0]) in {(2.0, 8.0), (3.0, 8.0), (3.0, 7.0)}  # Poisson(5)'s nearest-80 % interval is [3, 8]


def test_poisson_series_intervals_hold_about_their_level_over_many_draws() -> None:
    # 30 Poisson series, 0.4 to 6 a day, forecast 14 days ahead: 420 whole-number outcomes.
    rng = np.random.default_rng(11)
    rates = np.linspace(0.4, 6.0, 30)
    history = pd.concat([series(rng.poisson(r, 154).astype(float), uid=f"p{i}") for i, r in enumerate(rates)])
    cut = history["ds"].max() - pd.Timedelta(days=14)
    forecast, models = forecast_series(
        history[history["ds"] <= cut],
        compare=(EMPIRICAL_INTERVALS, QUANTILE_INTERVALS, MODEL_INTERVALS, CONFORMAL_INTERVALS),
    )
    joined = forecast.merge(history, on=["unique_id", "ds"])
    assert len(joined) == 30 * 14
    for column in ("lo", "hi", "lo[empirical]", "hi[empirical]", "lo[conformal]", "hi[conformal]"):
        assert (joined[column] == np.round(joined[column])).all(), column

    def held(lo: str, hi: str) -> float:
        return float(((joined["y"] >= joined[lo]) & (joined["y"] <= joined[hi])).mean())

    assert abs(held("lo", "hi") - 0.8) <= 0.05, held("lo", "hi")
    assert abs(held("lo[empirical]", "hi[empirical]") - 0.8) <= 0.06, held("lo[empirical]", "hi[empirical]")
    # The equal-tailed whole-number interval holds more than it says on these small counts.
    assert held("lo[negbin-quantile]", "hi[negbin-quantile]") > held("lo", "hi") + 0.03
