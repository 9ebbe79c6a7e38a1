"""A PDF's text layer read with pypdfium2: the fast path of parsing, pages into typed elements.

unstructured's fast strategy runs pdfminer and then classifies every text box; on the
benchmark's manuals that is 6-7 pages/s on this machine, while pypdfium2 reads the same text
layers at over 400 pages/s, with ligatures and TeX glyph codes already resolved. This module
turns each page's lines into the elements chunking expects: a line that reads as a heading
(``is_heading_line``: headings.is_heading, and short and comma-free unless numbered) is a Title, the lines between two
headings one NarrativeText. The document's first line is its title when it reads as a heading
of any length (headings.is_heading): chunking names every chunk after the first Title. The
text layer has no blank lines between paragraphs: a line that ends a sentence and stops short
of the page's full line width (``PARAGRAPH_END_WIDTH`` of its 90th-percentile line length) ends
a paragraph, and each paragraph is one NarrativeText, as unstructured's text boxes are.
"""

from __future__ import annotations

import time
from typing import Any

from tracseq_dagster.documents.headings import heading_level, is_heading

# Part of parsing.parser_identity: change it with any rule below, so that stored chunks are
# parsed again with the new rules.
RULES_VERSION = "v3"
PARAGRAPH_END_WIDTH = 0.85
MAX_HEADING_CHARACTERS = 80
# A line of running text can look like a heading ("If the value is false, an error"): an
# unnumbered heading line must also be short and have no comma.
MAX_UNNUMBERED_HEADING_WORDS = 5


def is_heading_line(line: str) -> bool:
    if len(line) > MAX_HEADING_CHARACTERS or not is_heading(line):
        return False
    return heading_level(line) is not None or (len(line.split()) <= MAX_UNNUMBERED_HEADING_WORDS and "," not in line)


def paragraphs(lines: list[str], full_width: float) -> list[list[str]]:
    """Lines into paragraphs: one ends at a line that ends a sentence short of ``full_width`` characters."""
    found: list[list[str]] = [[]]
    for line in lines:
        found[-1].append(line)
        if line.endswith((".", ":", "!", "?")) and len(line) < PARAGRAPH_END_WIDTH * full_width:
            found.append([])
    return [p for p in found if p]


def page_elements(text: str, page: int, *, first: bool = False) -> list[Any]:
    """One page's text as Title and NarrativeText elements, in reading order.

    ``first``: the document's first page with text, whose first line is the title if it reads as a heading.
    """
    from unstructured.documents.elements import ElementMetadata, NarrativeText, Title

    elements: list[Any] = []
    body: list[str] = []
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    widths = sorted(len(line) for line in lines)
    full_width = widths[int(0.9 * (len(widths) - 1))] if widths else 0

    def flush() -> None:
        for paragraph in paragraphs(body, full_width):
            elements.append(NarrativeText(text="\n".join(paragraph), metadata=ElementMetadata(page_number=page)))
        body.clear()

    for line in lines:
        title = first and not elements and not body and len(line) <= MAX_HEADING_CHARACTERS and is_heading(line)
        if title or is_heading_line(line):
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
            found = page_elements(document[number - 1].get_textpage().get_text_range(), number, first=not elements)
            if found:
                elements += found
            else:
                empty.append(number)
    finally:
        document.close()
    return ParsedDocument(path, "pdf", elements, pages, empty, {"partition": time.perf_counter() - started})
