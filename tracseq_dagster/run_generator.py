"""Synthetic sequencing run exports for generated samples, with a documented hidden process.

The sibling of :mod:`tracseq_dagster.generator`: it turns the sample frame of
:func:`~tracseq_dagster.generator.generate_samples` into the run export of DESIGN.md (one row
per sample per run, :mod:`tracseq_dagster.run_contract`) by simulating the sequencing lab,
so that two models can learn something real from it: ``sequencing_success`` (``run_status``)
and ``turnaround_hours`` (``run_end_ts - received_ts``, predicted at receipt). Every cause
below is computable from the sample export and earlier runs, and the tests check that each
one is really there.

The simulated lab
-----------------
* Every sample with an ``extraction_ts`` goes to sequencing; no other does. Its library is
  prepared ``PREP_MEDIAN_H[sample_type]`` hours (log-normal, median) after extraction, longer
  for sites whose manifests arrive late (``SITE_PREP_FACTOR``), ``urgent_prep_factor`` as
  long for urgent samples, and only in working hours (Mon-Fri 08:00-18:00 UTC, like the
  sample generator's clock): a library due at night or on a weekend is made the next working
  morning. A prepared library is ready for a run ``library_qc_h`` hours later.
* Six sequencers ``SEQ-01`` .. ``SEQ-06`` (``INSTRUMENTS``) start runs on fixed weekdays at
  their own hour, each run on one flowcell carrying up to ``K`` libraries and lasting
  ``RUN_HOURS`` (one instrument cannot start while its previous run lasts). Capacity is sized
  from the export's own demand (extracted samples per week plus re-runs) at a nominal
  utilisation of ``utilisation``, so the same model holds for a hundred or a million samples:
  an instrument runs ``r`` days a week (at least 1, at most ``MAX_RUNS_PER_WEEK``), as few as
  keep flowcells at ``min_flowcell`` libraries or more, with ``K`` what its weekly share
  needs. Capacity falls when the lab is short: ``summer_capacity`` of it in July and August,
  none from Dec 24 to Jan 1, and none while an instrument is in maintenance (two windows of
  5 to 12 days a year each, at random).
* Each run takes the libraries waiting longest, urgent samples and re-runs first, then
  routine ones (first ready, first run). Instrument and ``library_kit`` are therefore
  unrelated to the sample's risk, except that the kit follows the material: RNA types get
  ``RNA-STRANDED``, cfDNA, FFPE and any DNA under ``low_input_ng`` get ``DNA-LOWINPUT``,
  the rest ``DNA-PCRFREE`` or ``DNA-RAPID`` at random (half each).
* Run QC is done ``qc_lag_median_h`` hours (log-normal) after the run ends. A failed run is
  re-run (a new library after QC, urgent class) for ``rerun_share`` of the samples; a second
  failure is final. A sample is therefore sequenced once or twice.
* The export is taken at the last receipt of the sample export (as for samples): runs that
  would start later are absent, runs still going have no ``run_end_ts`` and no metrics, and
  runs whose QC would be done later have metrics but an empty ``run_status``.

The hidden run-failure process
------------------------------
For a run row, with ``S`` = :func:`~tracseq_dagster.generator.hidden_quality_score` of the
sample, ``Q`` = :func:`queue_days` at the library's ``library_prep_ts``, ``ng`` =
``concentration_ng_ul * volume_ul`` and ``y`` = years from the first receipt of the sample
export to ``run_start_ts``::

    z = intercept (-5.0)
      + 0.55 * S                                   (the sample's hidden quality risk)
      + 0.05 * Q                                   (days of queue when the library was made)
      + 0.45 * max(0, log2(low_input_ng / ng))     (low input yield; low_input_ng = 200)
      + INSTRUMENT_EFFECT[instrument_id]           (SEQ-03 +0.8, SEQ-05 +0.4, SEQ-04 -0.6)
      + 1.5 * y  if instrument_id == SEQ-06        (an ageing laser: drifts worse over time)
      + KIT_EFFECT[library_kit]                    (DNA-RAPID +0.7, DNA-LOWINPUT +0.3, RNA-STRANDED +0.2)

    u = z + Logistic(0, 1) noise;  run_status = "fail" if u > 0 else "pass"

so ``P(fail) = sigmoid(z)``, about 11 % over the QC'd rows (:func:`hidden_fail_logit`
computes ``z`` from the exports). The metrics come from the same ``u`` with measurement noise
(``σ`` is the logistic function): ``q30_pct = 100 - 30 σ(u + 1.5) + N(0, 1.2)``,
``cluster_pf_pct = 95 - 35 σ(u + 1) + N(0, 2)``, ``duplication_pct = 4 + 30 σ(u) + 3 *
max(0, log2(low_input_ng / ng)) + N(0, 1.5)`` (all clipped to 0..100) and ``yield_gb`` the
yield the instrument loads a library for (``TARGET_YIELD_GB``) times ``(1.1 - 0.8 σ(u))``
and log-normal noise.

Turnaround
----------
``run_end_ts - received_ts`` is not drawn but comes out of the simulation: the sample
generator's extraction delay (urgent samples four times faster), the library prep delay
(sample type, site, urgency, weekends), the wait for a run slot and the run itself. The wait
is a real queue: a sample arriving when many samples wait (:func:`queue_depth` at its
``received_ts``) waits behind them, urgent samples jump the queue, instruments in
maintenance and the summer staffing dip let the queue grow, and the weekday of receipt
decides how soon the next prep day and run day come.

``queue_depth(t)`` is the number of samples extracted at or before ``t`` whose first run has
not started by ``t``: the lab's sequencing queue, computable at ``t`` from the sample export
and the runs started before. (Samples still awaiting extraction are not in it, so samples
that are never extracted do not pile up in it.) ``queue_days`` divides it by the export's
extraction rate (extracted samples per day between its first and last receipt), which makes
it comparable between exports of any size. Both are per export: one generated export is one
lab, so exports generated with other seeds are other, independent labs.

Relation to the sample export
-----------------------------
The samples are used as :func:`generate_samples` returns them and never changed; in
particular the sample export's ``sequencing_ts`` (drawn by the sample generator, median four
days after extraction) is not the ``run_start_ts`` of any run: runs are simulated from
extraction onward, independently of ``sequencing_ts``, because making them equal would leave
no room for a queue. A sample that has no ``sequencing_ts`` may have runs and the reverse.

Identifiers
-----------
``run_id`` is ``RUN-{year}-{n:05d}`` with ``year`` the (UTC) year of the run's start and
``n = id_offset // 10 + 1, 2, ..`` in order of start (modulo 100,000): calls whose sample
ranges are ``id_offset`` apart get disjoint run serials as long as each makes fewer runs than
a tenth of that gap (the demo's 100,000 apart make a few thousand). ``flowcell_id`` is
derived from the run serial (unique among a call's runs).

Export files are written by :func:`~tracseq_dagster.generator.write_export` with
``RUN_EXPORT_STYLE``: the same clean and messy dialects as samples, with run header
spellings (``RUN_LIMS_HEADERS``) and a ``run_notes`` free-text column.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tracseq_dagster.contract import PANDAS_DTYPE_BY_KIND, RNA_TYPES, SAMPLE_TYPES, Kind
from tracseq_dagster.generator import (
    ExportFormat,
    ExportStyle,
    _as_utc,
    _datetimes,
    _fixed_width_text,
    _floats,
    check_export_arguments,
    generate_samples,
    hidden_quality_score,
    split_bounds,
    write_export,
    write_export_files,
)
from tracseq_dagster.run_contract import RUN_COLUMNS

__all__ = [
    "INSTRUMENTS",
    "INSTRUMENT_EFFECT",
    "KIT_EFFECT",
    "LIBRARY_KITS",
    "RUN_EXPORT_STYLE",
    "RUN_HIDDEN_PROCESS",
    "RUN_LIMS_HEADERS",
    "RunHiddenProcess",
    "TARGET_YIELD_GB",
    "generate_run_exports",
    "generate_runs",
    "hidden_fail_logit",
    "queue_days",
    "queue_depth",
    "write_run_export",
]

_DAY_S = 86_400
_HOUR_S = 3_600
RUN_SERIAL_SPACE = 100_000  # RUN-YYYY-NNNNN: five serial digits
#: One run as the scheduler places it: (member samples, their attempt numbers, instrument index,
#: start and end in seconds, the members' latent outcome scores, when each member's QC is
#: done, their metric noise).
_ScheduledRun = tuple[np.ndarray, np.ndarray, int, float, float, np.ndarray, np.ndarray, np.ndarray]

INSTRUMENTS: tuple[str, ...] = tuple(f"SEQ-{i:02d}" for i in range(1, 7))
# Two high-output sequencers, two mid-range, two bench-top: share of the lab's capacity,
# run length, the latest weekly cadence the run length allows, start hour, flowcell name suffix.
INSTRUMENT_SHARE: tuple[float, ...] = (0.22, 0.22, 0.17, 0.17, 0.11, 0.11)
RUN_HOURS: tuple[float, ...] = (44.0, 44.0, 29.0, 29.0, 20.0, 20.0)
MAX_RUNS_PER_WEEK: tuple[int, ...] = (3, 3, 3, 3, 5, 5)
START_HOUR: tuple[float, ...] = (9.0, 9.5, 10.0, 10.5, 11.0, 11.5)
# Gb a library is loaded for: deep sequencing on the large instruments, shallow on the bench-top ones.
TARGET_YIELD_GB: tuple[float, ...] = (120.0, 120.0, 40.0, 40.0, 10.0, 10.0)
FLOWCELL_SUFFIX: tuple[str, ...] = ("DSXY", "DSXY", "BGXC", "BGXC", "AFXX", "AFXX")
# Weekdays (Monday 0) an instrument runs on, by runs per week; 1 and 2 are rotated per instrument.
_RUN_WEEKDAYS: dict[int, tuple[int, ...]] = {1: (0,), 2: (0, 3), 3: (0, 2, 4), 4: (0, 1, 2, 3), 5: (0, 1, 2, 3, 4)}

LIBRARY_KITS: tuple[str, ...] = ("DNA-PCRFREE", "DNA-RAPID", "DNA-LOWINPUT", "RNA-STRANDED")
LOW_INPUT_TYPES: tuple[str, ...] = ("cfDNA", "FFPE")
# Median hours from extraction to library prep (before the shift to working hours).
PREP_MEDIAN_H: dict[str, float] = {
    "DNA": 18.0,
    "RNA": 24.0,
    "cfDNA": 30.0,
    "tissue": 40.0,
    "blood": 20.0,
    "saliva": 24.0,
    "FFPE": 60.0,
}
# Sites whose manifests arrive late: their libraries wait for the paperwork.
SITE_PREP_FACTOR: dict[str, float] = {"SITE-MIA": 2.5, "SITE-HOU": 1.6}
# Contributions to the failure logit z: positive is worse. Everything else contributes 0.
INSTRUMENT_EFFECT: dict[str, float] = {"SEQ-03": 0.8, "SEQ-05": 0.4, "SEQ-04": -0.6}
KIT_EFFECT: dict[str, float] = {"DNA-RAPID": 0.7, "DNA-LOWINPUT": 0.3, "RNA-STRANDED": 0.2}


@dataclass(frozen=True)
class RunHiddenProcess:
    """Weights of the hidden run process and the simulated lab (see the module docstring)."""

    intercept: float = -5.0
    per_risk: float = 0.55
    per_queue_day: float = 0.05
    low_input_ng: float = 200.0
    per_input_halving: float = 0.45
    drift_instrument: str = "SEQ-06"
    drift_per_year: float = 1.5
    # The lab
    utilisation: float = 0.7
    min_flowcell: int = 8
    summer_capacity: float = 0.5
    maintenance_windows: int = 2
    urgent_prep_factor: float = 0.3
    prep_sigma: float = 0.5
    library_qc_h: float = 2.0
    qc_lag_median_h: float = 30.0
    rerun_share: float = 0.85
    expected_rerun_share: float = 0.1  # for sizing capacity only


RUN_HIDDEN_PROCESS = RunHiddenProcess()

# Headers as a LIMS or a run report spells them; run_contract's aliases map each back.
RUN_LIMS_HEADERS: dict[str, str] = {
    "run_id": "Run ID",
    "sample_id": "Sample ID",
    "instrument_id": "Instrument",
    "flowcell_id": "Flowcell",
    "library_kit": "Library Kit",
    "library_prep_ts": "Library Prep",
    "run_start_ts": "Run Start",
    "run_end_ts": "Run End",
    "yield_gb": "Yield (Gb)",
    "q30_pct": "% Q30",
    "cluster_pf_pct": "Cluster PF",
    "duplication_pct": "Duplication",
    "run_status": "Status",
}
RUN_NOTES: tuple[str, ...] = (
    "re-clustered lane 2",
    "Blase in Fließzelle",
    "PhiX spike 5%",
    "reprise après coupure",
    "index hopping check",
)
RUN_EXPORT_STYLE = ExportStyle(RUN_LIMS_HEADERS, "run_notes", RUN_NOTES)


# ---------------------------------------------------------------------------------------------
# The queue and the failure logit: one definition, used by the simulation and by the tests
# ---------------------------------------------------------------------------------------------


def _seconds(column: pd.Series) -> np.ndarray:
    """Timestamps as float seconds since the epoch (UTC), NaN for missing."""
    values = _as_utc(column).dt.tz_localize(None).to_numpy("datetime64[s]")
    return np.where(np.isnat(values), np.nan, values.astype(np.int64).astype(float))


def _extraction_rate(received: np.ndarray, extracted: np.ndarray) -> float:
    """Extracted samples per day between the export's first and last receipt."""
    span_days = max((np.nanmax(received) - np.nanmin(received)) / _DAY_S, 1.0) if len(received) else 1.0
    return max(np.count_nonzero(~np.isnan(extracted)) / span_days, 1e-9)


