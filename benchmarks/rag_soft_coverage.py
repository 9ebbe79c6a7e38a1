"""Soft (late-interaction) coverage as refusal evidence, measured on the real-manual questions; not adopted.

    .venv/bin/python benchmarks/rag_soft_coverage.py [--cache DIR] [--dump FILE] [--analyse-only] [--detail] [--static] [--cost]

Exact coverage (evidence.coverage) cannot tell a word the passages lack from a word they
phrase differently ("backslash" where the page shows the sign). Here each content word of the
question is matched by its contextual token vectors, all-MiniLM-L6-v2's last hidden state
before mean pooling (the ONNX model the product embeds with, onnx_embedding.py; no new
weights), against every token of the ``k`` best passages, ColBERT's MaxSim: a word's score is
the mean over its word pieces of the best cosine to any passage token (``word_scores``).
Three refusal measures are built on it: ``soft`` (the idf-weighted mean of the scores, the
weights of evidence.term_weights), ``blend`` (the same with the terms the best five passages
hold exactly given full credit, a score under ``floor`` counting nothing) and ``weakest``
(the lowest score of a word the passages do not hold exactly). ``--static`` scores with the
model's input word-piece embeddings instead (no model run: a few ms a question, no context).

For every question of benchmarks/rag/questions.jsonl, the fresh set (questions_fresh.jsonl)
and the generated example documents, the product's passages (DocumentQA.search, as in
rag_eval.py) and each word's scores against the best 1, 3 and 5 passages are dumped to JSON;
then each rule gets its threshold at the middle of its zero-false-refusal band on the dev half
+ the examples (rag_eval.band) and is reported on held-out and fresh as it falls, beside the
product's rule (similarity threshold, or coverage < 0.5). The cost of the scores per question
is timed at each k.

Verdict (2026-12-07, BENCHMARKS.md): the rule dev chose (the product's, or ``weakest`` < 0.357
at k = 3; dev 7/7 refused, 0/37 false) refused held-out 6/7 with 1/37 false and fresh 6/6 with
3/23 (the product: 5/7 with 0/37, 2/6 with 2/23), at ~250 ms a question (k = 1: ~100 ms):
it adds false refusals and costs more than the budget, so the product keeps exact coverage.
The words unanswerable questions ask for score 0.2-0.4, but so do ordinary words answerable
ones phrase differently ("control" 0.19, "units" 0.33, "backslash" 0.39). ``--static`` is
cheap (3-9 ms) and refuses no more held-out questions than the product.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.rag_corpus import DEFAULT_CACHE, DOCUMENTS, FRESH_DOCUMENTS  # noqa: E402
from benchmarks.rag_eval import (  # noqa: E402
    FRESH_QUESTIONS,
    QUESTIONS,
    VectorCache,
    band,
    load_questions,
    parsed_corpus,
    product_system,
)
from tracseq_dagster.documents.evidence import _HOW_QUANTITY, _POSSESSIVE, _TOKEN, STOP_WORDS, stem  # noqa: E402
from tracseq_dagster.documents.normalise import normalise  # noqa: E402

KS = (1, 3, 5)


def _prepared(text: str) -> str:
    """The question as evidence.words reads it (same substitutions), so word offsets match the tokenizer's."""
    return _POSSESSIVE.sub("", _HOW_QUANTITY.sub(" ", normalise(text).lower()))


def _states(embedder: Any, texts: list[str]) -> list[tuple[Any, np.ndarray]]:
    """(encoding, unit token vectors without [CLS]/[SEP]) per text: the model's last hidden state, one padded batch."""
    tokenizer, session = embedder._parts()
    encodings = tokenizer.encode_batch(texts)
    width = max(len(e.ids) for e in encodings)
    ids = np.zeros((len(encodings), width), dtype=np.int64)
    mask = np.zeros_like(ids)
    for row, encoding in enumerate(encodings):
        ids[row, : len(encoding.ids)] = encoding.ids
        mask[row, : len(encoding.ids)] = 1
    hidden = session.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})[0]
    out = []
    for row, encoding in enumerate(encodings):
        vectors = hidden[row, : len(encoding.ids)]
        vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-9)
        out.append((encoding, vectors))
    return out


