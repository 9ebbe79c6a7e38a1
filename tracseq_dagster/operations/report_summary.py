"""A short plain-language summary at the top of the weekly QC report, written by a local model
from the report's own numbers, and refused when it quotes any other number.

The prompt holds :meth:`QcReport.facts` (every number as the report shows it) and asks for three
to five sentences using only those. A model can still invent or miscopy a figure, so the reply is
checked before it is shown: every number in it (digits, decimals, percentages, and the number words
one to twenty) must be one of the report's numbers; otherwise the summary is rejected and the report
says so. A percentage is accepted when the report has the same value as a percentage or as a
fraction (62% for a rate of 0.62). Without Ollama (not running, model not pulled, too slow) the
report is complete without a summary and says why; nothing here ever fails the report.
"""

from __future__ import annotations

import re

from tracseq_dagster.documents.llm import OllamaChat, OllamaUnavailable
from tracseq_dagster.operations.qc_report import QcReport, Summary

#: Numbers as written: 1,234 / 0.62 / 45.7 / 12% / -3 (a hyphen between words is not a sign).
_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:,\d{3})*(?:\.\d+)?%?")
_NUMBER_WORDS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen "
    "eighteen nineteen twenty"
)
_WORDS = {w: i for i, w in enumerate(_NUMBER_WORDS.split(" "))}
_WORD = re.compile(r"\b(" + "|".join(_WORDS) + r")\b", re.IGNORECASE)
#: Longest summary kept (characters); a longer reply is cut at a sentence end.
MAX_CHARS = 900

SYSTEM_PROMPT = (
    "You write the summary at the top of a weekly laboratory QC report for lab managers. "
    "Write 3 to 5 plain sentences. Use ONLY the numbers given in the report facts, written exactly as given; "
    "never compute, round, add or estimate a number, never write a number that is not in the facts. "
    "Mention what needs attention first (quarantined rows, at-risk samples, anomalies, full freezers), "
    "and say plainly when a part of the report has no data. No headings, no lists, no preamble."
)


def numbers_in(text: str) -> list[str]:
    """Every number written in ``text``: numerals (with a trailing % kept) and the words zero to twenty."""
    return _NUMBER.findall(text) + [str(_WORDS[w.lower()]) for w in _WORD.findall(text)]


def _value(token: str) -> float:
    return float(token.rstrip("%").replace(",", ""))


def allowed_values(report: QcReport) -> set[float]:
    """The numbers a summary may quote: every number of the report's facts (which include the week,
    the dates and the project id), and each fraction's percentage."""
    values: set[float] = {float(report.week.year), float(report.week.week)}
    for token in numbers_in(report.facts()):
        value = _value(token)
        values.add(value)
        values.add(abs(value))
        if not token.endswith("%") and 0 < abs(value) <= 1:
            values.add(round(value * 100, 6))
    return values


def invented_numbers(summary: str, report: QcReport) -> list[str]:
    """The numbers of ``summary`` that are not the report's (empty: the summary is faithful)."""
    allowed = allowed_values(report)
    return [token for token in numbers_in(summary) if not any(abs(_value(token) - a) < 1e-9 for a in allowed)]


def check_summary(text: str, report: QcReport) -> Summary:
    """A generated summary if every number it quotes is in the report, else a rejection saying which."""
    text = " ".join(text.split())
    if not text:
        return Summary("rejected", reason="the model returned an empty summary")
    invented = invented_numbers(text, report)
    if invented:
        quoted = ", ".join(dict.fromkeys(invented))
        return Summary(
            "rejected", reason=f"the generated summary quoted numbers that are not in the report ({quoted}), so it was left out"
        )
    if len(text) > MAX_CHARS:
        cut = text[:MAX_CHARS].rsplit(". ", 1)[0]
        text = cut if cut.endswith(".") else cut + "."
    return Summary("generated", text=text)


def prompt(report: QcReport) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": f"Report facts:\n{report.facts()}\n\nWrite the summary."},
    ]


def summarise(report: QcReport, chat: OllamaChat | None) -> Summary:
    """The summary of ``report`` by ``chat``'s model, checked; or why there is none. Never raises for Ollama."""
    if chat is None:
        return Summary("off", reason="summaries are turned off (no Ollama configured)")
    try:
        reply = "".join(chat.stream_chat(prompt(report)))
    except OllamaUnavailable as error:
        return Summary("unavailable", reason=str(error))
    return check_summary(reply, report)


def with_summary(report: QcReport, chat: OllamaChat | None) -> QcReport:
    """``report`` with its summary (or the reason there is none) set."""
    report.summary = summarise(report, chat)
    return report
