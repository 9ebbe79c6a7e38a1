"""The Ollama stand-in's verdict rule of rag_eval.py --ollama-stand-in, through the product's path.

The rule (benchmarks/rag_stand_in.py) reads the verdict prompt the product sends over real
HTTP (tests/fake_ollama.py) and answers "answerable" only when one passage holds enough of the
question's key terms, quoting that passage's line so that verdict.check_verdict believes it.
"""

from __future__ import annotations

import json

import pytest

from benchmarks.rag_stand_in import parse_prompt, reply_for, verdict
from tests.fake_ollama import FakeOllama
from tracseq_dagster.documents.answering import answer_question
from tracseq_dagster.documents.evidence import TermStatistics
from tracseq_dagster.documents.llm import OllamaChat
from tracseq_dagster.documents.retrieval import Passage
from tracseq_dagster.documents.verdict import verdict_messages

TEXTS = [
    "Graph program object: vertices and arcs with data blocks.",
    "glp_top_sort performs topological sorting of an acyclic digraph.\nIt returns the number of vertices left unnumbered.",
    "glp_weak_comp finds all weakly connected components of a graph.",
]
PASSAGES = [
    Passage(f"c{i}", "/docs/graphs.pdf", "graphs.pdf", "manual", "GLPK graphs", "", i + 1, i + 1, t, 0.03, 0.5)
    for i, t in enumerate(TEXTS)
]
STATISTICS = TermStatistics.from_texts(TEXTS + ["Minimum cost flow problem.", "Assignment problem."], common=frozenset())


def test_the_prompt_is_read_back_into_question_and_passages() -> None:
    question, passages = parse_prompt(verdict_messages("What does glp_top_sort do?", PASSAGES)[0]["content"])
    assert question == "What does glp_top_sort do?"
    assert passages == TEXTS


def test_one_passage_with_the_key_terms_is_answerable_and_quoted_from_its_best_line() -> None:
    found = verdict("Which vertices does glp_top_sort leave unnumbered?", TEXTS)
    assert found == {"answerable": True, "passage": 2, "quote": "It returns the number of vertices left unnumbered."}
    # the key terms spread over two passages are not enough: one passage must hold them
    assert verdict("Which weakly connected components does glp_top_sort sort?", TEXTS, key_share=0.8)["answerable"] is False


@pytest.mark.parametrize(
    ("question", "mode"),
    [
        ("What number does glp_top_sort return for an acyclic digraph?", "generated"),
        ("Is glp_weak_comp a topological program?", "not_found"),
    ],
)
def test_the_product_path_refuses_or_answers_by_the_rule(question: str, mode: str) -> None:
    with FakeOllama(reply=reply_for()) as fake:
        answer = answer_question(question, PASSAGES, OllamaChat(host=fake.url), statistics=STATISTICS, verify=True)
        constrained = [body for path, body in fake.requests if path == "/api/chat" and isinstance(body.get("format"), dict)]
    assert answer.mode == mode
    assert len(constrained) == 1  # the evidence let both through (every term is in some passage): the verdict decided
    if mode == "not_found":
        assert "no answer" in (answer.notice or "")
    else:
        assert answer.citations == ["graphs.pdf, p. 1"]  # the stand-in's answer cites [1]


def test_the_answer_call_says_not_in_documents_without_passages() -> None:
    reply = reply_for()
    assert (
        json.loads(reply([{"role": "user", "content": "Question: x\n\nPassages:\n\n"}], {"type": "object"}))["answerable"]
        is False
    )
    assert "NOT_IN_DOCUMENTS" in reply([{"role": "user", "content": "hello"}], None)
