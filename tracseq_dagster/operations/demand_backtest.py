"""Rolling-origin evaluation of the demand forecast: is it better than the weekly seasonal
naive forecast, and do its intervals hold what they claim?

At each origin (``n_origins`` origins, ``horizon`` days apart, the last one ``horizon`` days
before the end of the data) the whole forecast of :func:`~tracseq_dagster.operations.
demand_forecast.forecast_series` (model choice and fallbacks included) sees only the days up
to the origin and forecasts the next ``horizon`` days, which are then compared with what
happened. Each fixed candidate model and the seasonal naive baseline are scored on the same
origins with statsforecast's own cross-validation.

Metrics (utilsforecast): MASE, the mean absolute error over the horizon scaled by the in-sample
MAE of the weekly seasonal naive forecast on the series' training days (Hyndman & Koehler
2006), averaged over series and origins (series whose scale is zero are left out); below 1
means better than seasonal naive in sample. ``relative_mae`` is the MAE divided by the MAE of
the seasonal naive forecast on the same out-of-sample days. ``coverage`` is the share of
actual days inside the interval, to compare with ``level``; ``mean_width`` its mean width.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from statsforecast import StatsForecast
from statsforecast.models import SeasonalNaive
from utilsforecast.losses import mase

from tracseq_dagster.operations.demand_forecast import (
    FIT_DAYS,
    HORIZON,
    INTERVALS,
    LEVEL,
    SEASON,
    candidates,
    forecast_series,
)

SELECTED = "selected"
BASELINE = "SeasonalNaive"


@dataclass(frozen=True)
class BacktestScore:
    model: str
    mase: float
    relative_mae: float
    coverage: float
    mean_width: float  # hi - lo, mean over the scored days
    level: int
    series: int
    origins: int


def origins_for(history: pd.DataFrame, n_origins: int, horizon: int = HORIZON) -> list[pd.Timestamp]:
    """``n_origins`` cutoffs ``horizon`` days apart, the last one ``horizon`` days before the last day."""
    end = history["ds"].max()
    return [end - pd.Timedelta(days=horizon * k) for k in range(n_origins, 0, -1)]


def selected_name(method: str) -> str:
    """The backtest's name of the selected forecast with ``method``'s intervals (the default's: ``selected``)."""
    return SELECTED if method == INTERVALS else f"{SELECTED}[{method}]"


def _selected_forecasts(
    history: pd.DataFrame, origins: list[pd.Timestamp], horizon: int, level: int, compare: tuple[str, ...]
) -> pd.DataFrame:
    """The asset's forecast at every origin, one point forecast and the bounds of every interval
    method (``compare``), as statsforecast-style columns (``name``, ``name-lo-80``, ``name-hi-80``)."""
    out = []
    for origin in origins:
        forecast, _ = forecast_series(history[history["ds"] <= origin], horizon=horizon, level=level, compare=compare)
        frame = forecast[["unique_id", "ds"]].assign(cutoff=origin)
        for method in (INTERVALS, *compare):
            name = selected_name(method)
            lo, hi = ("lo", "hi") if method == INTERVALS else (f"lo[{method}]", f"hi[{method}]")
            frame[name] = forecast["forecast"]
            frame[f"{name}-lo-{level}"], frame[f"{name}-hi-{level}"] = forecast[lo], forecast[hi]
        out.append(frame)
    return pd.concat(out, ignore_index=True)


def _fixed_forecasts(history: pd.DataFrame, origins: list[pd.Timestamp], horizon: int, level: int) -> pd.DataFrame:
    """Every candidate (the baseline among them) over the same origins, on the same FIT_DAYS window."""
    out = []
    for origin in origins:
        train = history[(history["ds"] <= origin) & (history["ds"] > origin - pd.Timedelta(days=FIT_DAYS))]
        long_enough = train.groupby("unique_id")["ds"].transform("size") >= 2 * SEASON
        forecast = StatsForecast(models=candidates(), freq="D", n_jobs=1).forecast(
            df=train[long_enough][["unique_id", "ds", "y"]], h=horizon, level=[level]
        )
        out.append(forecast.assign(cutoff=origin))
    return pd.concat(out, ignore_index=True)


def backtest(
    history: pd.DataFrame,
    *,
    n_origins: int = 6,
    horizon: int = HORIZON,
    level: int = LEVEL,
    fixed_models: bool = True,
    compare: tuple[str, ...] = (),
) -> list[BacktestScore]:
    """Score the selected forecast (and, with ``fixed_models``, every candidate alone) on
    ``history`` (``unique_id, ds, y`` daily, no gaps) over ``n_origins`` rolling origins.
    ``compare``: more interval methods scored on the selected forecast (``selected[method]``)."""
    compare = tuple(m for m in dict.fromkeys(compare) if m != INTERVALS)
    origins = origins_for(history, n_origins, horizon)
    frames = [_selected_forecasts(history, origins, horizon, level, compare)]
    if fixed_models:
        frames.append(_fixed_forecasts(history, origins, horizon, level))
    else:
        baseline = StatsForecast(models=[SeasonalNaive(season_length=SEASON)], freq="D", n_jobs=1)
        frames.append(
            pd.concat(
                [baseline.forecast(df=history[history["ds"] <= o], h=horizon, level=[level]).assign(cutoff=o) for o in origins]
            )
        )
    predicted = frames[0]
    for frame in frames[1:]:
        predicted = predicted.merge(frame, on=["unique_id", "ds", "cutoff"], how="inner")
    actual = history[["unique_id", "ds", "y"]]
    scored = predicted.merge(actual, on=["unique_id", "ds"], how="inner")
    names = [selected_name(m) for m in (INTERVALS, *compare)] + ([str(m) for m in candidates()] if fixed_models else [BASELINE])
    return [_score(scored, history, name, level) for name in names]


def _score(scored: pd.DataFrame, history: pd.DataFrame, name: str, level: int) -> BacktestScore:
    # One "series" per (series, origin), each with its own training days for the MASE scale.
    key = scored["unique_id"].astype(str) + "@" + scored["cutoff"].dt.strftime("%Y-%m-%d")
    frame = scored.assign(unique_id=key)
    train = []
    for cutoff in scored["cutoff"].unique():
        part = history[(history["ds"] <= cutoff) & (history["ds"] > cutoff - pd.Timedelta(days=FIT_DAYS))]
        train.append(part.assign(unique_id=part["unique_id"].astype(str) + "@" + pd.Timestamp(cutoff).strftime("%Y-%m-%d")))
    train_df = pd.concat(train, ignore_index=True)
    train_df = train_df[train_df["unique_id"].isin(frame["unique_id"].unique())]
    per_series = mase(
        frame[["unique_id", "ds", "y", name]], models=[name], seasonality=SEASON, train_df=train_df[["unique_id", "ds", "y"]]
    )
    values = per_series[name].replace([np.inf, -np.inf], np.nan).dropna()
    error = (frame[name] - frame["y"]).abs().mean()
    baseline_error = (frame[BASELINE] - frame["y"]).abs().mean()
    inside = (frame["y"] >= frame[f"{name}-lo-{level}"]) & (frame["y"] <= frame[f"{name}-hi-{level}"])
    return BacktestScore(
        model=name,
        mase=float(values.mean()),
        relative_mae=float(error / baseline_error) if baseline_error > 0 else float("nan"),
        coverage=float(inside.mean()),
        mean_width=float((frame[f"{name}-hi-{level}"] - frame[f"{name}-lo-{level}"]).mean()),
        level=level,
        series=int(scored["unique_id"].nunique()),
        origins=int(scored["cutoff"].nunique()),
    )
