"""The history aggregates of the sample features from Feast's online store, so that serving sees
new history without a rebuild.

The Bento packs a :class:`~tracseq_dagster.features.HistorySnapshot` at build time: per
operator and site the labelled count and the failures, per freezer the samples and their
occupancy. Feast's online store holds the same aggregates, materialised after every export
(views ``operator_history``, ``site_history`` and ``freezer_history`` of
:mod:`tracseq_dagster.entity_history`). :class:`OnlineHistory` reads them through Feast's feature
server (``feast serve``, HTTP ``POST /get-online-features``), so the prediction image needs no
Feast SDK (issue 20's lean serving lock), and :class:`HistoryRefresher` swaps a refreshed snapshot
into the predictor every few seconds, off the request path: a request costs the same dictionary
lookup as before, and the p99 goal does not meet the network.

Which keys: every key of the packed snapshot, plus the keys requests brought that the packed
snapshot did not know (a new operator's samples), up to :data:`MAX_NEW_KEYS` per kind.

The conversion is exact: Feast keeps the smoothed failure rate ``(k + 10 * 0.15) / (n + 10)``
and ``n``, from which ``k`` follows; the freezer's mean occupancy / 100 and its count, from which
the occupancy sum follows (:func:`groups_from_online`; a test checks that the refreshed
snapshot gives the packed snapshot's features when Feast holds the same history).

When the feature server is down or slow, the last snapshot stays (the packed one at first): the
answers are those of the last refresh, never an error; ``/model`` says when the history was
last refreshed and the last error.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from tracseq_dagster.features import FAILURE_PRIOR, FAILURE_PRIOR_WEIGHT, HistorySnapshot
from tracseq_dagster.run_history import RunHistorySnapshot
from tracseq_dagster.serving.feature_server import FeatureServer, FeatureServerError

log = logging.getLogger(__name__)

#: New keys (unknown to the packed snapshot) followed per kind; more are looked up after a rebuild.
MAX_NEW_KEYS = 10_000


@dataclass(frozen=True)
class OnlineAggregate:
    """How one kind of the snapshot's groups is kept in Feast."""

    join_key: str
    view: str
    value: str  # the smoothed failure rate, or the mean occupancy / 100
    count: str

    def features(self) -> list[str]:
        return [f"{self.view}:{self.count}", f"{self.view}:{self.value}"]

    def total(self, value: np.ndarray, count: np.ndarray) -> np.ndarray:
        """The snapshot's ``total`` (failures, or the occupancy sum) from Feast's value and count."""
        if self.view == "freezer_history":
            return value * 100.0 * count
        return np.rint(value * (count + FAILURE_PRIOR_WEIGHT) - FAILURE_PRIOR_WEIGHT * FAILURE_PRIOR)


#: Snapshot kind -> where Feast keeps it.
AGGREGATES: dict[str, OnlineAggregate] = {
    "operator": OnlineAggregate("operator_id", "operator_history", "operator_failure_rate", "operator_history_count"),
    "site": OnlineAggregate("site", "site_history", "site_failure_rate", "site_history_count"),
    "freezer": OnlineAggregate("freezer", "freezer_history", "freezer_utilisation", "freezer_sample_count"),
}


def groups_from_online(kind: str, keys: list[str], columns: dict[str, list[Any]]) -> pd.DataFrame:
    """The snapshot's groups of ``kind`` (index (kind, key); count, total) for the keys Feast knows."""
    aggregate = AGGREGATES[kind]
    count = pd.to_numeric(pd.Series(columns[aggregate.count], dtype=object), errors="coerce").to_numpy(dtype=float)
    value = pd.to_numeric(pd.Series(columns[aggregate.value], dtype=object), errors="coerce").to_numpy(dtype=float)
    known = ~np.isnan(count) & ~np.isnan(value)
    index = pd.MultiIndex.from_arrays([[kind] * int(known.sum()), np.asarray(keys, dtype=object)[known]], names=["kind", "key"])
    return pd.DataFrame({"count": count[known], "total": aggregate.total(value[known], count[known])}, index=index)


