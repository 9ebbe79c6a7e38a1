"""The reranker over fused candidates: a candidate holding the question's rare words moves up.

Hand-made passages and term statistics; the weight's calibration is benchmarks/rag_eval.py's.
"""

from __future__ import annotations

import pytest

from tracseq_dagster.documents.evidence import TermStatistics, coverage
from tracseq_dagster.documents.rerank import DEFAULT_COVERAGE_WEIGHT, rerank
from tracseq_dagster.documents.retrieval import Passage

CHUNKS = [
    "glp_top_sort performs topological sorting of an acyclic digraph and returns the number of unnumbered vertices.",
    "glp_weak_comp finds all weakly connected components of a graph.",
    "Graph program object: vertices and arcs with data blocks.",
    "glp_strong_comp finds all strongly connected components of a graph.",
]
STATISTICS = TermStatistics.from_texts(CHUNKS)


def passage(number: int, score: float) -> Passage:
    return Passage(
        f"c{number}",
        "/docs/graphs.pdf",
        "graphs.pdf",
        "manual",
        "GLPK graphs",
        "",
        number + 1,
        number + 1,
        CHUNKS[number],
        score,
        0.5,
    )


def test_the_candidate_with_the_rare_words_moves_up_and_scores_are_replaced() -> None:
    fused = [passage(2, 0.0328), passage(1, 0.0323), passage(0, 0.0318)]  # RRF put the right one third
    reranked = rerank("What does glp_top_sort return for a digraph with a cycle?", fused, STATISTICS)
    assert [p.chunk_id for p in reranked] == ["c0", "c2", "c1"]
    question = "What does glp_top_sort return for a digraph with a cycle?"
    expected = {p.chunk_id: p.score / 0.0328 + DEFAULT_COVERAGE_WEIGHT * coverage(question, [p], STATISTICS)[0] for p in fused}
    assert {p.chunk_id: p.score for p in reranked} == pytest.approx(expected)
    assert all(a.score >= b.score for a, b in zip(reranked, reranked[1:]))
    assert {p.chunk_id for p in reranked} == {p.chunk_id for p in fused} and len(reranked) == 3


def test_weight_zero_or_no_candidates_keep_the_fusion_order() -> None:
    fused = [passage(2, 0.0328), passage(1, 0.0323), passage(0, 0.0318)]
    assert rerank("glp_top_sort", fused, STATISTICS, weight=0) == fused
    assert rerank("glp_top_sort", [], STATISTICS) == []


def test_equal_evidence_keeps_the_fusion_order() -> None:
    fused = [passage(3, 0.0320), passage(1, 0.0320)]
    assert [p.chunk_id for p in rerank("connected components", fused, STATISTICS)] == ["c3", "c1"]


def test_the_fusion_score_still_counts() -> None:
    """A candidate with slightly less coverage but a far better fusion score stays first."""
    fused = [passage(1, 0.0330), passage(3, 0.0100)]
    reranked = rerank("weakly connected components of a graph", fused, STATISTICS)
    assert [p.chunk_id for p in reranked] == ["c1", "c3"]
    heavy = rerank("strongly connected components", [passage(1, 0.0330), passage(3, 0.0300)], STATISTICS, weight=5.0)
    assert heavy[0].chunk_id == "c3"
