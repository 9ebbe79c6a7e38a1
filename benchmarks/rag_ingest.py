"""Ingest speed on the real corpus: pages/s end to end and where the time goes, per embedder and parser.

    .venv/bin/python benchmarks/rag_ingest.py [--embedder minilm-onnx|minilm|minilm-onnx-int8]
                                              [--pdf-engine pdfium|unstructured] [--runs 2]

Defaults: the product's (settings.embedder(): minilm-onnx; parsing.DEFAULT_PDF_ENGINE: pdfium).

The 11 Debian manuals of the evaluation (benchmarks/rag_corpus.py, 514 text pages) go through
the product's own steps, as ``tracseq documents ingest`` runs them: ``chunk_file`` per document
(parse with OCR of pages without text, as the product does; chunk), the lake write, the document handed to the embedding workers (prefetch.py, one
process per core, one thread each) while the next one is parsed, then ``sync_index`` (merge
the prefetched vectors, write LanceDB, full-text index, term statistics). Wall clock and CPU
seconds of every process are reported per stage; one-off loads (parser imports, the workers'
start and model load, an ONNX export on first use) are timed apart and not counted, as in
BENCHMARKS.md. The machine is shared: the load average is printed before and after each run.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.rag_corpus import DEFAULT_CACHE, fetch_corpus  # noqa: E402


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def children_cpu() -> float:
    times = os.times()
    return times.children_user + times.children_system


def ingest(folder: Path, paths: list[Path], embedder_spec: str, engine: str, workers: int | None = None) -> list[str]:
    from tracseq_dagster.documents import pipeline
    from tracseq_dagster.documents.embedding import make_embedder
    from tracseq_dagster.documents.prefetch import EmbeddingPrefetcher
    from tracseq_dagster.documents.qa import open_index
    from tracseq_dagster.documents.store import DocumentStore

    def chunk(path: Path, document_id: str) -> pipeline.ChunkedDocument:
        return pipeline.chunk_file(str(path), document_id=document_id, pdf_engine=engine)

    started = time.perf_counter()
    chunk(paths[0], "warm")  # the parser's one-off imports (pdfminer, spaCy's model)
    parser_load = time.perf_counter() - started
    store = DocumentStore(folder / "lake")
    prefetcher = EmbeddingPrefetcher(folder / "lake", embedder_spec, workers=workers)
    worker_load = prefetcher.start()  # spawn, load (and on a first run export) the model: one-off
    before = load_average()
    wall, cpu = time.perf_counter(), time.process_time()
    stages = {"parse": 0.0, "chunk": 0.0, "lake write": 0.0}
    parse_cpu = ocr_cpu = 0.0
    pages = chunks = ocr_pages = 0
    current = set()
    for number, path in enumerate(paths):
        document_id = f"doc{number}"
        c0, k0 = time.process_time(), children_cpu()
        chunked = chunk(path, document_id)
        parse_cpu += time.process_time() - c0
        ocr_cpu += children_cpu() - k0  # tesseract's processes (the workers are reaped only at close)
        stages["parse"] += sum(v for k, v in chunked.seconds.items() if k != "chunk")
        stages["chunk"] += chunked.seconds["chunk"]
        t0 = time.perf_counter()
        store.write(document_id, chunked.chunks, chunked.record(str(path)))
        prefetcher.submit(document_id)
        stages["lake write"] += time.perf_counter() - t0
        current.add(document_id)
        pages += chunked.parsed.pages
        ocr_pages += len(chunked.parsed.ocr_pages)
        chunks += len(chunked.chunks)
    parsing_done = time.perf_counter() - wall
    prefetched = prefetcher.close()
    embedder = make_embedder(embedder_spec)
    report = pipeline.sync_index(store, open_index(str(folder / "db"), embedder), embedder, current)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    after = load_average()
    assert report.rows == chunks == report.chunks_prefetched, (report.rows, chunks, report.chunks_prefetched)
    total_cpu = cpu + ocr_cpu + prefetched.embed_cpu_seconds
    rows = {
        f"parse ({engine})": (stages["parse"], None),
        "chunk": (stages["chunk"], None),
        "lake write": (stages["lake write"], None),
        f"embed ({chunks} chunks, {prefetcher.workers} workers, overlapping the parsing; wall summed over workers)": (
            prefetched.embed_seconds,
            prefetched.embed_cpu_seconds,
        ),
        "waiting for the workers after the last document": (prefetched.tail_seconds, None),
        "index write (LanceDB merge)": (report.seconds["write"], None),
        "full-text index": (report.seconds["indexes"], None),
        "term statistics": (report.seconds["term_statistics"], None),
    }
    lines = [
        f"Embedder {embedder.identity}; parser {engine}; {len(paths)} PDFs, {pages} pages ({ocr_pages} OCR'd: no text "
        f"layer), {chunks} chunks; load average "
        f"before {before}, after {after}; one-off loads not counted: parser {parser_load:.1f} s, workers' start and model "
        f"{worker_load:.1f} s",
        "",
        "| stage | wall s | CPU s |",
        "|---|---:|---:|",
    ]
    for stage, (seconds, stage_cpu) in rows.items():
        lines.append(f"| {stage} | {seconds:.2f} | {'' if stage_cpu is None else f'{stage_cpu:.1f}'} |")
    lines += [
        f"| parsing loop done (parse + chunk + write, the main process) | {parsing_done:.2f} | {parse_cpu:.1f} (parse + chunk) "
        f"+ {ocr_cpu:.1f} (OCR processes) |",
        f"| **all stages, wall clock** | **{wall:.2f}** | {total_cpu:.1f} (main {cpu:.1f} + OCR {ocr_cpu:.1f} + workers "
        f"{prefetched.embed_cpu_seconds:.1f}) |",
        "",
        f"**{pages / wall:.1f} pages/s** wall clock; {pages / total_cpu:.2f} pages per CPU-second; embedding "
        f"{chunks / prefetched.embed_cpu_seconds:.1f} chunks per CPU-second; on two idle cores at best "
        f"{pages / max(cpu + ocr_cpu, total_cpu / 2):.1f} pages/s (the work spread over both cores).",
    ]
    return lines


def main() -> None:
    from tracseq_dagster import settings
    from tracseq_dagster.documents.environment import set_offline_environment
    from tracseq_dagster.documents.parsing import DEFAULT_PDF_ENGINE, PDF_ENGINES

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--embedder", choices=["minilm", "minilm-onnx", "minilm-onnx-int8"], default=settings.embedder())
    parser.add_argument("--pdf-engine", choices=PDF_ENGINES, default=DEFAULT_PDF_ENGINE)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--workers", type=int, default=None, help="embedding processes (default: one per core)")
    args = parser.parse_args()
    set_offline_environment()
    paths = list(fetch_corpus(args.cache).values())
    for run in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            print(
                f"\nRun {run + 1}:", *ingest(Path(tmp), paths, args.embedder, args.pdf_engine, args.workers), sep="\n", flush=True
            )


if __name__ == "__main__":
    main()
