"""Run features: the point-in-time features of ``sequencing_success`` and ``turnaround_hours``.

Two pure functions turn typed frames into model-ready rows: samples as
:func:`tracseq_dagster.features.compute_features` takes them, runs as the sequencing run
export's typed frame (DESIGN.md, "Sequencing run export": strings ``"string"``, timestamps
``datetime64[ns, UTC]``, floats ``float64``; one row per sample per run). No I/O, no
Dagster, no randomness; everything is vectorised (sorts, ``np.searchsorted``, group-bys).

* :func:`sequencing_success_frame`: one row per (``run_id``, ``sample_id``), predicted
  before the run, at the library prep; label ``run_status``.
* :func:`turnaround_frame`: one row per sample, predicted at its receipt; label
  ``turnaround_hours`` (receipt to the end of its first completed run).

Point-in-time rules
-------------------
Each row has a prediction time ``t`` (returned as ``as_of``). A feature of that row reads
only what was known *strictly before* ``t``; nothing stamped at or after ``t`` can change it:

* **Run labels** (``run_status``) become known at ``run_end_ts``. A run's status feeds a
  row only when ``run_end_ts < t``; a run still going at ``t`` (or with no end) feeds none.
  Run metrics (yield, Q30, ...) are known at the same moment and are not read at all.
* **Run events**: a library prep counts when ``library_prep_ts < t``, a start when
  ``run_start_ts < t``, an end when ``run_end_ts < t``. That a later stamp had *not* happened
  yet at ``t`` is itself known at ``t``, so "prepped and not started" reads
  ``run_start_ts >= t`` (or missing) without looking into the future.
* **Samples**: the sample's own features are :func:`~tracseq_dagster.features.compute_features`
  as of ``t`` (per-row ``as_of``), with its rules: the sample exists when
  ``received_ts <= t``, its history aggregates use labels known strictly before ``t``, its
  own label never feeds it. Another sample counts among arrivals when ``received_ts < t``
  and in the sequencing queue when ``extraction_ts < t`` and no run of it started before ``t``.
* **The row's own outcome** is never an input: a ``sequencing_success`` row's run ends at
  or after its start, which is at or after ``t`` (a prediction time after the run started is
  refused); a ``turnaround`` row's first run ends at or after ``t`` (a later prediction time
  is refused), and every aggregate excludes the row's own sample.
* **Categories that the run contract does not fix** (instrument, library kit, site) are open
  sets: the returned categoricals carry the sorted values seen in the inputs, so a model must
  keep the categories it was trained with and re-code serving frames with them
  (``Series.cat.set_categories``). Their :class:`~tracseq_dagster.features.FeatureSpec` has
  ``categories=None``.

Labels are the outcomes as the inputs record them (the training target), returned next to
``label_ts``, the instant each label becomes known; they never feed a feature.

Serving
-------
Both functions answer one request as well as a training set: pass the request's rows, the
(possibly empty) history of known samples and runs, and an explicit prediction time
``as_of`` (one instant for every row, or one per row). When every prediction time is after
the history's last event (serving), pass a :class:`~tracseq_dagster.run_history.RunHistorySnapshot`
of it instead: the same rows, from lookups instead of sorts of the whole history. Both paths
ask the history the same questions (:class:`_FrameHistory` answers them from the frames), so
each rule is written once.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from tracseq_dagster.contract import PRIORITIES
from tracseq_dagster.features import (
    _NAT,
    DAY_NS,
    FEATURE_CODE_VERSION,
    FEATURE_NAMES,
    FEATURE_SPEC_BY_NAME,
    FEATURE_SPECS,
    HOURS_NS,
    SAMPLE_ID,
    AsOf,
    FeatureSpec,
    HistorySnapshot,
    _codes,
    _enum,
    _is_scalar_instant,
    _ns,
    _obj,
    _to_utc_timestamp,
    as_of_ns,
    feature_columns,
    weekday_utc,
)
from tracseq_dagster.run_contract import RUN_STATUSES

if TYPE_CHECKING:
    from tracseq_dagster.run_history import RunHistorySnapshot

__all__ = [
    "MODEL_FEATURE_SPECS",
    "RUN_FEATURE_CODE_VERSION",
    "SEQUENCING_SUCCESS_FEATURE_NAMES",
    "SEQUENCING_SUCCESS_FEATURE_SPECS",
    "SEQUENCING_SUCCESS_LABEL",
    "TURNAROUND_FEATURE_NAMES",
    "TURNAROUND_FEATURE_SPECS",
    "TURNAROUND_LABEL",
    "sequencing_success_frame",
    "turnaround_frame",
]

# --------------------------------------------------------------------------- parameters

RUN_FAIL_STATUS = "fail"

#: Failure rates look at the libraries of the last RUN_WINDOW runs of an instrument (kit)
#: whose status was known, and are smoothed ``(k + m * p0) / (n + m)`` like the operator
#: rates of features.py, with a prior suited to runs (most libraries pass).
RUN_WINDOW = 20
RUN_FAILURE_PRIOR = 0.1
RUN_PRIOR_WEIGHT = 10.0

#: Arrivals count the samples received in this window before the prediction time.
ARRIVALS_WINDOW_NS = 7 * DAY_NS

#: The recent pace of the sequencing queue: first runs started in this window.
PACE_WINDOW_NS = 28 * DAY_NS

#: Instrument load counts the runs started in this window before the prediction time.
LOAD_WINDOW_NS = 7 * DAY_NS

#: The recent median turnaround is over this many latest turnarounds known before arrival.
RECENT_TURNAROUNDS = 50

SEQUENCING_SUCCESS_LABEL = "run_status"
TURNAROUND_LABEL = "turnaround_hours"
AS_OF = "as_of"
LABEL_TS = "label_ts"
RUN_ID = "run_id"

# The run columns read here and their typed dtypes (an empty history may come without them).
_RUN_DTYPES: Mapping[str, str] = {
    "run_id": "string", "sample_id": "string", "instrument_id": "string", "library_kit": "string",
    "library_prep_ts": "datetime64[ns, UTC]", "run_start_ts": "datetime64[ns, UTC]",
    "run_end_ts": "datetime64[ns, UTC]", "run_status": "string",
}  # fmt: skip
_OPTIONAL_RUN_COLUMNS = ("run_end_ts", "run_status")

# ---------------------------------------------------------------------------- registry


def _failure_specs(name: str, what: str) -> tuple[FeatureSpec, ...]:
    window = f"the libraries of the last {RUN_WINDOW} runs {what} whose status was known (run_end_ts strictly before as_of)"
    return (
        FeatureSpec(
            f"{name}_failure_rate",
            "fraction 0..1",
            f"(k + {RUN_PRIOR_WEIGHT:g} * {RUN_FAILURE_PRIOR:g}) / (n + {RUN_PRIOR_WEIGHT:g}) over {window}; "
            f"{RUN_FAILURE_PRIOR:g} with none.",
            "numeric",
        ),
        FeatureSpec(f"{name}_recent_failures", "count", f"k: failed libraries among {window}.", "numeric"),
        FeatureSpec(f"{name}_recent_libraries", "count", f"n: labelled libraries among {window}.", "numeric"),
        FeatureSpec(f"{name}_recent_runs", "count", f"How many runs that window holds (0..{RUN_WINDOW}).", "numeric"),
    )


_SEQUENCING_QUEUE_SPEC = FeatureSpec(
    "sequencing_queue",
    "count",
    "Other samples extracted strictly before as_of whose first run had not started by then (no "
    "run_start_ts strictly before as_of): the lab's sequencing queue.",
    "numeric",
)

_QUEUE_DAYS_SPEC = FeatureSpec(
    "sequencing_queue_days",
    "days",
    "sequencing_queue at the recent pace: sequencing_queue * 28 / max(1, other samples whose first run "
    "started in the 28 days before as_of). Comparable between labs and seasons.",
    "numeric",
)

_RUN_CONTEXT_SPECS: tuple[FeatureSpec, ...] = (
    *_failure_specs("instrument", "on the instrument"),
    *_failure_specs("kit", "with the library kit"),
    FeatureSpec(
        "queue_length",
        "count",
        "Libraries (sample-run rows) prepped strictly before as_of whose run had not started by then "
        "(run_start_ts >= as_of or missing), lab-wide.",
        "numeric",
    ),
    _SEQUENCING_QUEUE_SPEC,
    _QUEUE_DAYS_SPEC,
    FeatureSpec(
        "instrument_load_7d",
        "count",
        "Runs on the instrument started in the 7 days before as_of: as_of - 7 d <= run_start_ts < as_of.",
        "numeric",
    ),
    FeatureSpec("instrument_id", "category", "Sequencer of the run (open set, e.g. SEQ-03).", "categorical"),
    FeatureSpec("library_kit", "category", "Library preparation kit of the row (open set).", "categorical"),
    FeatureSpec(
        "is_rerun",
        "0/1",
        "1 if an earlier run of the same sample had ended (run_end_ts strictly before as_of), else 0.",
        "numeric",
    ),
    FeatureSpec(
        "previous_run_failures",
        "count",
        "Earlier runs of the same sample that ended strictly before as_of with run_status fail.",
        "numeric",
    ),
)

#: sequencing_success: the sample's point-in-time features as of the library prep (input yield
#: is the sample feature ``total_yield_ng``, concentration x volume), then the run context.
SEQUENCING_SUCCESS_FEATURE_SPECS: tuple[FeatureSpec, ...] = FEATURE_SPECS + _RUN_CONTEXT_SPECS

#: turnaround_hours: what is known when a sample arrives.
TURNAROUND_FEATURE_SPECS: tuple[FeatureSpec, ...] = (
    _SEQUENCING_QUEUE_SPEC,
    _QUEUE_DAYS_SPEC,
    FeatureSpec(
        "arrivals_7d",
        "count",
        "Other samples received in the 7 days before as_of: as_of - 7 d <= received_ts < as_of.",
        "numeric",
    ),
    FeatureSpec(
        "runs_in_progress",
        "count",
        "Instrument load at arrival: runs started strictly before as_of that had not ended by then "
        "(run_end_ts >= as_of or missing), lab-wide.",
        "numeric",
    ),
    FeatureSpec(
        "recent_median_turnaround_hours",
        "h",
        "Median turnaround of the latest 50 other samples whose turnaround was known strictly before "
        "as_of (first run ended before as_of); NaN with none.",
        "numeric",
    ),
    FeatureSpec(
        "recent_turnaround_count",
        "count",
        "How many turnarounds that median is over (0..50).",
        "numeric",
    ),
    FeatureSpec(
        "priority_recent_median_turnaround_hours",
        "h",
        "The same median over the latest 50 other samples of the row's priority; NaN with none.",
        "numeric",
    ),
    FeatureSpec("priority", "category", "Priority of the sample (contract.PRIORITIES).", "categorical", PRIORITIES),
    FEATURE_SPEC_BY_NAME["sample_type"],
    FeatureSpec("site", "category", "Submitting site (open set).", "categorical"),
    FEATURE_SPEC_BY_NAME["weekday_received"],
    FeatureSpec("hour_received", "0..23", "Hour of day of received_ts in UTC.", "numeric"),
)

TURNAROUND_SPEC_BY_NAME: Mapping[str, FeatureSpec] = {s.name: s for s in TURNAROUND_FEATURE_SPECS}
SEQUENCING_SUCCESS_FEATURE_NAMES: tuple[str, ...] = tuple(s.name for s in SEQUENCING_SUCCESS_FEATURE_SPECS)
TURNAROUND_FEATURE_NAMES: tuple[str, ...] = tuple(s.name for s in TURNAROUND_FEATURE_SPECS)
MODEL_FEATURE_SPECS: Mapping[str, tuple[FeatureSpec, ...]] = {
    "sequencing_success": SEQUENCING_SUCCESS_FEATURE_SPECS,
    "turnaround_hours": TURNAROUND_FEATURE_SPECS,
}

# ------------------------------------------------------------------------------ helpers


def _runs_or_empty(runs: pd.DataFrame | None) -> pd.DataFrame:
    """``runs``, or a typed frame without rows when it is None or empty without columns."""
    if runs is not None and (len(runs) or set(_RUN_DTYPES) - set(_OPTIONAL_RUN_COLUMNS) <= set(runs.columns)):
        return runs
    return pd.DataFrame({c: pd.Series(dtype=d) for c, d in _RUN_DTYPES.items()})


def _run_ns(runs: pd.DataFrame, name: str) -> np.ndarray:
    """A run timestamp column as int64 ns (``_NAT`` where missing; all missing when an optional column is absent)."""
    if name in _OPTIONAL_RUN_COLUMNS and name not in runs.columns:
        return np.full(len(runs), _NAT, dtype=np.int64)
    return _ns(runs, name, "runs")


def _sample_ns(samples: pd.DataFrame, name: str) -> np.ndarray:
    """A sample timestamp column as int64 ns; an empty history may come without columns."""
    return _ns(samples, name, "history samples") if len(samples) else np.array([], dtype=np.int64)


def _sample_obj(samples: pd.DataFrame, name: str) -> np.ndarray:
    return _obj(samples, name, "history samples") if len(samples) else np.array([], dtype=object)


def _dt(ns: np.ndarray) -> np.ndarray:
    """int64 nanoseconds as datetime64[ns] (``_NAT`` is NaT): group-bys then skip missing times exactly."""
    return np.asarray(ns, dtype=np.int64).view("datetime64[ns]")


def _ns_of(column: pd.Series) -> np.ndarray:
    return column.to_numpy(dtype="datetime64[ns]").view(np.int64)


def _utc(ns: np.ndarray) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(_dt(ns)).tz_localize("UTC")


def _failed(runs: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per run row: its status is known (a status and an end), and it failed."""
    status = _obj(runs, "run_status", "runs") if "run_status" in runs.columns else np.full(len(runs), None, dtype=object)
    code = _enum(status, RUN_STATUSES)
    known = (code >= 0) & (_run_ns(runs, "run_end_ts") != _NAT)
    return known, known & (code == RUN_STATUSES.index(RUN_FAIL_STATUS))


