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

import httpx
import numpy as np
import pandas as pd

from tracseq_dagster.features import FAILURE_PRIOR, FAILURE_PRIOR_WEIGHT, HistorySnapshot

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


class FeatureServerError(RuntimeError):
    """The feature server did not answer, or answered something else than Feast's format."""


class FeatureServer:
    """Feast's feature server over HTTP: ``POST /get-online-features``."""

    def __init__(self, url: str, timeout_s: float = 2.0, transport: httpx.BaseTransport | None = None) -> None:
        self.url = url.rstrip("/")
        self._client = httpx.Client(base_url=self.url, timeout=timeout_s, transport=transport)

    def online(self, features: list[str], join_key: str, values: list[str]) -> tuple[dict[str, list[Any]], pd.Timestamp | None]:
        """``{feature: values}`` aligned with ``values`` (None where Feast has nothing), and the
        latest event time among the rows found."""
        try:
            response = self._client.post("/get-online-features", json={"features": features, "entities": {join_key: values}})
            response.raise_for_status()
            body = response.json()
            names = body["metadata"]["feature_names"]
            results = body["results"]
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as error:
            raise FeatureServerError(f"{self.url}/get-online-features: {error}") from error
        columns = {name: list(result["values"]) for name, result in zip(names, results, strict=True)}
        stamps = [
            pd.Timestamp(s)
            for name, result in zip(names, results, strict=True)
            if name != join_key
            for s, v in zip(result["event_timestamps"], result["values"], strict=True)
            if v is not None
        ]
        return columns, (max(stamps) if stamps else None)

    def close(self) -> None:
        self._client.close()


def groups_from_online(kind: str, keys: list[str], columns: dict[str, list[Any]]) -> pd.DataFrame:
    """The snapshot's groups of ``kind`` (index (kind, key); count, total) for the keys Feast knows."""
    aggregate = AGGREGATES[kind]
    count = pd.to_numeric(pd.Series(columns[aggregate.count], dtype=object), errors="coerce").to_numpy(dtype=float)
    value = pd.to_numeric(pd.Series(columns[aggregate.value], dtype=object), errors="coerce").to_numpy(dtype=float)
    known = ~np.isnan(count) & ~np.isnan(value)
    index = pd.MultiIndex.from_arrays([[kind] * int(known.sum()), np.asarray(keys, dtype=object)[known]], names=["kind", "key"])
    return pd.DataFrame({"count": count[known], "total": aggregate.total(value[known], count[known])}, index=index)


class OnlineHistory:
    """Refreshed snapshots: the packed one's groups, replaced by Feast's for every key Feast knows."""

    def __init__(self, packed: HistorySnapshot, server: FeatureServer) -> None:
        self.packed = packed
        self.server = server
        self._new_keys: dict[str, set[str]] = {kind: set() for kind in AGGREGATES}
        self._lock = threading.Lock()

    def note_keys(self, kind: str, keys: Iterable[Any]) -> None:
        """Keys a request brought (cheap: only those the packed snapshot lacks are kept)."""
        known = self.packed.groups.index
        fresh = {str(k) for k in keys if isinstance(k, str) and (kind, k) not in known}
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
        groups = self.packed.groups
        packed = list(groups.xs(kind, level="kind").index) if kind in groups.index.get_level_values(0) else []
        with self._lock:
            new = sorted(self._new_keys[kind])
        return [str(k) for k in packed] + new

    def refresh(self) -> HistorySnapshot:
        """A snapshot with Feast's aggregates (raises :class:`FeatureServerError` when the server fails)."""
        parts, latest = [], self.packed.cutoff
        for kind, aggregate in AGGREGATES.items():
            keys = self.keys(kind)
            if not keys:
                continue
            columns, stamp = self.server.online(aggregate.features(), aggregate.join_key, keys)
            parts.append(groups_from_online(kind, keys, columns))
            if stamp is not None and stamp > latest:
                latest = stamp
        online = pd.concat(parts) if parts else self.packed.groups.iloc[:0]
        kept = self.packed.groups[~self.packed.groups.index.isin(online.index)]
        return replace(self.packed, groups=pd.concat([kept, online]), cutoff=latest)


class HistoryRefresher:
    """Every ``interval_s``, a refreshed snapshot handed to ``install`` (a daemon thread); failures keep the last one."""

    def __init__(self, history: OnlineHistory, install: Callable[[HistorySnapshot], None], interval_s: float = 30.0) -> None:
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