#: The instrument failure window of the run models (``RunHistorySnapshot.failure_table``, kind
#: ``instrument_id``) as the ``instrument_history`` view keeps it, column for column.
INSTRUMENT_VIEW = "instrument_history"
INSTRUMENT_FEATURES = {
    "failure_rate": "instrument_failure_rate",
    "recent_failures": "instrument_recent_failures",
    "recent_libraries": "instrument_recent_libraries",
    "recent_runs": "instrument_recent_runs",
}


class OnlineHistory:
    """Refreshed snapshots: the packed one's aggregates, replaced by Feast's for every key Feast knows.

    ``packed`` is a sample model's :class:`HistorySnapshot` or a run model's
    :class:`~tracseq_dagster.run_history.RunHistorySnapshot`; for the latter its sample aggregates
    and its instruments' failure windows are refreshed (the kit windows, the 7-day load and the
    queue, which no Feast view holds, stay as packed).
    """

    def __init__(self, packed: HistorySnapshot | RunHistorySnapshot, server: FeatureServer) -> None:
        self.packed = packed
        self.server = server
        self._samples = packed if isinstance(packed, HistorySnapshot) else packed.sample_history
        groups = self._samples.groups
        kinds = set(groups.index.get_level_values(0))
        #: The packed snapshot's keys per kind, in order (a set beside them: requests are checked against it).
        self._packed: dict[str, list[str]] = {
            kind: [str(k) for k in groups.xs(kind, level="kind").index] if kind in kinds else [] for kind in AGGREGATES
        }
        self._packed_sets = {kind: set(keys) for kind, keys in self._packed.items()}
        self._new_keys: dict[str, set[str]] = {kind: set() for kind in AGGREGATES}
        self._lock = threading.Lock()

    def note_keys(self, kind: str, keys: Iterable[Any]) -> None:
        """Keys a request brought (cheap: only those the packed snapshot lacks are kept)."""
        known, new = self._packed_sets[kind], self._new_keys[kind]
        fresh = {k for k in keys if isinstance(k, str) and k not in known and k not in new}
        if fresh:
            with self._lock:
                room = MAX_NEW_KEYS - len(self._new_keys[kind])
                self._new_keys[kind].update(list(fresh)[: max(room, 0)])

    def note_samples(self, samples: Any) -> None:
        """The operator, site and freezer keys of a request's samples (a typed frame or plain columns)."""
        for kind, column in (("operator", "operator_id"), ("site", "site"), ("freezer", "storage_location")):
            values = pd.unique(np.asarray(samples[column], dtype=object))
            if kind == "freezer":
                values = [v.split("/", 1)[0] for v in values if isinstance(v, str)]
            self.note_keys(kind, values)

    def keys(self, kind: str) -> list[str]:
        with self._lock:
            new = sorted(self._new_keys[kind])
        return self._packed[kind] + new

    def refresh(self) -> HistorySnapshot | RunHistorySnapshot:
        """A snapshot with Feast's aggregates (raises :class:`FeatureServerError` when the server fails).

        Its cutoff moves to the latest event Feast's rows include: a request computed as of an
        earlier moment must not see them (the run models then read their packed frames).
        """
        samples = self._refreshed_samples()
        if isinstance(self.packed, HistorySnapshot):
            return samples
        failures, latest = self._refreshed_instruments(self.packed.failure_table)
        cutoff = max(self.packed.cutoff, samples.cutoff, latest or self.packed.cutoff)
        return replace(self.packed, sample_history=samples, failure_table=failures, cutoff=cutoff)

    def _refreshed_instruments(self, table: pd.DataFrame) -> tuple[pd.DataFrame, pd.Timestamp | None]:
        """The failure table with every instrument Feast knows updated (new instruments wait for a rebuild:
        the run features' open set of instruments is the packed one)."""
        rows = np.flatnonzero((table["kind"] == "instrument_id").to_numpy() & table["key"].notna().to_numpy())
        if not len(rows):
            return table, None
        keys = [str(k) for k in table["key"].iloc[rows]]
        online = self.server.online([f"{INSTRUMENT_VIEW}:{f}" for f in INSTRUMENT_FEATURES.values()], "instrument_id", keys)
        values = {c: pd.to_numeric(pd.Series(online.columns[f], dtype=object), errors="coerce").to_numpy(dtype=float)
                  for c, f in INSTRUMENT_FEATURES.items()}  # fmt: skip
        known = ~np.isnan(values["failure_rate"])
        out = table.copy()
        for column, found in values.items():
            position = out.columns.get_loc(column)
            out.iloc[rows[known], position] = found[known].astype(out[column].dtype)
        return out, online.latest()

    def _refreshed_samples(self) -> HistorySnapshot:
        packed = self._samples
        parts, latest = [], packed.cutoff
        for kind, aggregate in AGGREGATES.items():
            keys = self.keys(kind)
            if not keys:
                continue
            rows = self.server.online(aggregate.features(), aggregate.join_key, keys)
            parts.append(groups_from_online(kind, keys, rows.columns))
            stamp = rows.latest()
            if stamp is not None and stamp > latest:
                latest = stamp
        online = pd.concat(parts) if parts else packed.groups.iloc[:0]
        kept = packed.groups[~packed.groups.index.isin(online.index)]
        return replace(packed, groups=pd.concat([kept, online]), cutoff=latest)