def _prediction_times(as_of: AsOf, default: np.ndarray, frame: pd.DataFrame) -> np.ndarray:
    """The prediction time of each row: ``as_of`` (one instant or one per row) or ``default``."""
    if as_of is None:
        return default
    if _is_scalar_instant(as_of):
        return np.full(len(frame), _to_utc_timestamp(as_of).as_unit("ns").value, dtype=np.int64)
    return as_of_ns(as_of, frame)


@dataclass(frozen=True)
class _Counts:
    """Sorted event times answering "how many strictly before ``t``" for any ``t`` above ``floor``.

    The events at or before ``floor`` are only counted (``dropped``): a snapshot keeps the times
    of the last window it can be asked about and a total for the rest (:meth:`since`).
    """

    times: np.ndarray  # sorted, each above floor
    dropped: int = 0
    floor: int = _NAT

    @classmethod
    def of(cls, times: np.ndarray) -> _Counts:
        return cls(np.sort(times[times != _NAT]))

    def since(self, floor: int) -> _Counts:
        """The same counts for instants above ``floor``, keeping only the times above it."""
        cut = int(np.searchsorted(self.times, floor, side="right"))
        return _Counts(self.times[cut:], self.dropped + cut, max(int(floor), self.floor))

    def before(self, t: np.ndarray) -> np.ndarray:
        """For each ``t``, how many of the times (NaT ignored) are strictly before it."""
        if len(t) and int(np.min(t)) <= self.floor:
            raise ValueError("these event counts only answer instants after the events they dropped")
        return self.dropped + np.searchsorted(self.times, t, side="left").astype(np.float64)


