"""A folder of lab documents through Dagster without a UI: what ``tracseq documents ingest`` runs.

The same jobs the documents sensor launches, in process: one ``ingest_document`` run per
file (a bad file fails alone), then one ``index_documents`` run that embeds, indexes,
removes deleted documents and extracts submission forms. While the next file is parsed, a
worker process embeds the chunks of the last one into the lake (prefetch.py), so
``document_index`` finds their vectors ready and only merges them.

A file is skipped when its bytes were chunked before by the parser its type gets now: a
lake chunked by another parser (an older default) is parsed again once. A new version of a
file already in the lake is not prefetched: ``document_index`` reuses the vectors of its
unchanged chunks and embeds only the changed ones (pipeline.prefetch_wanted).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import dagster as dg

from assets.documents.partitions import document_partitions
from tracseq_dagster.documents.parsing import DOCUMENT_SUFFIXES
from tracseq_dagster.documents.pipeline import prefetch_wanted
from tracseq_dagster.documents.prefetch import EmbeddingPrefetcher
from tracseq_dagster.documents.store import DocumentStore
from tracseq_dagster.ingest import console_log_level, failure_message, run_file_partition
from tracseq_dagster.landing import content_hash, list_landing_files


@dataclass
class DocumentOutcome:
    path: str
    document_id: str
    status: str  # "ingested", "failed", "unchanged"
    error: str | None = None
    pages: int | None = None
    chunks: int | None = None


def _metadata(instance: dg.DagsterInstance, asset: str, partition: str | None = None) -> dict:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[partition] if partition else None), limit=1
    ).records
    materialization = records[0].asset_materialization if records else None
    return {k: v.value for k, v in materialization.metadata.items()} if materialization is not None else {}


def ingest_documents(
    url: str,
    *,
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    force: bool = False,
    on_file: Callable[[DocumentOutcome], None] | None = None,
    log_level: str = "DEBUG",
    prefetch: bool = True,
) -> list[DocumentOutcome]:
    """Chunk every document under ``url`` not yet chunked by the current parser (all of them with ``force``).

    With ``prefetch`` each chunked document is embedded, with the embedder that
    ``document_index`` is configured with, while the next one is parsed; the worker starts
    with the first document that needs it and is done when this returns.
    """
    job = defs.resolve_job_def("ingest_document")
    partitions_name = document_partitions.name
    assert partitions_name is not None, "the documents' dynamic partitions are named"
    outcomes = []
    prefetcher: EmbeddingPrefetcher | None = None
    store = _store(defs)
    by_source = store.documents_by_source()
    try:
        for landed in list_landing_files(url, DOCUMENT_SUFFIXES):
            key = content_hash(landed.path)
            if (
                not force
                and instance.has_dynamic_partition(partitions_name, key)
                and _metadata(instance, "document_chunks", key)
                and store.parsed_by_current(key)
            ):
                outcome = DocumentOutcome(landed.path, key, "unchanged")
            else:
                result = run_file_partition(job, instance, document_partitions, key, landed.path, log_level)
                if result.success:
                    meta = _metadata(instance, "document_chunks", key)
                    outcome = DocumentOutcome(landed.path, key, "ingested", pages=meta.get("pages"), chunks=meta.get("chunks"))
                    if prefetch and prefetch_wanted(by_source, landed.path, key):
                        prefetcher = prefetcher or _prefetcher(defs)
                        prefetcher.submit(key)
                else:
                    outcome = DocumentOutcome(landed.path, key, "failed", error=failure_message(result))
            outcomes.append(outcome)
            if on_file is not None:
                on_file(outcome)
    finally:
        if prefetcher is not None:
            prefetcher.close()
    return outcomes


def _resources(defs: dg.Definitions) -> dict:
    assert defs.resources is not None, "the code location's definitions carry their resources"
    return dict(defs.resources)


def _store(defs: dg.Definitions) -> DocumentStore:
    return DocumentStore(_resources(defs)["lake"].root)


def _prefetcher(defs: dg.Definitions) -> EmbeddingPrefetcher:
    """A prefetcher writing to the lake of ``defs`` with the embedder document_index uses."""
    resources = _resources(defs)
    embedder = resources["embedder"]
    return EmbeddingPrefetcher(resources["lake"].root, embedder.spec, ollama_host=embedder.ollama_host)


def index_documents(
    *, defs: dg.Definitions, instance: dg.DagsterInstance, log_level: str = "DEBUG"
) -> tuple[dg.ExecuteInProcessResult, dict]:
    """Run ``index_documents``; the result and document_index's metadata."""
    result = defs.resolve_job_def("index_documents").execute_in_process(
        run_config=console_log_level(log_level), instance=instance, raise_on_error=False
    )
    return result, _metadata(instance, "document_index")