def _depth(extracted_sorted: np.ndarray, first_starts_sorted: np.ndarray, at: np.ndarray) -> np.ndarray:
    return np.searchsorted(extracted_sorted, at, side="right") - np.searchsorted(first_starts_sorted, at, side="right")


def queue_depth(samples: pd.DataFrame, runs: pd.DataFrame, at: pd.Series | np.ndarray) -> np.ndarray:
    """Samples extracted at or before each instant of ``at`` whose first run had not started by then.

    Point-in-time: only receipts, extractions and run starts up to the instant count.
    """
    extracted = _seconds(samples["extraction_ts"])
    first_starts = _seconds(runs.groupby("sample_id", observed=True)["run_start_ts"].min())
    instants = _seconds(pd.Series(at))
    return _depth(np.sort(extracted[~np.isnan(extracted)]), np.sort(first_starts), instants)


def queue_days(samples: pd.DataFrame, runs: pd.DataFrame, at: pd.Series | np.ndarray) -> np.ndarray:
    """:func:`queue_depth` in days of the export's extraction rate (see the module docstring)."""
    rate = _extraction_rate(_seconds(samples["received_ts"]), _seconds(samples["extraction_ts"]))
    return queue_depth(samples, runs, at) / rate


def _input_shortfall(input_ng: np.ndarray) -> np.ndarray:
    """Halvings of input below ``low_input_ng`` (0 at or above it)."""
    return np.maximum(0.0, np.log2(RUN_HIDDEN_PROCESS.low_input_ng / np.maximum(input_ng, 1e-3)))


