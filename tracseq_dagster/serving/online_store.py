"""The online feature store: the latest features of known samples, by id.

``RedisFeatureStore`` keeps one JSON document per sample under ``<prefix><sample_id>``; the
``online_sample_features`` asset publishes the offline table to it after every rebuild.
``OfflineFeatureStore`` answers from the lake's ``sample_features`` table when no Redis is
configured (slower to start, same answers). Both return the same dictionaries.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

import pandas as pd
import redis

from tracseq_dagster import settings
from tracseq_dagster.features import AS_OF_COLUMN, FEATURE_NAMES, SAMPLE_ID
from tracseq_dagster.lake import Lake

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
        out[str(sample_id)] = {k: _json_value(v) for k, v in row.items()}
    return out


def _json_value(value: Any) -> Any:
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value.item() if hasattr(value, "item") else value


def features_prefix() -> str:
    return settings.redis_prefix() + "features:"


class RedisFeatureStore:
    def __init__(self, url: str, prefix: str | None = None) -> None:
        self._redis = redis.Redis.from_url(url)
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


def open_feature_store(redis_url: str | None, lake_dir: str | Path) -> FeatureStore:
    return RedisFeatureStore(redis_url) if redis_url else OfflineFeatureStore(lake_dir)
