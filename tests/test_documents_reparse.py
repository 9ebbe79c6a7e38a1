"""The parser that made a document's chunks is stored with them; a lake another parser chunked is parsed
again once, never mixed; a new version of a file embeds only its changed chunks, prefetch or not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.documents_helpers import documents_definitions, example_folder, protocol_manual
from tracseq_dagster.documents.parsing import (
    DEFAULT_PDF_ENGINE,
    file_type_of,
    parse_document,
    parser_identity,
    recorded_parser,
)
from tracseq_dagster.documents.pdf_text import RULES_VERSION
from tracseq_dagster.documents.pipeline import index_folder, prefetch_wanted, sync_index
from tracseq_dagster.documents.qa import open_index
from tracseq_dagster.documents.store import DocumentStore
from tracseq_dagster.landing import content_hash


def test_parser_identity_by_file_type_and_engine(tmp_path: Path) -> None:
    assert DEFAULT_PDF_ENGINE == "pdfium"
    assert parser_identity("pdf") == f"pdfium text layer {RULES_VERSION}" == parser_identity("pdf", "pdfium")
    assert parser_identity("pdf", "unstructured") == "unstructured fast"
    assert parser_identity("docx") == parser_identity("docx", "unstructured") == "unstructured"
    assert [file_type_of(p) for p in ("a.PDF", "b.htm", "c.markdown", "d.txt")] == ["pdf", "html", "md", "txt"]
    # Records written before the parser was stored came from unstructured.
    assert recorded_parser({"file_type": "pdf"}) == "unstructured fast"
    assert recorded_parser({"file_type": "md"}) == "unstructured"
    assert recorded_parser({"file_type": "pdf", "parser": "pdfium text layer v2"}) == "pdfium text layer v2"
    with pytest.raises(ValueError, match="pdf_engine"):
        parse_document(tmp_path / "x.pdf", pdf_engine="pdfminer")


def test_a_lake_chunked_by_another_parser_is_parsed_again_once_and_never_mixed(tmp_path: Path) -> None:
    folder = example_folder(tmp_path)
    lake, db = tmp_path / "lake", tmp_path / "db"
    index, embedder, first = index_folder(folder, lake_root=lake, lancedb_uri=db, in_process=True, pdf_engine="unstructured")
    store = DocumentStore(lake)
    pdfs = {d for d in store.document_ids() if store.read_record(d)["file_type"] == "pdf"}
    assert len(pdfs) == 3 and len(store.document_ids()) > len(pdfs)
    assert {store.read_record(d)["parser"] for d in pdfs} == {"unstructured fast"}
    assert not any(store.parsed_by_current(d) for d in pdfs)  # the default is pdfium now
    assert all(store.parsed_by_current(d) for d in set(store.document_ids()) - pdfs)  # other types: same parser
    # A lake from before the parser was stored: its records have none, and count as unstructured's.
    some_pdf = sorted(pdfs)[0]
    record = store.read_record(some_pdf)
    del record["parser"]
    store.write_json(store.record_path(some_pdf), record)
    assert not store.parsed_by_current(some_pdf) and store.parsed_by_current(some_pdf, "unstructured")
    before = {d: {c.chunk_id for c in store.read_chunks(d)} for d in pdfs}

    # document_index's step alone (no new files): the PDFs are parsed again from their source, once.
    current = set(store.document_ids())
    report = sync_index(store, index, embedder, current)
    assert sorted(report.rechunked) == sorted(pdfs) and report.stale == []
    assert all(json.loads(store.record_path(d).read_text())["parser"] == parser_identity("pdf") for d in pdfs)
    changed = {d for d in pdfs if before[d] != {c.chunk_id for c in store.read_chunks(d)}}
    assert changed  # (a PDF both parsers cut into the same chunks writes nothing)
    assert set(report.written) == changed and report.unchanged == len(current) - len(changed)
    # The index holds exactly the lake's chunks: no chunk of the old parse is left beside the new.
    lake_ids = {c.chunk_id for d in current for c in store.read_chunks(d)}
    indexed = open_index(str(db), embedder).table.to_arrow()
    assert set(indexed.column("chunk_id").to_pylist()) == lake_ids and indexed.num_rows == len(lake_ids)
    assert report.chunks_deleted > 0

    again = sync_index(store, index, embedder, current)
    assert again.rechunked == [] and again.written == [] and again.unchanged == len(current)

    # A source that no longer holds the document's bytes is left as it was, and said so.
    record = store.read_record(some_pdf)
    record["parser"] = "unstructured fast"
    store.write_json(store.record_path(some_pdf), record)
    Path(record["source"]).write_bytes(b"%PDF-1.4 another file now")
    assert content_hash(record["source"]) != some_pdf
    stale = sync_index(store, index, embedder, current)
    assert stale.rechunked == [] and stale.stale == [some_pdf] and stale.written == []


def test_index_folder_parses_again_what_another_parser_chunked(tmp_path: Path) -> None:
    folder = example_folder(tmp_path)
    lake, db = tmp_path / "lake", tmp_path / "db"
    index_folder(folder, lake_root=lake, lancedb_uri=db, in_process=True, pdf_engine="unstructured")
    index, _, report = index_folder(folder, lake_root=lake, lancedb_uri=db, in_process=True)
    store = DocumentStore(lake)
    pdfs = [d for d in store.document_ids() if store.read_record(d)["file_type"] == "pdf"]
    assert report.written and set(report.written) <= set(pdfs)  # PDFs whose chunks changed, nothing else
    assert report.rechunked == []  # index_folder parsed them itself
    assert all(store.parsed_by_current(d) for d in store.document_ids())
    assert set(index.table.to_arrow().column("chunk_id").to_pylist()) == {
        c.chunk_id for d in store.document_ids() for c in store.read_chunks(d)
    }


def test_a_new_version_of_a_file_is_not_prefetched_and_embeds_only_its_changed_chunks(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    manual = protocol_manual(folder)
    lake, db = tmp_path / "lake", tmp_path / "db"
    _, _, first = index_folder(folder, lake_root=lake, lancedb_uri=db, in_process=True)
    old_id = DocumentStore(lake).document_ids()
    assert prefetch_wanted(DocumentStore(lake).documents_by_source(), str(manual), "new") is False
    assert prefetch_wanted(DocumentStore(lake).documents_by_source(), str(manual), old_id[0]) is True
    assert prefetch_wanted({}, str(manual), "new") is True

    manual.write_text(manual.read_text().replace("reagent lot L-003", "reagent lot L-303"))
    _, _, second = index_folder(folder, lake_root=lake, lancedb_uri=db, prefetch=True)
    assert second.chunks_prefetched == 0  # a worker would have embedded every chunk again
    assert second.chunks_embedded == 1 and second.chunks_reused == first.rows - 1
    assert second.removed == old_id


def test_tracseq_documents_ingest_parses_again_the_files_another_parser_chunked(tmp_path: Path, sqlite_instance) -> None:  # type: ignore[no-untyped-def]
    """The Dagster path (ingest_documents): same bytes are skipped only when the current parser chunked them."""
    from tracseq_dagster.documents.ingest import index_documents, ingest_documents

    landing = example_folder(tmp_path)
    defs = documents_definitions(tmp_path, landing)
    first = ingest_documents(str(landing), defs=defs, instance=sqlite_instance, log_level="CRITICAL", prefetch=False)
    assert {o.status for o in first} == {"ingested"}
    store = DocumentStore(tmp_path / "lake")
    pdfs = {o.document_id for o in first if o.path.endswith(".pdf")}
    for document_id in pdfs:  # as a lake chunked before pdfium was the default would read
        record = store.read_record(document_id)
        del record["parser"]
        store.write_json(store.record_path(document_id), record)

    again = ingest_documents(str(landing), defs=defs, instance=sqlite_instance, log_level="CRITICAL", prefetch=False)
    assert {o.document_id for o in again if o.status == "ingested"} == pdfs
    assert {o.status for o in again if o.document_id not in pdfs} == {"unchanged"}
    assert all(store.parsed_by_current(d) for d in store.document_ids())
    result, meta = index_documents(defs=defs, instance=sqlite_instance, log_level="CRITICAL")
    assert result.success and meta["documents"] == len(first)
    third = ingest_documents(str(landing), defs=defs, instance=sqlite_instance, log_level="CRITICAL", prefetch=False)
    assert {o.status for o in third} == {"unchanged"}
