"""Embed each chunked document in a second process while this one parses the next.

Parsing (pdfminer, spaCy) and embedding (torch) each keep one core busy. In one process
they cannot overlap: pdfminer is pure Python and holds the GIL, and an embedding thread
beside it waits for the GIL between torch operations (measured: parse and embed together
in two threads took twice as long as one after the other, BENCHMARKS.md). So the
embedding runs in a worker process started with ``spawn`` (forking a process that runs
Dagster and its threads is unsafe). The worker reads a document's chunks from the lake and
writes their vectors back beside them (``DocumentStore.write_vectors``, stamped with the
model's identity); ``sync_index`` then merges those vectors instead of embedding again.

Embedding is the larger share of the CPU (about two thirds for text PDFs), so there are as
many workers as cores (up to ``MAX_WORKERS``), each with one torch thread: while parsing
goes on they share the cores with it, and after the last document they drain the queue on
every core. One torch thread per process wastes nothing: one process with two threads on
small batches spent 1.7 times the CPU for the same chunks here (BENCHMARKS.md).
"""

from __future__ import annotations

import multiprocessing
import os
import time
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tracseq_dagster.documents.embedding import Embedder, embed_texts, local_spec, make_embedder

# Each worker holds its own copy of the model (~100 MB for MiniLM).
MAX_WORKERS = 4
# The worker process's state, set once by _start_worker.
_worker: dict[str, Any] = {}


@dataclass
class PrefetchReport:
    documents: int = 0
    chunks: int = 0
    embed_seconds: float = 0.0  # workers' wall time spent embedding, summed (overlapping the parsing)
    embed_cpu_seconds: float = 0.0  # workers' CPU time spent embedding, summed
    tail_seconds: float = 0.0  # wall time ``close`` waited after parsing ended
    startup_seconds: float = 0.0  # workers' start and model load (``start``), when timed apart
    errors: list[str] = field(default_factory=list)


def _start_worker(spec: str, ollama_host: str | None) -> None:
    from tracseq_dagster.documents.environment import set_offline_environment

    set_offline_environment()
    embedder = make_embedder(spec, ollama_host=ollama_host)
    if local_spec(embedder) is not None:  # MiniLM on torch or onnxruntime
        embedder.threads = 1  # type: ignore[attr-defined]  # one per process: the processes share the cores
        embedder.load()  # type: ignore[attr-defined]
    _worker["embedder"] = embedder


def _ping(seconds: float) -> int:
    time.sleep(seconds)  # long enough that every worker gets one
    return os.getpid()


def _embed_document(lake_root: str, document_id: str) -> tuple[int, float, float]:
    """Embed one stored document's chunks into its vector file: (chunks, wall s, CPU s)."""
    from tracseq_dagster.documents.store import DocumentStore

    embedder: Embedder = _worker["embedder"]
    started, cpu = time.perf_counter(), time.process_time()
    store = DocumentStore(lake_root)
    chunks = store.read_chunks(document_id)
    if not chunks:
        return 0, 0.0, 0.0
    vectors = embed_texts(embedder, [c.search_text for c in chunks])
    matrix = np.stack([vectors[c.search_text] for c in chunks])
    store.write_vectors(document_id, embedder.identity, [c.chunk_id for c in chunks], matrix)
    return len(chunks), time.perf_counter() - started, time.process_time() - cpu


class EmbeddingPrefetcher:
    """A pool of embedding processes that embed documents as they are chunked.

    ``submit(document_id)`` after a document's chunks are in the lake; ``close()`` when no
    more documents come: it waits for the queued ones and returns what was done. A document
    whose embedding failed is simply not prefetched; ``sync_index`` embeds it itself.
    """

    def __init__(
        self, lake_root: str | Path, spec: str = "minilm", *, ollama_host: str | None = None, workers: int | None = None
    ) -> None:
        self.lake_root = str(lake_root)
        self.workers = workers or max(1, min(os.cpu_count() or 1, MAX_WORKERS))
        self._pool = ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker,
            initargs=(spec, ollama_host),
        )
        self._futures: list[tuple[str, Future[tuple[int, float, float]]]] = []
        self._closed = False
        self.report = PrefetchReport()

    def start(self) -> float:
        """Start the workers and load their models now; the seconds it took (for benchmarks)."""
        started = time.perf_counter()
        pings = [self._pool.submit(_ping, 2.0) for _ in range(self.workers)]
        for ping in pings:
            ping.result()
        self.report.startup_seconds = time.perf_counter() - started
        return self.report.startup_seconds

    def submit(self, document_id: str) -> None:
        self._futures.append((document_id, self._pool.submit(_embed_document, self.lake_root, document_id)))

    def close(self) -> PrefetchReport:
        """No more documents: wait for the queued ones and stop the workers."""
        started = time.perf_counter()
        for document_id, future in self._futures:
            try:
                chunks, seconds, cpu = future.result()
            except Exception as error:  # noqa: BLE001 - sync_index embeds what was not prefetched
                self.report.errors.append(f"{document_id}: {type(error).__name__}: {error}")
                continue
            self.report.documents += 1
            self.report.chunks += chunks
            self.report.embed_seconds += seconds
            self.report.embed_cpu_seconds += cpu
        self.report.tail_seconds = time.perf_counter() - started
        self._futures.clear()
        self._pool.shutdown(wait=True)
        self._closed = True
        return self.report

    def __enter__(self) -> EmbeddingPrefetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._closed:
            self.close()
