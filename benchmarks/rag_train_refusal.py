"""A learned refusal classifier tried against the evidence rule: trained here, judged on held-out and fresh questions.

    .venv/bin/python benchmarks/rag_train_refusal.py [--cache DIR] [--rows FILE]

Training questions: the generated example documents' questions (answerable and not) and the
dev half of benchmarks/rag/questions.jsonl (answerable and not), each asked as the product
asks it (hybrid retrieval of 20 candidates, the learned reranker, the best five kept), and
every answerable one asked a second time **leave-one-document-out**: its gold document's
chunks dropped from the candidates (60 retrieved, the first 20 of other documents kept) and
from the term statistics, so the question is on the collection's topic and its answer is not
there. A logistic regression (C = 1, fixed beforehand, standardised features) is fitted; the
threshold is chosen on 5-fold out-of-fold probabilities (folds by question, a question and its
leave-one-out twin in the same fold) as the highest that refuses at most 2% of the training
answerable questions. Held-out (the second half of questions.jsonl) and the fresh set
(questions_fresh.jsonl) are only reported -- never used to choose anything -- beside the
evidence rule (evidence.judge) and the two combined (refuse when either refuses, what
DocumentQA.ask does). Leave-one-document-out twins of held-out and fresh questions are
reported as a third judge-only set, and the separation (ROC AUC) of each score on every
judge-only set is printed too (reported, not used to choose).

Result (2026-12-07, /tmp/helper_docs/docs-refusal.md): every variant refused 3 or 4 of the
29 held-out answerable questions (the evidence rule alone: 0), so none meets the issue's
"at most 1 false refusal in 40" and the product keeps the evidence rule. The features live
here, not in the product, for that reason.
"""

from __future__ import annotations

import argparse
import pickle
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.rag_corpus import DEFAULT_CACHE, FRESH_DOCUMENTS  # noqa: E402
from benchmarks.rag_eval import FRESH_QUESTIONS, VectorCache, load_questions, parsed_corpus, product_index  # noqa: E402

FALSE_REFUSAL_BUDGET = 0.02  # the issue: at most 1 false refusal in 40 answerable questions
LODO_POOL = 300  # fused candidates retrieved before the gold document's are dropped (60 held only its chunks for some)
# The variants tried, each judged by the training questions' out-of-fold refusals alone (the
# first is the brief's feature list; the others drop the reranker's score, which is in-sample
# on the training questions because the reranker was trained on them, and regularise more).
VARIANTS: tuple[tuple[str, tuple[str, ...], float], ...] = (
    (
        "all features, C=1",
        ("top_score", "margin", "similarity", "best_coverage", "top3_coverage", "top5_coverage", "unseen_share", "unseen_terms"),
        1.0,
    ),
    (
        "no reranker score, C=1",
        ("similarity", "best_coverage", "top3_coverage", "top5_coverage", "unseen_share", "unseen_terms"),
        1.0,
    ),
    (
        "no reranker score, C=0.1",
        ("similarity", "best_coverage", "top3_coverage", "top5_coverage", "unseen_share", "unseen_terms"),
        0.1,
    ),
    ("coverage and unseen only, C=1", ("best_coverage", "top3_coverage", "top5_coverage", "unseen_share"), 1.0),
)


FEATURES = (
    "top_score",  # the learned reranker's score of the best candidate (its linear part)
    "margin",  # that score minus the second candidate's
    "similarity",  # cosine similarity of the best candidate
    "best_coverage",  # idf-weighted share of the question's terms in the best candidate
    "top3_coverage",  # ... in the best three together
    "top5_coverage",  # ... in the best five together (what evidence.judge looks at)
    "unseen_share",  # idf-weighted share of the question's terms in no chunk of the index
    "unseen_terms",  # how many of the question's terms are in no chunk of the index
)


def refusal_features(question: str, ranked: list, statistics) -> np.ndarray:  # type: ignore[no-untyped-def, type-arg]
    """``FEATURES`` of a question and its reranked passages (best first, scores from learned_rerank)."""
    from tracseq_dagster.documents.evidence import covered, passage_terms, term_weights

    weights = term_weights(question, statistics)
    if not ranked:
        return np.asarray([0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0, float(len(weights))])
    held = [passage_terms(p) for p in ranked[:5]]
    unseen = {t for t in weights if statistics.frequency.get(t, 0) == 0}
    total = sum(weights.values()) or 1.0
    second = ranked[1].score if len(ranked) > 1 else ranked[0].score
    return np.asarray(
        [
            ranked[0].score,
            ranked[0].score - second,
            ranked[0].similarity,
            covered(weights, held[0])[0],
            covered(weights, set().union(*held[:3]))[0],
            covered(weights, set().union(*held))[0],
            sum(weights[t] for t in unseen) / total,
            float(len(unseen)),
        ],
        dtype=np.float64,
    )


