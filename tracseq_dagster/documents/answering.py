"""Answers grounded in retrieved passages, with a file and page citation for every claim.

Three outcomes, always as an ``Answer`` and never as an exception:

- ``generated``: Ollama wrote the answer from the numbered passages only; its ``[n]``
  markers are resolved to ``file, p. N``.
- ``not_found``: the best passage is too far from the question (below the calibrated
  similarity threshold), the best passages miss the question's rare words (evidence.py,
  when the index's term statistics are given), or the model said the passages do not
  answer it. The documents do not answer the question, and we say so rather than guess;
  ``notice`` says which evidence was missing.
- ``retrieval_only``: Ollama is unreachable, slow, or lacks the model. The best passages
  with their citations are the answer, and ``notice`` is one line saying why and how to
  fix it (``ollama pull llama3.2:3b``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from tracseq_dagster.documents.evidence import DEFAULT_MIN_COVERAGE, TermStatistics, judge
from tracseq_dagster.documents.llm import OllamaChat, OllamaUnavailable
from tracseq_dagster.documents.retrieval import DEFAULT_MIN_SIMILARITY, Passage, evidence_is_weak
from tracseq_dagster.documents.verdict import ask_verdict

NOT_IN_DOCUMENTS = "NOT_IN_DOCUMENTS"
NOT_FOUND_TEXT = "The documents do not answer this question."
SYSTEM_PROMPT = (
    "You answer questions for the staff of a sequencing laboratory. Use only the numbered "
    "passages from the lab's documents that follow the question; do not use anything else you "
    "know. After every sentence, cite the passages it rests on as [1], [2] and so on. Keep the "
    "answer short and factual. If the passages do not contain the answer, reply with exactly "
    f"{NOT_IN_DOCUMENTS} and nothing else."
)
_MARKER = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")


@dataclass
class Answer:
    question: str
    mode: str  # "generated", "not_found" or "retrieval_only"
    text: str  # for people: citations resolved to "file, p. N"
    passages: list[Passage]
    citations: list[str] = field(default_factory=list)  # "file, p. N" the text cites, in order
    notice: str | None = None  # why there is no generated answer, and the fix
    model: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["passages"] = [{**asdict(p), "citation": p.citation} for p in self.passages]
        return data


def build_messages(question: str, passages: list[Passage]) -> list[dict[str, str]]:
    numbered = "\n\n".join(f"[{i}] ({p.citation}; {p.section or p.title})\n{p.text}" for i, p in enumerate(passages, 1))
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": f"Question: {question}\n\nPassages:\n\n{numbered}"},
    ]


def resolve_citations(text: str, passages: list[Passage]) -> tuple[str, list[str]]:
    """``[1, 2]`` markers become ``[file, p. N; file, p. M]``; markers out of range are dropped."""
    cited: list[str] = []

    def replace(match: re.Match[str]) -> str:
        names = []
        for number in (int(n) for n in match.group(1).split(",")):
            if 1 <= number <= len(passages):
                names.append(passages[number - 1].citation)
        for name in names:
            if name not in cited:
                cited.append(name)
        return f"[{'; '.join(dict.fromkeys(names))}]" if names else ""

    return _MARKER.sub(replace, text).strip(), cited


def retrieval_only(question: str, passages: list[Passage], notice: str) -> Answer:
    text = "\n".join(f"- {p.citation}: {p.text[:300]}" for p in passages)
    return Answer(question, "retrieval_only", text, passages, [p.citation for p in passages], notice)


def answer_question(
    question: str,
    passages: list[Passage],
    chat: OllamaChat | None,
    *,
    min_similarity: float = DEFAULT_MIN_SIMILARITY,
    on_token: Callable[[str], None] | None = None,
    statistics: TermStatistics | None = None,
    min_coverage: float = DEFAULT_MIN_COVERAGE,
    verify: bool = False,
) -> Answer:
    """Answer from ``passages`` (best first); ``on_token`` sees the reply as it streams.

    With the index's ``statistics`` the evidence is also the rare-term coverage of the best
    passages (evidence.judge); without them, the best passage's similarity alone. With
    ``verify`` the model is first asked, in a separate JSON-schema call, whether the passages
    answer the question (verdict.py); a "no", or a "yes" whose quote is not in the passage it
    names, is a refusal. A reply that is no verdict leaves the decision to the evidence.
    """
    if statistics is not None:
        evidence = judge(question, passages, statistics, min_similarity=min_similarity, min_coverage=min_coverage)
        if evidence.weak:
            return Answer(question, "not_found", NOT_FOUND_TEXT, passages, notice=f"Refused: {evidence.reason}.")
    elif evidence_is_weak(passages, min_similarity):
        return Answer(question, "not_found", NOT_FOUND_TEXT, passages)
    if chat is None:
        return retrieval_only(question, passages, "No generated answer: generation is turned off (--no-generate).")
    if verify:
        try:
            verdict = ask_verdict(chat, question, passages)
        except OllamaUnavailable as error:
            return retrieval_only(question, passages, f"No generated answer: {error.reason}. Fix: {error.fix}")
        if verdict is not None and not verdict.answerable:
            return Answer(question, "not_found", NOT_FOUND_TEXT, passages, notice=f"Refused: {verdict.reason}.", model=chat.model)
    pieces: list[str] = []
    try:
        for piece in chat.stream_chat(build_messages(question, passages)):
            pieces.append(piece)
            if on_token is not None:
                on_token(piece)
    except OllamaUnavailable as error:
        return retrieval_only(question, passages, f"No generated answer: {error.reason}. Fix: {error.fix}")
    raw = "".join(pieces).strip()
    if not raw or NOT_IN_DOCUMENTS in raw:
        return Answer(question, "not_found", NOT_FOUND_TEXT, passages, model=chat.model)
    text, cited = resolve_citations(raw, passages)
    notice = None if cited else "The model cited no passage; check the sources below before relying on this answer."
    return Answer(question, "generated", text, passages, cited, notice, chat.model)