@dataclass(frozen=True)
class _GroupEvents:
    """Timed events per group, sorted by (group, time): counts and sums over a time window of a
    row's group, or over the group's last N events before a time, each a few searchsorted calls.

    Times become ranks among the event times (``rank(x)`` = events strictly before ``x``), so
    ``time < x`` exactly when ``rank(time) < rank(x)`` and ``group * width + rank`` is one sortable
    key. Events with equal keys are ordered by ``tiebreak``, so "the last N" never depends on row
    order.
    """

    times: np.ndarray  # event times, sorted
    keys: np.ndarray  # group * width + rank, sorted
    cum: np.ndarray  # (events + 1, values): cumulative values in key order, a leading row of 0
    width: int
    kept: np.ndarray  # bool per input event: it has a group and a time
    order: np.ndarray  # the kept events in key order (positions among the kept ones)

    @classmethod
    def build(cls, group: np.ndarray, time: np.ndarray, values: np.ndarray | None = None,
              tiebreak: np.ndarray | None = None) -> _GroupEvents:  # fmt: skip
        keep = (group >= 0) & (time != _NAT)
        group, time = group[keep], time[keep]
        values = np.ones((len(keep), 1)) if values is None else np.asarray(values, dtype=np.float64)
        values = (values[:, None] if values.ndim == 1 else values)[keep]
        times = np.sort(time)
        width = len(times) + 1
        keys = group * width + np.searchsorted(times, time, side="left")
        order = np.argsort(keys, kind="stable") if tiebreak is None else np.lexsort((tiebreak[keep], keys))
        cum = np.zeros((len(keys) + 1, values.shape[1]))
        np.cumsum(values[order], axis=0, out=cum[1:])
        return cls(times, keys[order], cum, width, keep, order)

    def _at(self, group: np.ndarray, time: np.ndarray) -> np.ndarray:
        """Position in key order of the group's first event at or after ``time`` (-1 groups: 0)."""
        rank = np.searchsorted(self.times, time, side="left")
        return np.where(group >= 0, np.searchsorted(self.keys, group * self.width + rank, side="left"), 0)

    def _between(self, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, ...]:
        return ((hi - lo).astype(np.float64), *(self.cum[hi] - self.cum[lo]).T)

    def window(self, group: np.ndarray, start: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, ...]:
        """(count, sum of each value) over the group's events with ``start <= time < end``."""
        return self._between(self._at(group, start), self._at(group, end))

    def last(self, group: np.ndarray, end: np.ndarray, n: int) -> tuple[np.ndarray, ...]:
        """(count, sum of each value) over the group's last ``n`` events with ``time < end``."""
        first = np.where(group >= 0, np.searchsorted(self.keys, group * self.width, side="left"), 0)
        hi = self._at(group, end)
        return self._between(np.maximum(first, hi - n), hi)


