"""The refusal benchmark's leave-one-document-out construction and its features (benchmarks/rag_train_refusal.py).

The benchmark turns each answerable training question into an unanswerable one by leaving
its gold document out of the candidates and out of the term statistics; these tests pin that
the reduced statistics are exactly those counted without the document, and that the features
read the reranked passages as documented. Hand-made chunks, so every number is known.
"""

from __future__ import annotations

from collections import Counter

import pytest

from benchmarks.rag_train_refusal import FEATURES, refusal_features, without
from tracseq_dagster.documents.evidence import TermStatistics, covered, passage_terms, term_weights, terms
from tracseq_dagster.documents.retrieval import Passage

GRAPHS = [
    "glp_top_sort performs topological sorting of an acyclic digraph.",
    "glp_weak_comp finds all weakly connected components of a graph.",
]
FONTS = [
    "The ITALIC_ANGLE property gives the slant of a font in degrees.",
    "A font name lists the foundry, family and weight of a font.",
    "Graph paper fonts are not described here.",
]
STATISTICS = TermStatistics.from_texts(GRAPHS + FONTS, common=frozenset())


def passage(number: int, text: str, score: float, similarity: float) -> Passage:
    return Passage(f"c{number}", "/d/g.pdf", "g.pdf", "manual", "Manual", "", 1, 1, text, score, similarity)


def test_leaving_a_document_out_gives_the_statistics_counted_without_it() -> None:
    counts: Counter[str] = Counter()
    for text in GRAPHS:
        counts.update(set(terms(text)))
    reduced = without(STATISTICS, counts, len(GRAPHS))
    expected = TermStatistics.from_texts(FONTS, common=frozenset())
    assert reduced.chunks == expected.chunks == 3
    assert reduced.frequency == expected.frequency
    assert "digraph" in STATISTICS.frequency and "digraph" not in reduced.frequency  # only the left-out document had it
    assert reduced.frequency["graph"] == 1 and STATISTICS.frequency["graph"] == 2  # "graph" stays, from the fonts


def test_features_read_the_reranked_passages_and_the_terms_the_index_never_saw() -> None:
    question = "Does glp_top_sort accept a digraph with a cycle read from XML?"
    ranked = [passage(0, GRAPHS[0], 5.0, 0.7), passage(1, GRAPHS[1], 3.5, 0.5), passage(2, FONTS[2], 3.0, 0.3)]
    values = dict(zip(FEATURES, refusal_features(question, ranked, STATISTICS)))
    weights = term_weights(question, STATISTICS)
    unseen = {"accept", "cycl", "read", "xml"}  # in no chunk
    assert unseen <= set(weights) and not unseen & set(STATISTICS.frequency)
    assert values["top_score"] == 5.0 and values["margin"] == pytest.approx(1.5) and values["similarity"] == 0.7
    assert values["best_coverage"] == pytest.approx(covered(weights, passage_terms(ranked[0]))[0])
    held = passage_terms(ranked[0]) | passage_terms(ranked[1]) | passage_terms(ranked[2])
    assert values["top3_coverage"] == values["top5_coverage"] == pytest.approx(covered(weights, held)[0])
    assert values["unseen_terms"] == len(unseen)
    assert values["unseen_share"] == pytest.approx(sum(weights[t] for t in unseen) / sum(weights.values()))
    assert 0 < values["best_coverage"] < 1 and 0 < values["unseen_share"] < 1
    # nothing retrieved: no evidence at all, every term unseen
    empty = dict(zip(FEATURES, refusal_features(question, [], STATISTICS)))
    assert (empty["similarity"], empty["top5_coverage"], empty["unseen_share"]) == (-1.0, 0.0, 1.0)
