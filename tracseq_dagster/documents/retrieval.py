"""Hybrid retrieval: vector and full-text search fused by reciprocal rank, with filters.

LanceDB runs both searches and fuses them with its RRF reranker: a passage ranked high by
either the meaning of the question or its exact words (sample ids, run names, reagent lots)
comes first. RRF scores are ranks, not evidence, so every passage also carries its cosine
similarity to the question; the best one is compared with a threshold calibrated on
questions the documents do and do not answer (BENCHMARKS.md) to decide whether the
evidence is strong enough to answer at all.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tracseq_dagster.documents.embedding import Embedder
from tracseq_dagster.documents.index import FTS_COLUMN, VECTOR_COLUMN, DocumentIndex, _quote

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
    """The question as plain words: the full-text parser reads some punctuation as syntax."""
    return " ".join("".join(ch if ch.isalnum() or ch in "-." else " " for ch in question).split())


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
    from lancedb.rerankers import RRFReranker

    if index.count() == 0:
        return []
    vector = np.asarray(embedder.embed_query(question), dtype=np.float32)
    where = (filters or Filters()).where()
    words = fts_query(question)
    if words:
        query = (
            index.table.search(query_type="hybrid", vector_column_name=VECTOR_COLUMN, fts_columns=FTS_COLUMN)
            .vector(vector)
            .text(words)
            .rerank(RRFReranker())
        )
    else:
        query = index.table.search(vector, vector_column_name=VECTOR_COLUMN)
    query = query.distance_type("cosine").nprobes(ANN_NPROBES).limit(max(top_k, candidates) if words else top_k)
    if where:
        query = query.where(where, prefilter=True)
    rows = query.to_arrow().slice(0, top_k).to_pylist()
    passages = []
    for row in rows:
        similarity = float(np.dot(vector, np.asarray(row[VECTOR_COLUMN], dtype=np.float32)))
        score = row.get("_relevance_score")
        passages.append(
            Passage(
                chunk_id=row["chunk_id"],
                source=row["source"],
                file_name=row["file_name"],
                document_type=row["document_type"],
                title=row["title"],
                section=row["section"],
                page_start=row["page_start"],
                page_end=row["page_end"],
                text=row["text"],
                score=float(score) if score is not None else 1.0 - float(row.get("_distance", 1.0)),
                similarity=similarity,
            )
        )
    return passages


def evidence_is_weak(passages: list[Passage], min_similarity: float = DEFAULT_MIN_SIMILARITY) -> bool:
    """True when no passage is close enough to the question to ground an answer."""
    return not passages or max(p.similarity for p in passages) < min_similarity
