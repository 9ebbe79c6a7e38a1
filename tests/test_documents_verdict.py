"""The model's verdict on whether the passages answer, asked with a JSON schema and checked against them.

Through tests/fake_ollama.py (real HTTP, the official client): the fake answers the
constrained call (``format`` is the schema) with a verdict and the streamed call with an answer.
"""

from __future__ import annotations

import json

from tests.fake_ollama import FakeOllama
from tracseq_dagster.documents.answering import NOT_FOUND_TEXT, answer_question
from tracseq_dagster.documents.evidence import TermStatistics
from tracseq_dagster.documents.llm import OllamaChat
from tracseq_dagster.documents.retrieval import Passage
from tracseq_dagster.documents.verdict import VERDICT_SCHEMA, check_verdict

STORAGE = "DNA extracts are stored at -20 C in freezer FRZ-03; RNA extracts at -80 C."
PASSAGES = [
    Passage("c1", "/docs/SOP-014.pdf", "SOP-014.pdf", "sop", "SOP-014", "Storage", 2, 2, STORAGE, 0.03, 0.7),
    Passage(
        "c2",
        "/docs/SOP-014.pdf",
        "SOP-014.pdf",
        "sop",
        "SOP-014",
        "Centrifugation",
        3,
        3,
        "Spin the \ufb01lled tubes at 2,000 x g.",
        0.02,
        0.4,
    ),
]
STATISTICS = TermStatistics.from_texts([p.text for p in PASSAGES] + ["Shipping on dry ice.", "Library preparation."])
QUESTION = "At what temperature are DNA extracts stored?"


def scripted(verdict: dict | str, answer: str = "DNA extracts are stored at -20 C [1]."):  # type: ignore[no-untyped-def]
    def reply(messages: list[dict], fmt: object) -> str:
        if isinstance(fmt, dict):
            return verdict if isinstance(verdict, str) else json.dumps(verdict)
        return answer

    return reply


def ask(verdict: dict | str) -> tuple:  # type: ignore[type-arg]
    with FakeOllama(reply=scripted(verdict)) as fake:
        answer = answer_question(QUESTION, PASSAGES, OllamaChat(host=fake.url), statistics=STATISTICS, verify=True)
        return answer, [(path, body) for path, body in fake.requests if path == "/api/chat"]


def test_a_verdict_with_a_quote_from_the_passage_lets_the_answer_through() -> None:
    answer, calls = ask({"answerable": True, "passage": 1, "quote": "stored at -20 C in freezer FRZ-03"})
    assert answer.mode == "generated" and answer.citations == ["SOP-014.pdf, p. 2"]
    (first, constrained), (_, streamed) = calls
    assert constrained["format"] == VERDICT_SCHEMA and constrained["stream"] is False
    assert QUESTION in constrained["messages"][0]["content"] and STORAGE in constrained["messages"][0]["content"]
    assert streamed["stream"] is True and not streamed.get("format")


def test_the_model_saying_no_is_a_refusal_before_any_answer_is_generated() -> None:
    answer, calls = ask({"answerable": False, "passage": 0, "quote": ""})
    assert (answer.mode, answer.text, answer.model) == ("not_found", NOT_FOUND_TEXT, "llama3.2:3b")
    assert answer.notice == "Refused: the model found no answer in the passages."
    assert len(calls) == 1  # the answer was never asked for


def test_a_yes_whose_quote_is_not_in_the_passage_is_not_believed() -> None:
    answer, _ = ask({"answerable": True, "passage": 1, "quote": "stored at -80 C in freezer FRZ-09"})
    assert answer.mode == "not_found" and answer.notice == "Refused: the model's quote is not in passage 1."
    answer, _ = ask({"answerable": True, "passage": 7, "quote": "stored at -20 C"})
    assert answer.mode == "not_found" and answer.notice == "Refused: the model cited passage 7, which does not exist."


def test_a_reply_that_is_no_verdict_leaves_the_decision_to_the_evidence() -> None:
    answer, calls = ask("I think so")
    assert answer.mode == "generated" and len(calls) == 2


def test_without_verify_no_verdict_is_asked() -> None:
    with FakeOllama(reply=scripted({"answerable": False, "passage": 0, "quote": ""})) as fake:
        answer = answer_question(QUESTION, PASSAGES, OllamaChat(host=fake.url), statistics=STATISTICS)
        assert [body.get("format") for path, body in fake.requests if path == "/api/chat"] == [None]
    assert answer.mode == "generated"


def test_an_unreachable_model_gives_the_passages_as_before() -> None:
    answer = answer_question(
        QUESTION, PASSAGES, OllamaChat(host="http://127.0.0.1:9", timeout_s=0.5), statistics=STATISTICS, verify=True
    )
    assert answer.mode == "retrieval_only" and "Ollama is not reachable" in (answer.notice or "")


def test_quotes_are_compared_after_normalisation_and_must_say_something() -> None:
    assert check_verdict(json.dumps({"answerable": True, "passage": 2, "quote": "spin the filled   TUBES"}), PASSAGES).answerable
    short = check_verdict(json.dumps({"answerable": True, "passage": 1, "quote": "DNA"}), PASSAGES)
    assert short is not None and not short.answerable and short.claimed
    assert check_verdict("not json", PASSAGES) is None
    assert check_verdict(json.dumps({"answerable": True}), PASSAGES) is None
