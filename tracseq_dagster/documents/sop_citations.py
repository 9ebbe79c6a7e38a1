"""The SOP passages behind a bench recommendation, with file and page, cached per index version.

A prediction's recommendation ("Limit freeze-thaw cycles: 4 recorded; aliquot before the next
thaw.") is more useful with the lab's own rule beside it ("SOP-014-nucleic-acid-extraction.pdf,
p. 2: ... at most three freeze-thaw cycles; after the third cycle it is re-extracted"). Each
recommendation kind (the risk factor it answers, serving.advice's keys) has a question a
technician would ask of the SOPs; the passages retrieved for it from documents of type
``sop`` are its citations, when the evidence (evidence.judge) says they answer it; otherwise
none. Retrieval costs tens of milliseconds, so citations are looked up once per kind and index
version and then served from memory: the prediction path pays a dictionary lookup. With no
documents indexed every kind has no citations and the answer is unchanged.

This module decides nothing about serving: the prediction service passes a ``DocumentQA`` and
a kind, and adds what comes back to its answer (how to wire it: the helper's notes, issue 19).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from tracseq_dagster.documents.evidence import judge
from tracseq_dagster.documents.retrieval import Filters

# What a technician would ask the SOPs about each recommendation kind (serving.advice).
RECOMMENDATION_QUESTIONS: dict[str, str] = {
    "freeze_thaw_cycles": "How many freeze-thaw cycles may an extract go through, and what is done after that?",
    "integrity_score": "What is the minimum integrity (RIN or DIN) an extract must meet, and when is it re-extracted?",
    "purity_score": "What purity ratios A260/280 and A260/230 must an extract meet before library preparation?",
    "log_concentration": "What minimum concentration must an extract have before library preparation?",
    "total_yield_ng": "What minimum volume and concentration must an extract have before library preparation?",
    "storage_temp_deviation_c": "At what temperature and in which freezer are extracts stored?",
    "max_temp_deviation_c": "At what temperature and in which freezer are extracts stored?",
    "temp_excursion_rate_per_day": "What is done when a freezer's temperature goes out of range?",
    "processing_delay_hours": "How soon after receipt must blood be extracted?",
    "processing_delay_category": "How soon after receipt must blood be extracted?",
    "sample_age_hours": "How old may a sample be before extraction?",
    "transit_time_hours": "How must samples be shipped and how long may transit take?",
}
CITATIONS_PER_KIND = 2


@dataclass(frozen=True)
class SopCitation:
    citation: str  # "file, p. N"
    file_name: str
    page_start: int
    page_end: int
    text: str  # the passage as written, for the technician to read

    def as_dict(self) -> dict[str, object]:
        return {
            "citation": self.citation,
            "file_name": self.file_name,
            "page_start": self.page_start,
            "page_end": self.page_end,
            "text": self.text,
        }


class SopCitations:
    """Citations per recommendation kind over one ``DocumentQA``, looked up once per index version."""

    def __init__(self, qa, *, per_kind: int = CITATIONS_PER_KIND, document_type: str = "sop") -> None:  # type: ignore[no-untyped-def]
        self.qa = qa
        self.per_kind = per_kind
        self.filters = Filters(document_type=document_type)
        self._cache: dict[tuple[int, str], tuple[SopCitation, ...]] = {}
        self._lock = threading.Lock()

    def for_kind(self, kind: str) -> tuple[SopCitation, ...]:
        """The SOP passages for a recommendation kind; empty for unknown kinds or without evidence."""
        question = RECOMMENDATION_QUESTIONS.get(kind)
        if question is None:
            return ()
        key = (self.qa.index.version, kind)
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        found = self._look_up(question)
        with self._lock:
            self._cache = {k: v for k, v in self._cache.items() if k[0] == key[0]}  # older versions go
            self._cache[key] = found
        return found

    def _look_up(self, question: str) -> tuple[SopCitation, ...]:
        if self.qa.index.is_empty():
            return ()
        passages = self.qa.search(question, top_k=max(self.per_kind, 5), filters=self.filters)
        if not passages or judge(question, passages, self.qa.statistics(), min_similarity=self.qa.min_similarity).weak:
            return ()
        return tuple(SopCitation(p.citation, p.file_name, p.page_start, p.page_end, p.text) for p in passages[: self.per_kind])
