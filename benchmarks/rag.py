"""Documents benchmark: real-document retrieval and refusals, ingest pages/s by stage, retrieval latency at 10k/100k chunks.

    .venv/bin/python benchmarks/rag.py [--pdfs N] [--sizes 10000 100000] [--queries 200] [--only-real]

First the evaluation on real documents (benchmarks/rag_eval.py: 11 Debian manuals, 514 pages,
fetched by benchmarks/rag_corpus.py; questions in benchmarks/rag/questions.jsonl): hit@1,
hit@5, MRR@10, unanswerable questions refused and false refusals, for the product and the
naive baseline (one chunk per page, LanceDB hybrid search), dev and held-out halves apart.

Corpora: Debian's own PDF manuals found on this machine (shared-mime-info's specification,
libtasn1's manual) with hand-written questions whose source page is known, and the example
lab documents (tracseq_dagster.documents.examples) with theirs. Ingest speed is measured on
those manuals plus generated multi-page text PDFs, through the product's own functions
(chunk_file, the lake write, the embedding worker of prefetch.py, sync_index), in wall
clock and in CPU seconds of both processes (the load-independent number on a shared machine). Latency tables are filled with real chunk texts
(re-sampled) and random unit vectors: embedding 100k passages with MiniLM on two cores would
take longer than the rest of the run, and search cost does not depend on what the vectors
mean. Search alone, query embedding alone and end to end (both, what a user waits for) are
reported.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tracseq_dagster.documents.chunking import Chunk  # noqa: E402
from tracseq_dagster.documents.environment import set_offline_environment  # noqa: E402
from tracseq_dagster.documents.examples import EXAMPLE_QUESTIONS, UNANSWERABLE_QUESTIONS, generate_examples  # noqa: E402
from tracseq_dagster.documents.index import DocumentIndex, chunk_table  # noqa: E402
from tracseq_dagster.documents.pdf import PageLayout, write_pdf  # noqa: E402
from tracseq_dagster.documents.pipeline import chunk_file, index_folder, sync_index  # noqa: E402
from tracseq_dagster.documents.qa import open_index  # noqa: E402
from tracseq_dagster.documents.retrieval import retrieve, search_passages  # noqa: E402
from tracseq_dagster.documents.store import DocumentStore  # noqa: E402

MANUALS = {
    "shared-mime-info-spec.pdf": Path("/usr/share/doc/shared-mime-info/shared-mime-info-spec.pdf"),
    "libtasn1.pdf": Path("/usr/share/doc/libtasn1-doc/libtasn1.pdf"),
}


@dataclass(frozen=True)
class Question:
    question: str
    file_name: str
    pages: tuple[int, ...]


MANUAL_QUESTIONS: tuple[Question, ...] = (
    Question("Which version of the Shared MIME-info Database specification is this?", "shared-mime-info-spec.pdf", (1,)),
    Question("What magic string does the MIME magic file start with?", "shared-mime-info-spec.pdf", (9,)),
    Question("Which extended attribute can hold a file's MIME type?", "shared-mime-info-spec.pdf", (14,)),
    Question("What is inode/mount-point a subclass of?", "shared-mime-info-spec.pdf", (16,)),
    Question("What does the magic-deleteall element indicate?", "shared-mime-info-spec.pdf", (5,)),
    Question("How is each section of the magic file introduced?", "shared-mime-info-spec.pdf", (11,)),
    Question(
        "What if a MIME type is given explicitly, for example by a Content-Type HTTP header?", "shared-mime-info-spec.pdf", (15,)
    ),
    Question("Can treematch elements be nested?", "shared-mime-info-spec.pdf", (6,)),
    Question("What should applications do when two MIME types provide the same glob pattern?", "shared-mime-info-spec.pdf", (8,)),
    Question("Which version of GNU Libtasn1 does the manual describe?", "libtasn1.pdf", (1, 2)),
    Question("Is the ASN.1 parser case sensitive and how do comments begin?", "libtasn1.pdf", (5,)),
    Question("Does libtasn1 handle the REAL type or AUTOMATIC TAGS?", "libtasn1.pdf", (6,)),
    Question("What does the asn1Parser program generate from ASN.1 definitions?", "libtasn1.pdf", (8,)),
    Question("What does asn1Decoding do with a DER encoded binary file?", "libtasn1.pdf", (10,)),
    Question("What are the arguments of asn1_array2tree?", "libtasn1.pdf", (12,)),
    Question("What does asn1_create_element create?", "libtasn1.pdf", (13,)),
    Question("What is the maximum length that asn1_length_der will encode?", "libtasn1.pdf", (19,)),
    Question("What does asn1_get_length_der return for an indefinite length?", "libtasn1.pdf", (21,)),
    Question("Which function returns a description of a libtasn1 error, like strerror?", "libtasn1.pdf", (26,)),
    Question("Which simple parsing functions can be used for types like OCTET STRING?", "libtasn1.pdf", (7,)),
)

WORDS = [
    "sample",
    "extraction",
    "storage",
    "freezer",
    "rack",
    "centrifuge",
    "plasma",
    "library",
    "pooling",
    "flow",
    "cell",
    "reads",
    "quality",
    "threshold",
    "integrity",
    "concentration",
    "volume",
    "buffer",
    "reagent",
    "lot",
    "operator",
    "site",
    "shipment",
    "courier",
    "dry",
    "ice",
    "temperature",
    "excursion",
    "label",
    "barcode",
    "protocol",
    "deviation",
    "approval",
    "review",
    "batch",
    "record",
    "instrument",
]


def generated_pdf(path: Path, pages: int, seed: int) -> Path:
    rng = random.Random(seed)
    layout = PageLayout()
    layout.title(f"Generated lab manual {seed}")
    for page in range(pages):
        if page:
            layout.new_page()
        for section in range(3):
            layout.heading(f"Section {page + 1}.{section + 1} {rng.choice(WORDS).title()}")
            layout.paragraph(" ".join(rng.choice(WORDS) for _ in range(90)) + ".")
    return write_pdf(path, layout.pages)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def bench_ingest(folder: Path, pdfs: int, run: int = 0) -> tuple[list[str], list[Chunk]]:
    """Ingest through the product's steps, as ``tracseq documents ingest`` runs them: chunk_file
    per document (document_chunks), the lake write, the document handed to the embedding
    worker (prefetch.py) while the next one is parsed, then sync_index (document_index:
    merge the prefetched vectors, indexes). Then the same chunks through sync_index alone,
    embedded in process (what document_index does when nothing was prefetched, e.g. runs
    launched by the sensor). Wall time and CPU time of both processes are reported."""
    from tracseq_dagster.documents.embedding import make_embedder
    from tracseq_dagster.documents.prefetch import EmbeddingPrefetcher

    root = folder / f"ingest-{run}"
    root.mkdir()
    generated = [generated_pdf(root / f"generated-{i}.pdf", 10, i) for i in range(pdfs)]
    files = [*(p for p in MANUALS.values() if p.exists()), *generated]
    warm = generated_pdf(root / "warm.pdf", 1, 99)
    started = time.perf_counter()
    chunk_file(str(warm), document_id="warm")  # loads the parsers (pdfium, unstructured's modules)
    parser_load_s = time.perf_counter() - started
    store = DocumentStore(root / "lake")
    prefetcher = EmbeddingPrefetcher(root / "lake", "minilm")
    worker_load_s = prefetcher.start()  # spawns the worker and loads its model: one-off, not counted
    load_before = load_average()
    totals = {"partition": 0.0, "chunk": 0.0, "lake write": 0.0}
    pages = 0
    all_chunks: list[Chunk] = []
    current: set[str] = set()
    wall, cpu = time.perf_counter(), time.process_time()
    for number, path in enumerate(files):
        document_id = f"doc{number}"
        chunked = chunk_file(str(path), document_id=document_id)
        totals["partition"] += chunked.seconds["partition"]
        totals["chunk"] += chunked.seconds["chunk"]
        started = time.perf_counter()
        store.write(document_id, chunked.chunks, chunked.record(str(path)))
        prefetcher.submit(document_id)
        totals["lake write"] += time.perf_counter() - started
        current.add(document_id)
        pages += chunked.parsed.pages
        all_chunks += chunked.chunks
    prefetched = prefetcher.close()
    embedder = make_embedder()
    index = open_index(str(root / "ingest.lancedb"), embedder)
    report = sync_index(store, index, embedder, current)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    load_after = load_average()
    assert report.rows == len(all_chunks) == report.chunks_prefetched, (report.rows, len(all_chunks), report.chunks_prefetched)
    stages = {
        **totals,
        f"embed, in the workers while parsing ({prefetched.chunks} chunks; wall summed over workers; CPU {prefetched.embed_cpu_seconds:.1f} s)": prefetched.embed_seconds,
        "waiting for the workers after the last document": prefetched.tail_seconds,
        "index write": report.seconds["write"],
        "fts index": report.seconds["indexes"],
    }
    total_cpu = cpu + prefetched.embed_cpu_seconds
    lines = [
        f"Run {run + 1}. Ingest: {len(files)} text PDFs ({len(MANUALS)} Debian manuals + {pdfs} generated), {pages} pages, "
        f"{len(all_chunks)} chunks, {prefetcher.workers} embedding workers of 1 torch thread; load average before {load_before}, after {load_after}; one-off loads not counted: "
        f"parser (pdfium, unstructured) {parser_load_s:.1f} s, embedding worker start and model {worker_load_s:.1f} s",
        "",
        "| stage | seconds | pages/s |",
        "|---|---:|---:|",
    ]
    for stage, seconds in stages.items():
        lines.append(f"| {stage} | {seconds:.2f} | {pages / seconds if seconds else float('inf'):.1f} |")
    lines.append(f"| **all stages, wall clock** (parse and embed overlap) | {wall:.2f} | **{pages / wall:.1f}** |")
    lines += [
        "",
        f"CPU: main process {cpu:.1f} s (parse, chunk, write, index) + embedding workers {prefetched.embed_cpu_seconds:.1f} s "
        f"= {total_cpu:.1f} s: **{pages / total_cpu:.2f} pages per CPU-second**; on two idle cores at best "
        f"{pages / max(cpu, total_cpu / 2):.1f} pages/s (the work spread over both cores, the parsing process never waiting).",
    ]
    lines += _sequential(root, store, current, pages, totals)
    ocr = chunk_file(str(generate_examples(root / "examples")[0]), document_id="sop").seconds.get("ocr", 0.0)
    lines.append(f"\nOCR (1 scanned page, tesseract via ocr_only): {ocr:.2f} s")
    return lines, all_chunks


def _sequential(root: Path, store: DocumentStore, current: set[str], pages: int, parse: dict[str, float]) -> list[str]:
    """The same chunks through sync_index without prefetched vectors (what document_index does
    after runs the sensor launched): new documents embedded by worker processes, after parsing."""
    import resource

    from tracseq_dagster.documents.embedding import make_embedder

    again = DocumentStore(root / "lake-sequential")
    shutil.copytree(store.root / "chunks", again.root / "chunks")
    embedder = make_embedder()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = time.process_time()
    report = sync_index(again, open_index(str(root / "sequential.lancedb"), embedder), embedder, current)
    cpu = time.process_time() - cpu
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    workers_cpu = after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime
    total = sum(parse.values()) + sum(report.seconds.values())
    return [
        "",
        f"Without prefetching (parse everything, then document_index embeds the new documents in worker processes): "
        f"embed {report.seconds['embed']:.2f} s including the workers' start and model load "
        f"({report.chunks_embedded} chunks; CPU {cpu:.1f} s here + {workers_cpu:.1f} s in the workers, their model loads included), "
        f"all stages {total:.2f} s: {pages / total:.1f} pages/s.",
    ]


def bench_quality(folder: Path) -> list[str]:
    corpus = folder / "corpus"
    generate_examples(corpus)
    for name, path in MANUALS.items():
        if path.exists():
            shutil.copy(path, corpus / name)
    index, embedder, _ = index_folder(corpus, lake_root=folder / "lake", lancedb_uri=folder / "quality.lancedb")
    sets = {
        "Debian manuals": [(q.question, q.file_name, q.pages) for q in MANUAL_QUESTIONS if (corpus / q.file_name).exists()],
        "example lab documents": [(q.question, q.file_name, (q.page,)) for q in EXAMPLE_QUESTIONS],
    }
    lines = ["| question set | questions | hit@5 | MRR@10 |", "|---|---:|---:|---:|"]
    best_answerable: list[float] = []
    misses: list[str] = []
    everything: list[tuple[int, float]] = []
    for label, questions in sets.items():
        hits, reciprocal = 0, 0.0
        for question, file_name, pages in questions:
            passages = retrieve(index, embedder, question, top_k=10)
            best_answerable.append(max(p.similarity for p in passages))
            rank = next(
                (
                    i
                    for i, p in enumerate(passages, 1)
                    if p.file_name == file_name and any(p.page_start <= pg <= p.page_end for pg in pages)
                ),
                None,
            )
            hits += rank is not None and rank <= 5
            reciprocal += 1 / rank if rank else 0.0
            everything.append((int(rank is not None and rank <= 5), 1 / rank if rank else 0.0))
            if rank is None or rank > 5:
                misses.append(f"{question} (wanted {file_name} p. {pages}, got {passages[0].citation})")
        lines.append(f"| {label} | {len(questions)} | {hits / len(questions):.2f} | {reciprocal / len(questions):.2f} |")
    lines.append(
        f"| **all** | {len(everything)} | **{sum(h for h, _ in everything) / len(everything):.2f}** | "
        f"**{sum(r for _, r in everything) / len(everything):.2f}** |"
    )
    unanswerable = [max(p.similarity for p in retrieve(index, embedder, q)) for q in UNANSWERABLE_QUESTIONS]
    lines += [
        "",
        f"Evidence threshold: best-passage cosine similarity of the {len(best_answerable)} answerable questions "
        f"min {min(best_answerable):.2f}, 5th percentile {percentile(best_answerable, 5):.2f}, median {statistics.median(best_answerable):.2f}; "
        f"of the {len(unanswerable)} off-topic questions max {max(unanswerable):.2f}, median {statistics.median(unanswerable):.2f}.",
    ]
    if misses:
        lines += ["", "Misses (not in the top 5): " + "; ".join(misses)]
    return lines


def bench_latency(folder: Path, chunks: list[Chunk], sizes: list[int], queries: int, warmup: int = 10) -> list[str]:
    """Per size: search alone (the question already embedded), the query embedding alone, and
    end to end (``retrieve``: embedding + search, what a user waits for), each timed on its own.
    The first ``warmup`` questions after the table is written are run but not counted."""
    from tracseq_dagster.documents.embedding import make_embedder

    embedder = make_embedder()
    rng = np.random.default_rng(0)
    texts = [c.search_text for c in chunks]
    questions = [q.question for q in MANUAL_QUESTIONS] + [q.question for q in EXAMPLE_QUESTIONS]
    lines = [
        "| chunks | ANN index | index build s | search p50 ms | search p99 ms | query embedding p50 ms | query embedding p99 ms | end to end p50 ms | end to end p99 ms |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for size in sizes:
        index = DocumentIndex(folder / f"latency-{size}.lancedb", "chunks", 384)
        batch = 20_000
        for start in range(0, size, batch):
            n = min(batch, size - start)
            sample = [
                Chunk(
                    f"c{start + i}",
                    f"d{(start + i) // 20}",
                    f"/docs/{(start + i) // 20}.pdf",
                    f"{(start + i) // 20}.pdf",
                    "sop",
                    "Synthetic",
                    "",
                    1,
                    1,
                    i % 20,
                    texts[(start + i) % len(texts)],
                )
                for i in range(n)
            ]
            vectors = rng.normal(size=(n, 384)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            index.table.add(chunk_table(sample, vectors))
        started = time.perf_counter()
        done = index.refresh_indexes()
        build = time.perf_counter() - started
        search_ms, embed_ms, total_ms = [], [], []
        for i in range(warmup + queries):
            question = questions[i % len(questions)]
            t0 = time.perf_counter()
            vector = embedder.embed_query(question)
            t1 = time.perf_counter()
            found = search_passages(index, vector, question)
            t2 = time.perf_counter()
            end_to_end = retrieve(index, embedder, question)
            t3 = time.perf_counter()
            assert [p.chunk_id for p in found] == [p.chunk_id for p in end_to_end] and len(found) == 5
            if i >= warmup:
                embed_ms.append((t1 - t0) * 1000)
                search_ms.append((t2 - t1) * 1000)
                total_ms.append((t3 - t2) * 1000)
        ann = "IVF_HNSW_SQ" if "ann" in done else "none (flat scan)"
        lines.append(
            f"| {size:,} | {ann} | {build:.1f} | {percentile(search_ms, 50):.1f} | {percentile(search_ms, 99):.1f} | "
            f"{percentile(embed_ms, 50):.1f} | {percentile(embed_ms, 99):.1f} | "
            f"{percentile(total_ms, 50):.1f} | {percentile(total_ms, 99):.1f} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pdfs", type=int, default=5, help="generated 10-page text PDFs for the ingest numbers")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--ingest-runs", type=int, default=1, help="repeat the ingest measurement (the machine is shared)")
    parser.add_argument("--only-ingest", action="store_true")
    parser.add_argument("--only-real", action="store_true", help="only the real-document evaluation (rag_eval.py)")
    parser.add_argument("--corpus-cache", type=Path, default=None, help="where rag_corpus.py keeps the Debian manuals")
    args = parser.parse_args()
    set_offline_environment()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        # Real documents first: hit@1, hit@5, MRR@10, refusals and false refusals of the product
        # beside the naive baseline, dev and held-out apart (benchmarks/rag_eval.py).
        from benchmarks.rag_corpus import DEFAULT_CACHE
        from benchmarks.rag_eval import bench_real

        (folder / "real").mkdir()
        print("\n".join(bench_real(args.corpus_cache or DEFAULT_CACHE, folder / "real", show_misses="none")), "\n", flush=True)
        if args.only_real:
            return
        for run in range(args.ingest_runs):
            ingest, chunks = bench_ingest(folder, args.pdfs, run)
            print("\n".join(ingest), "\n", flush=True)
        if args.only_ingest:
            return
        print("\n".join(bench_quality(folder)), "\n", flush=True)
        print("\n".join(bench_latency(folder, chunks, args.sizes, args.queries)), flush=True)
        print(f"\n(total {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
