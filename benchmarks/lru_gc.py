"""The in-process prediction cache: its hand-written OrderedDict LRU against ``cachetools.LRUCache``.

The cache holds answers as JSON bytes so that a full one (50,000 answers) adds nothing for
Python's cyclic garbage collector to walk (see ``InProcessCache``). A library LRU is only a
replacement if it keeps that: this measures, for both, with the same 50,000 real-sized
answers and the same lock discipline,

* the objects a full cache adds to the collector's tracked set (``gc.get_objects()``),
* the pause of a full collection (``gc.collect()``, median of repeats) with the cache full,
* the memory the cache structure holds beyond the answers themselves (tracemalloc),
* CPU time of a mixed get/put load (80 % hits, LRU evictions at the bound),
* the blob cache bounded by bytes (cachetools' ``getsizeof=len``).

CPU time, not wall-clock: the machine is shared.

    .venv/bin/python benchmarks/lru_gc.py [--entries 50000] [--ops 200000]
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import threading
import time
import tracemalloc
from typing import Any

import cachetools
import numpy as np

from tracseq_dagster.serving.prediction_cache import InProcessCache


class CachetoolsCache:
    """``InProcessCache`` with cachetools LRUs in place of the OrderedDicts (same lock, same bytes)."""

    def __init__(self, max_entries: int = 50_000, max_blob_bytes: int = 256 * 2**20) -> None:
        self.max_blob_bytes = max_blob_bytes
        self._entries: cachetools.LRUCache[str, bytes] = cachetools.LRUCache(maxsize=max_entries)
        self._blobs: cachetools.LRUCache[str, bytes] = cachetools.LRUCache(maxsize=max_blob_bytes, getsizeof=len)
        self._lock = threading.Lock()

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            raw = self._entries.get(key)
        return None if raw is None else json.loads(raw)

    def put(self, key: str, value: dict[str, Any]) -> None:
        raw = json.dumps(value, default=str).encode()
        with self._lock:
            self._entries[key] = raw

    def get_blob(self, key: str) -> bytes | None:
        with self._lock:
            return self._blobs.get(key)

    def put_blob(self, key: str, value: bytes) -> None:
        if len(value) > self.max_blob_bytes:
            return
        with self._lock:
            self._blobs[key] = value


def answer(i: int) -> dict[str, Any]:
    """An answer of the service's size: a prediction with ~25 nested objects (risk factors, advice)."""
    return {
        "sample_id": f"TS-2026-{i:06d}",
        "model": "sample_quality",
        "model_version": "3",
        "variant": "champion",
        "quality_probability": 0.7 + (i % 100) / 1000,
        "category": "high",
        "predicted_status": "pass",
        "probabilities": {"pass": 0.71, "borderline": 0.2, "fail": 0.09},
        "risk_factors": [{"feature": f"f{j}", "value": j * 1.5, "contribution": -0.01 * j, "unit": "h"} for j in range(8)],
        "advice": [
            {"rule": f"r{j}", "text": "keep the sample at -80 °C", "sop": {"file": "sop.pdf", "page": j}} for j in range(4)
        ],
    }


def collection_ms(repeats: int = 15) -> float:
    """Median CPU time of a full collection (CPU time: the machine is shared)."""
    pauses = []
    for _ in range(repeats):
        start = time.process_time()
        gc.collect()
        pauses.append(time.process_time() - start)
    return statistics.median(pauses) * 1000


def measure(name: str, make, entries: int, ops: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    gc.collect()
    empty_ms = collection_ms()
    baseline_objects = len(gc.get_objects())
    answers = [answer(i) for i in range(entries)]
    tracemalloc.start()
    cache = make(max_entries=entries)
    before, _ = tracemalloc.get_traced_memory()
    for i, value in enumerate(answers):
        cache.put(f"k{i}", value)
    held, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    raw_bytes = sum(len(json.dumps(a, default=str).encode()) for a in answers)
    del answers
    gc.collect()
    tracked = len(gc.get_objects()) - baseline_objects
    full_ms = collection_ms()
    rng = np.random.default_rng(0)
    hot = rng.integers(0, entries, ops)
    fresh = rng.random(ops) < 0.2
    value = answer(0)
    start = time.process_time()
    for n in range(ops):
        if fresh[n]:
            cache.put(f"new{n}", value)
        else:
            cache.get(f"k{hot[n]}")
    mixed_cpu = time.process_time() - start
    blob = b"x" * 200_000
    blobs = make(max_entries=10, max_blob_bytes=64 * 2**20)
    start = time.process_time()
    for n in range(20_000):
        blobs.put_blob(f"b{n % 700}", blob)
        blobs.get_blob(f"b{(n * 7) % 700}")
    blob_cpu = time.process_time() - start
    return {
        "tracked_objects_added": tracked,
        "gc_pause_ms_empty": empty_ms,
        "gc_pause_ms_full": full_ms,
        "structure_bytes": held - before - raw_bytes,
        "mixed_cpu_s": mixed_cpu,
        "blob_cpu_s": blob_cpu,
    }


CACHES = {"OrderedDict (kept)": InProcessCache, "cachetools.LRUCache": CachetoolsCache}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=50_000)
    parser.add_argument("--ops", type=int, default=200_000)
    parser.add_argument("--only", choices=sorted(CACHES), help="measure one cache (a fresh process per cache: run twice)")
    args = parser.parse_args()
    if args.only is None:  # each cache in its own process, so neither measures the other's leftovers
        import subprocess

        for name in CACHES:
            subprocess.run(
                [sys.executable, __file__, "--entries", str(args.entries), "--ops", str(args.ops), "--only", name], check=True
            )
        return
    rows = {args.only: measure(args.only, CACHES[args.only], args.entries, args.ops)}
    print(
        f"python {sys.version.split()[0]}, {args.entries} entries, {args.ops} mixed operations (80 % gets of cached keys, 20 % puts that evict)"
    )
    print(f"cachetools {cachetools.__version__}")
    print(
        "| cache | GC-tracked objects added | gc.collect() CPU ms, cache empty → full | structure bytes beyond the answers | mixed load CPU s | blob LRU CPU s |"
    )
    print("|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['tracked_objects_added']:,} | {r['gc_pause_ms_empty']:.2f} → {r['gc_pause_ms_full']:.2f} | {r['structure_bytes']:,} | "
              f"{r['mixed_cpu_s']:.3f} | {r['blob_cpu_s']:.3f} |")  # fmt: skip


if __name__ == "__main__":
    main()
