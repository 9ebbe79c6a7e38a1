"""Answers to identical repeated requests, in process (default) or in Redis.

The key is the model versions serving plus a hash of the canonical request, so a new model
version can never be answered from an old one's cache (the old keys are simply never asked
again; Redis entries expire, the in-process LRU evicts them).

Redis is optional at every call: when it is down or slow, lookups miss and writes are skipped
(the answer is computed as if nothing were cached), through a circuit breaker (see
:mod:`.dependencies`) that stops trying for a short interval after a failure and comes back
to Redis by itself.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from typing import Any, Protocol

from tracseq_dagster import settings
from tracseq_dagster.serving.dependencies import CircuitBreaker, redis_client, redis_errors


class PredictionCache(Protocol):
    def get(self, key: str) -> dict[str, Any] | None: ...
    def put(self, key: str, value: dict[str, Any]) -> None: ...
    # Whole answers of columnar batches (Arrow bytes), keyed by a hash of the body.
    def get_blob(self, key: str) -> bytes | None: ...
    def put_blob(self, key: str, value: bytes) -> None: ...


def blob_key(model_tag: str, body: bytes, options: str) -> str:
    """The key of a columnar request: the models' tag, the answer's options and the body's bytes."""
    return f"{model_tag}:{options}:{hashlib.blake2b(body, digest_size=16).hexdigest()}"


def cache_key(model_tag: str, record: dict[str, Any]) -> str:
    """A stable key: the models' tag and the record's canonical JSON."""
    canonical = json.dumps(record, sort_keys=True, default=str, separators=(",", ":"))
    return f"{model_tag}:{hashlib.blake2b(canonical.encode(), digest_size=16).hexdigest()}"


class InProcessCache:
    """A bounded LRU, one per worker process; columnar answers in a second one bounded by bytes.

    Answers are kept as JSON bytes, not dicts: 50,000 answers of ~25 nested objects each
    made every full collection of Python's cyclic garbage collector walk a million objects,
    a pause of 100 ms and more that every request in flight waited out. Bytes are not tracked.
    """

    def __init__(self, max_entries: int = 50_000, max_blob_bytes: int = 256 * 2**20) -> None:
        self.max_entries = max_entries
        self.max_blob_bytes = max_blob_bytes
        self._entries: OrderedDict[str, bytes] = OrderedDict()
        self._blobs: OrderedDict[str, bytes] = OrderedDict()
        self._blob_bytes = 0
        self._lock = threading.Lock()

    def get(self, key: str) -> dict[str, Any] | None:
        raw = self._get(self._entries, key)
        return None if raw is None else json.loads(raw)

    def put(self, key: str, value: dict[str, Any]) -> None:
        raw = json.dumps(value, default=str).encode()
        with self._lock:
            self._entries[key] = raw
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def get_blob(self, key: str) -> bytes | None:
        return self._get(self._blobs, key)

    def put_blob(self, key: str, value: bytes) -> None:
        if len(value) > self.max_blob_bytes:
            return
        with self._lock:
            self._blob_bytes += len(value) - len(self._blobs.pop(key, b""))
            self._blobs[key] = value
            while self._blob_bytes > self.max_blob_bytes:
                self._blob_bytes -= len(self._blobs.popitem(last=False)[1])

    def _get(self, entries: OrderedDict[str, bytes], key: str) -> bytes | None:
        with self._lock:
            value = entries.get(key)
            if value is not None:
                entries.move_to_end(key)
            return value


class RedisCache:
    """Shared by every worker and replica; entries expire after ``ttl_s``.

    Never raises for want of Redis: a failed or skipped lookup is a miss, a failed write is
    skipped; ``breaker`` (one per Redis, shared with the online store) counts both.
    """

    def __init__(self, url: str, prefix: str | None = None, ttl_s: int = 3600, breaker: CircuitBreaker | None = None) -> None:
        self._redis = redis_client(url)
        self.prefix = prefix if prefix is not None else settings.redis_prefix() + "prediction:"
        self.ttl_s = ttl_s
        self.breaker = breaker or CircuitBreaker("redis")
        self._errors = redis_errors()

    def get(self, key: str) -> dict[str, Any] | None:
        raw = self.breaker.call(lambda: self._redis.get(self.prefix + key), None, self._errors, "prediction_cache")
        return None if raw is None else json.loads(raw)

    def put(self, key: str, value: dict[str, Any]) -> None:
        raw = json.dumps(value, default=str)
        self.breaker.call(lambda: self._redis.set(self.prefix + key, raw, ex=self.ttl_s), None, self._errors, "prediction_cache")

    def get_blob(self, key: str) -> bytes | None:
        return self.breaker.call(lambda: self._redis.get(self.prefix + "blob:" + key), None, self._errors, "prediction_cache")

    def put_blob(self, key: str, value: bytes) -> None:
        self.breaker.call(lambda: self._redis.set(self.prefix + "blob:" + key, value, ex=self.ttl_s), None, self._errors,
                          "prediction_cache")  # fmt: skip

    def ping(self) -> None:
        """Raises when Redis does not answer (the readiness probe)."""
        self._redis.ping()


def open_cache(url: str | None, breaker: CircuitBreaker | None = None) -> PredictionCache:
    """Redis when a ``redis://`` URL is configured, the in-process LRU otherwise."""
    return RedisCache(url, breaker=breaker) if url else InProcessCache()