@functools.cache
def _input_embeddings() -> np.ndarray:
    """The model's word-piece embedding table (30,522 x 384), rows L2-normalised."""
    from safetensors.numpy import load_file

    from tracseq_dagster.documents.onnx_embedding import package_path

    table = load_file(str(package_path() / "model.safetensors"))["embeddings.word_embeddings.weight"]
    return table / np.maximum(np.linalg.norm(table, axis=1, keepdims=True), 1e-9)


def _static_states(embedder: Any, texts: list[str]) -> list[tuple[Any, np.ndarray]]:
    """Like ``_states`` but with the model's input word-piece embeddings: no model run, no context (``--static``)."""
    tokenizer, _ = embedder._parts()
    return [(e, _input_embeddings()[np.asarray(e.ids)]) for e in tokenizer.encode_batch(texts)]


def passage_text(passage: object) -> str:
    parts = (getattr(passage, "title", ""), getattr(passage, "section", ""), getattr(passage, "text", ""))
    return ". ".join(p for p in parts if p)


def word_scores(embedder: Any, question: str, passages: list[Any], *, top: int = 3) -> dict[str, float]:
    """Each content word of ``question`` -> mean over its word pieces of the best cosine to a token of the passages."""
    prepared = _prepared(question)
    texts = [prepared] + [passage_text(p) for p in passages[:top]]
    states = _states(embedder, texts)
    encoding, asked = states[0]
    special = {"[CLS]", "[SEP]"}
    held = [v[[i for i, t in enumerate(e.tokens) if t not in special]] for e, v in states[1:]]
    if not held:
        return {}
    tokens = np.concatenate(held)
    best = (asked @ tokens.T).max(axis=1) if len(tokens) else np.zeros(len(asked))
    scores: dict[str, float] = {}
    for match in _TOKEN.finditer(prepared):
        word = match.group()
        if word in STOP_WORDS or word.isdigit():
            continue
        pieces = [
            i
            for i, (start, end) in enumerate(encoding.offsets)
            if encoding.tokens[i] not in special and start < match.end() and end > match.start()
        ]
        if pieces:
            scores[word] = max(scores.get(word, 0.0), float(best[pieces].mean()))
    return scores


def soft_coverage(
    weights: dict[str, float], scores: dict[str, float], found: set[str] = frozenset(), *, floor: float = 0.0
) -> float:
    """The idf-weighted mean of the terms' soft scores (1.0 for no terms).

    ``found``: terms held exactly, given full credit (blend); ``floor``: a soft score below it
    counts as nothing, and above it is rescaled to 0..1, so that unrelated tokens' cosines
    (MiniLM's last-layer tokens are seldom orthogonal: 0.1-0.3 is common) do not add up to coverage.
    """
    if not weights:
        return 1.0
    by_term: dict[str, float] = {}
    for word, score in scores.items():
        term = stem(word)
        by_term[term] = max(by_term.get(term, 0.0), score)
    total = sum(weights.values())
    held = 0.0
    for term, weight in weights.items():
        if term in found:
            held += weight
            continue
        score = by_term.get(term, 0.0)
        held += weight * (max(0.0, score - floor) / (1.0 - floor) if floor < 1.0 else 0.0)
    return held / total if total else 1.0


def _record(qid: str, split: str, answerable: bool, question: str, passages: list, qa_statistics, embedder, times: dict) -> dict:  # type: ignore[no-untyped-def,type-arg]
    from tracseq_dagster.documents.evidence import EVIDENCE_PASSAGES, judge, passage_terms, term_weights
    from tracseq_dagster.documents.retrieval import DEFAULT_MIN_SIMILARITY

    evidence = judge(question, passages, qa_statistics, min_similarity=DEFAULT_MIN_SIMILARITY)
    weights = term_weights(question, qa_statistics)
    found: set[str] = set()
    for p in passages[:EVIDENCE_PASSAGES]:
        found |= passage_terms(p)
    scores = {}
    for k in KS:
        started = time.perf_counter()
        scores[str(k)] = word_scores(embedder, question, passages, top=k)
        times.setdefault(k, []).append((time.perf_counter() - started) * 1000)
    return {
        "id": qid,
        "split": split,
        "answerable": answerable,
        "question": question,
        "similarity": evidence.similarity,
        "coverage": evidence.coverage,
        "weak": evidence.weak,
        "below_similarity": evidence.similarity < DEFAULT_MIN_SIMILARITY,
        "weights": weights,
        "found": sorted(set(weights) & found),
        "scores": scores,
    }


