"""Documented anomalies injected into generated samples, so that a test and the benchmark know the truth.

The generator (:mod:`tracseq_dagster.generator`) already produces rows that are *rare but normal*:
5 % of samples stored several degrees warm with one to three excursions, 1.5 % thawed 5 to 25
times, poor purity, long courier delays. An anomaly is something that process never produces.
Three kinds, each a change to contract columns only (the rows stay contract-valid, so quarantine
does not catch them and the anomaly detector has to):

``sensor_glitch`` (one sample)
    A reading no freezer or instrument of the lab produces: either the storage temperature reads
    60-100 °C *below* the sample type's set point (a probe fault; a freezer only ever drifts warm)
    or the concentration reads 300-3000 times the real value (a dilution factor typed twice).

``impossible_combination`` (one sample)
    Individually plausible values that cannot occur together: a maximum deviation of 8-20 °C with
    no excursion recorded and a storage reading at the set point (the generator records a
    deviation without an excursion only as the storage reading itself), or a storage reading
    6-15 °C warmer than the set point while the largest recorded deviation is under 1 °C (the
    record is never below the reading).

``freezer_failing`` (a freezer over several days)
    One freezer whose compressor fails: every sample stored in it during the last ``days`` days
    reads warmer day after day (8 °C above the set point on the first day, up to 30 °C on the last)
    and records 2-6 excursions with a deviation at least that large. Judged per freezer day.

:func:`inject_anomalies` changes a copy of the samples and returns the truth: the kind per sample
row (NA for untouched rows) and the failing freezer days.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from tracseq_dagster.contract import STORAGE_TARGET_C

SENSOR_GLITCH = "sensor_glitch"
IMPOSSIBLE_COMBINATION = "impossible_combination"
FREEZER_FAILING = "freezer_failing"
#: Kinds judged per sample and per freezer day.
SAMPLE_KINDS: tuple[str, ...] = (SENSOR_GLITCH, IMPOSSIBLE_COMBINATION)
FREEZER_KINDS: tuple[str, ...] = (FREEZER_FAILING,)
KINDS: tuple[str, ...] = (*SAMPLE_KINDS, *FREEZER_KINDS)


@dataclass(frozen=True)
class Injected:
    """Samples with anomalies, the kind per sample row (NA = untouched) and the failing freezer days."""

    samples: pd.DataFrame
    sample_kind: pd.Series
    failing_days: pd.DataFrame  # freezer_id, day (UTC midnight): the days of a failing freezer


def _target(samples: pd.DataFrame, rows: np.ndarray) -> np.ndarray:
    return samples["sample_type"].iloc[rows].astype(str).map(STORAGE_TARGET_C).to_numpy(dtype="float64")


def _set(samples: pd.DataFrame, column: str, rows: np.ndarray, values: np.ndarray) -> None:
    position = samples.columns.get_loc(column)
    if str(samples[column].dtype) == "Int64":
        values = np.asarray(values, dtype="int64")
    samples.iloc[rows, position] = values


def inject_sensor_glitch(samples: pd.DataFrame, rows: np.ndarray, rng: np.random.Generator) -> None:
    """Half the rows: a probe reading 60-100 °C below the set point; the others: concentration x300-3000."""
    cold = rng.random(len(rows)) < 0.5
    probe, dilution = rows[cold], rows[~cold]
    reading = _target(samples, probe) - rng.uniform(60.0, 100.0, len(probe))
    _set(samples, "storage_temp_c", probe, np.round(np.clip(reading, -200.0, 40.0), 1))
    concentration = samples["concentration_ng_ul"].iloc[dilution].to_numpy(dtype="float64")
    _set(samples, "concentration_ng_ul", dilution, np.round(concentration * rng.uniform(300.0, 3000.0, len(dilution)), 2))


def inject_impossible_combination(samples: pd.DataFrame, rows: np.ndarray, rng: np.random.Generator) -> None:
    """Half: a large recorded deviation without an excursion; the others: warm reading, no record of it."""
    silent = rng.random(len(rows)) < 0.5
    big, warm = rows[silent], rows[~silent]
    _set(samples, "temp_excursions", big, np.zeros(len(big)))
    _set(samples, "storage_temp_c", big, np.round(_target(samples, big) + rng.normal(0.0, 0.5, len(big)), 1))
    _set(samples, "max_temp_deviation_c", big, np.round(rng.uniform(8.0, 20.0, len(big)), 1))
    _set(samples, "storage_temp_c", warm, np.round(_target(samples, warm) + rng.uniform(6.0, 15.0, len(warm)), 1))
    _set(samples, "temp_excursions", warm, np.zeros(len(warm)))
    _set(samples, "max_temp_deviation_c", warm, np.round(rng.uniform(0.0, 1.0, len(warm)), 1))


def inject_freezer_failing(samples: pd.DataFrame, freezer_id: str, start: pd.Timestamp, days: int) -> np.ndarray:
    """Every sample received in ``freezer_id`` from ``start`` for ``days`` days reads warmer day by day.

    Returns the positions of the changed rows.
    """
    received = pd.to_datetime(samples["received_ts"], utc=True)
    in_freezer = samples["storage_location"].astype(str).str.split("/").str[0] == freezer_id
    day = ((received - start) / pd.Timedelta(days=1)).to_numpy()
    rows = np.flatnonzero(in_freezer.to_numpy() & (day >= 0) & (day < days))
    if len(rows) == 0:
        return rows
    progress = np.floor(day[rows]) / max(days - 1, 1)
    warmer = 8.0 + 22.0 * progress
    rng = np.random.default_rng(len(rows))
    _set(samples, "storage_temp_c", rows, np.round(np.clip(_target(samples, rows) + warmer, -200.0, 40.0), 1))
    _set(samples, "temp_excursions", rows, rng.integers(2, 7, len(rows)))
    _set(samples, "max_temp_deviation_c", rows, np.round(warmer + rng.uniform(0.0, 3.0, len(rows)), 1))
    return rows


def inject_anomalies(
    samples: pd.DataFrame,
    *,
    since: pd.Timestamp,
    share: float = 0.02,
    failing_freezers: int = 1,
    failing_days: int = 5,
    seed: int = 0,
) -> Injected:
    """Inject every kind into the samples received at or after ``since`` (the window to be judged).

    ``share`` of those samples (split evenly between the sample kinds) get a sample anomaly;
    ``failing_freezers`` freezers fail over ``failing_days`` days from the first midnight at or after ``since``.
    History before ``since`` is left clean, as a lab's reference window mostly is.
    """
    if not 0.0 <= share < 1.0:
        raise ValueError(f"share must be in [0, 1), got {share}")
    rng = np.random.default_rng(seed)
    out = samples.copy().reset_index(drop=True)
    kind = pd.Series(pd.NA, index=out.index, dtype="string")
    received = pd.to_datetime(out["received_ts"], utc=True)
    start = since.ceil("D")  # the failure begins on the first whole day of the judged window
    freezers = out["storage_location"].astype(str).str.split("/").str[0]
    failing = [str(f) for f in rng.choice(sorted(freezers.unique()), size=failing_freezers, replace=False)]
    truth = []
    for freezer in failing:
        rows = inject_freezer_failing(out, freezer, start, failing_days)
        kind.iloc[rows] = FREEZER_FAILING
        truth += [{"freezer_id": freezer, "day": start + pd.Timedelta(days=d)} for d in range(failing_days)]
    eligible = np.flatnonzero((received >= since).to_numpy() & kind.isna().to_numpy())
    chosen = rng.permutation(eligible)[: int(round(share * len(eligible)))]
    for i, (name, inject) in enumerate(
        ((SENSOR_GLITCH, inject_sensor_glitch), (IMPOSSIBLE_COMBINATION, inject_impossible_combination))
    ):
        rows = np.sort(chosen[i :: len(SAMPLE_KINDS)])
        inject(out, rows, rng)
        kind.iloc[rows] = name
    failing_frame = pd.DataFrame(truth, columns=["freezer_id", "day"])
    return Injected(out, kind, failing_frame)