@dataclass
class Row:
    group: str  # the question's id (its leave-one-out twin shares it)
    split: str  # examples, dev, heldout, fresh
    kind: str  # "asked" or "lodo"
    answerable: bool
    question: str
    features: np.ndarray
    evidence_refuses: bool


def per_document_counts(index) -> tuple[dict[str, Counter[str]], dict[str, int]]:  # type: ignore[no-untyped-def]
    """Per file: how many of its chunks hold each term, and its chunk count (to leave it out of the statistics)."""
    from tracseq_dagster.documents.evidence import terms
    from tracseq_dagster.documents.index import FTS_COLUMN

    table = index.table.search().select(["file_name", FTS_COLUMN]).limit(None).to_arrow()
    counts: dict[str, Counter[str]] = {}
    chunks: Counter[str] = Counter()
    for name, text in zip(table.column("file_name").to_pylist(), table.column(FTS_COLUMN).to_pylist()):
        counts.setdefault(name, Counter()).update(set(terms(text)))
        chunks[name] += 1
    return counts, dict(chunks)


def without(statistics, counts: Counter[str], chunks: int):  # type: ignore[no-untyped-def]
    """``statistics`` as if the document with these term ``counts`` and ``chunks`` were not indexed."""
    from tracseq_dagster.documents.evidence import TermStatistics

    frequency = {t: f - counts.get(t, 0) for t, f in statistics.frequency.items()}
    return TermStatistics(statistics.chunks - chunks, {t: f for t, f in frequency.items() if f > 0}, statistics.common)


def question_rows(qa, asked: list[tuple[str, str, str, str | None]], *, lodo: bool) -> list[Row]:  # type: ignore[no-untyped-def]
    """Rows of (id, split, question, gold file or None); ``lodo`` adds each answerable one's leave-one-out twin."""
    from tracseq_dagster.documents.evidence import judge
    from tracseq_dagster.documents.learned_rerank import learned_rerank
    from tracseq_dagster.documents.rerank import CANDIDATES
    from tracseq_dagster.documents.retrieval import DEFAULT_MIN_SIMILARITY, DEFAULT_TOP_K, retrieve

    statistics = qa.statistics()
    counts, chunks = per_document_counts(qa.index)
    rows = []
    for qid, split, question, gold in asked:
        candidates = retrieve(qa.index, qa.embedder, question, top_k=CANDIDATES)
        ranked = learned_rerank(question, candidates, statistics)[:DEFAULT_TOP_K]
        weak = judge(question, ranked, statistics, min_similarity=DEFAULT_MIN_SIMILARITY).weak
        rows.append(Row(qid, split, "asked", gold is not None, question, refusal_features(question, ranked, statistics), weak))
        if lodo and gold is not None:
            reduced = without(statistics, counts[gold], chunks[gold])
            pool = retrieve(qa.index, qa.embedder, question, top_k=LODO_POOL, candidates=LODO_POOL)
            others = [p for p in pool if p.file_name != gold][:CANDIDATES]
            ranked = learned_rerank(question, others, reduced)[:DEFAULT_TOP_K]
            weak = judge(question, ranked, reduced, min_similarity=DEFAULT_MIN_SIMILARITY).weak
            rows.append(Row(qid, split, "lodo", False, question, refusal_features(question, ranked, reduced), weak))
    return rows


