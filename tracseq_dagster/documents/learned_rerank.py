"""A reranker trained here: logistic regression over cheap features of each fused candidate.

The issue asks for a cross-encoder or late-interaction model that ships inside a package of
the index, or one trained here; none ships (FlashRank's wheel holds code only and downloads
its weights from a model hub at run time; the other reranker packages call hosted APIs or
hub models), so this one is trained here on questions whose right page is known: the
generated example documents' questions and the dev half of benchmarks/rag/questions.jsonl,
never the held-out half (benchmarks/rag_train_reranker.py writes ``WEIGHTS``).

Each candidate is described by what the first stage already knows about it, no model call:
its fusion score scaled to the best candidate's, its fused rank, its cosine similarity and
that similarity's gap to the best one, the idf-weighted coverage of the question's terms by
the passage (evidence.coverage) and by its heading (title and section) alone, and the
unweighted share of the question's terms it holds. The score is the logistic model's linear
part (a dot product: microseconds per candidate).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from tracseq_dagster.documents.evidence import TermStatistics, covered, passage_terms, term_weights, terms
from tracseq_dagster.documents.retrieval import Passage

FEATURES = ("fused", "inverse_rank", "similarity", "similarity_gap", "coverage", "heading_coverage", "term_share")


def features(question: str, passages: list[Passage], statistics: TermStatistics) -> np.ndarray:
    """One row of ``FEATURES`` per candidate, in the candidates' (fused) order."""
    if not passages:
        return np.zeros((0, len(FEATURES)))
    best_score = max(p.score for p in passages) or 1.0
    best_similarity = max(p.similarity for p in passages)
    weights = term_weights(question, statistics)  # once per question, not per candidate
    key = set(weights)
    rows = []
    for rank, p in enumerate(passages, 1):
        held = passage_terms(p)
        rows.append(
            (
                p.score / best_score,
                1.0 / rank,
                p.similarity,
                p.similarity - best_similarity,
                covered(weights, held)[0],
                covered(weights, set(terms(f"{p.title} {p.section}")))[0],
                len(key & held) / len(key) if key else 1.0,
            )
        )
    return np.asarray(rows, dtype=np.float64)


# Trained by benchmarks/rag_train_reranker.py on 2026-12-07 (logistic regression on standardised
# features, C = 0.01 by 5-fold cross-validation over the dev questions; these are its
# coefficients mapped back to the raw features, in FEATURES order; the intercept does not
# change an order and is left out). 940 candidates of 50 questions, 97 holding the gold page.
# Dev (cross-validated) hit@1 0.867, MRR@10 0.917; held-out hit@1 0.862, MRR@10 0.931
# (BENCHMARKS.md). Fusion rank and score weigh most; coverage and term share move a candidate
# that holds the question's words past one that only resembles it.
WEIGHTS: tuple[float, ...] = (0.9577, 2.1975, 0.858, 0.9775, 0.7271, 0.0504, 0.7943)


def learned_rerank(
    question: str,
    passages: list[Passage],
    statistics: TermStatistics,
    weights: tuple[float, ...] = WEIGHTS,
) -> list[Passage]:
    """``passages`` (fused, best first) re-ordered by the model's score; ties keep the fused order."""
    if not passages:
        return []
    scores = features(question, passages, statistics) @ np.asarray(weights, dtype=np.float64)
    order = sorted(range(len(passages)), key=lambda i: (-scores[i], i))
    return [replace(passages[i], score=float(scores[i])) for i in order]
