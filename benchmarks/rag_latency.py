"""Retrieval latency at 100,000 chunks, without and with the reranker, per query embedder.

    .venv/bin/python benchmarks/rag_latency.py [--size 100000] [--queries 200] [--embedder minilm-onnx]

The table is filled with the real corpus's chunk texts (benchmarks/rag_corpus.py, the
product's chunking, re-sampled to the size) and random unit vectors (embedding 100,000
passages on two cores would take longer than the rest; search cost does not depend on what
the vectors mean), indexed as the product indexes (full-text, IVF_HNSW_SQ from 20,000 rows),
with the term statistics the reranker and the evidence read counted once and stored, as
``sync_index`` does. Then, per question of the evaluation (benchmarks/rag/questions.jsonl,
cycled), after 10 uncounted warm-up questions: ``retrieve`` (query embedding + hybrid search,
the 20 fused candidates) and ``DocumentQA.search`` (the same plus the reranker, what
``tracseq ask`` and ``/ask`` run), each timed on its own. Goals of issue 19: p50 <= 30 ms
without the reranker, <= 150 ms with it. The load average is printed with the numbers.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.rag_corpus import DEFAULT_CACHE  # noqa: E402
from benchmarks.rag_eval import load_questions, parsed_corpus  # noqa: E402


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> None:
    from tracseq_dagster.documents.chunking import Chunk, chunk_document
    from tracseq_dagster.documents.embedding import make_embedder
    from tracseq_dagster.documents.environment import set_offline_environment
    from tracseq_dagster.documents.index import DocumentIndex, chunk_table, table_name_for
    from tracseq_dagster.documents.qa import DocumentQA
    from tracseq_dagster.documents.rerank import CANDIDATES
    from tracseq_dagster.documents.retrieval import retrieve
    from tracseq_dagster.documents.term_store import index_statistics

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--embedder", default="minilm-onnx")
    args = parser.parse_args()
    set_offline_environment()
    texts = [c.search_text for name, doc in parsed_corpus(args.cache).items() for c in chunk_document(doc, document_id=name, source=name, document_type="other")]  # type: ignore[arg-type]  # fmt: skip
    questions = [q.question for q in load_questions()]
    embedder = make_embedder(args.embedder)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        index = DocumentIndex(tmp, table_name_for(embedder.name), 384)
        started = time.perf_counter()
        for start in range(0, args.size, 20_000):
            n = min(20_000, args.size - start)
            rows = [Chunk(f"c{start + i}", f"d{(start + i) // 25}", f"/docs/{(start + i) // 25}.pdf", f"{(start + i) // 25}.pdf",
                          "other", "Manual", "", 1, 1, i % 25, texts[(start + i) % len(texts)]) for i in range(n)]  # fmt: skip
            vectors = rng.normal(size=(n, 384)).astype(np.float32)
            index.table.add(chunk_table(rows, vectors / np.linalg.norm(vectors, axis=1, keepdims=True)))
        built = index.refresh_indexes()
        build_s = time.perf_counter() - started
        started = time.perf_counter()
        index_statistics(index)  # counted and stored once, as sync_index does
        statistics_s = time.perf_counter() - started
        qa = DocumentQA(index, embedder, None)
        qa.statistics()
        plain, reranked = [], []
        for i in range(10 + args.queries):
            question = questions[i % len(questions)]
            t0 = time.perf_counter()
            retrieve(index, embedder, question, top_k=CANDIDATES)
            t1 = time.perf_counter()
            qa.search(question)
            t2 = time.perf_counter()
            if i >= 10:
                plain.append((t1 - t0) * 1000)
                reranked.append((t2 - t1) * 1000)
        p = np.percentile
        print(
            f"{args.size:,} chunks ({', '.join(f'{k}: {v}' for k, v in built.items())}; written and indexed in {build_s:.0f} s, "
            f"term statistics {statistics_s:.0f} s); query embedder {embedder.identity}; {args.queries} questions; "
            f"load average {load_average()}\n"
            f"| path | p50 ms | p90 ms | p99 ms |\n|---|---:|---:|---:|\n"
            f"| retrieve (embedding + hybrid search, {CANDIDATES} candidates) | {p(plain, 50):.1f} | {p(plain, 90):.1f} | {p(plain, 99):.1f} |\n"
            f"| DocumentQA.search (the same + reranker) | {p(reranked, 50):.1f} | {p(reranked, 90):.1f} | {p(reranked, 99):.1f} |"
        )


if __name__ == "__main__":
    main()