def _fail_logit(
    risk: np.ndarray, queue: np.ndarray, input_ng: np.ndarray, instrument: np.ndarray, kit: np.ndarray, years: np.ndarray
) -> np.ndarray:
    """``z`` of the module docstring from its ingredients (instrument and kit as names)."""
    p = RUN_HIDDEN_PROCESS
    instrument = np.asarray(instrument, dtype=object)
    effect = np.array([INSTRUMENT_EFFECT.get(name, 0.0) for name in instrument], dtype=float)
    drift = np.where(instrument == p.drift_instrument, p.drift_per_year * np.maximum(years, 0.0), 0.0)
    kit_effect = np.array([KIT_EFFECT.get(name, 0.0) for name in np.asarray(kit, dtype=object)], dtype=float)
    return (
        p.intercept
        + p.per_risk * risk
        + p.per_queue_day * queue
        + p.per_input_halving * _input_shortfall(input_ng)
        + effect
        + drift
        + kit_effect
    )


def hidden_fail_logit(samples: pd.DataFrame, runs: pd.DataFrame) -> np.ndarray:
    """The noiseless failure logit ``z`` of every row of ``runs``, computed from the two exports.

    ``P(run_status == "fail") = 1 / (1 + exp(-z))``. ``samples`` is the sample export the runs
    were generated from (typed as :func:`generate_samples` returns it).
    """
    by_id = samples.set_index("sample_id")
    sample = by_id.loc[runs["sample_id"]]
    received = _seconds(samples["received_ts"])
    years = (_seconds(runs["run_start_ts"]) - np.nanmin(received)) / (365.0 * _DAY_S)
    return _fail_logit(
        hidden_quality_score(sample.reset_index()),
        queue_days(samples, runs, runs["library_prep_ts"]),
        _floats(sample, "concentration_ng_ul") * _floats(sample, "volume_ul"),
        runs["instrument_id"].to_numpy(dtype=object),
        runs["library_kit"].to_numpy(dtype=object),
        years,
    )


