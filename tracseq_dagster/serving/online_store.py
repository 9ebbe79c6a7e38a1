"""The online feature store: the latest features of known samples, by id.

``RedisFeatureStore`` keeps one JSON document per sample under ``<prefix><sample_id>``; the
``online_sample_features`` asset publishes the offline table to it after every rebuild.
``OfflineFeatureStore`` answers from the lake's ``sample_features`` table when no Redis is
configured (slower to start, same answers). Both return the same dictionaries.
``OnlineOrOfflineStore`` is what the service uses with Redis configured: Redis, and the
offline table whenever Redis is down (through the circuit breaker it shares with the cache,
see :mod:`.dependencies`), back on Redis by itself once it answers again.

``FeastFeatureStore`` answers the same dictionaries from Feast's online store, which the
``feast_online_features`` asset materialises (:mod:`tracseq_dagster.feature_repo`); it
replaces ``RedisFeatureStore`` and its publisher when ``open_feature_store`` is given the Feast
settings (the same fallback to the offline table applies).

``OnlineAggregates`` reads the lab's latest per-entity aggregates (operator, site, freezer,
instrument) from Feast's online store, cached per entity for a few seconds: what serving needs
to see new history without a rebuild (see ``benchmarks/feast_online.py`` for its cost).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd
import redis

from tracseq_dagster import settings
from tracseq_dagster.features import AS_OF_COLUMN, FAILURE_PRIOR, FEATURE_NAMES, SAMPLE_ID
from tracseq_dagster.json_values import json_value
from tracseq_dagster.lake import Lake
from tracseq_dagster.serving.dependencies import CircuitBreaker, redis_client, redis_errors

if TYPE_CHECKING:  # pragma: no cover
    from feast import FeatureStore as FeastStore

    from tracseq_dagster.feature_repo.config import FeastSettings

#: Samples written per Redis round trip when publishing.
PUBLISH_CHUNK = 5_000


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


def features_prefix() -> str:
    return settings.redis_prefix() + "features:"


class RedisFeatureStore:
    """``client`` defaults to redis-py's (its retries suit publishing); the service passes a quick one."""

    def __init__(self, url: str, prefix: str | None = None, client: redis.Redis | None = None) -> None:
        self._redis = client if client is not None else redis.Redis.from_url(url)
        self.prefix = prefix if prefix is not None else features_prefix()

    def publish(self, frame: pd.DataFrame) -> int:
        """Write every row of a feature table; returns how many samples were written."""
        documents = feature_documents(frame)
        items = list(documents.items())
        for start in range(0, len(items), PUBLISH_CHUNK):
            pipe = self._redis.pipeline(transaction=False)
            for sample_id, document in items[start : start + PUBLISH_CHUNK]:
                pipe.set(self.prefix + sample_id, json.dumps(document))
            pipe.execute()
        return len(items)

    def get_many(self, sample_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        ids = list(dict.fromkeys(sample_ids))
        if not ids:
            return {}
        values = self._redis.mget([self.prefix + s for s in ids])
        return {s: json.loads(v) for s, v in zip(ids, values, strict=True) if v is not None}


class FeastFeatureStore:
    """The latest sample features from Feast's online store, as the documents ``RedisFeatureStore`` returns.

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
        stamps = columns[FEATURE_NAMES[0] + TIMESTAMP_POSTFIX]
        out: dict[str, dict[str, Any]] = {}
        for i, sample_id in enumerate(ids):
            document = {name: json_value(columns[name][i]) for name in FEATURE_NAMES}
            if all(v is None for v in document.values()):
                continue  # unknown to the online store
            document[AS_OF_COLUMN] = pd.Timestamp(stamps[i], unit="s", tz="UTC").isoformat()
            out[sample_id] = document
        return out


#: Join key -> (feature view, its features): the aggregates of :mod:`tracseq_dagster.entity_history`.
AGGREGATE_VIEWS: dict[str, tuple[str, tuple[str, ...]]] = {
    "operator_id": ("operator_history", ("operator_failure_rate", "operator_history_count")),
    "site": ("site_history", ("site_failure_rate", "site_history_count")),
    "freezer": ("freezer_history", ("freezer_utilisation", "freezer_sample_count")),
    "instrument_id": ("instrument_history", ("instrument_failure_rate", "instrument_recent_failures",
                                             "instrument_recent_libraries", "instrument_recent_runs")),
}  # fmt: skip


class OnlineAggregates:
    """The latest aggregates of operators, sites, freezers and instruments, by entity, from Feast.

    An entity's values are kept ``ttl_s`` seconds (they change only when a label or a receipt
    arrives and the store is materialised again), so a steady request rate costs about one Feast
    read per entity and period instead of one per request. Values are as Feast holds them: None
    for an entity without history, where the feature code's own fallback applies (the prior rate
    0.15 and a count of 0; the sample's own box for freezer utilisation).
    """

    def __init__(self, store: FeastStore, ttl_s: float = 5.0, maxsize: int = 100_000) -> None:
        from cachetools import TTLCache

        self.store = store
        self._cache: TTLCache[tuple[Any, Any], Any] = TTLCache(maxsize=maxsize, ttl=ttl_s, timer=time.monotonic)
        self._lock = threading.Lock()
        self.reads = 0  # Feast reads made (one per join key with misses per call)

    def get(self, key: str, values: Iterable[Any]) -> dict[str, dict[str, Any]]:
        """``{value: {feature: value or None}}`` for each distinct entity value of join key ``key``
        (values as text; missing values are skipped)."""
        if key not in AGGREGATE_VIEWS:
            raise KeyError(f"no aggregates by {key!r}; by {', '.join(AGGREGATE_VIEWS)}")
        wanted = list(dict.fromkeys(str(v) for v in values if v is not None and not pd.isna(v)))
        with self._lock:
            found = {v: self._cache[(key, v)] for v in wanted if (key, v) in self._cache}
        missing = [v for v in wanted if v not in found]
        if missing:
            view, features = AGGREGATE_VIEWS[key]
            self.reads += 1
            columns = self.store.get_online_features(
                features=[f"{view}:{f}" for f in features], entity_rows=[{key: v} for v in missing]
            ).to_dict()
            fresh = {v: {f: json_value(columns[f][i]) for f in features} for i, v in enumerate(missing)}
            with self._lock:
                for v, document in fresh.items():
                    self._cache[(key, v)] = document
            found.update(fresh)
        return {v: found[v] for v in wanted}

    def sample_aggregates(self, operator_ids: Iterable[Any], sites: Iterable[Any], storage_locations: Iterable[Any],
                          box_occupancy: Iterable[Any]) -> dict[str, np.ndarray]:  # fmt: skip
        """The history aggregates of the sample features for new samples (one per position), as of now.

        ``operator_failure_rate``, ``operator_history_count``, ``site_failure_rate``,
        ``site_history_count`` and ``freezer_utilisation`` as :func:`~tracseq_dagster.features.compute_features`
        computes them for a sample the history does not hold yet, with its fallbacks: the prior
        rate and a count of 0 without history, the sample's own box (``box_occupancy / 100``)
        for a freezer without history.
        """
        operators, sites_, locations = list(operator_ids), list(sites), list(storage_locations)
        freezers = [loc.split("/", 1)[0] if isinstance(loc, str) else None for loc in locations]
        own_box = np.asarray([np.nan if b is None else float(b) for b in box_occupancy], dtype=np.float64) / 100.0
        out: dict[str, np.ndarray] = {}
        for key, values, rate, count in (("operator_id", operators, "operator_failure_rate", "operator_history_count"),
                                         ("site", sites_, "site_failure_rate", "site_history_count")):  # fmt: skip
            found = self.get(key, values)
            rows = [found.get(str(v), {}) if v is not None else {} for v in values]
            out[rate] = np.asarray([FAILURE_PRIOR if r.get(rate) is None else r[rate] for r in rows], dtype=np.float64)
            out[count] = np.asarray([0.0 if r.get(count) is None else r[count] for r in rows], dtype=np.float64)
        found = self.get("freezer", freezers)
        utilisation = [found.get(f, {}).get("freezer_utilisation") if f is not None else None for f in freezers]
        out["freezer_utilisation"] = np.asarray([b if u is None else u for u, b in zip(utilisation, own_box, strict=True)],
                                                dtype=np.float64)  # fmt: skip
        return out


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

    def __init__(self, online: FeatureStore, offline: OfflineFeatureStore, breaker: CircuitBreaker | None = None) -> None:
        self.online = online
        self.offline = offline
        self.breaker = breaker or CircuitBreaker("redis")
        self._errors = redis_errors()

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
    redis_url: str | None, lake_dir: str | Path, breaker: CircuitBreaker | None = None, feast: FeastSettings | None = None
) -> FeatureStore:
    """Redis with the offline table as its fallback when a URL is given, the offline table alone otherwise.

    With ``feast`` (settings whose online store is Redis), the online side is Feast's online
    store instead of the hand-published documents, with the request path's short Redis timeouts.
    """
    if feast is not None and feast.redis_url:
        from dataclasses import replace

        from tracseq_dagster.feature_repo.store import open_store

        quick = replace(feast, redis_timeout_s=feast.redis_timeout_s or settings.redis_timeout_s())
        return OnlineOrOfflineStore(FeastFeatureStore(open_store(quick)), OfflineFeatureStore(lake_dir), breaker)
    if not redis_url:
        return OfflineFeatureStore(lake_dir)
    return OnlineOrOfflineStore(
        RedisFeatureStore(redis_url, client=redis_client(redis_url)), OfflineFeatureStore(lake_dir), breaker
    )
