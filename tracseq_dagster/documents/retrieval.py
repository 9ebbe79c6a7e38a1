"""Hybrid retrieval: vector and full-text search fused by reciprocal rank, with filters.

Both searches run on the LanceDB table and are fused here with reciprocal rank fusion
(score = sum over the two lists of 1 / (RRF_K + rank), rank from 1; LanceDB's RRFReranker
computes the same): a passage ranked high by either the meaning of the question or its
exact words (sample ids, run names, reagent lots) comes first. Issuing the two searches
directly, each selecting only the columns a passage needs, instead of LanceDB's Python
hybrid query builder saves most of the per-query cost (BENCHMARKS.md): the builder starts a
thread pool per query, reads every column of both result sets, normalises scores and
re-sorts them in Arrow, and the vectors came back as Python lists.

RRF scores are ranks, not evidence, so every passage also carries its cosine similarity to
the question, computed from its stored vector; the best one is compared with a threshold
calibrated on questions the documents do and do not answer (BENCHMARKS.md) to decide
whether the evidence is strong enough to answer at all.
"""

from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from tracseq_dagster.documents.embedding import Embedder
from tracseq_dagster.documents.index import FTS_COLUMN, VECTOR_COLUMN, DocumentIndex, _quote, vector_matrix
from tracseq_dagster.documents.normalise import normalise

DEFAULT_TOP_K = 5
# Calibrated with benchmarks/rag.py (BENCHMARKS.md, "Evidence threshold"): with MiniLM the best
# passage of an off-topic question scores below it, that of an answerable one above it.
DEFAULT_MIN_SIMILARITY = 0.18
CANDIDATES = 30  # per search before fusion
ANN_NPROBES = 20


@dataclass(frozen=True)
class Passage:
    """One retrieved chunk with where it came from and how well it matched."""

    chunk_id: str
    source: str
    file_name: str
    document_type: str
    title: str
    section: str
    page_start: int
    page_end: int
    text: str
    score: float  # RRF relevance: higher is better, for ranking only
    similarity: float  # cosine similarity with the question, -1..1

    @property
    def citation(self) -> str:
        pages = f"p. {self.page_start}" if self.page_start == self.page_end else f"pp. {self.page_start}-{self.page_end}"
        return f"{self.file_name}, {pages}"


@dataclass(frozen=True)
class Filters:
    document_type: str | None = None
    file_name: str | None = None

    def where(self) -> str | None:
        clauses = []
        if self.document_type:
            clauses.append(f"document_type = {_quote(self.document_type)}")
        if self.file_name:
            clauses.append(f"file_name = {_quote(self.file_name)}")
        return " AND ".join(clauses) or None


def fts_query(question: str) -> str:
    """The question as plain, normalised words: the full-text parser reads some punctuation as syntax."""
    return " ".join("".join(ch if ch.isalnum() or ch in "-." else " " for ch in normalise(question)).split())


# Columns a Passage needs (the vector only for its cosine similarity).
PASSAGE_COLUMNS = ["chunk_id", "source", "file_name", "document_type", "title", "section", "page_start", "page_end", "text"]
RRF_K = 60  # the constant of reciprocal rank fusion (LanceDB's and the RRF paper's default)


def retrieve(
    index: DocumentIndex,
    embedder: Embedder,
    question: str,
    *,
    top_k: int = DEFAULT_TOP_K,
    filters: Filters | None = None,
    candidates: int = CANDIDATES,
) -> list[Passage]:
    """The ``top_k`` best passages for ``question``, best first (empty if nothing is indexed)."""
    if index.is_empty():
        return []
    vector = np.asarray(embedder.embed_query(normalise(question)), dtype=np.float32)
    return search_passages(index, vector, question, top_k=top_k, filters=filters, candidates=candidates)


def search_passages(
    index: DocumentIndex,
    vector: np.ndarray,
    question: str,
    *,
    top_k: int = DEFAULT_TOP_K,
    filters: Filters | None = None,
    candidates: int = CANDIDATES,
) -> list[Passage]:
    """Hybrid search with an already embedded question: what ``retrieve`` does after embedding."""
    where = (filters or Filters()).where()
    words = fts_query(question)
    limit = max(top_k, candidates) if words else top_k
    # The score columns are named explicitly: lance warns (on stderr, per query) when a
    # search selects columns without them.
    columns = [*PASSAGE_COLUMNS, VECTOR_COLUMN]
    semantic = (
        index.table.search(vector, vector_column_name=VECTOR_COLUMN)
        .distance_type("cosine")  # type: ignore[attr-defined]  # a vector search is a LanceVectorQueryBuilder
        .nprobes(ANN_NPROBES)
        .select([*columns, "_distance"])
        .limit(limit)
    )
    if where:
        semantic = semantic.where(where, prefilter=True)
    if not words:
        return fuse([semantic.to_arrow()], vector, top_k, fused=False)
    keyword = index.table.search(words, query_type="fts", fts_columns=FTS_COLUMN).select([*columns, "_score"]).limit(limit)
    if where:
        keyword = keyword.where(where, prefilter=True)
    # Both searches at once: lance releases the GIL, so the full-text search runs on the
    # other core while the vector search runs here (at 100k chunks p50 ~23-27 ms instead of
    # ~32-37 ms one after the other); one pool per process, not one per query.
    keyword_result = _pool().submit(keyword.to_arrow)
    semantic_result = semantic.to_arrow()
    return fuse([semantic_result, keyword_result.result()], vector, top_k)


@functools.cache
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=2, thread_name_prefix="fts-search")


def fuse(results: list[pa.Table], vector: np.ndarray, top_k: int, *, fused: bool = True) -> list[Passage]:
    """Reciprocal rank fusion of ranked result tables (same columns), the ``top_k`` best as Passages.

    Ties keep the order of first appearance, vector results before full-text ones. Without
    fusion (no words to search for) the score is the vector search's 1 - cosine distance.
    """
    scores: dict[str, float] = {}
    where_found: dict[str, tuple[int, int]] = {}  # chunk id -> (table, row) of its first appearance
    for table_number, table in enumerate(results):
        if table.num_rows == 0:
            continue
        for rank, chunk_id in enumerate(table.column("chunk_id").to_pylist(), 1):
            scores[chunk_id] = scores.get(chunk_id, 0.0) + 1.0 / (RRF_K + rank)
            where_found.setdefault(chunk_id, (table_number, rank - 1))
    best = sorted(scores, key=scores.__getitem__, reverse=True)[:top_k]  # stable: ties in first-seen order
    passages: list[Passage] = []
    matrices = [vector_matrix(table) if table.num_rows else None for table in results]
    for chunk_id in best:
        table_number, row_number = where_found[chunk_id]
        row = {name: results[table_number].column(name)[row_number].as_py() for name in PASSAGE_COLUMNS}
        similarity = float(np.dot(vector, matrices[table_number][row_number]))  # type: ignore[index]
        passages.append(Passage(**row, score=scores[chunk_id] if fused else similarity, similarity=similarity))
    return passages


def evidence_is_weak(passages: list[Passage], min_similarity: float = DEFAULT_MIN_SIMILARITY) -> bool:
    """True when no passage is close enough to the question to ground an answer."""
    return not passages or max(p.similarity for p in passages) < min_similarity
