"""Retrieval and refusal on real documents: the product beside the naive baseline, in one run.

    .venv/bin/python benchmarks/rag_eval.py [--cache DIR] [--misses dev|heldout|fresh|all|none] [--embedder minilm-onnx-int8]
                                            [--ollama-stand-in] [--fresh]

The corpus is benchmarks/rag_corpus.py (11 Debian manuals, 514 pages, fetched at exact
versions); the questions are benchmarks/rag/questions.jsonl, written from reading the pages:
answerable ones name the file and the page(s) holding the answer, the others are on the
same topics and answered nowhere. A retrieved passage is a hit when it comes from the
gold file and its page span touches a gold page.

Two systems, over the same parsed pages and the same embedder (all-MiniLM-L6-v2):

- ``product``: the project's chunks (chunking.chunk_document), index (DocumentIndex),
  hybrid retrieval and reranker (DocumentQA.search), refusal by evidence.judge.
- ``naive``: the issue's baseline: one chunk per page, LanceDB's own hybrid query with its
  RRF reranker, refusal by the same similarity threshold.

Questions on ``dev`` documents may be looked at while tuning; ``heldout`` ones are only
reported. ``--fresh`` runs the same evaluation on a second, independent held-out set (three
other manuals, rag_corpus.FRESH_DOCUMENTS, questions in rag/questions_fresh.jsonl), indexed
alone. ``--ollama-stand-in`` also asks every question through ``DocumentQA.ask`` with the
tests' Ollama stand-in, whose verdict is the key-term rule of rag_stand_in.py: it measures the
verdict call's plumbing and its combination with the evidence, not an LLM's judgement. Parsed documents and vectors are cached under the cache directory (keyed by the
PDF's hash and the embedded text), so a second run measures retrieval, not parsing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import pickle
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.rag_corpus import DEFAULT_CACHE, DOCUMENTS, FRESH_DOCUMENTS, CorpusDocument, fetch_corpus  # noqa: E402

QUESTIONS = Path(__file__).resolve().parent / "rag" / "questions.jsonl"
FRESH_QUESTIONS = Path(__file__).resolve().parent / "rag" / "questions_fresh.jsonl"  # the second held-out set
SPLIT_OF = {d.file_name: d.split for d in DOCUMENTS}
TOP = 10


@dataclass(frozen=True)
class Question:
    id: str
    split: str
    question: str
    file_name: str | None  # None: the documents do not answer it
    pages: tuple[int, ...]
    added: str = ""  # date a question was added after the set's first numbers (reported apart too)

    @property
    def answerable(self) -> bool:
        return self.file_name is not None


def load_questions(path: Path = QUESTIONS) -> list[Question]:
    questions = []
    for line in path.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            questions.append(
                Question(row["id"], row["split"], row["question"], row["file_name"], tuple(row["pages"]), row.get("added", ""))
            )
    return questions


def rank_of(found: list[tuple[str, int, int]], file_name: str, pages: tuple[int, ...]) -> int | None:
    """1-based rank of the first (file, first page, last page) that holds a gold page."""
    for rank, (name, start, end) in enumerate(found, 1):
        if name == file_name and any(start <= page <= end for page in pages):
            return rank
    return None


def scores(ranks: list[int | None]) -> dict[str, float]:
    n = len(ranks) or 1
    return {
        "hit@1": sum(r == 1 for r in ranks) / n,
        "hit@5": sum(r is not None and r <= 5 for r in ranks) / n,
        "MRR@10": sum(1 / r for r in ranks if r is not None and r <= TOP) / n,
    }


# -- the corpus, parsed once ---------------------------------------------------------------
def parsed_corpus(cache: Path, engine: str | None = None, documents: tuple[CorpusDocument, ...] = DOCUMENTS) -> dict[str, object]:
    """file name -> ParsedDocument (the product's parser, ``pdf_engine``; None: its default), pickled beside
    the PDFs under the parser's identity (engine and rules version), so a change of rules parses again."""
    from tracseq_dagster.documents.parsing import parse_document, parser_identity

    paths = fetch_corpus(cache, documents=documents)
    parsed = {}
    for name, path in paths.items():
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        parser = parser_identity("pdf", engine).replace(" ", "-")
        stored = cache / "parsed" / f"{name}.{digest}.{parser}.pkl"
        if stored.exists():
            parsed[name] = pickle.loads(stored.read_bytes())
            continue
        document = parse_document(path, ocr=False, pdf_engine=engine)
        stored.parent.mkdir(parents=True, exist_ok=True)
        stored.write_bytes(pickle.dumps(document))
        parsed[name] = document
    return parsed


class VectorCache:
    """Document vectors by (embedder identity, text), kept on disk between runs."""

    def __init__(self, cache: Path, embedder) -> None:  # type: ignore[no-untyped-def]
        self.embedder = embedder
        key = hashlib.sha256(embedder.identity.encode()).hexdigest()[:12]
        self.path = cache / f"vectors-{key}.pkl"
        self.vectors: dict[str, np.ndarray] = pickle.loads(self.path.read_bytes()) if self.path.exists() else {}

    def embed(self, texts: list[str]) -> np.ndarray:
        keys = [hashlib.sha1(t.encode()).hexdigest() for t in texts]
        missing = list(dict.fromkeys(t for t, k in zip(texts, keys) if k not in self.vectors))
        if missing:
            for text, vector in zip(missing, self.embedder.embed_documents(missing)):
                self.vectors[hashlib.sha1(text.encode()).hexdigest()] = vector
            self.path.write_bytes(pickle.dumps(self.vectors))
        return np.stack([self.vectors[k] for k in keys]) if keys else np.zeros((0, 384), np.float32)


# -- the two systems -----------------------------------------------------------------------
@dataclass
class System:
    name: str
    search: Callable[[str], list]  # question -> passages, best first (each with file_name, page_start, page_end)
    refuses: Callable[[str, list], bool]
    chunks: int
    evidence: Callable[[str, list], object] | None = None  # the product's evidence (+ together), for calibration


def product_index(parsed: dict, vectors: VectorCache, folder: Path, **chunking: int):  # type: ignore[no-untyped-def]
    """The product's chunks of the corpus in a DocumentIndex under ``folder``, and their search texts."""
    from tracseq_dagster.documents.chunking import chunk_document
    from tracseq_dagster.documents.index import DocumentIndex

    index = DocumentIndex(folder / "product.lancedb", "chunks", 384)
    texts = []
    for name, document in parsed.items():
        chunks = chunk_document(document, document_id=name, source=f"/corpus/{name}", document_type="manual", **chunking)
        index.upsert_document(chunks, vectors.embed([c.search_text for c in chunks]))
        texts += [c.search_text for c in chunks]
    index.refresh_indexes()
    return index, texts


def product_system(
    parsed: dict,
    vectors: VectorCache,
    folder: Path,
    *,
    rerank_weight: float | None = None,
    learned_weights: tuple[float, ...] | None = None,
    **chunking: int,
) -> System:
    """The product's path; ``rerank_weight`` (coverage reranker) or ``learned_weights`` (learned_rerank) replace its reranker."""
    from benchmarks.rag_proximity import measured
    from tracseq_dagster.documents.qa import DocumentQA
    from tracseq_dagster.documents.retrieval import DEFAULT_MIN_SIMILARITY, retrieve

    index, texts = product_index(parsed, vectors, folder, **chunking)
    embedder = vectors.embedder
    qa = DocumentQA(index, embedder, None)  # what tracseq ask and /ask search with
    statistics = qa.statistics()

    def evidence(question: str, passages: list):  # type: ignore[no-untyped-def]
        return measured(question, passages, statistics, min_similarity=DEFAULT_MIN_SIMILARITY)

    def search(question: str) -> list:  # type: ignore[type-arg]
        from tracseq_dagster.documents.rerank import CANDIDATES, rerank

        if learned_weights is not None:
            from tracseq_dagster.documents.learned_rerank import learned_rerank

            candidates = retrieve(index, embedder, question, top_k=CANDIDATES)
            return learned_rerank(question, candidates, statistics, learned_weights)[:TOP]
        if rerank_weight is None:  # the product's own path: hybrid retrieval, then the reranker
            return qa.search(question, top_k=TOP)

        return rerank(question, retrieve(index, embedder, question, top_k=CANDIDATES), statistics, weight=rerank_weight)[:TOP]

    return System("product", search, lambda q, passages: evidence(q, passages).weak, len(texts), evidence)


@dataclass(frozen=True)
class PageHit:
    file_name: str
    page_start: int
    page_end: int
    similarity: float


def naive_system(parsed: dict, vectors: VectorCache, folder: Path) -> System:
    """One chunk per page, LanceDB hybrid search (vector + BM25, RRFReranker), same embedder."""
    import lancedb
    import pyarrow as pa
    from lancedb.rerankers import RRFReranker

    from tracseq_dagster.documents.index import vector_array, vector_matrix
    from tracseq_dagster.documents.retrieval import DEFAULT_MIN_SIMILARITY, fts_query

    rows = []
    for name, document in parsed.items():
        for page in range(1, document.pages + 1):
            text = document.page_text(page).strip()
            if text:
                rows.append((name, page, text))
    matrix = vectors.embed([text for _, _, text in rows])
    table = pa.table(
        {
            "file_name": [r[0] for r in rows],
            "page": pa.array([r[1] for r in rows], pa.int32()),
            "text": [r[2] for r in rows],
            "vector": vector_array(matrix),
        }
    )
    db = lancedb.connect(str(folder / "naive.lancedb"))
    pages = db.create_table("pages", table, mode="overwrite")
    pages.create_fts_index("text", replace=True)
    embedder = vectors.embedder

    def search(question: str) -> list[PageHit]:
        vector = embedder.embed_query(question)
        result = (
            pages.search(query_type="hybrid", vector_column_name="vector", fts_columns="text")
            .vector(vector)
            .text(fts_query(question))
            .rerank(RRFReranker())
            .distance_type("cosine")
            .limit(TOP)
            .to_arrow()
        )
        similarity = vector_matrix(result) @ vector if result.num_rows else []
        return [
            PageHit(f, p, p, float(s))
            for f, p, s in zip(result.column("file_name").to_pylist(), result.column("page").to_pylist(), similarity)
        ]

    def refuses(_: str, hits: list[PageHit]) -> bool:
        return not hits or max(h.similarity for h in hits) < DEFAULT_MIN_SIMILARITY

    return System("naive", search, refuses, len(rows))


# -- the evaluation ------------------------------------------------------------------------
@dataclass
class Outcome:
    question: Question
    rank: int | None
    refused: bool
    found: list[tuple[str, int, int]]
    seconds: float
    evidence: object | None = None


def evaluate(system: System, questions: list[Question]) -> list[Outcome]:
    outcomes = []
    for question in questions:
        started = time.perf_counter()
        passages = system.search(question.question)
        seconds = time.perf_counter() - started
        found = [(p.file_name, p.page_start, p.page_end) for p in passages]
        rank = rank_of(found, question.file_name, question.pages) if question.answerable else None
        evidence = system.evidence(question.question, passages) if system.evidence else None
        outcomes.append(Outcome(question, rank, system.refuses(question.question, passages), found, seconds, evidence))
    return outcomes


def summary(outcomes: list[Outcome]) -> dict[str, float]:
    answerable = [o for o in outcomes if o.question.answerable]
    unanswerable = [o for o in outcomes if not o.question.answerable]
    result = scores([o.rank for o in answerable])
    result["answerable"] = len(answerable)
    result["unanswerable"] = len(unanswerable)
    result["refused unanswerable"] = sum(o.refused for o in unanswerable)
    result["false refusals"] = sum(o.refused for o in answerable)
    result["p50 ms"] = float(np.percentile([o.seconds * 1000 for o in outcomes], 50)) if outcomes else 0.0
    return result


def table(rows: list[tuple[str, str, dict[str, float]]]) -> list[str]:
    lines = [
        "| system | questions | answerable | hit@1 | hit@5 | MRR@10 | unanswerable refused | false refusals | p50 ms |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for system, split, s in rows:
        lines.append(
            f"| {system} | {split} | {s['answerable']} | {s['hit@1']:.3f} | {s['hit@5']:.3f} | {s['MRR@10']:.3f} | "
            f"{s['refused unanswerable']}/{s['unanswerable']} | {s['false refusals']}/{s['answerable']} | {s['p50 ms']:.0f} |"
        )
    return lines


def example_evidence(folder: Path, engine: str | None = None) -> list[tuple[bool, object]]:
    """(answerable, evidence) for the generated example documents' questions: a lab's small collection."""
    from benchmarks.rag_proximity import measured
    from tracseq_dagster.documents.examples import EXAMPLE_QUESTIONS, UNANSWERABLE_QUESTIONS, generate_examples
    from tracseq_dagster.documents.pipeline import index_folder
    from tracseq_dagster.documents.qa import DocumentQA
    from tracseq_dagster.documents.retrieval import DEFAULT_MIN_SIMILARITY

    generate_examples(folder / "examples")
    index, embedder, _ = index_folder(
        folder / "examples",
        lake_root=folder / "examples-lake",
        lancedb_uri=folder / "examples.lancedb",
        in_process=True,
        pdf_engine=engine,
    )
    qa = DocumentQA(index, embedder, None)
    asked = [(True, q.question) for q in EXAMPLE_QUESTIONS] + [(False, q) for q in UNANSWERABLE_QUESTIONS]
    return [
        (answerable, measured(q, qa.search(q), qa.statistics(), min_similarity=DEFAULT_MIN_SIMILARITY)) for answerable, q in asked
    ]


def band(answerable: list[float], unanswerable: list[float]) -> tuple[float, float, int]:
    """(gap, middle, refused): the widest zero-false-refusal band of a "refuse below t" rule.

    The lowest answerable value bounds the band; the unanswerable values under it are the ones
    such a rule can refuse, the highest of them the band's lower end; the middle is the threshold.
    """
    lowest = min(answerable)
    below = [v for v in unanswerable if v < lowest]
    top = max(below, default=lowest)
    return lowest - top, (lowest + top) / 2, len(below)


def calibrate(outcomes: list[Outcome], examples: list[tuple[bool, object]]) -> tuple[list[str], dict[str, float]]:
    """Refusal evidence on the dev questions only (and the generated examples): refusals per threshold.

    Two measures of the best passages' words: coverage (what the product refuses by) and
    together (rag_proximity.window_coverage: the words within one stretch of one passage; reported).
    Returns the lines and, per measure, the middle of its zero-false band on dev + examples.
    """
    answerable = [o.evidence for o in outcomes if o.question.answerable]
    unanswerable = [o.evidence for o in outcomes if not o.question.answerable]
    examples_yes = [e for a, e in examples if a]
    examples_no = [e for a, e in examples if not a]

    def spread(values: list[float]) -> str:
        return f"min {min(values):.2f}, median {float(np.median(values)):.2f}, max {max(values):.2f}"

    lines = [
        f"Refusal evidence, dev questions: best similarity answerable {spread([e.similarity for e in answerable])}; "
        f"unanswerable {spread([e.similarity for e in unanswerable])}. Rare-term coverage answerable "
        f"{spread([e.coverage for e in answerable])}; unanswerable {spread([e.coverage for e in unanswerable])}. "
        f"Together (one window) answerable {spread([e.together for e in answerable])}; unanswerable "
        f"{spread([e.together for e in unanswerable])}.",
        "",
        "| measure | threshold | dev unanswerable refused | dev false refusals | examples unanswerable refused | examples false refusals |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    middles: dict[str, float] = {}
    grid = {"coverage": (0.4, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8), "together": (0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65)}
    for measure, thresholds in grid.items():
        for threshold in thresholds:

            def refused(evidence: list, measure: str = measure, threshold: float = threshold) -> int:  # type: ignore[type-arg]
                return sum(getattr(e, measure) < threshold for e in evidence)

            lines.append(
                f"| {measure} | {threshold:.2f} | {refused(unanswerable)}/{len(unanswerable)} | {refused(answerable)}/{len(answerable)} | "
                f"{refused(examples_no)}/{len(examples_no)} | {refused(examples_yes)}/{len(examples_yes)} |"
            )
    lines += [
        "",
        "| measure | lowest answerable (dev + examples) | gap to the highest refusable unanswerable | refusable | middle (threshold) |",
        "|---|---:|---:|---:|---:|",
    ]
    for measure in grid:
        yes = [getattr(e, measure) for e in answerable + examples_yes]
        no = [getattr(e, measure) for e in unanswerable + examples_no]
        gap, middle, count = band(yes, no)
        middles[measure] = middle
        lines.append(f"| {measure} | {min(yes):.3f} | {gap:.3f} | {count}/{len(no)} | {middle:.3f} |")
    return lines, middles


def rule_table(outcomes: list[Outcome], middles: dict[str, float], splits: tuple[str, ...]) -> list[str]:
    """Each measure's rule at the middle of its dev band, reported on every split as it falls."""
    lines = [
        "| rule (threshold from dev + examples) | " + " | ".join(f"{s} refused · false" for s in splits) + " |",
        "|---|" + "---:|" * len(splits),
    ]
    for measure, middle in middles.items():
        cells = []
        for split in splits:
            chosen = [o for o in outcomes if split == "all" or o.question.split == split]
            no = [o for o in chosen if not o.question.answerable]
            yes = [o for o in chosen if o.question.answerable]
            below = [o for o in chosen if getattr(o.evidence, measure) < middle]
            cells.append(f"{sum(o in below for o in no)}/{len(no)} · {sum(o in below for o in yes)}/{len(yes)}")
        lines.append(f"| {measure} < {middle:.3f} | " + " | ".join(cells) + " |")
    return lines


def rerank_cost(parsed: dict, vectors: VectorCache, folder: Path, questions: list[Question]) -> list[str]:
    """Milliseconds per question: hybrid retrieval of the candidates, and each reranker over them alone."""
    from tracseq_dagster.documents.index import DocumentIndex
    from tracseq_dagster.documents.learned_rerank import learned_rerank
    from tracseq_dagster.documents.qa import DocumentQA
    from tracseq_dagster.documents.rerank import CANDIDATES, rerank
    from tracseq_dagster.documents.retrieval import retrieve

    index = DocumentIndex(folder / "product.lancedb", "chunks", 384)
    qa = DocumentQA(index, vectors.embedder, None)
    statistics = qa.statistics()
    retrieval_ms, learned_ms, coverage_ms = [], [], []
    for _ in range(3):
        for question in questions:
            started = time.perf_counter()
            candidates = retrieve(index, vectors.embedder, question.question, top_k=CANDIDATES)
            middle = time.perf_counter()
            learned_rerank(question.question, candidates, statistics)
            after_learned = time.perf_counter()
            rerank(question.question, candidates, statistics)
            retrieval_ms.append((middle - started) * 1000)
            learned_ms.append((after_learned - middle) * 1000)
            coverage_ms.append((time.perf_counter() - after_learned) * 1000)

    def p(values: list[float], q: int) -> str:
        return f"{np.percentile(values, q):.2f}"

    return [
        f"Cost per question over {index.count()} chunks ({len(retrieval_ms)} timings; load average {' '.join(Path('/proc/loadavg').read_text().split()[:3])}): "
        f"retrieval of {CANDIDATES} candidates (query embedding + hybrid search) p50 {p(retrieval_ms, 50)} ms, p99 {p(retrieval_ms, 99)} ms; "
        f"learned reranker (the product's) p50 {p(learned_ms, 50)} ms, p99 {p(learned_ms, 99)} ms; "
        f"coverage reranker p50 {p(coverage_ms, 50)} ms, p99 {p(coverage_ms, 99)} ms."
    ]


STAND_IN_SHARES = (0.4, 0.5, 0.6, 0.67, 0.75, 0.8)


def stand_in_refusals(
    vectors: VectorCache,
    folder: Path,
    questions: list[Question],
    shares: tuple[float, ...] = STAND_IN_SHARES,
    splits: tuple[str, ...] = ("dev", "heldout", "all"),
) -> list[str]:
    """Refusals through ``DocumentQA.ask`` (evidence, then the verdict call) with the tests' Ollama stand-in.

    The stand-in (tests/fake_ollama.py, real HTTP) answers the constrained verdict call by the
    rule of rag_stand_in.py at each key-term share; a question is refused when ``ask`` returns
    ``not_found``. It measures the plumbing and the combination rule, not an LLM's judgement.
    """
    from benchmarks.rag_stand_in import KEY_SHARE, fake_ollama, reply_for
    from tracseq_dagster.documents.index import DocumentIndex
    from tracseq_dagster.documents.llm import OllamaChat
    from tracseq_dagster.documents.qa import DocumentQA

    index = DocumentIndex(folder / "product.lancedb", "chunks", 384)
    lines = [
        "Refusals with the tests' Ollama stand-in (DocumentQA.ask: evidence, then the JSON-schema verdict by the rule of "
        "rag_stand_in.py; not an LLM's judgement), per key-term share one passage must hold:",
        "",
        f"| key-term share | {' | '.join(f'{s} refused | {s} false refusals' for s in splits)} | verdict calls |",
        f"|---:|{'---:|---:|' * len(splits)}---:|",
    ]
    for key_share in sorted({*shares, KEY_SHARE}):
        with fake_ollama().FakeOllama(reply=reply_for(key_share)) as fake:
            qa = DocumentQA(index, vectors.embedder, OllamaChat(host=fake.url))
            refused = {q.id: qa.ask(q.question).mode == "not_found" for q in questions}
            calls = sum(1 for _, body in fake.requests if isinstance(body.get("format"), dict))
        cells = []
        for split in splits:
            chosen = [q for q in questions if split == "all" or q.split == split]
            no = [q for q in chosen if not q.answerable]
            yes = [q for q in chosen if q.answerable]
            cells += [f"{sum(refused[q.id] for q in no)}/{len(no)}", f"{sum(refused[q.id] for q in yes)}/{len(yes)}"]
        mark = " (default)" if key_share == KEY_SHARE else ""
        lines.append(f"| {key_share:.2f}{mark} | {' | '.join(cells)} | {calls} |")
        print(lines[-1], flush=True)
    return lines


def bench_real(
    cache: Path,
    folder: Path,
    *,
    show_misses: str = "dev",
    engine: str | None = None,
    embedder: str = "minilm",
    ollama_stand_in: bool = False,
    fresh: bool = False,
) -> list[str]:
    """The evaluation's tables; ``fresh``: the second held-out set (its own corpus and questions) instead."""
    from tracseq_dagster.documents.embedding import make_embedder

    started = time.perf_counter()
    parsed = parsed_corpus(cache, engine, FRESH_DOCUMENTS if fresh else DOCUMENTS)
    pages = sum(d.pages for d in parsed.values())
    vectors = VectorCache(cache, make_embedder(embedder))
    questions = load_questions(FRESH_QUESTIONS if fresh else QUESTIONS)
    splits = ("fresh",) if fresh else ("dev", "heldout", "all")
    calibration: list[str] = []
    # The middles of the dev bands (rag_eval on the first set, 2026-12-07 03:50 UTC); the fresh
    # set has no dev half, so its rule table uses these.
    middles = {"coverage": 0.446, "together": 0.390}
    systems = [naive_system(parsed, vectors, folder), product_system(parsed, vectors, folder)]
    rows, misses = [], []
    for system in systems:
        outcomes = evaluate(system, questions)
        for split in splits:
            chosen = [o for o in outcomes if split == "all" or o.question.split == split]
            rows.append((f"{system.name} ({system.chunks} chunks)", split, summary(chosen)))
        for added in sorted({o.question.added for o in outcomes} - {""}):  # the later questions alone, and the set without them
            rows.append(
                (
                    f"{system.name} ({system.chunks} chunks)",
                    f"added {added}",
                    summary([o for o in outcomes if o.question.added == added]),
                )
            )
            rows.append(
                (
                    f"{system.name} ({system.chunks} chunks)",
                    f"all but added {added}",
                    summary([o for o in outcomes if o.question.added != added]),
                )
            )
        if system.name == "product":
            if not fresh:
                calibration, middles = calibrate(
                    [o for o in outcomes if o.question.split == "dev"], example_evidence(folder, engine)
                )
            calibration += ["", "Refusal rules at the middle of their dev band (the product refuses below coverage 0.5):", ""]
            calibration += rule_table(outcomes, middles, splits)
            for o in outcomes:
                if show_misses in ("all", o.question.split) and o.question.answerable and o.rank != 1:
                    misses.append(
                        f"- {o.question.id} rank {o.rank}: {o.question.question} (gold {o.question.file_name} {o.question.pages}; got {o.found[:3]})"
                    )
                if show_misses in ("all", o.question.split) and o.question.answerable == o.refused:
                    e = o.evidence
                    misses.append(
                        f"- {o.question.id} {'refused' if o.refused else 'answered'} (similarity {e.similarity:.2f}, coverage {e.coverage:.2f}, together {e.together:.2f}, "
                        f"missing {', '.join(e.missing[:4])}): {o.question.question}"
                    )
    lines_cost = rerank_cost(parsed, vectors, folder, questions)
    if ollama_stand_in:
        lines_cost += ["", *stand_in_refusals(vectors, folder, questions, splits=splits)]
    lines = [
        f"Embedder: {vectors.embedder.identity}",
        f"Real documents: {len(parsed)} Debian manuals, {pages} pages; {sum(q.answerable for q in questions)} answerable and "
        f"{sum(not q.answerable for q in questions)} unanswerable questions ({time.perf_counter() - started:.0f} s)",
        "",
        *table(rows),
    ]
    lines += ["", *lines_cost, "", *calibration]
    if misses:
        lines += ["", f"Product misses and wrong refusal decisions ({show_misses} questions only):", *misses]
    return lines


SWEEP = (  # (max_characters, new_after_characters, combine_under_characters, headings_only)
    (1200, 900, 200, False),
    (1200, 900, 200, True),
    (800, 600, 200, False),
    (800, 600, 200, True),
    (600, 450, 150, False),
    (600, 450, 150, True),
    (1600, 1200, 400, True),
    (2000, 1500, 600, False),
)


def sweep(cache: Path, folder: Path) -> list[str]:
    """Chunk size and overlap of the product, judged on the dev questions only."""
    from tracseq_dagster.documents.embedding import MiniLMEmbedder

    parsed = parsed_corpus(cache)
    vectors = VectorCache(cache, MiniLMEmbedder())
    dev = [q for q in load_questions() if q.split == "dev"]
    lines = [
        "| max characters | new after | combine under | headings only | chunks | dev hit@1 | dev hit@5 | dev MRR@10 | dev refused | dev false refusals |",
        "|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for number, (most, after, under, headings) in enumerate(SWEEP):
        system = product_system(
            parsed,
            vectors,
            folder / f"sweep-{number}",
            max_characters=most,
            new_after_characters=after,
            combine_under_characters=under,
            headings_only=headings,
        )
        s = summary(evaluate(system, dev))
        lines.append(
            f"| {most} | {after} | {under} | {headings} | {system.chunks} | {s['hit@1']:.3f} | {s['hit@5']:.3f} | {s['MRR@10']:.3f} | "
            f"{s['refused unanswerable']}/{s['unanswerable']} | {s['false refusals']}/{s['answerable']} |"
        )
        print(lines[-1], flush=True)
    return lines


def rerank_sweep(cache: Path, folder: Path, weights: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0, 2.0)) -> list[str]:
    """The reranker's coverage weight, judged on the dev questions only (chunking at its defaults)."""
    from tracseq_dagster.documents.embedding import MiniLMEmbedder

    parsed = parsed_corpus(cache)
    vectors = VectorCache(cache, MiniLMEmbedder())
    dev = [q for q in load_questions() if q.split == "dev"]
    lines = [
        "| coverage weight | dev hit@1 | dev hit@5 | dev MRR@10 | dev refused | dev false refusals | p50 ms |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for number, weight in enumerate(weights):
        s = summary(evaluate(product_system(parsed, vectors, folder / f"rerank-{number}", rerank_weight=weight), dev))
        lines.append(
            f"| {weight:g} | {s['hit@1']:.3f} | {s['hit@5']:.3f} | {s['MRR@10']:.3f} | {s['refused unanswerable']}/{s['unanswerable']} | "
            f"{s['false refusals']}/{s['answerable']} | {s['p50 ms']:.0f} |"
        )
        print(lines[-1], flush=True)
    return lines


def main() -> None:
    import tempfile

    from tracseq_dagster.documents.environment import set_offline_environment

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--misses", choices=["dev", "heldout", "fresh", "all", "none"], default="dev")
    parser.add_argument("--fresh", action="store_true", help="the second, independent held-out set (rag_corpus.FRESH_DOCUMENTS)")
    parser.add_argument("--sweep", action="store_true", help="chunk sizes on the dev questions instead")
    parser.add_argument("--rerank-sweep", action="store_true", help="the reranker's weight on the dev questions instead")
    parser.add_argument("--pdf-engine", choices=["unstructured", "pdfium"], default=None, help="default: the product's")
    parser.add_argument("--embedder", choices=["minilm", "minilm-onnx", "minilm-onnx-int8"], default="minilm",
                        help="MiniLM on torch (float32), or on onnxruntime: fused float32 or int8 (onnx_embedding.py)")  # fmt: skip
    parser.add_argument("--ollama-stand-in", action="store_true",
                        help="also ask every question through DocumentQA.ask with the tests' Ollama stand-in (rag_stand_in.py)")  # fmt: skip
    args = parser.parse_args()
    set_offline_environment()
    with tempfile.TemporaryDirectory() as tmp:
        if args.sweep:
            sweep(args.cache, Path(tmp))
            return
        if args.rerank_sweep:
            rerank_sweep(args.cache, Path(tmp))
            return
        lines = bench_real(
            args.cache,
            Path(tmp),
            show_misses=args.misses,
            engine=args.pdf_engine,
            embedder=args.embedder,
            ollama_stand_in=args.ollama_stand_in,
            fresh=args.fresh,
        )
        print("\n".join(lines))


if __name__ == "__main__":
    main()
