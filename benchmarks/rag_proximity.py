"""Whether a question's words stand together in a best passage: a refusal measure studied, not adopted.

Reported by rag_eval.py beside coverage (the product's refusal measure, documents.evidence);
it never decides, so it lives here and the product does not compute it per question.

``together`` is the share of the question's weight that one stretch of ``PROXIMITY_WINDOW``
consecutive content words of one best passage holds (its heading counting for every stretch).
Unanswerable questions whose every word is in a manual, just not together ("semi-continuous
variable"), looked like its case. On the dev half and the example documents (2026-12-07) it
refused the same 12 of 13 unanswerable questions as coverage with a narrower margin (0.135
between the lowest answerable and the highest refusable unanswerable value, against
coverage's 0.246); at the middle of its band (0.39) it refused 4/7 held-out unanswerable
questions with 0/37 false refusals and 2/6 fresh ones with 1/23, where coverage refuses 5/7
with 0/37 and 2/6 with 2/23. The questions it was meant for miss the asked-for words from the
best passages altogether ("semi", "shortest", "spanning", "repeat rate", "XML"), often from
the whole collection, so no measure of where the passages' words stand can see them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tracseq_dagster.documents.evidence import EVIDENCE_PASSAGES, TermStatistics, covered, judge, term_weights, terms

PROXIMITY_WINDOW = 25  # content words: about two sentences of a manual


@dataclass(frozen=True)
class Measured:
    """The product's evidence (documents.evidence.Evidence) and the reported ``together``."""

    similarity: float
    coverage: float
    missing: tuple[str, ...]
    weak: bool
    together: float


def measured(question: str, passages: list[Any], statistics: TermStatistics, *, min_similarity: float) -> Measured:
    """What the product judges (evidence.judge at its defaults), with ``together`` beside it."""
    evidence = judge(question, passages, statistics, min_similarity=min_similarity)
    together = window_coverage(question, passages, statistics)
    return Measured(evidence.similarity, evidence.coverage, evidence.missing, evidence.weak, together)


def window_share(weights: dict[str, float], passage: object, *, window: int = PROXIMITY_WINDOW) -> float:
    """Largest share of ``weights`` held by ``window`` consecutive content words of ``passage`` plus its heading."""
    if not weights:
        return 1.0
    heading = set(terms(f"{getattr(passage, 'title', '')} {getattr(passage, 'section', '')}"))
    base = {t for t in weights if t in heading}
    hits = [(i, t) for i, t in enumerate(terms(getattr(passage, "text", ""))) if t in weights]
    best = covered(weights, base)[0]
    for first, (start, _) in enumerate(hits):
        held = set(base)
        for position, term in hits[first:]:
            if position - start >= window:
                break
            held.add(term)
        best = max(best, covered(weights, held)[0])
    return best


def window_coverage(
    question: str,
    passages: list[Any],
    statistics: TermStatistics,
    *,
    top: int = EVIDENCE_PASSAGES,
    window: int = PROXIMITY_WINDOW,
) -> float:
    """Whether the question's words stand together: the best ``window_share`` of the ``top`` best passages (0.0 for none)."""
    weights = term_weights(question, statistics)
    return max((window_share(weights, p, window=window) for p in passages[:top]), default=0.0)
