"""Samples received per day, per sample type and site, forecast for the next two weeks.

Why this shape: the lab plans extraction benches, freezer space and sequencing runs a week or
two ahead, and what arrives differs by sample type (its kit, its freezer) and by site (its
courier days). So every (sample_type, site) pair is a daily count series, and the lab total
is forecast as a series of its own (its interval is not the sum of the pairs' intervals).

Models come from statsforecast, never hand-written: for every series long enough to judge,
the candidates (:func:`candidates`: ETS and Theta with a weekly season, seasonal naive) are
compared by rolling-origin cross-validation on the series' last :data:`FIT_DAYS` days
(:data:`SELECTION_WINDOWS` windows of :data:`HORIZON` days) and the one with the lowest mean
absolute error forecasts; the choice is the backtest's, not taste. A series that is too short
or too sparse for that (fewer than :data:`MIN_HISTORY_DAYS` days since its first sample, or
fewer than :data:`MIN_SAMPLES` samples) gets the fallback, said as such in its ``model``: its
mean rate over the last :data:`FALLBACK_WINDOW_DAYS` days with a Poisson interval. A series
with no sample in those days stopped sending: it forecasts zero, said so. A series constant
over its fit window forecasts that constant with a zero-width interval (no fit needed).

Days without any sample are zeros, not gaps (a lab closed over Christmas received nothing):
the daily grid runs from a series' first sample to ``as_of``. Forecasts and bounds are clipped
at zero (counts).

The interval (``lo``, ``hi``, nominal :data:`LEVEL` %) is for the day's whole-number count, so
its bounds are whole numbers (:mod:`~tracseq_dagster.operations.count_intervals`): a negative
binomial around the chosen model's forecast, its over-dispersion measured on that model's
cross-validation errors (the ones the choice was made on: no extra fit), and per day the
whole-number interval whose probability is nearest the level. The library's Gaussian interval
(continuous bounds) held 86.9 % of the days for a nominal 80 % on small generated counts; the
backtest compares the methods (:data:`INTERVAL_METHODS`) and chose this one (BENCHMARKS.md).
The forecast is the day's mean, so on a sparse series (0.3 samples a day) it can lie above
the interval [0, 0], which holds the 74 % of days without a sample.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

os.environ.setdefault("NIXTLA_ID_AS_COL", "1")  # statsforecast: unique_id as a column, not the index

from statsforecast import StatsForecast  # noqa: E402
from statsforecast.models import AutoETS, AutoTheta, SeasonalNaive  # noqa: E402
from statsforecast.utils import ConformalIntervals  # noqa: E402

from tracseq_dagster.operations.count_intervals import dispersion, empirical_interval, negbin_interval  # noqa: E402

#: Days forecast ahead.
HORIZON = 14
#: Weekly seasonality of lab intake (daily data).
SEASON = 7
#: Nominal coverage (%) of the prediction interval.
LEVEL = 80
#: A series needs this many days of history (first sample to as_of) to be modelled ...
MIN_HISTORY_DAYS = 8 * SEASON
#: ... and this many samples in it; otherwise it gets the fallback.
MIN_SAMPLES = 30
#: Days of recent history the models are fit on (and chosen on): the lab's current rhythm, and bounded time.
FIT_DAYS = 26 * SEASON
#: Cross-validation windows (each HORIZON days) used to choose a series' model.
SELECTION_WINDOWS = 3
#: Days of recent history the fallback's mean rate is taken over.
FALLBACK_WINDOW_DAYS = 28
FALLBACK = "recent mean (Poisson interval; short or sparse series)"
ZERO = "zero (no sample in the last {days} days)"
#: The lab total's key in the output (``sample_type == site == TOTAL``).
TOTAL = "all"
_SEP = "|"

REQUIRED_COLUMNS = ("received_ts", "sample_type", "site")
FORECAST_COLUMNS = ["sample_type", "site", "ds", "forecast", "lo", "hi", "level", "model"]

#: Interval methods (:mod:`tracseq_dagster.operations.count_intervals`): whole-number bounds
#: nearest the level from a negative binomial or from the cross-validation errors, the negative
#: binomial's equal-tailed quantiles, or the library's own Gaussian interval (continuous bounds).
NEGBIN_INTERVALS, EMPIRICAL_INTERVALS, QUANTILE_INTERVALS, MODEL_INTERVALS = "negbin", "empirical", "negbin-quantile", "model"
#: statsforecast's ConformalIntervals (symmetric, per horizon step, from CONFORMAL_WINDOWS extra
#: cross-validation windows of the chosen model), bounds rounded inward to whole numbers.
CONFORMAL_INTERVALS = "conformal"
INTERVAL_METHODS = (NEGBIN_INTERVALS, EMPIRICAL_INTERVALS, QUANTILE_INTERVALS, MODEL_INTERVALS, CONFORMAL_INTERVALS)
#: Windows of statsforecast's conformal intervals (at most what FIT_DAYS holds).
CONFORMAL_WINDOWS = 10
#: The forecast's interval method: chosen by the backtest (BENCHMARKS.md).
INTERVALS = NEGBIN_INTERVALS


class DemandInputError(ValueError):
    """The samples cannot be forecast; the message names the column or the problem."""


def candidates() -> list[Any]:
    """The statsforecast models a series' cross-validation chooses from (fresh instances)."""
    return [AutoETS(season_length=SEASON), AutoTheta(season_length=SEASON), SeasonalNaive(season_length=SEASON)]