def collect(cache: Path, folder: Path) -> list[Row]:
    from tracseq_dagster.documents.embedding import make_embedder
    from tracseq_dagster.documents.examples import EXAMPLE_QUESTIONS, UNANSWERABLE_QUESTIONS, generate_examples
    from tracseq_dagster.documents.pipeline import index_folder
    from tracseq_dagster.documents.qa import DocumentQA

    vectors = VectorCache(cache, make_embedder("minilm"))
    rows: list[Row] = []
    generate_examples(folder / "examples")
    index, embedder, _ = index_folder(
        folder / "examples", lake_root=folder / "lake", lancedb_uri=folder / "examples.lancedb", in_process=True
    )
    asked = [(f"ex{i}", "examples", q.question, q.file_name) for i, q in enumerate(EXAMPLE_QUESTIONS)]
    asked += [(f"exu{i}", "examples", q, None) for i, q in enumerate(UNANSWERABLE_QUESTIONS)]
    rows += question_rows(DocumentQA(index, embedder, None), asked, lodo=True)
    print(f"examples: {len(rows)} rows", flush=True)

    real, _ = product_index(parsed_corpus(cache), vectors, folder / "real")
    qa = DocumentQA(real, vectors.embedder, None)
    rows += question_rows(qa, [(q.id, q.split, q.question, q.file_name) for q in load_questions()], lodo=True)
    print(f"+ real: {len(rows)} rows", flush=True)

    fresh, _ = product_index(parsed_corpus(cache, documents=FRESH_DOCUMENTS), vectors, folder / "fresh")
    qa = DocumentQA(fresh, vectors.embedder, None)
    rows += question_rows(qa, [(q.id, "fresh", q.question, q.file_name) for q in load_questions(FRESH_QUESTIONS)], lodo=True)
    print(f"+ fresh: {len(rows)} rows", flush=True)
    return rows


def fit(x: np.ndarray, y: np.ndarray, c: float = 1.0) -> tuple[np.ndarray, float]:
    """Logistic regression on standardised features; raw-feature coefficients and intercept."""
    from sklearn.linear_model import LogisticRegression

    mean, std = x.mean(axis=0), x.std(axis=0)
    std[std == 0] = 1.0
    model = LogisticRegression(C=c, max_iter=5000).fit((x - mean) / std, y)
    coef = model.coef_[0] / std
    return coef, float(model.intercept_[0] - coef @ mean)


def probability(x: np.ndarray, coef: np.ndarray, intercept: float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(x @ coef + intercept)))


def gold_files() -> dict[str, str]:
    """Question id -> its gold file, for the training questions (examples and dev)."""
    from tracseq_dagster.documents.examples import EXAMPLE_QUESTIONS

    files = {f"ex{i}": q.file_name for i, q in enumerate(EXAMPLE_QUESTIONS)}
    files.update({q.id: q.file_name for q in load_questions() if q.file_name is not None})
    return files


def oof_threshold(train: list[Row], columns: list[int], c: float, *, by_document: bool) -> tuple[np.ndarray, float]:
    """Out-of-fold probabilities and the highest threshold within the false-refusal budget.

    Five folds by question, or (``by_document``) by the gold document: every question on a
    document (and its leave-one-out twin) in the same fold, so the out-of-fold probabilities
    are those of documents the model never saw, as in use; unanswerable questions, which have
    no document, by question.
    """
    x = np.vstack([r.features[columns] for r in train])
    y = np.asarray([int(r.answerable) for r in train])
    files = gold_files() if by_document else {}
    keys = sorted({files.get(r.group, r.group) for r in train})
    fold_of = {k: i % 5 for i, k in enumerate(keys)}
    folds = np.asarray([fold_of[files.get(r.group, r.group)] for r in train])
    oof = np.zeros(len(train))
    for fold in range(5):
        coef, intercept = fit(x[folds != fold], y[folds != fold], c)
        oof[folds == fold] = probability(x[folds == fold], coef, intercept)
    answerable = np.sort(oof[y == 1])
    allowed = int(np.floor(FALSE_REFUSAL_BUDGET * len(answerable)))
    return oof, float(answerable[allowed])  # refuse strictly below: at most ``allowed`` training false refusals


def judged(rows: list[Row], split: str, lodo: bool) -> list[Row]:
    """A judge-only set: the split's questions as asked, or its answerable ones and their leave-one-out twins."""
    if lodo:
        return [r for r in rows if r.split == split and (r.kind == "lodo" or (r.kind == "asked" and r.answerable))]
    return [r for r in rows if r.split == split and r.kind == "asked"]


def counts(chosen: list[Row], refused: np.ndarray) -> str:
    truth = np.asarray([r.answerable for r in chosen])
    return f"{int(refused[~truth].sum())}/{int((~truth).sum())} · {int(refused[truth].sum())}/{int(truth.sum())}"


