"""The latest features of known samples, by id: what ``GET /features`` answers.

``FeatureServerFeatureStore`` reads the ``sample_features`` view of Feast's online store, which
the ``feast_online_features`` asset materialises (:mod:`tracseq_dagster.feature_repo`), through
Feast's feature server over HTTP: the prediction service's way when ``TRACSEQ_FEATURE_SERVER_URL``
is set (its image has no Feast SDK). ``FeastFeatureStore`` answers the same through the Feast SDK,
where it is installed (the platform's own processes). ``OfflineFeatureStore`` answers from the
lake's ``sample_features`` table (slower to start, same answers): alone without a feature store,
and behind ``OnlineOrOfflineStore`` whenever the online side is down (through a circuit breaker,
see :mod:`.dependencies`), back online by itself once it answers again.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pandas as pd

from tracseq_dagster.features import AS_OF_COLUMN, FEATURE_NAMES, SAMPLE_ID
from tracseq_dagster.json_values import json_value
from tracseq_dagster.lake import Lake
from tracseq_dagster.serving.dependencies import CircuitBreaker, redis_errors
from tracseq_dagster.serving.feature_server import FeatureServer, FeatureServerError

if TYPE_CHECKING:  # pragma: no cover
    from feast import FeatureStore as FeastStore


class FeatureStore(Protocol):
    def get_many(self, sample_ids: Iterable[str]) -> dict[str, dict[str, Any]]: ...


def feature_documents(frame: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Rows of a feature table as JSON-ready dictionaries keyed by sample id."""
    columns = [c for c in (*FEATURE_NAMES, AS_OF_COLUMN) if c in frame.columns]
    table = frame.set_index(SAMPLE_ID)[columns] if SAMPLE_ID in frame.columns else frame[columns]
    out: dict[str, dict[str, Any]] = {}
    for sample_id, row in zip(table.index, table.to_dict("records"), strict=True):
        out[str(sample_id)] = {k: json_value(v) for k, v in row.items()}
    return out


def online_documents(ids: list[str], columns: dict[str, Any], stamps: list[pd.Timestamp]) -> dict[str, dict[str, Any]]:
    """Feast's online answer (feature columns aligned with ``ids``, each row's event time) as the
    offline table's documents; a sample with no feature at all is unknown to the store and left out."""
    out: dict[str, dict[str, Any]] = {}
    for i, sample_id in enumerate(ids):
        document = {name: json_value(columns[name][i]) for name in FEATURE_NAMES}
        if all(v is None for v in document.values()):
            continue
        document[AS_OF_COLUMN] = stamps[i].isoformat()
        out[sample_id] = document
    return out


class FeastFeatureStore:
    """The latest sample features from Feast's online store (the Feast SDK), as documents like the offline table's.

    ``as_of`` is the row's event timestamp as Feast keeps it online (whole seconds, as the lab's
    timestamps are). A sample Feast does not know is absent from the answer.
    """

    VIEW = "sample_features"

    def __init__(self, store: FeastStore) -> None:
        self.store = store
        self._references = [f"{self.VIEW}:{name}" for name in FEATURE_NAMES]

    def get_many(self, sample_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        from feast.online_response import TIMESTAMP_POSTFIX

        ids = list(dict.fromkeys(sample_ids))
        if not ids:
            return {}
        response = self.store.get_online_features(features=self._references, entity_rows=[{SAMPLE_ID: s} for s in ids])
        columns = response.to_dict(include_event_timestamps=True)
        stamps = [pd.Timestamp(t, unit="s", tz="UTC") for t in columns[FEATURE_NAMES[0] + TIMESTAMP_POSTFIX]]
        return online_documents(ids, columns, stamps)


class FeatureServerFeatureStore:
    """The documents of :class:`FeastFeatureStore` through Feast's feature server (HTTP): what the
    prediction image uses, since its lock has no Feast SDK. Raises :class:`FeatureServerError`
    when the server fails (the service then answers from the offline table)."""

    def __init__(self, server: FeatureServer) -> None:
        self.server = server
        self._references = [f"{FeastFeatureStore.VIEW}:{name}" for name in FEATURE_NAMES]

    def get_many(self, sample_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        ids = list(dict.fromkeys(sample_ids))
        if not ids:
            return {}
        rows = self.server.online(self._references, SAMPLE_ID, ids)
        return online_documents(ids, rows.columns, [pd.Timestamp(t) for t in rows.timestamps[FEATURE_NAMES[0]]])


class OfflineFeatureStore:
    """The lake's offline table, re-read when the file changes."""

    def __init__(self, lake_dir: str | Path) -> None:
        self.lake = Lake(lake_dir)
        self._stamp: float | None = None
        self._documents: dict[str, dict[str, Any]] = {}

    def get_many(self, sample_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        path = self.lake.features_path
        stamp = path.stat().st_mtime if path.exists() else None
        if stamp != self._stamp:
            self._documents = feature_documents(self.lake.read_features()) if stamp is not None else {}
            self._stamp = stamp
        return {s: self._documents[s] for s in sample_ids if s in self._documents}


class OnlineOrOfflineStore:
    """Redis while it answers, the lake's offline table while it does not (never raises for want of Redis)."""

    def __init__(
        self,
        online: FeatureStore,
        offline: OfflineFeatureStore,
        breaker: CircuitBreaker | None = None,
        errors: tuple[type[BaseException], ...] | None = None,
    ) -> None:
        self.online = online
        self.offline = offline
        self.breaker = breaker or CircuitBreaker("redis")
        self._errors = errors or redis_errors()

    def get_many(self, sample_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        return self.get_many_from(sample_ids)[0]

    def get_many_from(self, sample_ids: Iterable[str]) -> tuple[dict[str, dict[str, Any]], str]:
        """The features found and where from: ``"online"``, or ``"offline"`` when Redis is down."""
        ids = list(sample_ids)
        found = self.breaker.call(lambda: self.online.get_many(ids), None, self._errors, "online_store")
        if found is not None:
            return found, "online"
        return self.offline.get_many(ids), "offline"


def open_feature_store(
    lake_dir: str | Path, breaker: CircuitBreaker | None = None, *, feature_server: FeatureServer | None = None
) -> FeatureStore:
    """Feast's online store through its feature server with the lake's table as the fallback, or the table alone."""
    if feature_server is None:
        return OfflineFeatureStore(lake_dir)
    return OnlineOrOfflineStore(FeatureServerFeatureStore(feature_server), OfflineFeatureStore(lake_dir),
                                breaker or CircuitBreaker("feature_server"), (FeatureServerError,))  # fmt: skip