def _name(model: object) -> str:
    return str(model)


@dataclass(frozen=True)
class DemandForecast:
    """The forecast (``FORECAST_COLUMNS``, one row per series and day, the lab total included),
    the daily history it was made from (sample_type, site, ds, y) and the model of each series
    (with the cross-validated MAE of every candidate, when there was a choice)."""

    forecast: pd.DataFrame
    history: pd.DataFrame
    models: pd.DataFrame  # sample_type, site, model, days, samples, cv_mae (dict or None)
    as_of: pd.Timestamp


def daily_counts(samples: pd.DataFrame, as_of: pd.Timestamp | None = None) -> pd.DataFrame:
    """Samples received per UTC day per (sample_type, site), zeros filled, plus the lab total.

    Returns ``unique_id, sample_type, site, ds, y``; every series runs from its first sample's
    day to ``as_of`` (default: the last receipt's day). Rows received after ``as_of`` are left
    out (point in time). Raises :class:`DemandInputError` for missing columns or no usable rows.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in samples.columns]
    if missing:
        raise DemandInputError(f"samples have no column {', '.join(missing)} (need {', '.join(REQUIRED_COLUMNS)})")
    received = pd.to_datetime(samples["received_ts"], utc=True, errors="coerce")
    frame = pd.DataFrame(
        {
            "ds": received.dt.tz_localize(None).dt.normalize(),
            "sample_type": samples["sample_type"].astype("string"),
            "site": samples["site"].astype("string"),
        }
    ).dropna()
    if frame.empty:
        raise DemandInputError("no validated sample with a received_ts, sample_type and site: nothing to forecast")
    end = frame["ds"].max() if as_of is None else _day(as_of)
    frame = frame[frame["ds"] <= end]
    if frame.empty:
        raise DemandInputError(f"no sample received on or before as_of {end.date()}: nothing to forecast")
    per_pair = frame.groupby(["sample_type", "site", "ds"]).size().rename("y").reset_index()
    total = frame.groupby("ds").size().rename("y").reset_index().assign(sample_type=TOTAL, site=TOTAL)
    series = []
    for (sample_type, site), group in pd.concat([per_pair, total]).groupby(["sample_type", "site"], sort=True):
        days = pd.date_range(group["ds"].min(), end, freq="D")
        y = group.set_index("ds")["y"].reindex(days, fill_value=0).astype(float)
        series.append(
            pd.DataFrame(
                {"unique_id": f"{sample_type}{_SEP}{site}", "sample_type": sample_type, "site": site, "ds": days, "y": y.values}
            )
        )
    return pd.concat(series, ignore_index=True)


def _day(ts: pd.Timestamp | str) -> pd.Timestamp:
    ts = pd.Timestamp(ts)
    return (ts.tz_convert("UTC").tz_localize(None) if ts.tzinfo else ts).normalize()


def _future_days(as_of: pd.Timestamp, horizon: int) -> pd.DatetimeIndex:
    return pd.date_range(as_of + pd.Timedelta(days=1), periods=horizon, freq="D")


def _fallback(y: np.ndarray, as_of: pd.Timestamp, horizon: int, level: int, methods: tuple[str, ...]) -> tuple[pd.DataFrame, str]:
    """Recent mean rate, Poisson interval: honest for a few samples, never a fitted pattern."""
    recent = y[-FALLBACK_WINDOW_DAYS:]
    rate = float(recent.mean())
    model = ZERO.format(days=len(recent)) if rate == 0.0 else FALLBACK
    frame = pd.DataFrame({"ds": _future_days(as_of, horizon), "forecast": rate})
    for method in methods:
        frame[f"lo[{method}]"], frame[f"hi[{method}]"] = _poisson_bounds(rate, level, method)
    return frame, model


def _poisson_bounds(rate: float, level: int, intervals: str) -> tuple[float, float]:
    """The fallback's Poisson interval by ``intervals``' rule (whole numbers either way)."""
    if intervals == MODEL_INTERVALS:
        # The earlier rule, kept for comparison: quantiles widened to the whole numbers around the mean.
        tail = (1 - level / 100) / 2
        lo, hi = (stats.poisson.ppf(tail, rate), stats.poisson.ppf(1 - tail, rate)) if rate > 0 else (0.0, 0.0)
        lo, hi = min(lo, np.floor(rate)), max(hi, np.ceil(rate))
    else:
        lows, highs = negbin_interval(np.array([rate]), 0.0, level, nearest=intervals != QUANTILE_INTERVALS)
        lo, hi = float(lows[0]), float(highs[0])
    return float(lo), float(hi)


def _choose(
    history: pd.DataFrame, horizon: int, windows: int
) -> tuple[dict[str, str], dict[str, dict[str, float]], pd.DataFrame]:
    """Each series' candidate with the lowest cross-validated MAE (ties: the earlier candidate),
    every candidate's MAE, and the cross-validation itself (``unique_id, ds, cutoff, y`` and one
    column per candidate): its errors are what the count intervals are made from."""
    names = [_name(m) for m in candidates()]
    cv = StatsForecast(models=candidates(), freq="D", n_jobs=1).cross_validation(
        df=history[["unique_id", "ds", "y"]], h=horizon, n_windows=windows, step_size=horizon
    )
    errors = cv[names].sub(cv["y"], axis=0).abs().assign(unique_id=cv["unique_id"]).groupby("unique_id").mean()
    chosen = {uid: names[int(np.nanargmin(row.fillna(np.inf).to_numpy()))] for uid, row in errors.iterrows()}
    maes = {uid: {k: round(float(v), 4) for k, v in row.items()} for uid, row in errors.iterrows()}
    return chosen, maes, cv


def _count_bounds(mean: np.ndarray, cv: pd.DataFrame, name: str, level: int, intervals: str) -> tuple[np.ndarray, np.ndarray]:
    """Whole-number bounds around ``mean`` from the series' cross-validation errors of its chosen model."""
    actual, fitted = cv["y"].to_numpy(dtype=float), cv[name].to_numpy(dtype=float)
    if intervals == EMPIRICAL_INTERVALS:
        return empirical_interval(mean, actual - fitted, level)
    return negbin_interval(mean, dispersion(actual, fitted), level, nearest=intervals != QUANTILE_INTERVALS)


