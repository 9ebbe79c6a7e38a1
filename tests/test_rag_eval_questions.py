"""The real-document evaluation's questions and metrics (benchmarks/rag_eval.py), without the corpus.

The questions must name documents and pages that exist in benchmarks/rag_corpus.py, sit in
their document's half (dev or held-out), and be enough for the issue's claims; the metrics
must count ranks as documented.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.rag_corpus import DOCUMENTS, FRESH_DOCUMENTS  # noqa: E402
from benchmarks.rag_eval import FRESH_QUESTIONS, load_questions, rank_of, scores  # noqa: E402

QUESTIONS = load_questions()
PAGES = {d.file_name: d.pages for d in DOCUMENTS}
SPLIT = {d.file_name: d.split for d in DOCUMENTS}


def test_enough_questions_on_enough_real_pages() -> None:
    answerable = [q for q in QUESTIONS if q.answerable]
    assert len(DOCUMENTS) >= 10 and sum(PAGES.values()) >= 300
    assert len(answerable) >= 40 and len(QUESTIONS) - len(answerable) >= 10
    assert len({q.id for q in QUESTIONS}) == len(QUESTIONS) and len({q.question for q in QUESTIONS}) == len(QUESTIONS)
    halves = Counter((q.split, q.answerable) for q in QUESTIONS)
    assert min(halves.values()) >= 7 and set(halves) == {("dev", True), ("dev", False), ("heldout", True), ("heldout", False)}
    assert all(d.sha256 and len(d.sha256) == 64 for d in DOCUMENTS)  # the corpus is pinned byte for byte


@pytest.mark.parametrize("question", [q for q in QUESTIONS if q.answerable], ids=lambda q: q.id)
def test_gold_pages_exist_in_a_document_of_the_same_half(question) -> None:  # type: ignore[no-untyped-def]
    assert question.file_name in PAGES
    assert question.pages and all(1 <= page <= PAGES[question.file_name] for page in question.pages)
    assert SPLIT[question.file_name] == question.split


def test_the_second_held_out_set_is_independent_and_large_enough() -> None:
    """Issue 19: >= 3 other manuals, >= 15 answerable and >= 5 unanswerable questions, pinned, on no document of the first set."""
    fresh = load_questions(FRESH_QUESTIONS)
    pages = {d.file_name: d.pages for d in FRESH_DOCUMENTS}
    assert len(FRESH_DOCUMENTS) >= 3 and not set(pages) & set(PAGES)
    assert all(d.sha256 and len(d.sha256) == 64 and d.split == "fresh" for d in FRESH_DOCUMENTS)
    assert sum(q.answerable for q in fresh) >= 15 and sum(not q.answerable for q in fresh) >= 5
    assert {q.split for q in fresh} == {"fresh"} and not {q.id for q in fresh} & {q.id for q in QUESTIONS}
    for question in (q for q in fresh if q.answerable):
        assert question.file_name in pages and all(1 <= page <= pages[question.file_name] for page in question.pages)
    assert {q.file_name for q in fresh if q.answerable} == set(pages)  # every manual is asked about


def test_ranks_and_scores() -> None:
    found = [("a.pdf", 3, 3), ("b.pdf", 4, 6), ("b.pdf", 9, 9)]
    assert rank_of(found, "b.pdf", (5,)) == 2  # a span that holds the gold page
    assert rank_of(found, "b.pdf", (7, 9)) == 3 and rank_of(found, "a.pdf", (3,)) == 1
    assert rank_of(found, "a.pdf", (4,)) is None and rank_of(found, "c.pdf", (3,)) is None
    result = scores([1, 2, None, 6, 11])
    assert result["hit@1"] == pytest.approx(1 / 5) and result["hit@5"] == pytest.approx(2 / 5)
    assert result["MRR@10"] == pytest.approx((1 + 1 / 2 + 1 / 6) / 5)  # rank 11 is past the cut