def dump(cache: Path, folder: Path) -> tuple[list[dict], dict]:  # type: ignore[type-arg]
    from tracseq_dagster.documents.embedding import make_embedder
    from tracseq_dagster.documents.examples import EXAMPLE_QUESTIONS, UNANSWERABLE_QUESTIONS, generate_examples
    from tracseq_dagster.documents.pipeline import index_folder
    from tracseq_dagster.documents.qa import DocumentQA

    embedder = make_embedder("minilm-onnx")
    vectors = VectorCache(cache, embedder)
    records: list[dict] = []  # type: ignore[type-arg]
    times: dict[int, list[float]] = {}
    for documents, path, name in ((DOCUMENTS, QUESTIONS, "first"), (FRESH_DOCUMENTS, FRESH_QUESTIONS, "fresh")):
        parsed = parsed_corpus(cache, None, documents)
        system = product_system(parsed, vectors, folder / name)
        from tracseq_dagster.documents.index import DocumentIndex

        qa = DocumentQA(DocumentIndex(folder / name / "product.lancedb", "chunks", 384), embedder, None)
        statistics = qa.statistics()
        for q in load_questions(path):
            split = "fresh" if name == "fresh" else q.split
            records.append(_record(q.id, split, q.answerable, q.question, system.search(q.question), statistics, embedder, times))
        print(f"{name}: {len(records)} records", flush=True)
    generate_examples(folder / "examples")
    index, example_embedder, _ = index_folder(
        folder / "examples", lake_root=folder / "examples-lake", lancedb_uri=folder / "examples.lancedb", in_process=True
    )
    qa = DocumentQA(index, example_embedder, None)
    asked = [(True, q.question) for q in EXAMPLE_QUESTIONS] + [(False, q) for q in UNANSWERABLE_QUESTIONS]
    for n, (answerable, question) in enumerate(asked):
        records.append(_record(f"x{n}", "examples", answerable, question, qa.search(question), qa.statistics(), embedder, times))
    return records, times


def weakest(scores: dict[str, float], found: set[str]) -> float:
    """The lowest soft score of a question word whose term the passages do not hold exactly (1.0 for none)."""
    return min((score for word, score in scores.items() if stem(word) not in found), default=1.0)


def measure(record: dict, rule: str, k: int, floor: float) -> float:  # type: ignore[type-arg]
    if rule == "coverage":
        return float(record["coverage"])
    if rule == "weakest":
        return weakest(record["scores"][str(k)], set(record["found"]))
    found = set(record["found"]) if rule == "blend" else set()
    return soft_coverage(record["weights"], record["scores"][str(k)], found, floor=floor)


RULES = (
    [("coverage", 0, 0.0)]
    + [(rule, k, floor) for rule in ("soft", "blend") for k in KS for floor in (0.0, 0.3, 0.4, 0.5, 0.6, 0.7)]
    + [("weakest", k, 0.0) for k in KS]
)


def analyse(records: list[dict]) -> list[str]:  # type: ignore[type-arg]
    splits = ("dev", "heldout", "fresh", "examples")

    def cell(chosen: list[dict], refused: list[bool]) -> str:  # type: ignore[type-arg]
        no = [r for r, x in zip(chosen, refused) if not r["answerable"]]
        yes = [r for r, x in zip(chosen, refused) if r["answerable"]]
        return (
            f"{sum(x for r, x in zip(chosen, refused) if not r['answerable'])}/{len(no)} · "
            f"{sum(x for r, x in zip(chosen, refused) if r['answerable'])}/{len(yes)}"
        )

    lines = [
        "| rule | k | floor | dev+examples gap | threshold | " + " | ".join(f"{s} refused · false" for s in splits) + " |",
        "|---|---:|---:|---:|---:|" + "---:|" * len(splits),
    ]
    product = [r["weak"] for r in records]
    lines.append(
        "| product (similarity, coverage < 0.5) | – | – | – | 0.500 | "
        + " | ".join(
            cell([r for r in records if r["split"] == s], [x for r, x in zip(records, product) if r["split"] == s])
            for s in splits
        )
        + " |"
    )
    for rule, k, floor in RULES:
        values = [measure(r, rule, k, floor) for r in records]
        tune = [(r, v) for r, v in zip(records, values) if r["split"] in ("dev", "examples")]
        gap, middle, _ = band([v for r, v in tune if r["answerable"]], [v for r, v in tune if not r["answerable"]])
        for with_product in (False, True):  # the measure instead of coverage, or refusing where either does
            refused = [(r["weak"] if with_product else r["below_similarity"]) or v < middle for r, v in zip(records, values)]
            cells = [
                cell([r for r in records if r["split"] == s], [x for r, x in zip(records, refused) if r["split"] == s])
                for s in splits
            ]
            name = f"product or {rule}" if with_product else rule
            lines.append(f"| {name} | {k} | {floor:.1f} | {gap:.3f} | {middle:.3f} | " + " | ".join(cells) + " |")
    return lines


