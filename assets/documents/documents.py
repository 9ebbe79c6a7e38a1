"""Lab documents: chunks per document, the LanceDB index, and submission-form metadata."""

import time

import dagster as dg

from assets.documents.partitions import document_partitions
from assets.metadata import preview, records_table
from assets.new_files import SOURCE_PATH_TAG
from resources import EmbedderResource, LakeResource, LanceDBResource, LandingZoneResource, OllamaResource
from tracseq_dagster.documents.llm import OllamaUnavailable
from tracseq_dagster.documents.parsing import DocumentParseError
from tracseq_dagster.documents.pipeline import chunk_file, sync_index
from tracseq_dagster.documents.store import DocumentStore
from tracseq_dagster.documents.submission_forms import (
    Extraction,
    extract_with_ollama,
    is_template,
    parse_template,
    submission_rows,
)

# New chunks are indexed as they arrive. A document that failed to parse stays missing for
# good and must not hold the others back.
DOCUMENTS_AUTOMATION = dg.AutomationCondition.eager().without(~dg.AutomationCondition.any_deps_missing())


def current_documents(landing_zone: LandingZoneResource) -> dict[str, str]:
    """Content hash -> path of every document now in the landing folder."""
    current: dict[str, str] = {}
    for landed in landing_zone.list_files():
        try:
            current.setdefault(landing_zone.content_hash(landed.path), landed.path)
        except OSError:
            continue  # vanished or unreadable: treated as gone until the next run
    return current


@dg.asset(
    partitions_def=document_partitions,
    group_name="documents",
    kinds={"pdfium", "unstructured", "parquet"},
    pool="documents",
)
def document_chunks(
    context: dg.AssetExecutionContext, lake: LakeResource, documents_landing: LandingZoneResource
) -> dg.MaterializeResult:
    """One lab document (PDF, DOCX, HTML, Markdown, text) parsed and chunked by title.

    The partition key is the SHA-256 of the file's bytes. PDFs are read from their text layer by
    pdfium (40x cheaper than unstructured's fast strategy, equal retrieval on the real manuals);
    pages without a text layer are OCR'd with tesseract. Other formats go through unstructured. Each chunk keeps its page span, the
    document's title and its section, and a stable id. A file that cannot be parsed
    (corrupt, encrypted, empty, no text even after OCR) fails this partition only, with the
    reason.
    """
    document_id = context.partition_key
    source = context.run.tags.get(SOURCE_PATH_TAG) or documents_landing.locate(document_id)
    if source is None:
        raise dg.Failure(f"No file with content hash {document_id} is in the documents folder {documents_landing.url}.")
    if documents_landing.content_hash(source) != document_id:
        raise dg.Failure(f"{source} changed after it was detected; the sensor will pick the new version up as a new partition.")
    try:
        chunked = chunk_file(source, document_id=document_id, **documents_landing.storage_options)
    except DocumentParseError as error:
        raise dg.Failure(description=f"{source}: {error.reason}", metadata={"file": source, "reason": error.reason}) from error
    record = chunked.record(source)
    DocumentStore(lake.root).write(document_id, chunked.chunks, record)
    if chunked.parsed.ocr_pages:
        context.log.info(f"{source}: OCR read pages {chunked.parsed.ocr_pages} (no text layer)")
    return dg.MaterializeResult(
        metadata={
            "source": source,
            "document_type": chunked.document_type,
            "title": record["title"],
            "pages": chunked.parsed.pages,
            "ocr_pages": ", ".join(map(str, chunked.parsed.ocr_pages)) or "none",
            "elements": len(chunked.parsed.elements),
            "chunks": len(chunked.chunks),
            "characters": chunked.parsed.characters,
            **{f"seconds_{stage}": round(value, 3) for stage, value in chunked.seconds.items()},
            "chunk_preview": records_table(
                [{"page": c.pages, "section": c.section[:40], "text": c.text[:80].replace("\n", " ")} for c in chunked.chunks[:8]]
            ),
        }
    )