# ---------------------------------------------------------------------------------------------
# The simulation
# ---------------------------------------------------------------------------------------------


def _next_working_time(seconds: np.ndarray, late_h: np.ndarray) -> np.ndarray:
    """The instant itself if it falls in working hours (Mon-Fri 08:00-18:00 UTC), else the next
    working morning plus ``late_h`` hours (the morning's work is not all done at 08:00)."""
    seconds = np.asarray(seconds, dtype=float)
    day = np.floor(seconds / _DAY_S)
    hour = (seconds - day * _DAY_S) / _HOUR_S
    day = day + (hour >= 18.0)  # after hours: tomorrow morning
    weekday = (day + 3) % 7  # 1970-01-01 was a Thursday
    day = day + np.where(weekday == 5, 2, np.where(weekday == 6, 1, 0))
    moved = (hour < 8.0) | (hour >= 18.0) | (weekday >= 5)
    morning = day * _DAY_S + (8 + late_h) * _HOUR_S
    return np.where(moved, morning, seconds)


def _prep_delay_h(sample_type: np.ndarray, site: np.ndarray, urgent: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    p = RUN_HIDDEN_PROCESS
    median = np.array([PREP_MEDIAN_H[t] for t in sample_type], dtype=float)
    site_factor = np.array([SITE_PREP_FACTOR.get(s, 1.0) for s in site], dtype=float)
    return median * site_factor * np.where(urgent, p.urgent_prep_factor, 1.0) * rng.lognormal(0.0, p.prep_sigma, len(median))


def _library_kits(sample_type: np.ndarray, input_ng: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    rna = np.isin(sample_type, RNA_TYPES)
    low = np.isin(sample_type, LOW_INPUT_TYPES) | (input_ng < RUN_HIDDEN_PROCESS.low_input_ng)
    standard = np.where(rng.random(len(sample_type)) < 0.5, "DNA-PCRFREE", "DNA-RAPID")
    return np.where(rna, "RNA-STRANDED", np.where(low, "DNA-LOWINPUT", standard)).astype(object)


@dataclass(frozen=True)
class _Slot:
    time: float
    instrument: int
    capacity: int


def _run_slots(first: float, last: float, weekly_demand: float, rng: np.random.Generator) -> list[_Slot]:
    """Every (time, instrument, flowcell size) at which a run may start, in time order."""
    p = RUN_HIDDEN_PROCESS
    first_day, last_day = int(first // _DAY_S), int(last // _DAY_S)
    days = np.arange(first_day, last_day + 1)
    dates = days.astype("datetime64[D]")
    month = dates.astype("datetime64[M]").astype(np.int64) % 12 + 1
    day_of_month = (dates - dates.astype("datetime64[M]")).astype(np.int64) + 1
    closed = ((month == 12) & (day_of_month >= 24)) | ((month == 1) & (day_of_month == 1))
    summer = (month == 7) | (month == 8)
    weekday = (days + 3) % 7
    slots = []
    for code in range(len(INSTRUMENTS)):
        weekly = weekly_demand * INSTRUMENT_SHARE[code] / p.utilisation
        per_week = int(np.clip(weekly // p.min_flowcell, 1, MAX_RUNS_PER_WEEK[code]))
        capacity = max(1, int(np.ceil(weekly / per_week)))
        pattern = np.array(_RUN_WEEKDAYS[per_week])
        if per_week <= 2:
            pattern = (pattern + code) % 5
        down = np.zeros(len(days), dtype=bool)
        for _ in range(p.maintenance_windows):
            begin = rng.integers(0, max(len(days), 1))
            down[begin : begin + rng.integers(5, 13)] = True
        runs_today = np.isin(weekday, pattern) & ~closed & ~down
        jitter = rng.normal(0.0, 0.3, len(days))
        for index in np.flatnonzero(runs_today):
            size = max(1, int(round(capacity * (p.summer_capacity if summer[index] else 1.0))))
            time = days[index] * _DAY_S + (START_HOUR[code] + jitter[index]) * _HOUR_S
            slots.append(_Slot(float(round(time)), code, size))
    slots.sort(key=lambda slot: (slot.time, slot.instrument))
    return slots


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def generate_runs(samples: pd.DataFrame, *, seed: int = 0, id_offset: int = 0) -> pd.DataFrame:
    """Simulate the sequencing of ``samples`` (as :func:`generate_samples` returns them).

    Returns the run contract's columns in contract order (strings as ``string``, timestamps
    as ``datetime64[ns, UTC]``, floats as ``float64``), one row per sample per run, sorted by
    ``run_start_ts``, ``run_id`` and ``sample_id``. ``id_offset`` is the sample generator's:
    run serials start at ``id_offset // 10 + 1``. Same arguments, same frame.
    """
    p = RUN_HIDDEN_PROCESS
    rng = np.random.default_rng([seed, 0x5E0])
    received_all = _seconds(samples["received_ts"])
    extracted_all = _seconds(samples["extraction_ts"])
    if len(samples) == 0:
        return _typed_runs({}, 0)
    export_time = float(np.nanmax(received_all))
    origin = float(np.nanmin(received_all))
    rate = _extraction_rate(received_all, extracted_all)

    chosen = np.flatnonzero(~np.isnan(extracted_all))
    n = len(chosen)
    sample_type = samples["sample_type"].to_numpy(dtype=object)[chosen]
    site = samples["site"].to_numpy(dtype=object)[chosen]
    urgent = samples["priority"].to_numpy(dtype=object)[chosen] == "urgent"
    input_ng = (_floats(samples, "concentration_ng_ul") * _floats(samples, "volume_ul"))[chosen]
    risk = hidden_quality_score(samples)[chosen]
    kit = _library_kits(sample_type, input_ng, rng)
    extracted = extracted_all[chosen]

    # Every random draw up front (attempt 0 = first run, 1 = re-run), so the loop below is
    # bookkeeping only and the frame does not depend on how the loop is batched.
    prep = np.empty((2, n))
    late_h = rng.uniform(0.0, 2.0, (2, n))
    prep[0] = np.round(_next_working_time(extracted + _prep_delay_h(sample_type, site, urgent, rng) * _HOUR_S, late_h[0]))
    rerun_prep_h = 0.5 * _prep_delay_h(sample_type, site, urgent, rng)
    noise = rng.logistic(0.0, 1.0, (2, n))
    metric_noise = rng.normal(0.0, 1.0, (2, n, 4))
    qc_lag_h = p.qc_lag_median_h * rng.lognormal(0.0, 0.5, (2, n))
    gets_rerun = rng.random(n) < p.rerun_share
    weeks = max((export_time - float(prep[0].min(initial=export_time))) / (7 * _DAY_S), 1.0)
    slots = _run_slots(float(prep[0].min(initial=export_time)), export_time, n * (1 + p.expected_rerun_share) / weeks, rng)
    run_length_h = np.array(RUN_HOURS)[[slot.instrument for slot in slots]] * rng.normal(1.0, 0.03, len(slots))

    ready_order = np.argsort(prep[0] + p.library_qc_h * _HOUR_S, kind="stable")
    ready_first = prep[0][ready_order] + p.library_qc_h * _HOUR_S
    extracted_sorted = np.sort(extracted)
    first_starts = np.empty(n)
    started = 0
    waiting: list[tuple[int, float, int, int]] = []  # (class, ready, sample, attempt)
    reruns: list[tuple[float, int]] = []  # (ready, sample), not yet ready
    cursor = 0
    busy_until = np.full(len(INSTRUMENTS), -np.inf)
    rows: list[_ScheduledRun] = []
    for slot_index, slot in enumerate(slots):
        t = slot.time
        if t > export_time:
            break
        if t < busy_until[slot.instrument]:
            continue
        stop = int(np.searchsorted(ready_first, t, side="right"))
        for sample in ready_order[cursor:stop].tolist():
            heapq.heappush(waiting, (0 if urgent[sample] else 1, float(prep[0, sample]), sample, 0))
        cursor = stop
        while reruns and reruns[0][0] <= t:
            ready, sample = heapq.heappop(reruns)
            heapq.heappush(waiting, (0, ready, sample, 1))
        if not waiting:
            continue
        batch = [heapq.heappop(waiting) for _ in range(min(slot.capacity, len(waiting)))]
        members = np.array([entry[2] for entry in batch])
        attempt = np.array([entry[3] for entry in batch])
        end = t + run_length_h[slot_index] * _HOUR_S
        busy_until[slot.instrument] = end

        library = prep[attempt, members]
        queue = _depth(extracted_sorted, first_starts[:started], library) / rate
        firsts = attempt == 0
        first_starts[started : started + firsts.sum()] = t
        started += int(firsts.sum())

        z = _fail_logit(
            risk[members],
            queue,
            input_ng[members],
            np.full(len(members), INSTRUMENTS[slot.instrument], dtype=object),
            kit[members],
            np.full(len(members), (t - origin) / (365.0 * _DAY_S)),
        )
        u = z + noise[attempt, members]
        qc_done = end + qc_lag_h[attempt, members] * _HOUR_S
        rerun = (u > 0) & firsts & gets_rerun[members] & (qc_done <= export_time)
        for sample, done in zip(members[rerun].tolist(), qc_done[rerun].tolist()):
            again = float(np.round(_next_working_time(np.array([done + rerun_prep_h[sample] * _HOUR_S]), late_h[1, [sample]])[0]))
            prep[1, sample] = again
            heapq.heappush(reruns, (again + p.library_qc_h * _HOUR_S, sample))
        rows.append((members, attempt, slot.instrument, t, end, u, qc_done, metric_noise[attempt, members]))

    return _assemble(samples, chosen, rows, prep, input_ng, kit, export_time, id_offset)


def _assemble(
    samples: pd.DataFrame,
    chosen: np.ndarray,
    rows: list[_ScheduledRun],
    prep: np.ndarray,
    input_ng: np.ndarray,
    kit: np.ndarray,
    export_time: float,
    id_offset: int,
) -> pd.DataFrame:
    """The run frame from the simulated runs: identifiers, timestamps, metrics and labels."""
    if not rows:
        return _typed_runs({}, 0)
    sizes = np.array([len(r[0]) for r in rows])
    member = np.concatenate([r[0] for r in rows])
    attempt = np.concatenate([r[1] for r in rows])
    instrument = np.repeat([r[2] for r in rows], sizes)
    start = np.repeat([r[3] for r in rows], sizes)
    end = np.round(np.repeat([r[4] for r in rows], sizes))
    u = np.concatenate([r[5] for r in rows])
    qc_done = np.concatenate([r[6] for r in rows])
    noise = np.concatenate([r[7] for r in rows])
    serial = np.repeat(id_offset // 10 + np.arange(1, len(rows) + 1), sizes) % RUN_SERIAL_SPACE

    running = end > export_time
    unreviewed = running | (qc_done > export_time)
    shortfall = _input_shortfall(input_ng[member])
    target = np.array(TARGET_YIELD_GB)[instrument]
    metrics = {
        "yield_gb": np.round(target * (1.1 - 0.8 * _sigmoid(u)) * np.exp(0.1 * noise[:, 0]), 2),
        "q30_pct": np.round(np.clip(100 - 30 * _sigmoid(u + 1.5) + 1.2 * noise[:, 1], 0, 100), 1),
        "cluster_pf_pct": np.round(np.clip(95 - 35 * _sigmoid(u + 1.0) + 2.0 * noise[:, 2], 0, 100), 1),
        "duplication_pct": np.round(np.clip(4 + 30 * _sigmoid(u) + 3 * shortfall + 1.5 * noise[:, 3], 0, 100), 1),
    }
    for name in metrics:
        metrics[name] = np.where(running, np.nan, metrics[name])
    years = start.astype("datetime64[s]").astype("datetime64[Y]").astype(np.int64) + 1970
    values = {
        "run_id": _fixed_width_text(["RUN-", (years, 4), "-", (serial, 5)], len(serial)).astype("U14"),
        "sample_id": samples["sample_id"].to_numpy(dtype=object)[chosen][member],
        "instrument_id": np.array(INSTRUMENTS, dtype=object)[instrument],
        "flowcell_id": _flowcell_ids(serial, instrument),
        "library_kit": kit[member],
        "library_prep_ts": prep[attempt, member],
        "run_start_ts": start,
        "run_end_ts": np.where(running, np.nan, end),
        **metrics,
        # numpy's stubs take no None in np.where; it is the empty label of a run not yet reviewed
        "run_status": np.where(unreviewed, None, np.where(u > 0, "fail", "pass")).astype(object),  # type: ignore[call-overload]
    }
    frame = _typed_runs(values, len(member))
    return frame.sort_values(["run_start_ts", "run_id", "sample_id"], kind="stable", ignore_index=True)


_BASE36 = np.frombuffer(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", dtype=np.uint8)


def _flowcell_ids(serial: np.ndarray, instrument: np.ndarray) -> np.ndarray:
    """``H`` + five base-36 characters that scramble the run serial + the instrument's suffix."""
    code = (serial.astype(np.int64) * 7_919 + 104_729) % 36**5  # 7919 is prime to 36: one code per serial
    chars = _BASE36[(code[:, None] // 36 ** np.arange(4, -1, -1)) % 36]
    body = chars.view("S5").ravel().astype("U5").astype(object)
    return "H" + body + np.array(FLOWCELL_SUFFIX, dtype=object)[instrument]


def _typed_runs(values: dict[str, np.ndarray], n: int) -> pd.DataFrame:
    """The run contract's columns in contract order with the dtype their kind calls for."""
    frame = {}
    for column in RUN_COLUMNS:
        value = values.get(column.name, np.full(n, np.nan if column.kind is not Kind.STRING else None))
        if column.kind is Kind.TIMESTAMP:
            seconds = np.asarray(value, dtype=float)
            missing = np.isnan(seconds)
            stamps = _datetimes(np.where(missing, 0, seconds).astype(np.int64), missing).astype("datetime64[ns]")
            frame[column.name] = pd.Series(pd.DatetimeIndex(stamps).tz_localize("UTC"))
        else:
            frame[column.name] = pd.Series(pd.array(value, dtype=PANDAS_DTYPE_BY_KIND[column.kind]))
    return pd.DataFrame(frame)


# ---------------------------------------------------------------------------------------------
# Export files
# ---------------------------------------------------------------------------------------------


def write_run_export(runs: pd.DataFrame, path: Path, fmt: ExportFormat, *, messy: bool = False, seed: int = 0) -> Path:
    """Write ``runs`` as one export file, in the sample export's dialects (``messy`` included)."""
    return write_export(runs, path, fmt, messy=messy, seed=seed, style=RUN_EXPORT_STYLE)


def generate_run_exports(
    rows: int,
    fmt: str,
    out_dir: Path,
    *,
    seed: int = 0,
    files: int = 1,
    messy: bool = False,
    id_offset: int = 0,
) -> list[Path]:
    """The run exports of the samples ``generate_exports`` writes for the same arguments.

    The runs are split over ``files`` files ``runs_export_0001.<fmt>`` .. in order of start,
    a run never split between two files.
    """
    check_export_arguments(fmt, files)
    samples = generate_samples(rows, seed=seed, id_offset=id_offset)
    runs = generate_runs(samples, seed=seed, id_offset=id_offset)
    # Cut where the rows would be split evenly, moved forward to the next run's first row.
    run_begins = np.flatnonzero(np.r_[True, runs["run_id"].to_numpy()[1:] != runs["run_id"].to_numpy()[:-1]])
    bounds = split_bounds(len(runs), files)
    bounds = np.r_[np.append(run_begins, len(runs))[np.searchsorted(run_begins, bounds[:-1])], len(runs)]
    return write_export_files(runs, bounds, out_dir, "runs_export", fmt, seed=seed, messy=messy, style=RUN_EXPORT_STYLE)


if set(PREP_MEDIAN_H) != set(SAMPLE_TYPES):
    raise RuntimeError("PREP_MEDIAN_H must cover exactly SAMPLE_TYPES")