def main() -> None:
    from tracseq_dagster.documents.environment import set_offline_environment

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--rows", type=Path, default=None, help="reuse (or write) the collected feature rows here")
    args = parser.parse_args()
    set_offline_environment()
    if args.rows is not None and args.rows.exists():
        rows: list[Row] = pickle.loads(args.rows.read_bytes())
    else:
        with tempfile.TemporaryDirectory() as tmp:
            rows = collect(args.cache, Path(tmp))
        if args.rows is not None:
            args.rows.write_bytes(pickle.dumps(rows))

    train = [r for r in rows if r.split in ("examples", "dev")]
    y = np.asarray([int(r.answerable) for r in train])
    print(f"training rows: {len(train)} ({int(y.sum())} answerable, {int((1 - y).sum())} unanswerable, "
          f"of which {sum(r.kind == 'lodo' for r in train)} leave-one-document-out)\n")  # fmt: skip
    sets = [
        ("held-out", "heldout", False),
        ("fresh", "fresh", False),
        ("held-out LODO", "heldout", True),
        ("fresh LODO", "fresh", True),
    ]
    lines = [
        "Each cell: unanswerable refused · false refusals. Training columns are out-of-fold; the rest judge only.",
        "",
        "| variant | threshold | training (OOF) | "
        + " | ".join(f"{name} classifier | {name} either" for name, _, _ in sets)
        + " |",
        "|---|---:|---:|" + "---:|---:|" * len(sets),
    ]
    evidence_cells = [
        counts(judged(rows, s, lo), np.asarray([r.evidence_refuses for r in judged(rows, s, lo)])) for _, s, lo in sets
    ]
    lines.append("| evidence rule alone (coverage ≥ 0.5) | — | — | " + " | ".join(f"{e} | {e}" for e in evidence_cells) + " |")
    details: list[str] = []
    for (base, names, c), by_document in ((v, b) for b in (False, True) for v in VARIANTS):
        name = f"{base}, folds by {'document' if by_document else 'question'}"
        columns = [FEATURES.index(n) for n in names]
        oof, threshold = oof_threshold(train, columns, c, by_document=by_document)
        coef, intercept = fit(np.vstack([r.features[columns] for r in train]), y, c)
        cells = []
        for label, split, lodo in sets:
            chosen = judged(rows, split, lodo)
            p = probability(np.vstack([r.features[columns] for r in chosen]), coef, intercept)
            model = p < threshold
            evidence = np.asarray([r.evidence_refuses for r in chosen])
            cells += [counts(chosen, model), counts(chosen, model | evidence)]
            if not lodo:
                details += [f"- {name}, {label}: {r.group} {'answerable' if r.answerable else 'unanswerable'} p {q:.2f} "
                            f"({'refused' if f else 'answered'}): {r.question}"
                            for r, q, f in zip(chosen, p, model | evidence) if f == r.answerable]  # fmt: skip
        lines.append(f"| {name} | {threshold:.3f} | {counts(train, oof < threshold)} | " + " | ".join(cells) + " |")
        full = np.zeros(len(FEATURES))
        full[columns] = coef
        details.append(
            f"  {name}: WEIGHTS = {tuple(round(float(w), 4) for w in full)}; INTERCEPT = {intercept:.4f}; THRESHOLD = {threshold:.4f}"
        )
    print("\n".join(lines + ["", "Wrong decisions (judge-only questions as asked) and the fitted weights:", *details]))
    print("\n".join(["", *separation(rows, train, y, sets)]))


def separation(rows: list[Row], train: list[Row], y: np.ndarray, sets: list[tuple[str, str, bool]]) -> list[str]:
    """ROC AUC (answerable against not) of each score on each judge-only set: how well it separates at any threshold."""
    from sklearn.metrics import roc_auc_score

    def line(name: str, score) -> str:  # type: ignore[no-untyped-def]
        cells = []
        for _, split, lodo in sets:
            chosen = judged(rows, split, lodo)
            cells.append(f"{roc_auc_score([r.answerable for r in chosen], score(chosen)):.3f}")
        return f"| {name} | " + " | ".join(cells) + " |"

    lines = ["| score (ROC AUC, judge only) | " + " | ".join(name for name, _, _ in sets) + " |", "|---|" + "---:|" * len(sets)]
    lines.append(
        line("top-5 coverage (the evidence rule's)", lambda chosen: [r.features[FEATURES.index("top5_coverage")] for r in chosen])
    )
    lines.append(line("best passage's similarity", lambda chosen: [r.features[FEATURES.index("similarity")] for r in chosen]))
    for name, names, c in VARIANTS:
        columns = [FEATURES.index(n) for n in names]
        coef, intercept = fit(np.vstack([r.features[columns] for r in train]), y, c)
        lines.append(
            line(
                name, lambda chosen, k=columns, w=coef, b=intercept: probability(np.vstack([r.features[k] for r in chosen]), w, b)
            )
        )
    return lines


if __name__ == "__main__":
    main()
