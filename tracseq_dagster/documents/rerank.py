"""A second look at the fused candidates: how much of the question's rare words each one holds.

Reciprocal rank fusion knows ranks, not content: a passage ranked 3rd by meaning and 4th by
words can end up first although it never mentions the function the question names. This
reranker re-scores the fused candidates by their own evidence: the passage's rare-term
coverage of the question (evidence.coverage, idf-weighted, general-English words weighing a
quarter), added to its fusion score scaled to the best candidate's. Words are the strongest
signal technical questions have ("glp_top_sort", "ITALIC_ANGLE", "read.fwf"), and this
costs a tokenisation of the candidates, well under a millisecond each (BENCHMARKS.md), no
model.

DocumentQA no longer uses it: on the held-out real questions it found the right page first
less often than fusion order alone (hit@1 0.759 against 0.862; its weight was chosen on 30
dev questions), and the trained reranker of learned_rerank.py replaced it. It stays as the
comparison of benchmarks/rag_eval.py and rag_train_reranker.py, and ``CANDIDATES`` is still
the number of fused candidates any reranker sees.

No cross-encoder is used: none ships inside a package of the index without a download from a
model hub at run time (checked for this issue), and the project loads no weights from a hub.
"""

from __future__ import annotations

from dataclasses import replace

from tracseq_dagster.documents.evidence import TermStatistics, coverage
from tracseq_dagster.documents.retrieval import Passage

# Weight of a candidate's own coverage against its fusion score scaled to 0..1 (the best
# candidate's is 1). Chosen on the dev half of benchmarks/rag/questions.jsonl (rag_eval.py
# --rerank-sweep, BENCHMARKS.md): dev hit@1 26/30 without, 27/30 at 0.25, 0.5 and 1, 25/30
# at 2; MRR@10 0.914, 0.939, 0.944, 0.944, 0.894. The middle of the plateau; the held-out
# half was not used.
DEFAULT_COVERAGE_WEIGHT = 0.5
CANDIDATES = 20  # fused candidates re-scored


def rerank(
    question: str, passages: list[Passage], statistics: TermStatistics, *, weight: float = DEFAULT_COVERAGE_WEIGHT
) -> list[Passage]:
    """``passages`` (fused, best first) re-ordered by fusion score + ``weight`` x own coverage; scores replaced."""
    if not passages or weight == 0:
        return list(passages)
    best = max(p.score for p in passages) or 1.0
    scored = [(p.score / best + weight * coverage(question, [p], statistics)[0], order, p) for order, p in enumerate(passages)]
    scored.sort(key=lambda item: (-item[0], item[1]))
    return [replace(p, score=score) for score, _, p in scored]
