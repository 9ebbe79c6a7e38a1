"""A document file into unstructured elements, each with the page it came from.

PDFs: their text layer is read by pypdfium2 (``pdf_engine="pdfium"``, the default,
pdf_text.py), or by unstructured's ``fast`` strategy (``"unstructured"``: pdfminer and
unstructured's element classification, about 40 times the CPU for the same retrieval
quality, BENCHMARKS.md). Pages that yield nothing have no text layer, usually scans: with
either engine only those pages are copied into a temporary PDF and read by unstructured's
``ocr_only`` strategy (tesseract through poppler's pdftoppm), and their elements take the
original page numbers back. ``hi_res`` needs layout models from a hub and is never used.
DOCX, HTML, Markdown and plain text have their own unstructured partitioners.

Every ParsedDocument names the parser that made it (``parser_identity``); the lake stores it
with the chunks, and a document parsed by another parser than the current one is parsed
again once (pipeline.rechunk_stale), so that an index never mixes two parsers' chunks.

A file that cannot be read fails with a ``DocumentParseError`` whose reason says why in
words a lab can act on: corrupt, encrypted, empty, no text even after OCR.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tracseq_dagster.documents.environment import prepare_unstructured, require_ocr_tools

PDF_SUFFIXES = (".pdf",)
DOCUMENT_SUFFIXES: tuple[str, ...] = (".pdf", ".docx", ".html", ".htm", ".md", ".markdown", ".txt")
LANGUAGES = ["eng"]
PDF_ENGINES = ("pdfium", "unstructured")
DEFAULT_PDF_ENGINE = "pdfium"
# pypdf logs every repair it attempts on a broken file; the DocumentParseError says it once.
logging.getLogger("pypdf").setLevel(logging.ERROR)


class DocumentParseError(Exception):
    """A document that cannot be turned into text; ``reason`` is for people."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass
class ParsedDocument:
    """What one file yielded, and how long each stage took."""

    path: str
    file_type: str
    elements: list[Any]  # unstructured Element objects, metadata.page_number always set
    pages: int
    ocr_pages: list[int] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # stage -> wall time
    parser: str = ""  # parser_identity of what made the elements

    @property
    def characters(self) -> int:
        return sum(len(e.text or "") for e in self.elements)

    def page_text(self, page: int) -> str:
        return "\n".join(e.text for e in self.elements if e.metadata.page_number == page)


def file_type_of(path: str | Path) -> str:
    """The file type a ParsedDocument records for ``path``: pdf, docx, html, md, txt."""
    suffix = Path(str(path)).suffix.lower()
    return {".htm": "html", ".markdown": "md"}.get(suffix, suffix.lstrip("."))


def parser_identity(file_type: str, pdf_engine: str | None = None) -> str:
    """What parses a file of ``file_type`` (``file_type_of``) with ``pdf_engine`` (None: the default).

    Stored with each document's chunks: chunks are reused only while the identity is the
    same. It names the engine and the version of this project's own rules over it
    (pdf_text.RULES_VERSION), not library versions.
    """
    if file_type != "pdf":
        return "unstructured"
    engine = pdf_engine or DEFAULT_PDF_ENGINE
    if engine == "pdfium":
        from tracseq_dagster.documents.pdf_text import RULES_VERSION

        return f"pdfium text layer {RULES_VERSION}"
    return "unstructured fast"


def recorded_parser(record: dict[str, Any]) -> str:
    """The parser identity of a stored document record; records from before it was stored were unstructured's."""
    return str(record.get("parser") or parser_identity(str(record.get("file_type", "")), "unstructured"))


def parse_document(path: str | Path, *, ocr: bool = True, pdf_engine: str | None = None) -> ParsedDocument:
    """Partition the file at ``path`` (a local file) by its suffix.

    PDFs: ``pdf_engine`` ``"pdfium"`` (pdf_text.py, the default) or ``"unstructured"``
    (the fast strategy); pages without a text layer are OCR'd with either.
    """
    path = str(path)
    suffix = Path(path).suffix.lower()
    pdf_engine = pdf_engine or DEFAULT_PDF_ENGINE
    if pdf_engine not in PDF_ENGINES:
        raise ValueError(f"pdf_engine {pdf_engine!r}: expected one of {', '.join(PDF_ENGINES)}")
    if suffix not in DOCUMENT_SUFFIXES:
        raise DocumentParseError(
            path, f"unsupported file type {suffix or '(none)'}; expected one of {', '.join(DOCUMENT_SUFFIXES)}"
        )
    prepare_unstructured()
    if suffix in PDF_SUFFIXES and pdf_engine == "pdfium":
        from tracseq_dagster.documents.pdf_text import parse_pdf_text_layer

        parsed = parse_pdf_text_layer(path)
        if ocr and parsed.ocr_pages:  # pages without a text layer: tesseract, as the default engine does
            from pypdf import PdfReader

            started = time.perf_counter()
            parsed.elements = sorted(
                parsed.elements + _ocr_pages(PdfReader(path), parsed.ocr_pages, path), key=lambda e: e.metadata.page_number or 0
            )
            parsed.seconds["ocr"] = time.perf_counter() - started
        else:
            parsed.ocr_pages = []
    elif suffix in PDF_SUFFIXES:
        parsed = _parse_pdf(path, ocr=ocr)
    else:
        parsed = _parse_other(path, suffix)
    if not any((e.text or "").strip() for e in parsed.elements):
        detail = f" even after OCR of {len(parsed.ocr_pages)} page(s)" if parsed.ocr_pages else ""
        raise DocumentParseError(path, f"no text found{detail}: the document is empty or unreadable")
    parsed.parser = parser_identity(parsed.file_type, pdf_engine)
    return parsed