def _conformal(fit: pd.DataFrame, chosen: dict[str, str], horizon: int, level: int) -> pd.DataFrame:
    """statsforecast's conformal intervals of each series' chosen model (one call per model)."""
    out = []
    for model in candidates():
        ids = [uid for uid, name in chosen.items() if name == _name(model)]
        if not ids:
            continue
        part = fit[fit["unique_id"].isin(ids)]
        # Every window's fit keeps at least four weeks before it (MIN_HISTORY_DAYS leaves room for two windows).
        windows = min(CONFORMAL_WINDOWS, (int(part.groupby("unique_id").size().min()) - 4 * SEASON) // horizon)
        intervals = ConformalIntervals(h=horizon, n_windows=max(2, windows))
        out.append(
            StatsForecast(models=[model], freq="D", n_jobs=1).forecast(
                df=part, h=horizon, level=[level], prediction_intervals=intervals
            )
        )
    return pd.concat(out, ignore_index=True)


def forecast_series(
    history: pd.DataFrame,
    *,
    horizon: int = HORIZON,
    level: int = LEVEL,
    intervals: str = INTERVALS,
    compare: tuple[str, ...] = (),
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Forecast every daily series of ``history`` (``unique_id, ds, y``, no gaps) ``horizon``
    days after its last day, choosing each series' model as the module docstring says.

    ``intervals``: how ``lo``/``hi`` are made (:data:`INTERVAL_METHODS`; the default is the
    backtest's choice, whole-number bounds for counts). Returns the forecast (``unique_id, ds,
    forecast, lo, hi, model``) and one row per series (``unique_id, days, samples, model,
    cv_mae``). Any daily count data works (the backtest runs it on public series too).
    ``compare``: more interval methods, as columns ``lo[method]`` and ``hi[method]`` (the
    backtest scores them on the same forecasts).
    """
    methods = tuple(dict.fromkeys((intervals, *compare)))
    unknown = [m for m in methods if m not in INTERVAL_METHODS]
    if unknown:
        raise DemandInputError(f"unknown interval method {unknown[0]!r} (one of {', '.join(INTERVAL_METHODS)})")
    if history.empty:
        raise DemandInputError("no daily history to forecast")
    end = history["ds"].max()
    stats_by_id = history.groupby("unique_id").agg(days=("y", "size"), samples=("y", "sum"))
    # A series silent over the fallback window stopped sending: it forecasts zero (the fallback says so).
    silent = history[history["ds"] > end - pd.Timedelta(days=FALLBACK_WINDOW_DAYS)].groupby("unique_id")["y"].sum() == 0
    long_enough = (stats_by_id["days"] >= MIN_HISTORY_DAYS) & (stats_by_id["samples"] >= MIN_SAMPLES)
    modelled = stats_by_id[long_enough & ~silent.reindex(stats_by_id.index, fill_value=True)].index
    recent = history[history["ds"] > end - pd.Timedelta(days=FIT_DAYS)]
    constant = recent.groupby("unique_id")["y"].nunique() == 1

    parts, model_of, cv_mae = [], {}, {}  # type: ignore[var-annotated]  # filled below, per series
    fit_ids = [uid for uid in modelled if not constant[uid]]
    if fit_ids:
        fit = recent[recent["unique_id"].isin(fit_ids)][["unique_id", "ds", "y"]]
        shortest = int(fit.groupby("unique_id").size().min())
        windows = min(SELECTION_WINDOWS, max(1, (shortest - 2 * SEASON) // horizon))
        chosen, cv_mae, cv = _choose(fit, horizon, windows)
        gaussian = MODEL_INTERVALS in methods
        predicted = StatsForecast(models=candidates(), freq="D", n_jobs=1).forecast(
            df=fit, h=horizon, level=[level] if gaussian else None
        )
        cv_of = dict(tuple(cv.groupby("unique_id")))
        conformal = _conformal(fit, chosen, horizon, level) if CONFORMAL_INTERVALS in methods else None
        for uid, name in chosen.items():
            rows = predicted[predicted["unique_id"] == uid]
            mean = rows[name].to_numpy(dtype=float)
            frame = pd.DataFrame({"unique_id": uid, "ds": rows["ds"].to_numpy(), "forecast": mean})
            for method in methods:
                if method == MODEL_INTERVALS:
                    lo, hi = rows[f"{name}-lo-{level}"].to_numpy(), rows[f"{name}-hi-{level}"].to_numpy()
                elif method == CONFORMAL_INTERVALS and conformal is not None:
                    bounds = conformal[conformal["unique_id"] == uid]
                    lo = np.ceil(bounds[f"{name}-lo-{level}"].to_numpy() - 1e-9)
                    hi = np.maximum(np.floor(bounds[f"{name}-hi-{level}"].to_numpy() + 1e-9), lo)
                else:
                    lo, hi = _count_bounds(mean, cv_of[uid], name, level, method)
                frame[f"lo[{method}]"], frame[f"hi[{method}]"] = lo, hi
            parts.append(frame)
            model_of[uid] = name
    for uid, group in history.groupby("unique_id"):
        if uid in model_of:
            continue
        y = group["y"].to_numpy()
        if uid in modelled and constant[uid]:
            # A constant recent history: every candidate forecasts the constant; say so and skip the fits.
            frame = pd.DataFrame({"unique_id": uid, "ds": _future_days(end, horizon), "forecast": y[-1]})
            for method in methods:
                frame[f"lo[{method}]"], frame[f"hi[{method}]"] = y[-1], y[-1]
            parts.append(frame)
            model_of[uid] = f"constant ({y[-1]:g} a day)"
            continue
        frame, model_of[uid] = _fallback(y, end, horizon, level, methods)
        parts.append(frame.assign(unique_id=uid))

    forecast = pd.concat(parts, ignore_index=True)
    bounds = [f"{side}[{method}]" for method in methods for side in ("lo", "hi")]
    forecast[["forecast", *bounds]] = forecast[["forecast", *bounds]].astype(float).clip(lower=0.0)
    forecast = forecast.rename(columns={f"lo[{intervals}]": "lo", f"hi[{intervals}]": "hi"})
    forecast = forecast[["unique_id", "ds", "forecast", "lo", "hi", *[c for c in bounds if c in forecast.columns]]]
    forecast["model"] = forecast["unique_id"].map(model_of)
    models = stats_by_id.assign(
        model=lambda f: f.index.map(model_of), cv_mae=lambda f: f.index.map(lambda uid: cv_mae.get(uid))
    ).reset_index()
    return forecast, models


def forecast_demand(
    samples: pd.DataFrame,
    *,
    as_of: pd.Timestamp | None = None,
    horizon: int = HORIZON,
    level: int = LEVEL,
    intervals: str = INTERVALS,
) -> DemandForecast:
    """Forecast every (sample_type, site) series and the lab total ``horizon`` days after ``as_of``.

    ``samples`` needs ``received_ts``, ``sample_type`` and ``site`` (validated samples); only
    samples received on or before ``as_of`` (default: the last receipt's day) are used.
    """
    history = daily_counts(samples, as_of)
    forecast, models = forecast_series(history[["unique_id", "ds", "y"]], horizon=horizon, level=level, intervals=intervals)
    keys = history.drop_duplicates("unique_id").set_index("unique_id")[["sample_type", "site"]]
    forecast = forecast.join(keys, on="unique_id").assign(level=level)
    forecast = forecast.sort_values(["sample_type", "site", "ds"], key=_total_last).reset_index(drop=True)
    models = models.join(keys, on="unique_id").drop(columns="unique_id")
    models = models[["sample_type", "site", "model", "days", "samples", "cv_mae"]]
    return DemandForecast(
        forecast=forecast[FORECAST_COLUMNS],
        history=history[["sample_type", "site", "ds", "y"]],
        models=models.sort_values(["sample_type", "site"], key=_total_last, ignore_index=True),
        as_of=history["ds"].max(),
    )


def _total_last(column: pd.Series) -> pd.Series:
    """Sort key: the lab total after every pair."""
    if column.name in ("sample_type", "site"):
        return column.map(lambda v: ("1" if v == TOTAL else "0") + str(v))
    return column


def weekly_totals(forecast: pd.DataFrame) -> pd.DataFrame:
    """The lab total forecast per horizon week (week 1 = the 7 days after as_of): week_start,
    forecast, lo, hi. The week's bounds are the sums of the daily bounds: conservative (wider
    than the week's own interval), which is the side to err on when booking runs."""
    total = forecast[(forecast["sample_type"] == TOTAL) & (forecast["site"] == TOTAL)].sort_values("ds")
    if total.empty:
        raise DemandInputError("the forecast has no lab total rows (sample_type == site == 'all')")
    first = total["ds"].min()
    week = ((total["ds"] - first).dt.days // SEASON).astype(int)
    out = total.groupby(week).agg(week_start=("ds", "min"), forecast=("forecast", "sum"), lo=("lo", "sum"), hi=("hi", "sum"))
    return out.reset_index(drop=True)
