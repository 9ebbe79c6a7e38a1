"""The learned reranker: its features of fused candidates, and the order its weights give.

Hand-made passages and term statistics; the weights' training and judgement are
benchmarks/rag_train_reranker.py's.
"""

from __future__ import annotations

import pytest

from tracseq_dagster.documents.evidence import TermStatistics, coverage
from tracseq_dagster.documents.learned_rerank import FEATURES, WEIGHTS, features, learned_rerank
from tracseq_dagster.documents.retrieval import Passage

CHUNKS = [
    "glp_top_sort performs topological sorting of an acyclic digraph and returns the number of unnumbered vertices.",
    "glp_weak_comp finds all weakly connected components of a graph.",
    "Graph program object: vertices and arcs with data blocks.",
    "glp_strong_comp finds all strongly connected components of a graph.",
]
STATISTICS = TermStatistics.from_texts(CHUNKS, common=frozenset())
QUESTION = "What does glp_top_sort return for a digraph with a cycle?"


def passage(number: int, score: float, similarity: float, section: str = "") -> Passage:
    return Passage(f"c{number}", "/d/g.pdf", "g.pdf", "manual", "GLPK graphs", section, 1, 1, CHUNKS[number], score, similarity)


FUSED = [passage(2, 0.0328, 0.50), passage(1, 0.0323, 0.45), passage(0, 0.0318, 0.40, section="Topological sorting")]


def test_features_describe_each_candidate_in_fused_order() -> None:
    rows = features(QUESTION, FUSED, STATISTICS)
    assert rows.shape == (3, len(FEATURES))
    column = {name: rows[:, i] for i, name in enumerate(FEATURES)}
    assert column["fused"] == pytest.approx([1.0, 0.0323 / 0.0328, 0.0318 / 0.0328])
    assert column["inverse_rank"] == pytest.approx([1.0, 0.5, 1 / 3])
    assert column["similarity_gap"] == pytest.approx([0.0, -0.05, -0.10])
    assert column["coverage"] == pytest.approx([coverage(QUESTION, [p], STATISTICS)[0] for p in FUSED])
    # terms: glp_top_sort, return, digraph, cycl; the third holds three of them, the first none
    assert column["term_share"] == pytest.approx([0.0, 0.0, 0.75])
    # headings ("GLPK graphs", "Topological sorting") hold none of the question's terms
    assert column["heading_coverage"] == pytest.approx([0.0, 0.0, 0.0])
    assert features(QUESTION, [], STATISTICS).shape == (0, len(FEATURES))


def test_candidates_are_ordered_by_the_weighted_features_and_ties_keep_the_fused_order() -> None:
    only_coverage = tuple(1.0 if name == "coverage" else 0.0 for name in FEATURES)
    reranked = learned_rerank(QUESTION, FUSED, STATISTICS, only_coverage)
    assert [p.chunk_id for p in reranked] == ["c0", "c2", "c1"]  # c2 and c1 tie at 0: fused order
    assert [p.score for p in reranked] == sorted((p.score for p in reranked), reverse=True)
    assert learned_rerank(QUESTION, [], STATISTICS) == []


def test_the_trained_weights_let_a_close_second_with_the_questions_words_pass_the_first() -> None:
    assert any(w != 0 for w in WEIGHTS) and len(WEIGHTS) == len(FEATURES)
    # second by fusion, a little closer by meaning and holding three of the four terms
    close = [passage(2, 0.0328, 0.50), passage(0, 0.0325, 0.55), passage(1, 0.0320, 0.45)]
    assert [p.chunk_id for p in learned_rerank(QUESTION, close, STATISTICS)] == ["c0", "c2", "c1"]
    # a second that holds none of the question's words stays behind the first
    wordless = [passage(2, 0.0328, 0.50), passage(1, 0.0325, 0.55), passage(3, 0.0320, 0.45)]
    assert [p.chunk_id for p in learned_rerank(QUESTION, wordless, STATISTICS)] == ["c2", "c1", "c3"]
    # and fusion still weighs most: the passage with the words, third and far behind, stays third
    assert learned_rerank(QUESTION, FUSED, STATISTICS)[0].chunk_id == "c2"