def _recent_failures(history: pd.DataFrame, key: str, values: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, ...]:
    """(smoothed rate, k, n, runs) over the libraries of the last RUN_WINDOW runs of each row's
    ``key`` value (instrument, kit) whose status was known strictly before ``t``.

    A run is one event at its ``run_end_ts`` carrying its labelled and failed library counts:
    the generated lab, like a real one, fails libraries one by one within a run, so a run is no
    single pass or fail. Rows of one run that end at different instants (not in a real export)
    are one event per instant, so a label never waits for, or leans on, a later one. Runs ending
    at the same instant are ordered by ``run_id``.
    """
    known, failed = _failed(history)
    rows = pd.DataFrame(
        {"run": _obj(history, RUN_ID, "runs"), "key": _obj(history, key, "runs"),
         "end": _dt(_run_ns(history, "run_end_ts")), "fail": failed.astype(np.float64)}
    )[known]  # fmt: skip
    runs = rows.groupby(["run", "key", "end"], sort=False)["fail"].agg(["sum", "size"])
    q_group, ev_group = _codes(values, np.asarray(runs.index.get_level_values("key"), dtype=object))
    run_order = pd.factorize(np.asarray(runs.index.get_level_values("run"), dtype=object), sort=True)[0]
    end = _ns_of(runs.index.get_level_values("end").to_series())
    events = _GroupEvents.build(ev_group, end, runs[["sum", "size"]].to_numpy(dtype=np.float64), run_order)
    n_runs, k, n = events.last(q_group, t, RUN_WINDOW)
    return (k + RUN_PRIOR_WEIGHT * RUN_FAILURE_PRIOR) / (n + RUN_PRIOR_WEIGHT), k, n, n_runs


def _first_runs(runs: pd.DataFrame, sample_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per sample of ``sample_ids``: the earliest ``run_start_ts`` and the earliest ``run_end_ts``
    (its first completed run) over ``runs``; NaT where it has none."""
    by_sample = pd.DataFrame(
        {"start": _dt(_run_ns(runs, "run_start_ts")), "end": _dt(_run_ns(runs, "run_end_ts"))},
        index=pd.Index(_obj(runs, SAMPLE_ID, "runs"), dtype=object),
    )
    first = by_sample.groupby(level=0, sort=False).min()
    at = first.index.get_indexer(pd.Index(sample_ids, dtype=object)) if len(sample_ids) else np.array([], dtype=np.int64)
    start, end = (np.append(_ns_of(first[c]), _NAT)[at] for c in ("start", "end"))  # at -1 -> NaT
    return start, end


#: The lab-state times of a known sample, one column each: its receipt, extraction, first run
#: start, and that start again when the sample was extracted (the sequencing queue's exits).
RECEIVED, EXTRACTED, FIRST_START, EXTRACTED_FIRST_START = range(4)
#: How far before a prediction time each lab-state count looks (arrivals and pace windows):
#: a snapshot keeps the times of that last stretch before its cutoff and a total for the rest.
LAB_LOOKBACK_NS = (ARRIVALS_WINDOW_NS, 0, PACE_WINDOW_NS, 0)


def _lab_times(received: np.ndarray, extracted: np.ndarray, first_start: np.ndarray) -> np.ndarray:
    """(samples, 4) int64 in the column order above, NaT where missing."""
    return np.column_stack([received, extracted, first_start, np.where(extracted != _NAT, first_start, _NAT)]).astype(np.int64)


@dataclass(frozen=True)
class _LabState:
    """The lab's queues at any instant: counts over the known samples' lab-state times
    (:func:`_lab_times`), less each row's own sample, which no count may include (``own``: one
    row of its times per request row, NaT where the history does not know the sample)."""

    counts: tuple[_Counts, ...]  # one per lab-state column
    own: np.ndarray  # (rows, 4) int64

    @classmethod
    def of(cls, times: np.ndarray, own: np.ndarray) -> _LabState:
        """From the known samples' times and each row's position among them (-1: not known)."""
        return cls(tuple(_Counts.of(column) for column in times.T), _rows_or_nat(times, own))

    def _before(self, column: int, t: np.ndarray) -> np.ndarray:
        """How many other samples have the column's time strictly before each ``t``."""
        own = self.own[:, column]
        return self.counts[column].before(t) - ((own != _NAT) & (own < t))

    def sequencing_queue(self, t: np.ndarray) -> np.ndarray:
        """Extracted before ``t``, first run not started before ``t`` (a start is after the extraction)."""
        return self._before(EXTRACTED, t) - self._before(EXTRACTED_FIRST_START, t)

    def sequencing_queue_days(self, t: np.ndarray) -> np.ndarray:
        """The sequencing queue in days of first runs started over the last PACE_WINDOW_NS."""
        started = self._before(FIRST_START, t) - self._before(FIRST_START, t - PACE_WINDOW_NS)
        return self.sequencing_queue(t) * (PACE_WINDOW_NS / DAY_NS) / np.maximum(started, 1.0)

    def arrivals(self, t: np.ndarray) -> np.ndarray:
        """Received in ``[t - 7 d, t)``."""
        return self._before(RECEIVED, t) - self._before(RECEIVED, t - ARRIVALS_WINDOW_NS)


