"""The document assets on a real Dagster instance: sensor, chunks, index, deletion, submission forms."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg

from assets.documents.partitions import document_partitions
from assets.documents.sensors import documents_sensor
from tests.dagster_helpers import latest_materialization
from tests.documents_helpers import documents_definitions, example_folder, write_broken_pdfs
from tracseq_dagster.definitions import build_definitions
from tracseq_dagster.documents.ingest import index_documents, ingest_documents
from tracseq_dagster.documents.store import DocumentStore


def test_documents_flow_through_dagster_idempotently_and_deletions_reach_the_index(tmp_path: Path, sqlite_instance) -> None:  # type: ignore[no-untyped-def]
    landing = example_folder(tmp_path)
    broken = write_broken_pdfs(tmp_path / "broken")
    shutil.copy(broken["encrypted"], landing / "encrypted.pdf")
    defs = documents_definitions(tmp_path, landing)
    outcomes = ingest_documents(str(landing), defs=defs, instance=sqlite_instance, log_level="CRITICAL")
    status = {Path(o.path).name: o for o in outcomes}
    assert status["encrypted.pdf"].status == "failed" and "encrypted with a password" in status["encrypted.pdf"].error
    assert {o.status for n, o in status.items() if n != "encrypted.pdf"} == {"ingested"}
    sop = status["SOP-014-nucleic-acid-extraction.pdf"]
    meta = latest_materialization(sqlite_instance, "document_chunks", sop.document_id).metadata
    assert meta["pages"].value == 4 and meta["ocr_pages"].value == "4" and meta["chunks"].value == sop.chunks
    assert {"elements", "characters", "seconds_partition", "seconds_ocr", "seconds_chunk"} <= set(meta)

    result, index_meta = index_documents(defs=defs, instance=sqlite_instance, log_level="CRITICAL")
    assert result.success
    total = sum(o.chunks for o in outcomes if o.chunks)
    assert index_meta["documents"] == 8 and index_meta["dagster/row_count"] == total
    # Embedded while the next file was parsed (prefetch.py): document_index only merged them.
    assert index_meta["chunks_prefetched"] == total and index_meta["chunks_embedded"] == 0 and "fts" in index_meta["indexes"]
    forms = latest_materialization(sqlite_instance, "submission_metadata").metadata
    assert forms["dagster/row_count"].value == 4 and forms["samples_invalid"].value == 0  # the template form
    assert "email-submission" in forms["forms_not_extracted"].value  # free-form, and Ollama is not running

    # Same bytes again: nothing is parsed, nothing is written.
    again = ingest_documents(str(landing), defs=defs, instance=sqlite_instance, log_level="CRITICAL")
    assert {o.status for o in again if "encrypted" not in o.path} == {"unchanged"}
    _, unchanged = index_documents(defs=defs, instance=sqlite_instance, log_level="CRITICAL")
    assert (unchanged["documents_written"], unchanged["documents_unchanged"], unchanged["dagster/row_count"]) == (0, 8, total)

    # A changed document replaces its chunks; a deleted one loses them and its partition.
    notes = landing / "library-prep-notes.md"
    notes.write_text(notes.read_text().replace("12 PCR cycles", "14 PCR cycles"))
    (landing / "freezer-map.html").unlink()
    ingest_documents(str(landing), defs=defs, instance=sqlite_instance, log_level="CRITICAL")
    _, changed = index_documents(defs=defs, instance=sqlite_instance, log_level="CRITICAL")
    assert changed["documents"] == 7 and changed["documents_written"] == 1 and changed["documents_removed"] == 2
    index = defs.resources["lancedb"].index(defs.resources["embedder"].embedder())
    texts = index.table.to_arrow().column("text").to_pylist()
    assert any("14 PCR cycles" in t for t in texts) and not any("12 PCR cycles" in t for t in texts)
    assert not any("room 2.114" in t for t in texts)
    freezer = status["freezer-map.html"].document_id
    assert not sqlite_instance.has_dynamic_partition(document_partitions.name, freezer)
    assert freezer not in DocumentStore(tmp_path / "lake").document_ids()


def test_documents_sensor_waits_for_finished_files_and_ignores_same_bytes(tmp_path: Path, sqlite_instance) -> None:  # type: ignore[no-untyped-def]
    landing = tmp_path / "landing"
    landing.mkdir()
    source = example_folder(tmp_path / "src")
    defs = build_definitions(documents_url=str(landing), lake_dir=str(tmp_path / "lake"), lancedb_dir=str(tmp_path / "db"))
    resources = {"documents_landing": defs.resources["documents_landing"]}

    def tick(cursor: str | None) -> dg.SensorResult:
        context = dg.build_sensor_context(instance=sqlite_instance, cursor=cursor, resources=resources)
        result = documents_sensor(context)
        for request in result.dynamic_partitions_requests:
            sqlite_instance.add_dynamic_partitions(document_partitions.name, list(request.partition_keys))
        return result

    (landing / "qc.pdf.part").write_bytes((source / "QC-report-run-R-2025-031.pdf").read_bytes())
    first = tick(None)
    assert first.run_requests == []
    (landing / "qc.pdf.part").rename(landing / "qc.pdf")
    second = tick(first.cursor)
    assert second.run_requests == []  # first sighting: it may still be growing
    third = tick(second.cursor)
    (request,) = third.run_requests
    assert request.job_name == "ingest_document" and request.tags["tracseq/source_path"] == str(landing / "qc.pdf")
    shutil.copy(landing / "qc.pdf", landing / "copy-of-qc.pdf")
    fourth = tick(tick(third.cursor).cursor)
    assert fourth.run_requests == []  # same bytes under another name
    (landing / "qc.pdf").unlink()
    fifth = tick(fourth.cursor)
    assert [r.job_name for r in fifth.run_requests] == ["index_documents"]
