"""The proximity measure the real-document evaluation reports (benchmarks/rag_proximity.py): words together.

Hand-made passages, so every share is known: the same words inside one stretch of a passage
hold the question's whole weight, spread further apart than the window they do not, and the
heading counts for every stretch. The product's decision (coverage) does not move with it.
"""

from __future__ import annotations

import pytest

from benchmarks.rag_proximity import PROXIMITY_WINDOW, measured, window_coverage, window_share
from tests.test_documents_evidence import STATISTICS, passage  # the same small collection and passage shape
from tracseq_dagster.documents.evidence import coverage, judge, term_weights

FILLER = " ".join(f"filler{i}" for i in range(PROXIMITY_WINDOW))  # content words, none of the question's


def test_words_together_in_one_window_weigh_more_than_the_same_words_apart() -> None:
    question = "How do I read fixed-width files with read.fwf?"
    together = passage("read.fwf reads fixed-width files: each line is cut at the field widths.")
    apart = passage(f"read.fwf takes a vector. {FILLER} Fixed-width files have widths. {FILLER} Each line is read.")
    # Coverage counts the passage's words wherever they are: both passages hold every term.
    assert coverage(question, [together], STATISTICS) == coverage(question, [apart], STATISTICS) == (1.0, ())
    assert window_coverage(question, [together], STATISTICS) == 1.0
    weights = term_weights(question, STATISTICS)
    apart_share = window_coverage(question, [apart], STATISTICS)
    # Apart, the best stretch holds read.fwf, the fixed-width words or "read", never all of them.
    assert set(weights) == {"read", "fix", "width", "file", "read.fwf"}
    best_group = max(weights["read.fwf"], weights["fix"] + weights["width"] + weights["file"], weights["read"])
    assert apart_share == pytest.approx(best_group / sum(weights.values()))
    assert apart_share < 0.75
    # The best of the passages counts, and a wider window joins the apart words again.
    assert window_coverage(question, [apart, together], STATISTICS) == 1.0
    assert window_coverage(question, [apart], STATISTICS, window=3 * PROXIMITY_WINDOW) == 1.0
    assert window_coverage(question, [], STATISTICS) == 0.0


def test_the_heading_belongs_to_every_window_and_a_question_without_terms_is_held() -> None:
    weights = term_weights("fixed columns read.fwf", STATISTICS)
    plain = passage(f"Fixed columns. {FILLER} read.fwf takes a vector of widths.")
    headed = passage(f"Fixed columns. {FILLER} read.fwf takes a vector of widths.", section="Fixed columns")
    assert window_share(weights, plain) < 1.0
    assert window_share(weights, headed) == 1.0
    assert window_share({}, plain) == 1.0


def test_the_evaluation_reports_the_words_together_beside_the_products_decision() -> None:
    question = "How do I read fixed-width files with read.fwf?"
    apart = passage(f"read.fwf takes a vector. {FILLER} Fixed-width files have widths. {FILLER} Each line is read.", 0.6)
    reported = measured(question, [apart], STATISTICS, min_similarity=0.18)
    evidence = judge(question, [apart], STATISTICS, min_similarity=0.18)
    assert reported.coverage == evidence.coverage == 1.0 and reported.together < 0.75
    assert not reported.weak and not evidence.weak  # the decision is coverage's and similarity's, as in the product
    assert (reported.similarity, reported.missing) == (evidence.similarity, evidence.missing)