class HistoryRefresher:
    """Every ``interval_s``, a refreshed snapshot handed to ``install`` (a daemon thread); failures keep the last one."""

    def __init__(self, history: OnlineHistory, install: Callable[[Any], None], interval_s: float = 30.0) -> None:
        self.history = history
        self.install = install
        self.interval_s = interval_s
        self.refreshed_at: pd.Timestamp | None = None
        self.last_error: str | None = None
        self.refreshes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="online-history", daemon=True)

    def start(self) -> HistoryRefresher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def refresh_now(self) -> bool:
        try:
            snapshot = self.history.refresh()
        except FeatureServerError as error:
            if self.last_error is None:
                log.warning("history aggregates not refreshed from the feature store (serving the last ones): %s", error)
            self.last_error = str(error)
            return False
        self.install(snapshot)
        self.refreshed_at, self.last_error = pd.Timestamp.now(tz="UTC"), None
        self.refreshes += 1
        return True

    def status(self) -> dict[str, Any]:
        return {
            "source": f"feast feature server {self.history.server.url}",
            "refreshed_at": None if self.refreshed_at is None else self.refreshed_at.isoformat(),
            "refreshes": self.refreshes,
            "last_error": self.last_error,
            "interval_s": self.interval_s,
        }

    def _loop(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self.refresh_now()
            self._stop.wait(max(0.0, self.interval_s - (time.monotonic() - started)))


class OnlineHistories:
    """A refresher per served model whose history Feast holds (sample aggregates, run windows).

    ``targets`` maps a name (``/predict`` for the original route's predictor, else the catalog
    model's) to an object with a ``history`` attribute: it receives each refreshed snapshot through
    its ``install_history`` when it has one, else in ``history``; one whose ``online`` attribute
    exists is told the keys of its requests. Models whose history is of another kind (the freezer
    model's freezer days) keep the packed one.
    """

    def __init__(self, refreshers: dict[str, HistoryRefresher]) -> None:
        self.refreshers = refreshers

    @classmethod
    def start(cls, server: FeatureServer, targets: dict[str, Any], interval_s: float) -> OnlineHistories:
        refreshers: dict[str, HistoryRefresher] = {}
        for name, target in targets.items():
            if target is None or not isinstance(target.history, HistorySnapshot | RunHistorySnapshot):
                continue
            online = OnlineHistory(target.history, server)
            if hasattr(target, "online"):
                target.online = online
            install = getattr(target, "install_history", None) or (lambda snapshot, t=target: setattr(t, "history", snapshot))
            refresher = HistoryRefresher(online, install, interval_s)
            refresher.refresh_now()  # best effort: a feature server that is down leaves the packed history
            refreshers[name] = refresher.start()
        return cls(refreshers)

    def status(self) -> dict[str, Any]:
        return {name: refresher.status() for name, refresher in self.refreshers.items()}

    def stop(self) -> None:
        for refresher in self.refreshers.values():
            refresher.stop()
