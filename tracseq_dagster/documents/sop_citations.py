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

# What a technician would ask the SOPs about each recommendation kind. A kind is the risk factor
# a recommendation answers (serving.advice's keys, and the catalog models' features their
# ``recommend`` acts on); factors that lead to the same action share a question, and a question
# is looked up once whatever the number of kinds asking it.
_QUESTION_KINDS: dict[str, tuple[str, ...]] = {
    "How many freeze-thaw cycles may an extract go through, and what is done after that?": ("freeze_thaw_cycles",),
    "What is the minimum integrity (RIN or DIN) an extract must meet, and when is it re-extracted?": ("integrity_score",),
    "What purity ratios A260/280 and A260/230 must an extract meet before library preparation?": ("purity_score",),
    "What minimum concentration must an extract have before library preparation?": ("log_concentration",),
    "What minimum volume and concentration must an extract have before library preparation?": ("total_yield_ng",),
    "At what temperature and in which freezer are extracts stored?": ("storage_temp_deviation_c", "max_temp_deviation_c"),
    "What is done when a freezer's temperature goes out of range?": (
        "temp_excursion_rate_per_day",
        # freezer_excursion_risk: a freezer with a record of excursions is serviced
        "excursion_rate_30d",
        "excursion_rate_90d",
        "excursion_rate_all",
        "excursion_share_30d",
        "rate_trend",
        "max_deviation_30d_c",
        "days_since_excursion",
    ),
    "How many new samples may go into one freezer per week, and how is intake spread over the freezers?": (
        "intake_7d",
        "intake_30d",
    ),
    "How soon after receipt must blood be extracted?": ("processing_delay_hours", "processing_delay_category"),
    "How many hours or days after collection is a sample too old to extract, and when is a fresh sample requested?": (
        "sample_age_hours",
    ),
    "How must samples be shipped and how long may transit take?": ("transit_time_hours",),
    # sequencing_success: the run context
    "When is a sequencer taken out of use and serviced?": (
        "instrument_failure_rate",
        "instrument_recent_failures",
        "instrument_recent_libraries",
        "instrument_recent_runs",
        "instrument_id",
        "instrument_load_7d",
    ),
    "What is checked when a library kit lot fails?": (
        "kit_failure_rate",
        "kit_recent_failures",
        "kit_recent_libraries",
        "kit_recent_runs",
        "library_kit",
    ),
    "What is reviewed before a sample whose run failed is sequenced again?": ("is_rerun", "previous_run_failures"),
    # turnaround_hours and sequencing_success: waiting for a run
    "When is a sample marked urgent and when is the requester told of a delay?": (
        "queue_length",
        "sequencing_queue",
        "sequencing_queue_days",
        "runs_in_progress",
        "arrivals_7d",
        "priority",
    ),
}
RECOMMENDATION_QUESTIONS: dict[str, str] = {kind: q for q, kinds in _QUESTION_KINDS.items() for kind in kinds}
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
    """Citations per recommendation kind over one ``DocumentQA``, looked up once per question and index version.

    A passage is cited when the SOP passages retrieved for the question answer it (evidence.judge
    over the best ones, as a question of ``tracseq ask`` is judged) and, beyond the first, when it
    answers it on its own: the second-best passage of a page about storage is often the page's
    neighbour about labelling, which tells the technician nothing.
    """

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
        key = (self.qa.index.version, question)
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        found = self._look_up(question)
        with self._lock:
            self._cache = {k: v for k, v in self._cache.items() if k[0] == key[0]}  # older versions go
            self._cache[key] = found
        return found

    def table(self) -> dict[str, tuple[SopCitation, ...]]:
        """Every kind's citations (kinds without any are left out): what a Bento packs (citation_pack.py)."""
        every = {kind: self.for_kind(kind) for kind in RECOMMENDATION_QUESTIONS}
        return {kind: found for kind, found in every.items() if found}

    def _look_up(self, question: str) -> tuple[SopCitation, ...]:
        if self.qa.index.is_empty():
            return ()
        passages = self.qa.search(question, top_k=max(self.per_kind, 5), filters=self.filters)
        statistics = self.qa.statistics()
        if not passages or judge(question, passages, statistics, min_similarity=self.qa.min_similarity).weak:
            return ()
        cited = passages[:1] + [
            p
            for p in passages[1 : self.per_kind]
            if not judge(question, [p], statistics, min_similarity=self.qa.min_similarity).weak
        ]
        return tuple(SopCitation(p.citation, p.file_name, p.page_start, p.page_end, p.text) for p in cited)
