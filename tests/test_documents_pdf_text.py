"""The pypdfium2 text-layer path of parsing (pdf_engine="pdfium"): elements, pages, OCR and errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.documents_helpers import write_broken_pdfs
from tracseq_dagster.documents.chunking import chunk_document
from tracseq_dagster.documents.parsing import DocumentParseError, parse_document
from tracseq_dagster.documents.pdf import PageLayout, scanned_page, write_pdf
from tracseq_dagster.documents.pdf_text import page_elements


def test_heading_lines_become_titles_and_the_lines_between_one_passage() -> None:
    text = "4.7 Check statement\r\ncheck: x + y <= 1;\r\nIf the value is false, an error\r\nis reported.\r\n\r\nExamples\r\nparam n := 10;"
    elements = page_elements(text, 39)
    assert [(type(e).__name__, e.text) for e in elements] == [
        ("Title", "4.7 Check statement"),
        ("NarrativeText", "check: x + y <= 1;\nIf the value is false, an error\nis reported."),
        ("Title", "Examples"),
        ("NarrativeText", "param n := 10;"),
    ]
    assert {e.metadata.page_number for e in elements} == {39}
    assert page_elements("  \r\n ", 1) == []


def test_a_pdf_through_the_fast_engine_keeps_pages_and_ocrs_the_scanned_one(tmp_path: Path) -> None:
    layout = PageLayout()
    layout.title("SOP-020 Freezer alarms")
    layout.heading("Alarm response")
    layout.paragraph("When a freezer alarm sounds, move the racks to the backup freezer FRZ-09 within 30 minutes.")
    layout.new_page()
    layout.heading("Records")
    layout.paragraph("Every alarm is written in the freezer log with the time and the temperature reached.")
    pages = [*layout.pages, scanned_page(["Escalation", "Call the duty scientist at extension 4417."])]
    path = write_pdf(tmp_path / "sop.pdf", pages)
    parsed = parse_document(path, pdf_engine="pdfium")
    assert parsed.pages == 3 and parsed.ocr_pages == [3]
    assert "FRZ-09" in parsed.page_text(1) and "freezer log" in parsed.page_text(2) and "4417" in parsed.page_text(3)
    chunks = chunk_document(parsed, document_id="d", source=str(path), document_type="sop")
    alarm = next(c for c in chunks if "FRZ-09" in c.text)
    assert (alarm.page_start, alarm.section) == (1, "Alarm response")
    assert parse_document(path, pdf_engine="pdfium", ocr=False).ocr_pages == []


@pytest.mark.parametrize("kind", ["corrupt", "encrypted"])
def test_unreadable_pdfs_fail_with_a_reason(tmp_path: Path, kind: str) -> None:
    broken = write_broken_pdfs(tmp_path)[kind]
    with pytest.raises(DocumentParseError) as error:
        parse_document(broken, pdf_engine="pdfium")
    assert ("password" in error.value.reason) if kind == "encrypted" else ("corrupt" in error.value.reason)


def test_a_line_that_ends_a_sentence_short_of_the_width_ends_a_paragraph() -> None:
    text = (
        "Storage of extracts\n"
        "DNA extracts are stored at -20 C in freezer FRZ-03, rack R2, in boxes of\n"
        "eighty-one positions.\n"
        "RNA extracts are stored at -80 C in freezer FRZ-07 and thawed at most\n"
        "three times; every thaw is logged with the date and the operator\n"
        "Compound Text Encoding version 1.1.xf86.1 of the X Consortium Standard,\n"
        "which ends a sentence at the full width of the page for this line here.\n"
        "The last line."
    )
    elements = page_elements(text, 2)
    assert [(type(e).__name__, e.text.splitlines()[0]) for e in elements] == [
        ("Title", "Storage of extracts"),
        ("NarrativeText", "DNA extracts are stored at -20 C in freezer FRZ-03, rack R2, in boxes of"),
        ("NarrativeText", "RNA extracts are stored at -80 C in freezer FRZ-07 and thawed at most"),
    ]
    assert elements[2].text.endswith("for this line here.\nThe last line.")  # a full-width line's "." goes on
