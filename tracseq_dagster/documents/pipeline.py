"""The two steps every entry point runs: one file into chunks, and the index brought in line.

``chunk_file`` is one ``document_chunks`` partition; ``sync_index`` is ``document_index``.
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

import fsspec
import numpy as np

from tracseq_dagster.documents.chunking import Chunk, chunk_document
from tracseq_dagster.documents.doctypes import classify_document
from tracseq_dagster.documents.embedding import Embedder
from tracseq_dagster.documents.index import DocumentIndex
from tracseq_dagster.documents.parsing import ParsedDocument, parse_document
from tracseq_dagster.documents.store import DocumentStore


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

    def record(self, source: str) -> dict:
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
            "seconds": self.seconds,
        }


def chunk_file(url: str, *, document_id: str, ocr: bool = True, **storage_options: object) -> ChunkedDocument:
    """Parse and chunk one landed file (raises DocumentParseError with a reason)."""
    with local_file(url, **storage_options) as path:
        parsed = parse_document(path, ocr=ocr)
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
    chunks_inserted: int = 0
    chunks_deleted: int = 0
    rows: int = 0
    indexes: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)  # model_load is apart from embed


# Texts per call to the embedder: large enough that its length-sorted batches pad little,
# small enough to bound memory when a whole folder lands at once.
EMBED_GROUP = 2048


def embed_texts(embedder: Embedder, texts: list[str], *, group: int = EMBED_GROUP) -> dict[str, np.ndarray]:
    """Each distinct text's vector, the texts of all documents encoded together."""
    unique = list(dict.fromkeys(texts))
    vectors: dict[str, np.ndarray] = {}
    for start in range(0, len(unique), group):
        part = unique[start : start + group]
        vectors.update(zip(part, embedder.embed_documents(part)))
    return vectors


def sync_index(
    store: DocumentStore, index: DocumentIndex, embedder: Embedder, current_ids: set[str]
) -> IndexReport:
    """Make the index hold exactly the chunks of ``current_ids`` that the lake has.

    Unchanged documents are skipped before embedding (their chunk ids are all present).
    The chunks of all new and changed documents are embedded together, in one call per
    ``EMBED_GROUP`` texts, except those whose text the index already holds for the same
    source file (the unchanged pages of a changed document): their vectors are reused.
    Each document is then merged on its own. Documents no longer current are deleted from
    the index and the lake. The embedding model's one-off load is timed apart from embedding.
    """
    report = IndexReport()
    timer = {"model_load": 0.0, "embed": 0.0, "write": 0.0}
    stored = set(store.document_ids())
    pending: list[tuple[str, list[Chunk]]] = []
    for document_id in sorted(stored & current_ids):
        chunks = store.read_chunks(document_id)
        if not chunks or not index.needs_write(chunks):
            report.unchanged += 1
            continue
        pending.append((document_id, chunks))
    if pending:
        load = getattr(embedder, "load", None)
        timer["model_load"] = load() if callable(load) else 0.0
        started = time.perf_counter()
        every = [c for _, chunks in pending for c in chunks]
        known = index.vectors_by_text({c.source for c in every})
        fresh = [c.search_text for c in every if c.search_text not in known]
        vectors = {**known, **embed_texts(embedder, fresh)}
        report.chunks_embedded = len(fresh)
        report.chunks_reused = len(every) - len(fresh)
        timer["embed"] = time.perf_counter() - started
        started = time.perf_counter()
        for document_id, chunks in pending:
            stats = index.upsert_document(chunks, np.stack([vectors[c.search_text] for c in chunks]))
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
    report.rows = index.count()
    report.documents = len(set(index.documents()))
    report.seconds = timer
    return report


def index_folder(
    folder: str | Path, *, lake_root: str | Path, lancedb_uri: str | Path, embedder: str = "minilm"
) -> tuple[DocumentIndex, Embedder, IndexReport]:
    """Chunk and index every document of a local folder in process, without Dagster.

    For the benchmark and tests of retrieval; files that cannot be parsed are left out.
    """
    from tracseq_dagster.documents.embedding import make_embedder
    from tracseq_dagster.documents.parsing import DOCUMENT_SUFFIXES, DocumentParseError
    from tracseq_dagster.documents.qa import open_index
    from tracseq_dagster.landing import content_hash, list_landing_files

    store = DocumentStore(lake_root)
    current = set()
    for landed in list_landing_files(str(folder), DOCUMENT_SUFFIXES):
        document_id = content_hash(landed.path)
        current.add(document_id)
        if document_id in store.document_ids():
            continue
        try:
            chunked = chunk_file(landed.path, document_id=document_id)
        except DocumentParseError:
            continue
        store.write(document_id, chunked.chunks, chunked.record(landed.path))
    vectors = make_embedder(embedder)
    index = open_index(str(lancedb_uri), vectors)
    return index, vectors, sync_index(store, index, vectors, current)