@dg.asset(
    deps=[document_chunks],
    group_name="documents",
    kinds={"lancedb"},
    pool="documents_index",
    automation_condition=DOCUMENTS_AUTOMATION,
)
def document_index(
    context: dg.AssetExecutionContext,
    lake: LakeResource,
    documents_landing: LandingZoneResource,
    lancedb: LanceDBResource,
    embedder: EmbedderResource,
) -> dg.MaterializeResult:
    """The LanceDB table every question is answered from: chunk vectors plus a full-text index.

    Brought in line with the documents folder: new and changed documents are embedded and
    merged on chunk id (a changed file's old chunks go in the same commit), unchanged ones
    write nothing, and documents deleted from the folder lose their chunks and their
    partition (so the same bytes dropped again are ingested again). A full-text index sits
    beside the vectors; an ANN index is built once the table is large enough.
    """
    store = DocumentStore(lake.root)
    current = current_documents(documents_landing)
    vectors = embedder.embedder()
    report = sync_index(store, lancedb.index(vectors), vectors, set(current))
    for document_id in report.removed:
        if context.instance.has_dynamic_partition(document_partitions.name, document_id):
            context.instance.delete_dynamic_partition(document_partitions.name, document_id)
    if report.removed:
        context.log.info(f"Removed {len(report.removed)} document(s) no longer in {documents_landing.url}")
    return dg.MaterializeResult(
        metadata={
            "documents": report.documents,
            "dagster/row_count": report.rows,
            "documents_written": len(report.written),
            "documents_unchanged": report.unchanged,
            "documents_removed": len(report.removed),
            "chunks_embedded": report.chunks_embedded,
            "chunks_prefetched": report.chunks_prefetched,
            "chunks_inserted": report.chunks_inserted,
            "chunks_deleted": report.chunks_deleted,
            "embedder": vectors.name,
            "indexes": ", ".join(f"{k}: {v}" for k, v in report.indexes.items()) or "unchanged",
            **{f"seconds_{stage}": round(value, 3) for stage, value in report.seconds.items()},
            "lancedb": dg.MetadataValue.path(lancedb.uri),
        }
    )


@dg.asset(
    deps=[document_chunks],
    group_name="documents",
    kinds={"pandas", "parquet", "ollama"},
    automation_condition=DOCUMENTS_AUTOMATION,
)
def submission_metadata(
    context: dg.AssetExecutionContext,
    lake: LakeResource,
    documents_landing: LandingZoneResource,
    ollama: OllamaResource,
) -> dg.MaterializeResult:
    """Submitter, PI, project, service, dates and samples (id, type, volume, concentration) of every submission form.

    The lab's template is parsed deterministically; free-form submissions go to Ollama with a
    JSON schema (cached per document). Every sample row is checked with the export contract's
    rules where they overlap, and joins validated_samples on sample_id.
    """
    import pandas as pd

    store = DocumentStore(lake.root)
    current = current_documents(documents_landing)
    frames, skipped = [], []
    started = time.perf_counter()
    for document_id in store.document_ids():
        if document_id not in current:
            continue
        record = store.read_record(document_id)
        if record["document_type"] != "submission_form":
            continue
        text = "\n".join(c.text for c in store.read_chunks(document_id))
        extraction = _extract(store, document_id, text, ollama)
        if extraction.method == "none":
            skipped.append({"source": record["source"], "reason": extraction.note})
            context.log.warning(f"{record['source']}: {extraction.note}")
            continue
        frames.append(submission_rows(extraction, document_id=document_id, source=record["source"]))
    table = pd.concat(frames, ignore_index=True) if frames else submission_rows(Extraction("none"), document_id="", source="")
    store.root.mkdir(parents=True, exist_ok=True)
    table.to_parquet(store.submissions_path, index=False)
    validated = lake.lake().root / "validated"
    lims_ids = {i for p in validated.glob("*.parquet") for i in pd.read_parquet(p, columns=["sample_id"])["sample_id"]}
    matched = int(table["sample_id"].isin(lims_ids).sum()) if len(table) else 0
    return dg.MaterializeResult(
        metadata={
            "forms": int(table["document_id"].nunique()) if len(table) else 0,
            "dagster/row_count": len(table),
            "samples_invalid": int((table["violations"] != "").sum()) if len(table) else 0,
            "samples_in_validated_samples": matched,
            "forms_not_extracted": records_table(skipped),
            "seconds_extract": round(time.perf_counter() - started, 3),
            "path": dg.MetadataValue.path(str(store.submissions_path)),
            "preview": preview(table),
        }
    )


def _extract(store: DocumentStore, document_id: str, text: str, ollama: OllamaResource) -> Extraction:
    """The template parser, else Ollama's structured output (cached in the lake)."""
    import json

    if is_template(text):
        return parse_template(text)
    cached = store.extraction_path(document_id)
    if cached.exists():
        data = json.loads(cached.read_text())
        return Extraction("ollama", data["fields"], data["samples"])
    try:
        extraction = extract_with_ollama(text, ollama.chat())
    except OllamaUnavailable as error:
        return Extraction("none", note=f"free-form form not extracted: {error}")
    store.write_json(cached, {"fields": extraction.fields, "samples": extraction.samples})
    return extraction
