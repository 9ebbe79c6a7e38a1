"""Real documents through unstructured: text, tables, a scanned page, other formats, broken files."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.documents_helpers import example_folder, write_broken_pdfs
from tracseq_dagster.documents.chunking import chunk_document
from tracseq_dagster.documents.doctypes import classify_document
from tracseq_dagster.documents.parsing import DocumentParseError, parse_document


@pytest.fixture(scope="module")
def docs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return example_folder(tmp_path_factory.mktemp("docs"))


def test_fast_strategy_yields_elements_offline_without_downloading_a_spacy_model(docs: Path, monkeypatch) -> None:
    from unstructured.nlp import tokenize

    def no_download() -> None:
        raise AssertionError("unstructured tried to download its spaCy model")

    monkeypatch.setattr(tokenize, "_install_spacy_model", no_download)
    parsed = parse_document(docs / "QC-report-run-R-2025-031.pdf", pdf_engine="unstructured")
    assert parsed.pages == 2 and parsed.ocr_pages == []
    assert parsed.parser == "unstructured fast"
    kinds = {type(e).__name__ for e in parsed.elements}
    assert "Title" in kinds and "NarrativeText" in kinds  # classification needs the spaCy model
    assert "412 million" in parsed.page_text(1)
    assert "FC-88K2" in parsed.page_text(2)


@pytest.mark.parametrize("engine", ["pdfium", "unstructured"])
def test_multi_page_pdf_with_a_table_and_a_scanned_page_keeps_facts_on_their_pages(docs: Path, engine: str) -> None:
    parsed = parse_document(docs / "SOP-014-nucleic-acid-extraction.pdf", pdf_engine=engine)
    assert parsed.pages == 4
    assert parsed.ocr_pages == [4]  # only the page without a text layer went through tesseract
    assert "EDTA" in parsed.page_text(1)
    assert "FRZ-07" in parsed.page_text(2) and "FRZ-07" not in parsed.page_text(1)
    assert "RNA | RIN 7.0 | 20 uL | 25 ng/uL" in parsed.page_text(3)
    scanned = parsed.page_text(4)
    assert "4000" in scanned and "R-77" in scanned, scanned
    assert set(parsed.seconds) == {"partition", "ocr"}


@pytest.mark.parametrize("engine", ["pdfium", "unstructured"])
def test_chunks_carry_title_section_page_span_and_stable_ids(docs: Path, engine: str) -> None:
    path = docs / "SOP-014-nucleic-acid-extraction.pdf"
    parsed = parse_document(path, pdf_engine=engine)
    chunks = chunk_document(parsed, document_id="abc", source=str(path), document_type="sop")
    again = chunk_document(parse_document(path, pdf_engine=engine), document_id="abc", source=str(path), document_type="sop")
    assert [c.chunk_id for c in chunks] == [c.chunk_id for c in again]
    assert len({c.chunk_id for c in chunks}) == len(chunks)
    assert all(c.title == "SOP-014 Nucleic Acid Extraction from Whole Blood" for c in chunks)
    storage = next(c for c in chunks if "FRZ-07" in c.text)
    assert (storage.page_start, storage.page_end, storage.section) == (2, 2, "Storage of extracts")
    assert next(c for c in chunks if "R-77" in c.text).page_start == 4
    assert "Storage of extracts" in storage.search_text and storage.title in storage.search_text
    other = chunk_document(parsed, document_id="abd", source=str(path), document_type="sop")
    assert not {c.chunk_id for c in other} & {c.chunk_id for c in chunks}  # ids depend on the content hash


@pytest.mark.parametrize(
    ("name", "fact", "section"),
    [
        ("biosafety-BSL2.docx", "certified annually", "Biosafety cabinet"),
        ("freezer-map.html", "room 2.114", ""),
        ("library-prep-notes.md", "12 PCR cycles", "Input requirements"),  # small sections share a chunk
        ("instrument-maintenance-log.txt", "2025-02-11", ""),
    ],
)
def test_docx_html_markdown_and_text_are_parsed_and_chunked(docs: Path, name: str, fact: str, section: str) -> None:
    path = docs / name
    parsed = parse_document(path)
    chunks = chunk_document(parsed, document_id="x", source=str(path), document_type="other")
    hit = next(c for c in chunks if fact in c.text)
    assert hit.page_start == 1
    if section:
        assert hit.section == section


def test_broken_pdfs_fail_with_a_reason_a_person_can_act_on(tmp_path: Path) -> None:
    broken = write_broken_pdfs(tmp_path)
    expected = {
        "corrupt": "corrupt or truncated",
        "encrypted": "encrypted with a password",
        "blank": "no text found even after OCR",
    }
    for kind, path in broken.items():
        with pytest.raises(DocumentParseError) as caught:
            parse_document(path)
        assert expected[kind] in caught.value.reason, caught.value.reason
        assert caught.value.path == str(path)
    with pytest.raises(DocumentParseError, match="unsupported file type .xlsx"):
        parse_document(tmp_path / "table.xlsx")


def test_document_types_come_from_folder_name_and_first_page() -> None:
    assert classify_document("/landing/sops/extraction.pdf") == "sop"
    assert classify_document("/landing/QC-report-run-1.pdf") == "report"
    assert classify_document("/landing/in/form.pdf", "TracSeq Sample Submission Form\nSubmitter: A") == "submission_form"
    assert classify_document("/tmp/test_report0/landing/notes.txt", "nothing here") == "other"
