"""Run history snapshot: the run models' history as it stands after its last event (serving).

Serving predicts ``sequencing_success`` and ``turnaround_hours`` *now*: every prediction time is
after every event of the packed history. Then each history rule of
:mod:`tracseq_dagster.run_features` has an answer that no longer depends on the instant, or
depends on it only through the last days before it:

* **Constant after the cutoff** (every label, start, end is "strictly before" the row): the
  instrument's and kit's last-20-run failures, the libraries waiting for a run, the runs in
  progress, the recent median turnarounds (overall and per priority), each sample's earlier
  runs and failures, the end of its first run. :meth:`RunHistorySnapshot.build` evaluates the
  frames' own rules once, at the instant just after the cutoff, for every key the history
  knows and for one key it does not (the last row of each table); a request looks its key up.
* **Windows** (arrivals in the last 7 days, first runs in the last 28, an instrument's runs
  started in the last 7): the snapshot keeps the event times of the last window before the
  cutoff and a count of the earlier ones, and the frames' own window code answers exactly for
  any later instant.
* **Own sample**: a request about a known sample leaves its own receipt, extraction and first
  run out of the queue counts, as the full path does: the snapshot keeps those times per sample.
* **Sample features**: :class:`tracseq_dagster.features.HistorySnapshot` of the samples.

So ``sequencing_success_frame(samples, runs, snapshot, as_of=t)`` equals the full computation
against the samples and runs for every ``t`` after ``cutoff`` (the latest timestamp of either
frame), with lookups and a few binary searches instead of sorting 100,000 rows per request;
an earlier ``t`` raises. The snapshot saves to a folder (Parquet tables and a small JSON) so a
bundle can carry it.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tracseq_dagster.features import SAMPLE_ID, HistorySnapshot, _obj, _Positions
from tracseq_dagster.run_features import (
    LAB_LOOKBACK_NS,
    LOAD_WINDOW_NS,
    _Counts,
    _FrameHistory,
    _instrument_load,
    _LabState,
    _rows_or_nat,
)

__all__ = ["RunHistorySnapshot", "serving_history"]

#: The lab-state columns (run_features: RECEIVED, EXTRACTED, FIRST_START, EXTRACTED_FIRST_START).
LAB_COLUMNS = ("received", "extracted", "first_start", "extracted_first_start")
FAILURE_COLUMNS = ("failure_rate", "recent_failures", "recent_libraries", "recent_runs")
OPEN_SETS = ("instrument_id", "library_kit", "site")
RUN_START = "run_start"
SAMPLES_SNAPSHOT = "sample_history"
TABLES = ("failure_table", "priority_table", "sample_table", "window_table")


def _last_event(*frames: pd.DataFrame) -> pd.Timestamp:
    """The latest timestamp of any ``*_ts`` column of the frames (the epoch when there is none)."""
    latest = [frame[c].max() for frame in frames for c in frame.columns if c.endswith("_ts") and len(frame)]
    latest = [ts for ts in latest if not pd.isna(ts)]
    return max(latest) if latest else pd.Timestamp(0, tz="UTC")


def _with_unknown(values: np.ndarray) -> np.ndarray:
    """The distinct known values, sorted, then None (a key the history does not know)."""
    known = pd.Index(values, dtype=object).dropna().unique().sort_values()
    return np.append(np.asarray(known, dtype=object), np.array([None], dtype=object))


@dataclass(frozen=True)
class RunHistorySnapshot:
    """The run features' history after ``cutoff``; see the module docstring.

    Every keyed table ends with the row of a key the history does not know (key None).
    ``failure_table``: kind (``instrument_id``, ``library_kit``), key, FAILURE_COLUMNS.
    ``priority_table``: key, median (recent median turnaround of the priority).
    ``sample_table``: sample_id, the lab-state times of a known sample (LAB_COLUMNS, int64 ns, NaT
    for a sample only the runs know), ``first_end``, ``earlier_runs``, ``failed_runs``.
    ``window_table``: kind (a lab column, or ``run_start``), key (the run's instrument), time (ns):
    the events of the last window before the cutoff. ``totals``: the lab-wide constants, the
    events each lab count dropped, and the open sets' known values.
    """

    cutoff: pd.Timestamp
    sample_history: HistorySnapshot
    failure_table: pd.DataFrame
    priority_table: pd.DataFrame
    sample_table: pd.DataFrame
    window_table: pd.DataFrame
    totals: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def build(cls, samples: pd.DataFrame, runs: pd.DataFrame | None) -> RunHistorySnapshot:
        """From the known samples and runs (what the Bento packs): the frames' rules, evaluated once."""
        full = _FrameHistory(samples, runs)
        sample_history = HistorySnapshot.build(samples)
        cutoff = max(_last_event(samples, full.runs), sample_history.cutoff)
        after = int(cutoff.value) + 1

        def at(keys: np.ndarray) -> np.ndarray:
            return np.full(len(keys), after, dtype=np.int64)

        failures = []
        for kind in ("instrument_id", "library_kit"):
            keys = _with_unknown(full.seen(kind))
            values = dict(zip(FAILURE_COLUMNS, full.failures(kind, keys, at(keys)), strict=True))
            failures.append(pd.DataFrame({"kind": kind, "key": keys, **values}))
        priorities = _with_unknown(full.seen("priority"))
        median, count, priority_median = full.recent_turnarounds(priorities, at(priorities))

        h_sid = _obj(samples, SAMPLE_ID, "history samples") if len(samples) else np.array([], dtype=object)
        ids = _with_unknown(np.concatenate([h_sid, _obj(full.runs, SAMPLE_ID, "runs")]))
        known = pd.Index(h_sid, dtype=object).get_indexer(pd.Index(ids, dtype=object)) if len(h_sid) else np.full(len(ids), -1)
        earlier, failed = full.previous_runs(ids, at(ids))
        table = pd.DataFrame(_rows_or_nat(full.lab_times, known), columns=list(LAB_COLUMNS))
        table.insert(0, SAMPLE_ID, ids)
        table = table.assign(first_end=full.first_end(ids), earlier_runs=earlier, failed_runs=failed)

        windows, dropped = [], {}
        for column, (name, lookback) in enumerate(zip(LAB_COLUMNS, LAB_LOOKBACK_NS, strict=True)):
            counts = _Counts.of(full.lab_times[:, column]).since(after - 1 - lookback)
            windows.append(pd.DataFrame({"kind": name, "key": None, "time": counts.times}))
            dropped[name] = [counts.dropped, counts.floor]
        instruments, starts = full.run_starts()
        recent = starts > after - 1 - LOAD_WINDOW_NS  # no later window starts at or before this
        windows.append(pd.DataFrame({"kind": RUN_START, "key": instruments[recent], "time": starts[recent]}))

        totals = {
            "queue_length": float(full.queue_length(np.array([after]))[0]),
            "runs_in_progress": float(full.runs_in_progress(np.array([after]))[0]),
            "recent_median": float(median[-1]),
            "recent_count": float(count[-1]),
            "dropped": dropped,
            "seen": {c: [str(v) for v in _with_unknown(full.seen(c))[:-1]] for c in OPEN_SETS},
        }
        return cls(cutoff, sample_history, pd.concat(failures, ignore_index=True),
                   pd.DataFrame({"key": priorities, "median": priority_median}), table,
                   pd.concat(windows, ignore_index=True).astype({"time": np.int64}), totals)  # fmt: skip

    # -- the questions of run_features' frames, as _FrameHistory answers them ---------------------

    def covers(self, as_of: Any) -> bool:
        """True when every prediction time is after the cutoff (the snapshot answers them)."""
        t = pd.DatetimeIndex(pd.to_datetime(as_of if isinstance(as_of, pd.Index) else np.atleast_1d(as_of), utc=True))
        return bool(len(t)) and bool((t > self.cutoff).all())

    def check(self, t: np.ndarray) -> None:
        if len(t) and int(np.min(t)) <= self.cutoff.value:
            raise ValueError(
                f"this run history snapshot holds the events up to {self.cutoff.isoformat()}: prediction times "
                "at or before it need the full history (the known samples and runs as frames)"
            )

    def lab(self, sample_ids: np.ndarray) -> _LabState:
        arrays = self._arrays
        return _LabState(arrays["lab_counts"], arrays["lab_times"][self._sample_rows(sample_ids)])

    def failures(self, key: str, values: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, ...]:
        positions, table = self._arrays["failures"][key]
        return tuple(table[_row(positions, values)].T)

    def queue_length(self, t: np.ndarray) -> np.ndarray:
        return np.full(len(t), self.totals["queue_length"])

    def instrument_load(self, instrument: np.ndarray, t: np.ndarray) -> np.ndarray:
        run_instruments, run_starts = self._arrays["run_starts"]
        return _instrument_load(run_instruments, run_starts, instrument, t)

    def previous_runs(self, sample_ids: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows = self._sample_rows(sample_ids)
        return self._arrays["earlier_runs"][rows], self._arrays["failed_runs"][rows]

    def seen(self, column: str) -> np.ndarray:
        return np.asarray(self.totals["seen"][column], dtype=object)

    def first_end(self, sample_ids: np.ndarray) -> np.ndarray:
        return self._arrays["first_end"][self._sample_rows(sample_ids)]

    def runs_in_progress(self, t: np.ndarray) -> np.ndarray:
        return np.full(len(t), self.totals["runs_in_progress"])

    def recent_turnarounds(self, priority: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        positions, medians = self._arrays["priorities"]
        n = len(t)
        return (
            np.full(n, self.totals["recent_median"]),
            np.full(n, self.totals["recent_count"]),
            medians[_row(positions, priority)],
        )

    def _sample_rows(self, sample_ids: np.ndarray) -> np.ndarray:
        return _row(self._arrays["samples"], sample_ids)

    @functools.cached_property
    def _arrays(self) -> dict[str, Any]:
        """Key positions and plain arrays, built once per process: a request is lookups and binary searches."""
        s, w = self.sample_table, self.window_table
        out: dict[str, Any] = {
            "samples": _Positions(s[SAMPLE_ID].iloc[:-1]),
            "lab_times": s[list(LAB_COLUMNS)].to_numpy(dtype=np.int64),
            "first_end": s["first_end"].to_numpy(dtype=np.int64),
            "earlier_runs": s["earlier_runs"].to_numpy(dtype=np.float64),
            "failed_runs": s["failed_runs"].to_numpy(dtype=np.float64),
            "priorities": (
                _Positions(self.priority_table["key"].iloc[:-1]),
                self.priority_table["median"].to_numpy(dtype=np.float64),
            ),
            "failures": {},
        }
        for kind, table in self.failure_table.groupby("kind", sort=False):
            out["failures"][kind] = (_Positions(table["key"].iloc[:-1]), table[list(FAILURE_COLUMNS)].to_numpy(dtype=np.float64))
        counts = []
        for name in LAB_COLUMNS:
            dropped, floor = self.totals["dropped"][name]
            counts.append(_Counts(np.sort(w.loc[w["kind"] == name, "time"].to_numpy(dtype=np.int64)), int(dropped), int(floor)))
        out["lab_counts"] = tuple(counts)
        starts = w[w["kind"] == RUN_START]
        out["run_starts"] = (starts["key"].to_numpy(dtype=object), starts["time"].to_numpy(dtype=np.int64))
        return out

    # -- a folder a bundle can carry ----------------------------------------------------------------

    def save(self, folder: Path) -> None:
        """Four Parquet tables, the sample snapshot and ``snapshot.json`` (cutoff and totals)."""
        folder.mkdir(parents=True, exist_ok=True)
        for name in TABLES:
            getattr(self, name).to_parquet(folder / f"{name}.parquet", index=False)
        self.sample_history.save(folder / SAMPLES_SNAPSHOT)
        (folder / "snapshot.json").write_text(json.dumps({"cutoff": self.cutoff.isoformat(), **self.totals}, indent=1))

    @classmethod
    def load(cls, folder: Path) -> RunHistorySnapshot:
        meta = json.loads((folder / "snapshot.json").read_text())
        tables = {name: pd.read_parquet(folder / f"{name}.parquet") for name in TABLES}
        for name, column in zip(TABLES, ("key", "key", SAMPLE_ID, "key"), strict=True):
            keys = tables[name][column].astype(object)
            tables[name][column] = keys.where(keys.notna(), None)
        return cls(pd.Timestamp(meta.pop("cutoff")), HistorySnapshot.load(folder / SAMPLES_SNAPSHOT), totals=meta, **tables)


def _row(positions: _Positions, values: np.ndarray) -> np.ndarray:
    """Each value's row in a keyed table whose last row is the unknown key's."""
    at = positions(np.asarray(values, dtype=object))
    return np.where(at >= 0, at, len(positions.index))


def serving_history(snapshot: Any, samples: pd.DataFrame, runs: pd.DataFrame | None,
                    as_of: Any) -> tuple[pd.DataFrame | RunHistorySnapshot | None, pd.DataFrame | None]:  # fmt: skip
    """(history runs, history samples) for the run frames: the snapshot when it answers every
    prediction time, else the packed frames (a request about the past is answered the slow way)."""
    if isinstance(snapshot, RunHistorySnapshot) and snapshot.covers(as_of):
        return snapshot, None
    return runs, samples
