"""The two steps every entry point runs: one file into chunks, and the index brought in line.

``chunk_file`` is one ``document_chunks`` partition; ``sync_index`` is ``document_index``
(which merges the vectors ``prefetch.py`` embedded while parsing went on, and embeds the rest).
The assets, ``tracseq documents ingest`` and ``benchmarks/rag.py`` call these, so the
numbers in BENCHMARKS.md are the product's.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fsspec
import numpy as np

from tracseq_dagster.documents.chunking import Chunk, chunk_document
from tracseq_dagster.documents.doctypes import classify_document
from tracseq_dagster.documents.embedding import Embedder, embed_texts, local_spec
from tracseq_dagster.documents.index import DocumentIndex
from tracseq_dagster.documents.parsing import ParsedDocument, parse_document
from tracseq_dagster.documents.prefetch import EmbeddingPrefetcher
from tracseq_dagster.documents.store import DocumentStore
from tracseq_dagster.documents.term_store import index_statistics


@contextmanager
def local_file(url: str, **storage_options: object) -> Iterator[str]:
    """A local path for any fsspec URL: the file itself, or a temporary copy of a remote one."""
    fs, path = fsspec.core.url_to_fs(url, **storage_options)
    protocols = fs.protocol if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,)
    if "file" in protocols or "local" in protocols:
        yield path
        return
    with tempfile.TemporaryDirectory() as folder:
        target = Path(folder) / Path(path).name
        with fs.open(path, "rb") as source, target.open("wb") as out:
            shutil.copyfileobj(source, out)
        yield str(target)


@dataclass
class ChunkedDocument:
    parsed: ParsedDocument
    chunks: list[Chunk]
    document_type: str
    seconds: dict[str, float]

    def record(self, source: str) -> dict[str, Any]:
        return {
            "source": source,
            "file_type": self.parsed.file_type,
            "document_type": self.document_type,
            "title": self.chunks[0].title if self.chunks else "",
            "pages": self.parsed.pages,
            "ocr_pages": self.parsed.ocr_pages,
            "elements": len(self.parsed.elements),
            "chunks": len(self.chunks),
            "characters": self.parsed.characters,
            "parser": self.parsed.parser,
            "seconds": self.seconds,
        }


def chunk_file(
    url: str, *, document_id: str, ocr: bool = True, pdf_engine: str | None = None, **storage_options: object
) -> ChunkedDocument:
    """Parse and chunk one landed file (raises DocumentParseError with a reason); ``pdf_engine``: parsing.py."""
    with local_file(url, **storage_options) as path:
        parsed = parse_document(path, ocr=ocr, pdf_engine=pdf_engine)
    started = time.perf_counter()
    document_type = classify_document(url, parsed.page_text(1))
    chunks = chunk_document(parsed, document_id=document_id, source=url, document_type=document_type)
    seconds = {**parsed.seconds, "chunk": time.perf_counter() - started}
    return ChunkedDocument(parsed, chunks, document_type, seconds)


@dataclass
class IndexReport:
    documents: int = 0  # current documents in the index after the sync
    written: list[str] = field(default_factory=list)  # document ids merged (new or changed)
    unchanged: int = 0
    removed: list[str] = field(default_factory=list)  # document ids no longer in the landing folder
    chunks_embedded: int = 0  # chunks whose text went through the embedding model
    chunks_reused: int = 0  # chunks of a changed document whose text was already indexed: vector reused
    chunks_prefetched: int = 0  # chunks whose vectors the lake held from the same model (prefetch.py)
    rechunked: list[str] = field(default_factory=list)  # documents parsed again: another parser had made their chunks
    stale: list[str] = field(default_factory=list)  # such documents whose file could not be parsed again here
    chunks_inserted: int = 0
    chunks_deleted: int = 0
    rows: int = 0
    indexes: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)  # model_load is apart from embed


def rechunk_stale(store: DocumentStore, document_ids: list[str], pdf_engine: str | None = None) -> tuple[list[str], list[str]]:
    """Parse again the documents whose chunks another parser made (store.parsed_by_current).

    Their file is read from the source the record names, if it still holds the same bytes
    (the document id is their hash); the new chunks replace the old in the lake, and
    sync_index then merges them like a changed file's (the old chunks go in the same
    commit). Returns (parsed again, left as they were: file gone, changed, remote or unreadable).
    """
    from tracseq_dagster.documents.parsing import DocumentParseError
    from tracseq_dagster.landing import content_hash

    rechunked: list[str] = []
    stale: list[str] = []
    for document_id in document_ids:
        if store.parsed_by_current(document_id, pdf_engine):
            continue
        source = str(store.read_record(document_id).get("source", ""))
        try:
            if content_hash(source) != document_id:
                raise OSError(f"{source} no longer holds document {document_id}")
            chunked = chunk_file(source, document_id=document_id, pdf_engine=pdf_engine)
        except (OSError, ValueError, DocumentParseError):
            stale.append(document_id)
            continue
        store.write(document_id, chunked.chunks, chunked.record(source))
        rechunked.append(document_id)
    return rechunked, stale


# Below this many chunks, starting worker processes (a model load each) costs more than
# embedding them here on one core.
PARALLEL_MIN_CHUNKS = 64


def sync_index(
    store: DocumentStore,
    index: DocumentIndex,
    embedder: Embedder,
    current_ids: set[str],
    *,
    parallel_min_chunks: float = PARALLEL_MIN_CHUNKS,
    pdf_engine: str | None = None,
) -> IndexReport:
    """Make the index hold exactly the chunks of ``current_ids`` that the lake has.

    Documents another parser chunked (an older default) are parsed again first (rechunk_stale).
    Unchanged documents are skipped before embedding (their chunk ids are all present).
    The chunks of all new and changed documents are embedded together, in one call per
    ``embedding.EMBED_GROUP`` texts, except those already embedded: chunks whose vectors the lake
    holds from the same model (embedded while parsing went on, see prefetch.py; vectors of
    another model or variant are ignored and embedded again), and chunks whose text the
    index already holds for the same source file (the unchanged pages of a changed
    document). New documents of at least ``parallel_min_chunks`` chunks in all are embedded
    by one single-threaded MiniLM process per core (prefetch.py), the rest here. Each
    document is then merged on its own. Documents no longer current are
    deleted from the index and the lake. The embedding model is loaded only when something
    is left to embed, and its one-off load is timed apart from embedding.
    """
    report = IndexReport()
    timer = {"model_load": 0.0, "embed": 0.0, "write": 0.0}
    stored = set(store.document_ids())
    started = time.perf_counter()
    report.rechunked, report.stale = rechunk_stale(store, sorted(stored & current_ids), pdf_engine)
    timer["rechunk"] = time.perf_counter() - started
    pending: list[tuple[str, list[Chunk]]] = []
    for document_id in sorted(stored & current_ids):
        chunks = store.read_chunks(document_id)
        if not chunks or not index.needs_write(chunks):
            report.unchanged += 1
            continue
        pending.append((document_id, chunks))
    if pending:
        started = time.perf_counter()
        every = [c for _, chunks in pending for c in chunks]
        prefetched: dict[str, np.ndarray] = {}
        for document_id, _ in pending:
            prefetched.update(store.read_vectors(document_id, embedder.identity))
        known = index.vectors_by_text({c.source for c in every if c.chunk_id not in prefetched})

        def not_yet_embedded() -> list[str]:  # neither prefetched nor already in the index
            return [c.search_text for c in every if c.chunk_id not in prefetched and c.search_text not in known]

        fresh = not_yet_embedded()
        whole = _new_documents(pending, prefetched, known)
        spec = local_spec(embedder)
        if spec is not None and len(fresh) >= parallel_min_chunks and len(whole) > 1:
            embedded_apart = _embed_in_workers(store, embedder, whole, spec)
            prefetched.update(embedded_apart)
            fresh = not_yet_embedded()
        else:
            embedded_apart = {}
        load = getattr(embedder, "load", None)
        if fresh and callable(load):
            timer["model_load"] = load()
            started += timer["model_load"]
        vectors = {**known, **embed_texts(embedder, fresh)}
        report.chunks_prefetched = sum(c.chunk_id in prefetched and c.chunk_id not in embedded_apart for c in every)
        report.chunks_embedded = len(fresh) + len(embedded_apart)
        report.chunks_reused = len(every) - report.chunks_embedded - report.chunks_prefetched
        timer["embed"] = time.perf_counter() - started
        started = time.perf_counter()
        for document_id, chunks in pending:
            matrix = np.stack([prefetched[c.chunk_id] if c.chunk_id in prefetched else vectors[c.search_text] for c in chunks])
            stats = index.upsert_document(chunks, matrix)
            report.written.append(document_id)
            report.chunks_inserted += stats.inserted
            report.chunks_deleted += stats.deleted
        timer["write"] = time.perf_counter() - started
    gone = (set(index.documents()) | stored) - current_ids
    started = time.perf_counter()
    report.chunks_deleted += index.delete_documents(sorted(gone))
    for document_id in gone:
        store.remove(document_id)
    report.removed = sorted(gone)
    timer["delete"] = time.perf_counter() - started
    started = time.perf_counter()
    if report.written or report.removed or not index.index_names():
        report.indexes = index.refresh_indexes()
    timer["indexes"] = time.perf_counter() - started
    started = time.perf_counter()
    index_statistics(index)  # counted here, once, so that no question waits for them (term_store.py)
    timer["term_statistics"] = time.perf_counter() - started
    report.rows = index.count()
    report.documents = len(set(index.documents()))
    report.seconds = timer
    return report


def _new_documents(pending: list[tuple[str, list[Chunk]]], prefetched: dict[str, Any], known: dict[str, Any]) -> list[str]:
    """Documents none of whose chunks has a vector yet."""
    return [d for d, chunks in pending if not any(c.chunk_id in prefetched or c.search_text in known for c in chunks)]


def _embed_in_workers(store: DocumentStore, embedder: Embedder, document_ids: list[str], spec: str) -> dict[str, np.ndarray]:
    """Embed whole documents with one single-threaded worker process per core; chunk id -> vector."""
    with EmbeddingPrefetcher(store.root.parent, spec) as workers:
        for document_id in document_ids:
            workers.submit(document_id)
    vectors: dict[str, np.ndarray] = {}
    for document_id in document_ids:
        vectors.update(store.read_vectors(document_id, embedder.identity))
    return vectors


def index_folder(
    folder: str | Path,
    *,
    lake_root: str | Path,
    lancedb_uri: str | Path,
    embedder: str = "minilm",
    prefetch: bool = False,
    in_process: bool = False,
    pdf_engine: str | None = None,
) -> tuple[DocumentIndex, Embedder, IndexReport]:
    """Chunk and index every document of a local folder in process, without Dagster.

    For the benchmark and tests of retrieval; files that cannot be parsed are left out.
    ``prefetch`` embeds each document in a worker process while the next one is parsed,
    as ``tracseq documents ingest`` does, except a new version of a file already in the lake
    (``prefetch_wanted``); ``in_process`` embeds everything in this process.
    """
    from tracseq_dagster.documents.embedding import make_embedder
    from tracseq_dagster.documents.parsing import DOCUMENT_SUFFIXES, DocumentParseError
    from tracseq_dagster.documents.qa import open_index
    from tracseq_dagster.landing import content_hash, list_landing_files

    store = DocumentStore(lake_root)
    current = set()
    prefetcher = EmbeddingPrefetcher(lake_root, embedder) if prefetch else None
    by_source = store.documents_by_source()
    for landed in list_landing_files(str(folder), DOCUMENT_SUFFIXES):
        document_id = content_hash(landed.path)
        current.add(document_id)
        if document_id in store.document_ids() and store.parsed_by_current(document_id, pdf_engine):
            continue
        try:
            chunked = chunk_file(landed.path, document_id=document_id, pdf_engine=pdf_engine)
        except DocumentParseError:
            continue
        store.write(document_id, chunked.chunks, chunked.record(landed.path))
        if prefetcher is not None and prefetch_wanted(by_source, landed.path, document_id):
            prefetcher.submit(document_id)
    if prefetcher is not None:
        prefetcher.close()
    vectors = make_embedder(embedder)
    index = open_index(str(lancedb_uri), vectors)
    parallel = float("inf") if in_process else PARALLEL_MIN_CHUNKS
    return index, vectors, sync_index(store, index, vectors, current, parallel_min_chunks=parallel, pdf_engine=pdf_engine)


def prefetch_wanted(by_source: dict[str, list[str]], source: str, document_id: str) -> bool:
    """Whether to embed a just-chunked document whole in the prefetch workers.

    Not when the lake holds another version of the same file (``by_source``:
    DocumentStore.documents_by_source, read before this ingest): that version is indexed, and
    sync_index reuses the vectors of every chunk whose text it already has (the unchanged
    pages) and embeds only the rest, where a worker would embed every chunk again.
    """
    return not any(other != document_id for other in by_source.get(source, []))
