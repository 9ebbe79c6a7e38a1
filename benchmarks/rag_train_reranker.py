"""Train the learned reranker (documents/learned_rerank.py) and judge it on the held-out questions.

    .venv/bin/python benchmarks/rag_train_reranker.py [--cache DIR] [--pdf-engine pdfium|unstructured]
                                                      [--embedder minilm|minilm-onnx]

Training questions: the generated example documents' questions (examples.EXAMPLE_QUESTIONS,
a lab's SOPs) and the dev half of benchmarks/rag/questions.jsonl. For each, the product's 20
fused candidates (retrieval.retrieve, as DocumentQA.search gets them) are described by
learned_rerank.features and labelled 1 when they hold the gold page, 0 otherwise; a logistic
regression on standardised features is fitted, its regularisation C chosen by 5-fold
cross-validation over the dev questions (grouped by question), and the coefficients are
printed mapped back to raw features, ready for ``WEIGHTS``. The held-out half is used only for
the final table, beside the coverage reranker and no reranker, every try reported.

``--pdf-engine`` parses the manuals and the example PDFs with that engine (parsing.py; the
product's default when not given): the reranker is trained on the chunks the product makes.
``--embedder minilm-onnx`` gives torch's vectors (to 2e-7) at less than half the CPU.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.rag_corpus import DEFAULT_CACHE  # noqa: E402
from benchmarks.rag_eval import (  # noqa: E402
    TOP,
    VectorCache,
    evaluate,
    load_questions,
    parsed_corpus,
    product_index,
    product_system,
    rank_of,
    scores,
    summary,
)

C_VALUES = (0.01, 0.1, 1.0, 10.0)


def candidate_rows(qa, questions: list[tuple[str, str, tuple[int, ...]]]):  # type: ignore[no-untyped-def]
    """(features, labels, group) per candidate of each (question, gold file, gold pages)."""
    from tracseq_dagster.documents.learned_rerank import features
    from tracseq_dagster.documents.rerank import CANDIDATES
    from tracseq_dagster.documents.retrieval import retrieve

    xs, ys, groups = [], [], []
    for number, (question, file_name, pages) in enumerate(questions):
        candidates = retrieve(qa.index, qa.embedder, question, top_k=CANDIDATES)
        xs.append(features(question, candidates, qa.statistics()))
        ys += [int(rank_of([(p.file_name, p.page_start, p.page_end)], file_name, pages) == 1) for p in candidates]
        groups += [number] * len(candidates)
    return np.vstack(xs), np.asarray(ys), np.asarray(groups)


def fit(x: np.ndarray, y: np.ndarray, c: float) -> tuple[float, ...]:
    """Logistic regression on standardised features; the coefficients mapped back to raw features."""
    from sklearn.linear_model import LogisticRegression

    mean, std = x.mean(axis=0), x.std(axis=0)
    std[std == 0] = 1.0
    model = LogisticRegression(C=c, max_iter=2000).fit((x - mean) / std, y)
    return tuple(float(w) for w in model.coef_[0] / std)


def ranks_by(x: np.ndarray, y: np.ndarray, groups: np.ndarray, weights: tuple[float, ...]) -> list[int | None]:
    """Rank of the first positive candidate per question under ``weights`` (None when none is in the top 10)."""
    result: list[int | None] = []
    for group in np.unique(groups):
        rows = groups == group
        scores_ = x[rows] @ np.asarray(weights)
        order = sorted(range(int(rows.sum())), key=lambda i: (-scores_[i], i))
        labels = y[rows][order][:TOP]
        result.append(int(np.argmax(labels)) + 1 if labels.any() else None)
    return result


def main() -> None:
    from tracseq_dagster.documents.embedding import make_embedder
    from tracseq_dagster.documents.environment import set_offline_environment
    from tracseq_dagster.documents.examples import EXAMPLE_QUESTIONS, generate_examples
    from tracseq_dagster.documents.learned_rerank import FEATURES
    from tracseq_dagster.documents.parsing import DEFAULT_PDF_ENGINE, PDF_ENGINES
    from tracseq_dagster.documents.pipeline import index_folder
    from tracseq_dagster.documents.qa import DocumentQA

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--pdf-engine", choices=PDF_ENGINES, default=DEFAULT_PDF_ENGINE)
    parser.add_argument("--embedder", choices=["minilm", "minilm-onnx"], default="minilm")
    args = parser.parse_args()
    set_offline_environment()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        vectors = VectorCache(args.cache, make_embedder(args.embedder))
        parsed = parsed_corpus(args.cache, args.pdf_engine)
        print(f"parser {args.pdf_engine}, embedder {vectors.embedder.identity}")
        index, _ = product_index(parsed, vectors, folder)
        real = DocumentQA(index, vectors.embedder, None)
        generate_examples(folder / "examples")
        example_index, example_embedder, _ = index_folder(
            folder / "examples",
            lake_root=folder / "lake",
            lancedb_uri=folder / "examples.lancedb",
            embedder=args.embedder,
            in_process=True,
            pdf_engine=args.pdf_engine,
        )
        examples = DocumentQA(example_index, example_embedder, None)

        questions = [q for q in load_questions() if q.answerable]
        dev = [(q.question, q.file_name, q.pages) for q in questions if q.split == "dev"]
        x_dev, y_dev, g_dev = candidate_rows(real, dev)  # type: ignore[arg-type]
        x_ex, y_ex, g_ex = candidate_rows(examples, [(q.question, q.file_name, (q.page,)) for q in EXAMPLE_QUESTIONS])
        print(f"training rows: dev {len(y_dev)} ({y_dev.sum()} positive), examples {len(y_ex)} ({y_ex.sum()} positive)")

        # C by 5-fold cross-validation over dev questions (the examples always train).
        folds = np.arange(len(dev)) % 5
        print("| C | dev hit@1 (5-fold CV) | dev MRR@10 (5-fold CV) |\n|---:|---:|---:|")
        chosen, best = C_VALUES[0], -1.0
        for c in C_VALUES:
            ranks: list[int | None] = []
            for fold in range(5):
                train = ~np.isin(g_dev, np.flatnonzero(folds == fold))
                weights = fit(np.vstack([x_dev[train], x_ex]), np.concatenate([y_dev[train], y_ex]), c)
                ranks += ranks_by(x_dev[~train], y_dev[~train], g_dev[~train], weights)
            s = scores(ranks)
            print(f"| {c:g} | {s['hit@1']:.3f} | {s['MRR@10']:.3f} |")
            if s["MRR@10"] > best:
                chosen, best = c, s["MRR@10"]
        weights = fit(np.vstack([x_dev, x_ex]), np.concatenate([y_dev, y_ex]), chosen)
        print(f"\nC = {chosen:g}; WEIGHTS = {tuple(round(w, 4) for w in weights)}  # {', '.join(FEATURES)}")

        all_questions = load_questions()
        lines = ["| reranker | split | hit@1 | hit@5 | MRR@10 | refused | false refusals |", "|---|---|---:|---:|---:|---:|---:|"]
        for name, kwargs in (
            ("none (fusion order)", {"rerank_weight": 0.0}),
            ("coverage (product)", {}),
            ("learned", {"learned_weights": tuple(round(w, 4) for w in weights)}),
        ):
            outcomes = evaluate(product_system(parsed, vectors, folder / name.split()[0], **kwargs), all_questions)  # type: ignore[arg-type]
            for split in ("dev", "heldout", "all"):
                s = summary([o for o in outcomes if split == "all" or o.question.split == split])
                lines.append(
                    f"| {name} | {split} | {s['hit@1']:.3f} | {s['hit@5']:.3f} | {s['MRR@10']:.3f} | "
                    f"{s['refused unanswerable']}/{s['unanswerable']} | {s['false refusals']}/{s['answerable']} |"
                )
        print("\n".join(lines))


if __name__ == "__main__":
    main()
