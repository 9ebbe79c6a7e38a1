"""The sequencing runs the demand forecast implies, per instrument and week, against what each
instrument has recently shown it can do.

Everything comes from the lab's own run history (validated runs), because that is where
capacity shows: a sequencer's runs per week and libraries per flowcell are whatever the lab
actually ran, maintenance and staffing included. The turnaround model is not used here: it
predicts one sample's hours to its first run end, not how many runs an instrument completes.

* ``instrument_capacity``: per instrument over the ``weeks`` weeks before ``as_of``: runs per
  week (mean), its capacity (the most runs it started in one of those weeks), libraries per run
  (median) and per flowcell (the most seen in one run), and its share of the samples sequenced.
* ``sequencing_ratio``: run rows (libraries, re-runs included) per received sample, measured on
  samples received long enough ago (``lag_days``) for their runs to be in the history. Not every
  sample is sequenced (no extraction, backlog) and some are sequenced twice.
* ``capacity_plan``: per forecast week and instrument: libraries expected (the lab total's
  forecast x ratio x the instrument's share; the interval's upper bound likewise), runs needed at
  a full flowcell, the capacity, utilisation and a status. Plus one ``all`` row per week.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

#: Weeks of run history that define an instrument's recent capacity.
CAPACITY_WEEKS = 8
#: Samples received this many days before as_of or earlier count for the sequencing ratio ...
RATIO_LAG_DAYS = 28
#: ... over this many days.
RATIO_WINDOW_DAYS = 84
ALL = "all"
RUN_COLUMNS = ("run_id", "sample_id", "instrument_id", "run_start_ts")
PLAN_COLUMNS = [
    "week",
    "instrument_id",
    "samples",
    "samples_hi",
    "runs_needed",
    "runs_needed_hi",
    "runs_per_week_capacity",
    "utilisation",
    "status",
]


class CapacityInputError(ValueError):
    """The run history cannot give a capacity; the message names the column or the problem."""


def _utc(column: pd.Series) -> pd.Series:
    return pd.to_datetime(column, utc=True, errors="coerce")


def _check_runs(runs: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in RUN_COLUMNS if c not in runs.columns]
    if missing:
        raise CapacityInputError(f"runs have no column {', '.join(missing)} (need {', '.join(RUN_COLUMNS)})")
    frame = runs[list(RUN_COLUMNS)].assign(run_start_ts=_utc(runs["run_start_ts"])).dropna()
    if frame.empty:
        raise CapacityInputError("no validated sequencing run with a run_id, sample_id, instrument_id and run_start_ts")
    return frame


def instrument_capacity(runs: pd.DataFrame, as_of: pd.Timestamp, weeks: int = CAPACITY_WEEKS) -> pd.DataFrame:
    """Recent capacity per instrument (see the module docstring); ``as_of`` is a UTC day or time.

    Columns: instrument_id, runs, runs_per_week, runs_per_week_capacity, samples_per_run,
    flowcell_capacity, share. An instrument with runs in the history but none in the window has
    capacity 0 (down, or retired).
    """
    frame = _check_runs(runs)
    end = _as_utc(as_of) + pd.Timedelta(days=1)  # as_of's whole day
    start = end - pd.Timedelta(weeks=weeks)
    recent = frame[(frame["run_start_ts"] >= start) & (frame["run_start_ts"] < end)]
    per_run = recent.groupby(["instrument_id", "run_id"]).agg(start=("run_start_ts", "min"), libraries=("sample_id", "size"))
    per_run = per_run.reset_index()
    per_run["week"] = ((per_run["start"] - start) // pd.Timedelta(weeks=1)).astype(int)
    instruments = sorted(frame["instrument_id"].astype(str).unique())
    weekly = (
        per_run.groupby(["instrument_id", "week"])
        .size()
        .unstack(fill_value=0)
        .reindex(index=instruments, columns=range(weeks), fill_value=0)
    )
    libraries = per_run.groupby("instrument_id")["libraries"]
    flowcell = frame.groupby(["instrument_id", "run_id"]).size().groupby("instrument_id").max()
    out = pd.DataFrame(
        {
            "instrument_id": instruments,
            "runs": weekly.sum(axis=1).to_numpy(),
            "runs_per_week": weekly.mean(axis=1).round(2).to_numpy(),
            "runs_per_week_capacity": weekly.max(axis=1).to_numpy(),
            "samples_per_run": libraries.median().reindex(instruments).fillna(0.0).to_numpy(),
            "flowcell_capacity": flowcell.reindex(instruments).fillna(0).astype(int).to_numpy(),
        }
    )
    sequenced = libraries.sum().reindex(instruments).fillna(0)
    out["share"] = (sequenced / sequenced.sum()).to_numpy() if sequenced.sum() > 0 else 0.0
    return out


def _as_utc(ts: pd.Timestamp | str) -> pd.Timestamp:
    ts = pd.Timestamp(ts)
    return ts.tz_convert("UTC") if ts.tzinfo else ts.tz_localize("UTC")


def sequencing_ratio(
    samples: pd.DataFrame,
    runs: pd.DataFrame,
    as_of: pd.Timestamp,
    lag_days: int = RATIO_LAG_DAYS,
    window_days: int = RATIO_WINDOW_DAYS,
) -> float:
    """Run rows per received sample for samples received ``lag_days`` to ``lag_days + window_days``
    days before ``as_of`` (all samples received before the lag when that window is empty)."""
    frame = _check_runs(runs)
    received = _utc(samples["received_ts"])
    cutoff = _as_utc(as_of) - pd.Timedelta(days=lag_days)
    window = (received <= cutoff) & (received > cutoff - pd.Timedelta(days=window_days))
    if not window.any():
        window = received <= cutoff
    if not window.any():
        raise CapacityInputError(
            f"no sample received {lag_days} days or more before {pd.Timestamp(as_of).date()}: too little history for a sequencing ratio"
        )
    ids = set(samples.loc[window, "sample_id"].astype(str))
    return float(frame["sample_id"].astype(str).isin(ids).sum() / len(ids))


def capacity_plan(weekly: pd.DataFrame, capacity: pd.DataFrame, ratio: float) -> pd.DataFrame:
    """Runs needed per forecast week and instrument (``PLAN_COLUMNS``); ``weekly`` is the lab
    total's forecast per week (week_start, forecast, hi), ``capacity`` from :func:`instrument_capacity`."""
    rows = []
    for week in weekly.itertuples(index=False):
        libraries, libraries_hi = week.forecast * ratio, week.hi * ratio
        needed_total = needed_hi_total = capacity_total = 0
        for inst in capacity.itertuples(index=False):
            samples, samples_hi = libraries * inst.share, libraries_hi * inst.share
            per_run = max(int(inst.flowcell_capacity), 1)
            needed, needed_hi = math.ceil(round(samples, 6) / per_run), math.ceil(round(samples_hi, 6) / per_run)
            rows.append(
                _row(
                    week.week_start, inst.instrument_id, samples, samples_hi, needed, needed_hi, int(inst.runs_per_week_capacity)
                )
            )
            needed_total, needed_hi_total = needed_total + needed, needed_hi_total + needed_hi
            capacity_total += int(inst.runs_per_week_capacity)
        rows.append(_row(week.week_start, ALL, libraries, libraries_hi, needed_total, needed_hi_total, capacity_total))
    return pd.DataFrame(rows, columns=PLAN_COLUMNS)


def _row(
    week: pd.Timestamp, instrument: str, samples: float, samples_hi: float, needed: int, needed_hi: int, cap: int
) -> list[object]:
    utilisation = needed / cap if cap > 0 else (np.inf if needed > 0 else 0.0)
    if needed > cap:
        status = "over capacity"
    elif needed_hi > cap:
        status = "at risk (upper bound over capacity)"
    else:
        status = "ok"
    return [
        pd.Timestamp(week).date(),
        instrument,
        round(samples, 2),
        round(samples_hi, 2),
        needed,
        needed_hi,
        cap,
        round(utilisation, 3),
        status,
    ]