def _rows_or_nat(table: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """``table``'s rows at ``positions`` (int64 ns), a row of NaT where a position is -1."""
    return np.vstack([table, np.full((1, table.shape[1]), _NAT, dtype=np.int64)])[positions]


def _instrument_load(run_instruments: np.ndarray, run_starts: np.ndarray, instrument: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Runs (one instrument and start each) on each row's instrument started in ``[t - 7 d, t)``."""
    q_inst, ev_inst = _codes(instrument, run_instruments)
    load, _ = _GroupEvents.build(ev_inst, run_starts).window(q_inst, t - LOAD_WINDOW_NS, t)
    return load


class _FrameHistory:
    """The known samples and runs as frames, answering every history question of the two frames
    as of each row's own instant (the reference path: training, and serving without a snapshot).

    :class:`tracseq_dagster.run_history.RunHistorySnapshot` answers the same questions, with the
    same rules, from what these answers are after its cutoff.
    """

    def __init__(self, samples: pd.DataFrame, runs: pd.DataFrame | None) -> None:
        self.samples = samples  # also the sample features' history
        self.runs = _runs_or_empty(runs)

    @property
    def sample_history(self) -> pd.DataFrame:
        return self.samples

    def check(self, t: np.ndarray) -> None:
        """The frames hold every event: any instant is answered."""

    @functools.cached_property
    def _first_runs(self) -> tuple[np.ndarray, np.ndarray]:
        return _first_runs(self.runs, _sample_obj(self.samples, SAMPLE_ID))

    @functools.cached_property
    def lab_times(self) -> np.ndarray:
        """The known samples' lab-state times (:func:`_lab_times`), in the samples' order."""
        received, extracted = _sample_ns(self.samples, "received_ts"), _sample_ns(self.samples, "extraction_ts")
        return _lab_times(received, extracted, self._first_runs[0])

    def lab(self, sample_ids: np.ndarray) -> _LabState:
        h_sid = _sample_obj(self.samples, SAMPLE_ID)
        own = (
            pd.Index(h_sid, dtype=object).get_indexer(pd.Index(sample_ids, dtype=object))
            if len(h_sid)
            else np.full(len(sample_ids), -1)
        )
        return _LabState.of(self.lab_times, own)

    def failures(self, key: str, values: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, ...]:
        return _recent_failures(self.runs, key, values, t)

    def queue_length(self, t: np.ndarray) -> np.ndarray:
        prep, start = _run_ns(self.runs, "library_prep_ts"), _run_ns(self.runs, "run_start_ts")
        # a run starts after its prep: "prepped before t, not started before t" = prepped before - started before
        return _Counts.of(prep).before(t) - _Counts.of(start[prep != _NAT]).before(t)

    def run_starts(self) -> tuple[np.ndarray, np.ndarray]:
        """Each run's instrument and start (the earliest of its rows)."""
        starts = pd.DataFrame({"run": _obj(self.runs, RUN_ID, "runs"), "instrument": _obj(self.runs, "instrument_id", "runs"),
                               "start": _dt(_run_ns(self.runs, "run_start_ts"))})  # fmt: skip
        per_run = starts.groupby(["run", "instrument"], sort=False)["start"].min()  # one start per run
        return np.asarray(per_run.index.get_level_values("instrument"), dtype=object), _ns_of(per_run)

    def instrument_load(self, instrument: np.ndarray, t: np.ndarray) -> np.ndarray:
        return _instrument_load(*self.run_starts(), instrument, t)

    def previous_runs(self, sample_ids: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per row: the sample's runs that ended strictly before ``t``, and how many of them failed."""
        _, failed = _failed(self.runs)
        q_sample, ev_sample = _codes(sample_ids, _obj(self.runs, SAMPLE_ID, "runs"))
        ever = np.full(len(t), _NAT, dtype=np.int64)
        earlier, failures = _GroupEvents.build(ev_sample, _run_ns(self.runs, "run_end_ts"), failed).window(q_sample, ever, t)
        return earlier, failures

    def seen(self, column: str) -> np.ndarray:
        """The values of an open-set column in the history (runs: instrument, kit; samples: site)."""
        return _obj(self.runs, column, "runs") if column in _RUN_DTYPES else _sample_obj(self.samples, column)

    def first_end(self, sample_ids: np.ndarray) -> np.ndarray:
        """Per sample: the end of its first completed run among the runs, NaT without one."""
        return _first_runs(self.runs, sample_ids)[1]

    def runs_in_progress(self, t: np.ndarray) -> np.ndarray:
        per_run = (
            pd.DataFrame(
                {"start": _dt(_run_ns(self.runs, "run_start_ts")), "end": _dt(_run_ns(self.runs, "run_end_ts"))},
                index=pd.Index(_obj(self.runs, RUN_ID, "runs"), dtype=object),
            )
            .groupby(level=0, sort=False)
            .agg(start=("start", "min"), end=("end", "max"))
        )
        r_start, r_end = _ns_of(per_run["start"]), _ns_of(per_run["end"])
        return _Counts.of(r_start).before(t) - _Counts.of(r_end[r_start != _NAT]).before(t)  # a run ends after it starts

    def recent_turnarounds(self, priority: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per row: the recent median turnaround and its count, and the recent median of the row's priority."""
        received, first_end = self.lab_times[:, RECEIVED], self._first_runs[1]
        done = np.where((first_end != _NAT) & (received != _NAT), first_end, _NAT)
        hours = (first_end - received) / HOURS_NS
        everyone, everyone_q = np.zeros(len(done), dtype=np.int64), np.zeros(len(t), dtype=np.int64)
        median, count = _recent_median(everyone, done, hours, everyone_q, t)
        q_priority, ev_priority = _codes(priority, _sample_obj(self.samples, "priority"))
        priority_median, _ = _recent_median(ev_priority, done, hours, q_priority, t)
        return median, count, priority_median


def _open_categorical(values: np.ndarray, *seen: np.ndarray) -> pd.Categorical:
    """An open-set categorical: the categories are the sorted values seen in ``values`` and ``seen``."""
    categories = pd.Index(np.concatenate([values, *seen]), dtype=object).dropna().unique().sort_values()
    return pd.Categorical(values, categories=categories)


def _fixed_categorical(values: np.ndarray, spec: FeatureSpec) -> pd.Categorical:
    categories = spec.categories or ()
    return pd.Categorical.from_codes(_enum(values, categories), categories=list(categories))


def _sample_features(samples: pd.DataFrame, history: pd.DataFrame | HistorySnapshot, positions: np.ndarray,
                     t: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:  # fmt: skip
    """The sample features (FEATURE_NAMES) of ``samples.iloc[positions]``, row ``i`` as of ``t[i]``:
    the rows ``i`` that get an answer (sorted; a sample that did not exist at ``t[i]`` gets none)
    and each feature's values on them (float64, or the spec's categorical), as
    :meth:`~tracseq_dagster.features.FeatureColumns.frame` would give them, without a frame.

    A sample may appear on several rows (one per run) at different instants, while
    compute_features needs unique samples: the rows go in rounds, the k-th occurrence of each
    sample in round k (a generated sample is sequenced once or twice).
    """
    occurrence = pd.Series(positions).groupby(positions).cumcount().to_numpy()
    plain = _plain_columns(samples.iloc[np.unique(positions)] if len(positions) < len(samples) else samples)
    at = np.searchsorted(np.unique(positions), positions) if len(positions) < len(samples) else positions
    parts = []
    for k in range(int(occurrence.max()) + 1 if len(occurrence) else 1):
        rows = np.flatnonzero(occurrence == k)
        parts.append((rows, feature_columns({c: v[at[rows]] for c, v in plain.items()}, history, as_of=t[rows])))
    answered = np.concatenate([rows[fc.rows] for rows, fc in parts])
    order = np.argsort(answered, kind="stable")
    columns: dict[str, Any] = {}
    for name in FEATURE_NAMES:
        spec = FEATURE_SPEC_BY_NAME[name]
        if spec.kind == "numeric":
            columns[name] = np.concatenate([fc.numeric[name] for _, fc in parts])[order]
        else:
            codes = np.concatenate([fc.codes[name] for _, fc in parts])[order]
            columns[name] = pd.Categorical.from_codes(codes, categories=list(spec.categories or ()))
    return answered[order], columns


def _plain_columns(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """A typed sample frame as plain arrays (:data:`~tracseq_dagster.features.SampleColumns`):
    the same features without a frame's fixed costs per column read, most of a single request's.
    Timestamps ``datetime64[ns]`` in UTC, numbers float64 with NaN, anything else object."""
    out: dict[str, np.ndarray] = {}
    for name, column in frame.items():
        dtype = column.dtype
        if isinstance(dtype, pd.DatetimeTZDtype) or (dtype.kind == "M"):
            out[str(name)] = column.to_numpy(dtype="datetime64[ns]")
        elif dtype.kind in "fiu":
            out[str(name)] = column.to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            out[str(name)] = np.asarray(column.array, dtype=object)
    return out


def _check_unique(keys: pd.DataFrame, what: str) -> None:
    duplicated = keys.duplicated(keep=False)
    if duplicated.any():
        example = keys[duplicated].head(3).astype(str).agg("/".join, axis=1).tolist()
        raise ValueError(f"{what} must be unique on {'/'.join(keys.columns)}; duplicated: {example}")


# ----------------------------------------------------------------------- sequencing_success


def sequencing_success_frame(
    samples: pd.DataFrame,
    runs: pd.DataFrame,
    history_runs: pd.DataFrame | RunHistorySnapshot | None = None,
    *,
    history_samples: pd.DataFrame | None = None,
    as_of: AsOf = None,
) -> pd.DataFrame:
    """The ``sequencing_success`` rows: one per (``run_id``, ``sample_id``) of ``runs``.

    Args:
        samples: typed sample frame holding (at least) the runs' samples; unique ``sample_id``.
        runs: typed run frame, the rows to predict (a training export, or one request).
        history_runs: the known runs the run context is computed from (may include ``runs``,
            may be empty); None means ``runs`` itself (the training view). Or a
            :class:`~tracseq_dagster.run_history.RunHistorySnapshot` of the known samples and
            runs (serving): the same rows for prediction times after its cutoff, earlier ones
            refused; ``history_samples`` must then be None.
        history_samples: the known samples for the sample features' history aggregates and
            the sequencing queue (may include ``samples``, may be empty); None means ``samples``.
        as_of: the prediction time, one instant or one per row of ``runs``; None means each
            row's ``library_prep_ts``. A prediction time after the row's ``run_start_ts``
            is refused (the run, and so its outcome, would be under way).

    Returns:
        A frame indexed by (``run_id``, ``sample_id``), sorted, with the columns
        ``SEQUENCING_SUCCESS_FEATURE_NAMES``, then ``as_of`` (the prediction time),
        ``run_status`` (the label, ``"string"``, NA where not known) and ``label_ts``
        (``run_end_ts`` where the label is known, else NaT). Rows whose sample is not in
        ``samples``, or not yet received at the prediction time, are left out.
    """
    what = "runs"
    runs = _runs_or_empty(runs)
    history = _history_of(history_samples, history_runs, samples, runs)
    run_ids, sid = _obj(runs, RUN_ID, what), _obj(runs, SAMPLE_ID, what)
    _check_unique(pd.DataFrame({RUN_ID: run_ids, SAMPLE_ID: sid}), "runs")
    prep, start = _run_ns(runs, "library_prep_ts"), _run_ns(runs, "run_start_ts")
    t = _prediction_times(as_of, prep, runs)
    if (t == _NAT).any():
        raise ValueError("every run row needs a library_prep_ts (its prediction time) or an explicit as_of")
    late = (start != _NAT) & (t > start)
    if late.any():
        raise ValueError(f"{int(late.sum())} run rows have a prediction time after their run_start_ts")
    history.check(t)

    # the sample's own features as of the prediction time (rows without a known sample drop out)
    positions = pd.Index(_obj(samples, SAMPLE_ID, "samples"), dtype=object).get_indexer(pd.Index(sid, dtype=object))
    found = np.flatnonzero(positions >= 0)
    answered, sample_features = _sample_features(samples, history.sample_history, positions[found], t[found])
    rows = found[answered]  # the rows of runs that get an answer
    t, sid = t[rows], sid[rows]
    instrument, kit = _obj(runs, "instrument_id", what)[rows], _obj(runs, "library_kit", what)[rows]

    f: dict[str, Any] = {}
    for name, key, values in (("instrument", "instrument_id", instrument), ("kit", "library_kit", kit)):
        (f[f"{name}_failure_rate"], f[f"{name}_recent_failures"], f[f"{name}_recent_libraries"],
         f[f"{name}_recent_runs"]) = history.failures(key, values, t)  # fmt: skip
    f["queue_length"] = history.queue_length(t)
    lab = history.lab(sid)
    f["sequencing_queue"], f["sequencing_queue_days"] = lab.sequencing_queue(t), lab.sequencing_queue_days(t)
    f["instrument_load_7d"] = history.instrument_load(instrument, t)
    earlier, f["previous_run_failures"] = history.previous_runs(sid, t)
    f["is_rerun"] = (earlier > 0).astype(np.float64)
    f["instrument_id"] = _open_categorical(instrument, history.seen("instrument_id"))
    f["library_kit"] = _open_categorical(kit, history.seen("library_kit"))

    known, _ = _failed(runs)
    status = _obj(runs, "run_status", what) if "run_status" in runs.columns else np.full(len(runs), None, dtype=object)
    out = pd.DataFrame(
        {**sample_features, **{spec.name: f[spec.name] for spec in _RUN_CONTEXT_SPECS}, AS_OF: _utc(t).array,
         SEQUENCING_SUCCESS_LABEL: pd.array(np.where(known, status, pd.NA)[rows], dtype="string"),
         LABEL_TS: _utc(np.where(known, _run_ns(runs, "run_end_ts"), _NAT)[rows]).array},
        index=pd.MultiIndex.from_arrays([pd.array(run_ids[rows], dtype="string"), pd.array(sid, dtype="string")], names=[RUN_ID, SAMPLE_ID]),
    )  # fmt: skip
    return out.sort_index()


# -------------------------------------------------------------------------- turnaround_hours


def turnaround_frame(
    samples: pd.DataFrame,
    runs: pd.DataFrame | RunHistorySnapshot | None,
    *,
    history_samples: pd.DataFrame | None = None,
    as_of: AsOf = None,
) -> pd.DataFrame:
    """The ``turnaround_hours`` rows: one per sample of ``samples``, predicted at its arrival.

    Args:
        samples: typed sample frame, the rows to predict; unique ``sample_id``.
        runs: typed run frame of the known runs (may be empty): the labels of ``samples``
            and the lab's state (queues, runs in progress) at each prediction time. Or a
            :class:`~tracseq_dagster.run_history.RunHistorySnapshot` of the known samples and
            runs (serving): the same rows for prediction times after its cutoff, earlier ones
            refused; ``history_samples`` must then be None.
        history_samples: the known samples the queues, arrivals and recent turnarounds are
            computed from (may include ``samples``, may be empty); None means ``samples``.
        as_of: the prediction time, one instant or one per sample row; None means each
            sample's ``received_ts``. A prediction time after the end of the sample's first run
            is refused (its label would be known).

    Returns:
        A frame indexed by ``sample_id`` (sorted), with the columns ``TURNAROUND_FEATURE_NAMES``,
        then ``as_of``, ``turnaround_hours`` (the label: hours from ``received_ts`` to the
        earliest ``run_end_ts`` of the sample's runs, NaN when none has ended) and ``label_ts``
        (that ``run_end_ts``, else NaT). Samples without a ``received_ts``, or received after
        their prediction time, are left out.
    """
    what = "samples"
    history = _history_of(history_samples, runs, samples, runs)
    sid = _obj(samples, SAMPLE_ID, what)
    _check_unique(pd.DataFrame({SAMPLE_ID: sid}), "samples")
    received = _ns(samples, "received_ts", what)
    t = _prediction_times(as_of, received, samples)
    rows = np.flatnonzero((received != _NAT) & (received <= t))
    sid, received, t = sid[rows], received[rows], t[rows]
    history.check(t)
    own_end = history.first_end(sid)
    if ((own_end != _NAT) & (t > own_end)).any():
        raise ValueError("a turnaround prediction time must not be after the end of the sample's first run")

    lab = history.lab(sid)
    f: dict[str, Any] = {"sequencing_queue": lab.sequencing_queue(t), "sequencing_queue_days": lab.sequencing_queue_days(t),
                         "arrivals_7d": lab.arrivals(t), "runs_in_progress": history.runs_in_progress(t)}  # fmt: skip
    priority = _obj(samples, "priority", what)[rows]
    (f["recent_median_turnaround_hours"], f["recent_turnaround_count"],
     f["priority_recent_median_turnaround_hours"]) = history.recent_turnarounds(priority, t)  # fmt: skip
    f["priority"] = _fixed_categorical(priority, TURNAROUND_SPEC_BY_NAME["priority"])
    f["sample_type"] = _fixed_categorical(_obj(samples, "sample_type", what)[rows], TURNAROUND_SPEC_BY_NAME["sample_type"])
    f["site"] = _open_categorical(_obj(samples, "site", what)[rows], history.seen("site"))
    f["weekday_received"] = weekday_utc(received)
    f["hour_received"] = ((received // HOURS_NS) % 24).astype(np.float64)

    out = pd.DataFrame(
        {name: f[name] for name in TURNAROUND_FEATURE_NAMES}, index=pd.Index(pd.array(sid, dtype="string"), name=SAMPLE_ID)
    )
    out[AS_OF] = _utc(t)
    out[TURNAROUND_LABEL] = np.where(own_end != _NAT, (own_end - received) / HOURS_NS, np.nan)
    out[LABEL_TS] = _utc(own_end)
    return out.sort_index()


def _history_of(history_samples: pd.DataFrame | None, history_runs: pd.DataFrame | RunHistorySnapshot | None,
                samples: pd.DataFrame, runs: pd.DataFrame | None) -> _FrameHistory | RunHistorySnapshot:  # fmt: skip
    """What the frames compute from: a snapshot as given, else the frames (None: the rows' own)."""
    if history_runs is None or isinstance(history_runs, pd.DataFrame):
        return _FrameHistory(
            samples if history_samples is None else history_samples, runs if history_runs is None else history_runs
        )
    if history_samples is not None:
        raise ValueError("a run history snapshot carries its samples: pass history_samples only with a frame of runs")
    return history_runs


def _recent_median(ev_group: np.ndarray, label_ts: np.ndarray, value: np.ndarray, q_group: np.ndarray,
                   t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Median and count of the latest RECENT_TURNAROUNDS values of each row's group whose
    ``label_ts`` is strictly before the row's ``t`` (NaN and 0 with none).

    The labels are sorted by (group, time, value); a rolling median within each group answers
    every row at its insertion point (ties broken by value, so row order never matters). The
    row's own label is never among them: it becomes known at or after ``t`` (enforced).
    """
    events = _GroupEvents.build(ev_group, label_ts, tiebreak=value)
    in_order = value[events.kept][events.order]
    rolled = pd.Series(in_order, dtype=np.float64).groupby(events.keys // events.width, sort=False)
    medians = rolled.rolling(RECENT_TURNAROUNDS, min_periods=1).median().reset_index(level=0, drop=True).sort_index().to_numpy()
    hi = events._at(q_group, t)
    count, _ = events.window(q_group, np.full(len(t), _NAT, dtype=np.int64), t)
    return np.where(count > 0, np.append(np.nan, medians)[hi], np.nan), np.minimum(count, RECENT_TURNAROUNDS)


#: Changes whenever this module's source, its serving snapshot's (run_history.py, which answers
#: the same questions after a cutoff) or the sample feature code (FEATURE_CODE_VERSION) changes:
#: the code version of anything computed by the two frames above.
RUN_FEATURE_SOURCES: tuple[Path, ...] = (Path(__file__), Path(__file__).with_name("run_history.py"))
RUN_FEATURE_CODE_VERSION: str = hashlib.sha256(
    b"".join(p.read_bytes() for p in RUN_FEATURE_SOURCES) + FEATURE_CODE_VERSION.encode()
).hexdigest()[:16]