def _parse_pdf(path: str, *, ocr: bool) -> ParsedDocument:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError
    from unstructured.partition.pdf import partition_pdf

    started = time.perf_counter()
    try:
        reader = PdfReader(path)
        if reader.is_encrypted and not reader.decrypt(""):
            raise DocumentParseError(path, "the PDF is encrypted with a password; save an unprotected copy")
        pages = len(reader.pages)
    except DocumentParseError:
        raise
    except (PdfReadError, ValueError, KeyError, OSError) as error:
        raise DocumentParseError(path, f"not a readable PDF (corrupt or truncated): {error}") from error
    if pages == 0:
        raise DocumentParseError(path, "the PDF has no pages")

    try:
        elements = partition_pdf(filename=path, strategy="fast", languages=LANGUAGES)
    except Exception as error:  # pdfminer raises many types for broken files
        raise DocumentParseError(path, f"not a readable PDF: {type(error).__name__}: {error}") from error
    seconds = {"partition": time.perf_counter() - started}

    with_text = {e.metadata.page_number for e in elements if (e.text or "").strip()}
    without_text = [p for p in range(1, pages + 1) if p not in with_text]
    ocr_pages: list[int] = []
    if ocr and without_text:
        started = time.perf_counter()
        elements = sorted(elements + _ocr_pages(reader, without_text, path), key=lambda e: e.metadata.page_number or 0)
        ocr_pages = without_text
        seconds["ocr"] = time.perf_counter() - started
    return ParsedDocument(path, "pdf", elements, pages, ocr_pages, seconds)


def _ocr_pages(reader: Any, page_numbers: list[int], path: str) -> list[Any]:
    """OCR only the given pages (1-based): copy them into a temporary PDF, map pages back."""
    from pypdf import PdfWriter
    from unstructured.partition.pdf import partition_pdf

    require_ocr_tools()
    writer = PdfWriter()
    for number in page_numbers:
        writer.add_page(reader.pages[number - 1])
    with tempfile.NamedTemporaryFile(suffix=".pdf") as handle:
        writer.write(handle)
        handle.flush()
        try:
            elements = partition_pdf(filename=handle.name, strategy="ocr_only", languages=LANGUAGES)
        except Exception as error:
            raise DocumentParseError(path, f"OCR of pages {page_numbers} failed: {type(error).__name__}: {error}") from error
    for element in elements:
        element.metadata.page_number = page_numbers[(element.metadata.page_number or 1) - 1]
    return elements


def _parse_other(path: str, suffix: str) -> ParsedDocument:
    started = time.perf_counter()
    try:
        if suffix == ".docx":
            from unstructured.partition.docx import partition_docx

            elements = partition_docx(filename=path, languages=LANGUAGES)
        elif suffix in (".html", ".htm"):
            from unstructured.partition.html import partition_html

            elements = partition_html(filename=path, languages=LANGUAGES)
        elif suffix in (".md", ".markdown"):
            from unstructured.partition.md import partition_md

            elements = partition_md(filename=path, languages=LANGUAGES)
        else:
            from unstructured.partition.text import partition_text

            elements = partition_text(filename=path, languages=LANGUAGES)
    except Exception as error:  # a broken DOCX zip, undecodable text, ...
        raise DocumentParseError(path, f"cannot read the {suffix} file: {type(error).__name__}: {error}") from error
    # Formats without pages (HTML, Markdown, text) are one page; DOCX counts its page breaks.
    for element in elements:
        if element.metadata.page_number is None:
            element.metadata.page_number = 1
    pages = max((e.metadata.page_number for e in elements if e.metadata.page_number is not None), default=1)  # all set above
    return ParsedDocument(path, file_type_of(path), elements, pages, [], {"partition": time.perf_counter() - started})
