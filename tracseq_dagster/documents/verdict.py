"""The model's own judgement of whether the passages answer a question, checked against them.

Asked in a separate call, before the answer is generated, with Ollama's structured outputs: the
reply must be JSON of ``VERDICT_SCHEMA`` (answerable, the number of the passage that answers,
and a short quote from it). A model can say "answerable" about anything, so the verdict is
believed only when the quote is really in the passage it names (compared after
normalise.normalise, whitespace and case ignored); a verdict of "answerable" whose quote is not
found counts as "not answerable". A reply that is not valid JSON of the schema gives no
verdict (``None``): the evidence of evidence.py alone decides, as when Ollama is down.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from tracseq_dagster.documents.llm import OllamaChat
from tracseq_dagster.documents.normalise import normalise

VERDICT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "answerable": {"type": "boolean"},
        "passage": {"type": "integer", "minimum": 0},
        "quote": {"type": "string"},
    },
    "required": ["answerable", "passage", "quote"],
}
VERDICT_PROMPT = (
    "Do the numbered passages below answer the question? Reply in JSON: answerable (true only if a "
    "passage states the answer), passage (the number of that passage, 0 if none) and quote (the "
    "words of that passage that state the answer, copied exactly; empty if none). Use nothing but "
    "the passages."
)
MIN_QUOTE_CHARACTERS = 8  # a quote shorter than this ("yes", "the") proves nothing


@dataclass(frozen=True)
class Verdict:
    answerable: bool  # after the check against the passages
    claimed: bool  # what the model said
    passage: int  # 1-based, 0 for none
    quote: str
    reason: str


def _comparable(text: str) -> str:
    return " ".join(normalise(text).lower().split())


def verdict_messages(question: str, passages: list[Any]) -> list[dict[str, str]]:
    numbered = "\n\n".join(f"[{i}] {p.text}" for i, p in enumerate(passages, 1))
    return [{"role": "user", "content": f"{VERDICT_PROMPT}\n\nQuestion: {question}\n\nPassages:\n\n{numbered}"}]


def check_verdict(reply: str, passages: list[Any]) -> Verdict | None:
    """The model's JSON reply checked against the passages; None when it is not a verdict at all."""
    try:
        data = json.loads(reply)
        claimed, number, quote = bool(data["answerable"]), int(data["passage"]), str(data["quote"])
    except (ValueError, KeyError, TypeError):
        return None
    if not claimed:
        return Verdict(False, False, number, quote, "the model found no answer in the passages")
    if not 1 <= number <= len(passages):
        return Verdict(False, True, number, quote, f"the model cited passage {number}, which does not exist")
    if len(_comparable(quote)) < MIN_QUOTE_CHARACTERS or _comparable(quote) not in _comparable(passages[number - 1].text):
        return Verdict(False, True, number, quote, f"the model's quote is not in passage {number}")
    return Verdict(True, True, number, quote, "")


def ask_verdict(chat: OllamaChat, question: str, passages: list[Any]) -> Verdict | None:
    """One constrained call (raises OllamaUnavailable like every call to Ollama)."""
    return check_verdict(chat.chat_json(verdict_messages(question, passages), VERDICT_SCHEMA), passages)
