"""A freezer's history, day by day, rebuilt point-in-time from the samples the lab exports.

The lab exports no freezer log. Each sample's record carries its storage location and the
excursions of its freezer while it was stored there (``temp_excursions``,
``max_temp_deviation_c``). When is that record known? A sample is stored from ``received_ts``
until it is taken out for extraction (``extraction_ts``); its excursion record covers that
stay and is complete only at extraction. So, as of the end of day ``d``:

* intake and storage counts use the samples received by then;
* excursion figures use only the records *closed* by then (``extraction_ts`` at or before the
  end of ``d``); a sample still in the freezer (no extraction yet, or a later one) tells nothing
  about excursions yet, whatever its exported count says;
* the storage temperature of a sample is the reading taken when it was stored (at receipt).

The excursion rate of a freezer is estimated without counting one freezer excursion once per
sample that saw it: ``excursions recorded / sample-days of exposure`` over the records closed in
a window, which estimates the freezer's excursions per day whatever the number of samples
(every sample in the freezer during an excursion records it). This is the estimator the
hidden process of :mod:`tracseq_dagster.operations.freezer_process` is recovered with.

:func:`freezer_days` returns one row per freezer per day; the anomaly detector scores those
rows and the ``freezer_excursion_risk`` model's features are its rolling columns. Rows whose
storage location breaks the pattern are left out and counted in ``frame.attrs["unparsable"]``.
Pure pandas, no Dagster.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd

from tracseq_dagster.contract import STORAGE_TARGET_C
from tracseq_dagster.operations.freezer_state import parse_locations, snap_set_point

_DAY = pd.Timedelta(days=1)

#: Columns of :func:`freezer_days`, in order (day = the UTC day whose end the row is as of).
DAY_COLUMNS: tuple[str, ...] = (
    "freezer_id",
    "day",
    "set_point_c",
    "samples_stored",
    "intake",
    "intake_7d",
    "intake_30d",
    "mean_storage_deviation_c",
    "max_storage_deviation_c",
    "records_closed",
    "excursions_recorded",
    "records_with_excursion",
    "exposure_days",
    "max_temp_deviation_c",
    "records_30d",
    "excursion_rate_30d",
    "excursion_rate_90d",
    "excursion_rate_all",
    "excursion_share_30d",
    "max_deviation_30d_c",
    "rate_trend",
    "days_since_excursion",
    "days_observed",
)
#: Days without any recorded excursion since the first day are reported as this many (a cap, not NaN).
NO_EXCURSION_DAYS = 365.0


def _utc(column: pd.Series) -> pd.Series:
    return pd.to_datetime(column, utc=True)


def _day(ts: datetime | str | pd.Timestamp) -> pd.Timestamp:
    stamp = pd.Timestamp(ts)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.floor("D")


def located_samples(samples: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """The samples with a parsable location (plus ``freezer_id``) and how many were left out."""
    if samples.empty:
        return samples.assign(freezer_id=pd.Series(dtype="object")), 0
    parsed = parse_locations(samples["storage_location"])
    good = parsed["problem"].isna()
    return samples[good].assign(freezer_id=parsed.loc[good, "freezer_id"]), int((~good).sum())


def _window(values: np.ndarray, days: int) -> np.ndarray:
    """Sum over the last ``days`` days (including this one) of a per-day series."""
    total = np.cumsum(values, dtype=float)
    shifted = np.concatenate([np.zeros(days), total[:-days]]) if len(total) > days else np.zeros(len(total))
    return total - shifted[: len(total)]


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1.0), np.nan)


def _rolling_max(values: np.ndarray, days: int) -> np.ndarray:
    return pd.Series(values).rolling(days, min_periods=1).max().to_numpy()


def freezer_days(
    samples: pd.DataFrame,
    until: datetime | str | pd.Timestamp | None = None,
) -> pd.DataFrame:
    """One row per freezer per UTC day, from its first receipt to ``until`` (default: the last receipt's day).

    Every column of a row is as of the end of its day (see the module docstring); ``samples`` needs
    the contract's sample_type, received_ts, extraction_ts, storage_location, storage_temp_c,
    temp_excursions and max_temp_deviation_c. Columns: :data:`DAY_COLUMNS`. Rates are per day
    (excursions per sample-day of exposure), deviations in °C, ``NaN`` where no record closed yet.
    """
    located, unparsable = located_samples(samples)
    if located.empty:
        empty = pd.DataFrame({c: pd.Series(dtype="float64") for c in DAY_COLUMNS})
        empty["freezer_id"] = empty["freezer_id"].astype("object")
        empty["day"] = pd.Series(dtype="datetime64[ns, UTC]")
        empty.attrs["unparsable"] = unparsable
        return empty
    received = _utc(located["received_ts"])
    extracted = _utc(located["extraction_ts"]) if "extraction_ts" in located else pd.Series(pd.NaT, index=located.index)
    last_day = _day(until) if until is not None else received.max().floor("D")
    target = located["sample_type"].astype("string").map(STORAGE_TARGET_C).astype("float64")
    temperature = pd.to_numeric(located["storage_temp_c"], errors="coerce")
    closed = extracted.notna() & (extracted >= received)
    frame = pd.DataFrame(
        {
            "freezer_id": located["freezer_id"].astype("object"),
            "received_day": received.dt.floor("D"),
            "closed_day": extracted.where(closed).dt.floor("D"),
            "target": target,
            "storage_deviation": (temperature - target).abs(),
            "excursions": pd.to_numeric(located["temp_excursions"], errors="coerce").fillna(0.0).astype(float),
            "max_deviation": pd.to_numeric(located["max_temp_deviation_c"], errors="coerce").astype(float),
            "exposure": ((extracted - received) / _DAY).where(closed).astype(float),
        }
    )
    frame["with_excursion"] = (frame["excursions"] > 0).astype(float)
    frame = frame[frame["received_day"] <= last_day]
    parts = [_one_freezer(freezer, rows, last_day) for freezer, rows in frame.groupby("freezer_id", sort=True)]
    out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=list(DAY_COLUMNS))
    out.attrs["unparsable"] = unparsable
    return out


def _one_freezer(freezer: str, rows: pd.DataFrame, last_day: pd.Timestamp) -> pd.DataFrame:
    days = pd.date_range(rows["received_day"].min(), last_day, freq="D")
    n = len(days)
    intake_rows = rows.groupby("received_day")
    intake = intake_rows.size().reindex(days, fill_value=0).to_numpy(float)
    deviation_sum = intake_rows["storage_deviation"].sum().reindex(days, fill_value=0.0).to_numpy(float)
    deviation_count = intake_rows["storage_deviation"].count().reindex(days, fill_value=0).to_numpy(float)
    deviation_max = intake_rows["storage_deviation"].max().reindex(days).to_numpy(float)
    # Set point: the contract target most of its samples so far need (a median, snapped).
    ordered = rows.sort_values("received_day")
    target_median = ordered["target"].expanding().median().groupby(ordered["received_day"].to_numpy()).last()
    medians = target_median.reindex(days).ffill()
    set_point = medians.map({m: snap_set_point(m) for m in medians.dropna().unique()}).to_numpy(float)

    closing = rows[rows["closed_day"].notna() & (rows["closed_day"] <= last_day)].groupby("closed_day")
    closed = closing.size().reindex(days, fill_value=0).to_numpy(float)
    excursions = closing["excursions"].sum().reindex(days, fill_value=0.0).to_numpy(float)
    with_excursion = closing["with_excursion"].sum().reindex(days, fill_value=0.0).to_numpy(float)
    exposure = closing["exposure"].sum().reindex(days, fill_value=0.0).to_numpy(float)
    max_deviation = closing["max_deviation"].max().reindex(days).to_numpy(float)

    exposure_all = np.cumsum(exposure)
    rate_30 = _ratio(_window(excursions, 30), _window(exposure, 30))
    rate_90 = _ratio(_window(excursions, 90), _window(exposure, 90))
    seen = np.where(excursions > 0, np.arange(n), -1)
    last_seen = np.maximum.accumulate(seen)
    since = np.where(last_seen >= 0, np.arange(n) - last_seen, np.minimum(np.arange(n) + 1, NO_EXCURSION_DAYS))
    return pd.DataFrame(
        {
            "freezer_id": freezer,
            "day": days,
            "set_point_c": set_point,
            "samples_stored": np.cumsum(intake),
            "intake": intake,
            "intake_7d": _window(intake, 7),
            "intake_30d": _window(intake, 30),
            "mean_storage_deviation_c": _ratio(deviation_sum, deviation_count),
            "max_storage_deviation_c": deviation_max,
            "records_closed": closed,
            "excursions_recorded": excursions,
            "records_with_excursion": with_excursion,
            "exposure_days": exposure,
            "max_temp_deviation_c": max_deviation,
            "records_30d": _window(closed, 30),
            "excursion_rate_30d": rate_30,
            "excursion_rate_90d": rate_90,
            "excursion_rate_all": _ratio(np.cumsum(excursions), exposure_all),
            "excursion_share_30d": _ratio(_window(with_excursion, 30), _window(closed, 30)),
            "max_deviation_30d_c": _rolling_max(max_deviation, 30),
            "rate_trend": rate_30 - rate_90,
            "days_since_excursion": since.astype(float),
            "days_observed": np.arange(1, n + 1, dtype=float),
        }
    )[list(DAY_COLUMNS)]


def freezer_days_as_of(history: pd.DataFrame, freezer_ids: pd.Series, as_of: pd.Series | pd.DatetimeIndex) -> pd.DataFrame:
    """The row of ``history`` each (freezer, instant) sees: the last complete day before the instant.

    A request at 14:00 on day ``d`` sees the row of day ``d - 1`` (day ``d`` is not over). A freezer
    absent from the history, or an instant before its first full day, gets a row of NaN.
    """
    instants = pd.DatetimeIndex(pd.to_datetime(pd.Series(as_of).to_numpy(), utc=True))
    wanted = pd.DataFrame(
        {
            "freezer_id": pd.Series(freezer_ids).astype("object").to_numpy(),
            "day": instants.floor("D") - _DAY,
            "_order": np.arange(len(instants)),
        }
    )
    if history.empty:
        return wanted.drop(columns="_order").reindex(columns=list(DAY_COLUMNS))
    wanted = wanted.sort_values("day")
    known = history.sort_values("day")
    matched = pd.merge_asof(wanted, known, on="day", by="freezer_id", direction="backward", suffixes=("_asked", ""))
    return matched.sort_values("_order").drop(columns="_order").reset_index(drop=True)[list(DAY_COLUMNS)]
