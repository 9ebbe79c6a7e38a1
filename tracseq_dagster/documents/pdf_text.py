"""A PDF's text layer read with pypdfium2: the fast path of parsing, pages into typed elements.

unstructured's fast strategy runs pdfminer and then classifies every text box; on the
benchmark's manuals that is 6-7 pages/s on this machine, while pypdfium2 reads the same text
layers at over 400 pages/s, with ligatures and TeX glyph codes already resolved. This module
turns each page's lines into the elements chunking expects: a line that reads as a heading
(``is_heading_line``: headings.is_heading, and short and comma-free unless numbered) is a Title, the lines between two
headings one NarrativeText. Pages with no text are reported in ``ocr_pages`` for the caller to
OCR. Chosen by ``parse_document(pdf_engine="pdfium")``; see BENCHMARKS.md for how it compares.
"""

from __future__ import annotations

import time
from typing import Any

from tracseq_dagster.documents.headings import heading_level, is_heading

MAX_HEADING_CHARACTERS = 80
# A line of running text can look like a heading ("If the value is false, an error"): an
# unnumbered heading line must also be short and have no comma.
MAX_UNNUMBERED_HEADING_WORDS = 5


def is_heading_line(line: str) -> bool:
    if len(line) > MAX_HEADING_CHARACTERS or not is_heading(line):
        return False
    return heading_level(line) is not None or (len(line.split()) <= MAX_UNNUMBERED_HEADING_WORDS and "," not in line)


def page_elements(text: str, page: int) -> list[Any]:
    """One page's text as Title and NarrativeText elements, in reading order."""
    from unstructured.documents.elements import ElementMetadata, NarrativeText, Title

    elements: list[Any] = []
    body: list[str] = []

    def flush() -> None:
        if body:
            elements.append(NarrativeText(text="\n".join(body), metadata=ElementMetadata(page_number=page)))
            body.clear()

    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if is_heading_line(line):
            flush()
            elements.append(Title(text=line, metadata=ElementMetadata(page_number=page)))
        else:
            body.append(line)
    flush()
    return elements


def parse_pdf_text_layer(path: str):  # type: ignore[no-untyped-def]
    """A ParsedDocument from the PDF's text layer; raises DocumentParseError for unreadable files."""
    import pypdfium2 as pdfium

    from tracseq_dagster.documents.parsing import DocumentParseError, ParsedDocument

    started = time.perf_counter()
    try:
        document = pdfium.PdfDocument(path)
    except pdfium.PdfiumError as error:
        reason = (
            "the PDF is encrypted with a password; save an unprotected copy"
            if "password" in str(error).lower()
            else f"not a readable PDF (corrupt or truncated): {error}"
        )
        raise DocumentParseError(path, reason) from error
    try:
        pages = len(document)
        if pages == 0:
            raise DocumentParseError(path, "the PDF has no pages")
        elements: list[Any] = []
        empty: list[int] = []
        for number in range(1, pages + 1):
            found = page_elements(document[number - 1].get_textpage().get_text_range(), number)
            if found:
                elements += found
            else:
                empty.append(number)
    finally:
        document.close()
    return ParsedDocument(path, "pdf", elements, pages, empty, {"partition": time.perf_counter() - started})