def detail(records: list[dict], k: int = 3, floor: float = 0.3) -> list[str]:  # type: ignore[type-arg]
    """Per question: exact coverage, blend and weakest at ``k``, and the soft score of each word not held exactly."""
    lines = []
    for r in records:
        scores = r["scores"][str(k)]
        missing = ", ".join(f"{w} {s:.2f}" for w, s in scores.items() if stem(w) not in set(r["found"]))
        lines.append(
            f"- {r['split']} {r['id']} {'answerable' if r['answerable'] else 'UNANSWERABLE'} coverage {r['coverage']:.2f} "
            f"blend {measure(r, 'blend', k, floor):.2f} weakest {measure(r, 'weakest', k, 0.0):.2f} ({missing}): {r['question']}"
        )
    return lines


def cost(cache: Path, folder: Path, threads: tuple[int, ...] = (1, 2)) -> list[str]:
    """Milliseconds per question of ``word_scores`` over the first set's passages, per k and onnxruntime threads."""
    from tracseq_dagster.documents.embedding import make_embedder
    from tracseq_dagster.documents.onnx_embedding import OnnxMiniLMEmbedder

    vectors = VectorCache(cache, make_embedder("minilm-onnx"))
    system = product_system(parsed_corpus(cache, None, DOCUMENTS), vectors, folder)
    asked = [(q.question, system.search(q.question)) for q in load_questions(QUESTIONS)]
    lines = []
    for n in threads:
        embedder = OnnxMiniLMEmbedder(threads=n)
        word_scores(embedder, "warm up", asked[0][1], top=1)
        for k in KS:
            wall, cpu = [], []  # CPU: this process's time, which waiting for a core on a busy machine does not inflate
            for question, passages in asked:
                started, started_cpu = time.perf_counter(), time.process_time()
                word_scores(embedder, question, passages, top=k)
                wall.append((time.perf_counter() - started) * 1000)
                cpu.append((time.process_time() - started_cpu) * 1000)
            lines.append(
                f"threads {n}, top {k} passages: wall p50 {np.percentile(wall, 50):.1f} ms, p90 {np.percentile(wall, 90):.1f} ms; "
                f"CPU p50 {np.percentile(cpu, 50):.1f} ms ({len(wall)} questions; load average "
                f"{' '.join(Path('/proc/loadavg').read_text().split()[:3])})"
            )
            print(lines[-1], flush=True)
    return lines


def main() -> None:
    from tracseq_dagster.documents.environment import set_offline_environment

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--dump", type=Path, default=Path("/tmp/rag_soft_coverage.json"))
    parser.add_argument("--analyse-only", action="store_true", help="read --dump instead of computing it")
    parser.add_argument("--static", action="store_true", help="input word-piece embeddings instead of the last hidden state")
    parser.add_argument("--detail", action="store_true", help="also list every question's values (k = 3, floor 0.3)")
    parser.add_argument("--cost", action="store_true", help="only time the scores per k and onnxruntime threads")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="onnxruntime threads for --cost")
    args = parser.parse_args()
    set_offline_environment()
    if args.static:
        global _states
        _states = _static_states  # noqa: F811
    if args.cost:
        with tempfile.TemporaryDirectory() as tmp:
            cost(args.cache, Path(tmp), tuple(args.threads))
        return
    if args.analyse_only:
        records = json.loads(args.dump.read_text())
    else:
        with tempfile.TemporaryDirectory() as tmp:
            records, times = dump(args.cache, Path(tmp))
        args.dump.write_text(json.dumps(records))
        for k, values in sorted(times.items()):
            print(
                f"soft scores, top {k} passages: p50 {np.percentile(values, 50):.1f} ms, p90 {np.percentile(values, 90):.1f} ms ({len(values)} questions)"
            )
    print("\n".join(analyse(records)))
    if args.detail:
        print("\n".join(detail(records)))


if __name__ == "__main__":
    main()
