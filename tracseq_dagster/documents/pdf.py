"""PDFs with known facts on known pages: text pages with a real text layer, and image-only (scanned) pages.

The example lab documents (``tracseq documents generate-examples``), the tests and the
retrieval benchmark need them. The layout (where each line goes, page breaks) is ours
(:class:`PageLayout`); the file is written by fpdf2: the standard Helvetica fonts (every reader
has them, nothing to embed) in Windows-1252, and a scanned page's JPEG embedded as it is
(DCT, not re-encoded, so OCR sees the same pixels). pdfminer (unstructured's fast strategy)
reads the text layer back exactly. (Until fpdf2 was in the lock this module wrote PDF 1.4 by
hand.)
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from fpdf import FPDF

PAGE_WIDTH, PAGE_HEIGHT = 595, 842  # A4 in points
MARGIN = 56
BODY_SIZE, HEADING_SIZE, TITLE_SIZE = 10.5, 13, 18
LEADING = 1.45  # line height as a multiple of the font size


@dataclass(frozen=True)
class TextLine:
    """One line of text at a position (points from the bottom left), bold or regular."""

    text: str
    x: float
    y: float
    size: float = BODY_SIZE
    bold: bool = False


@dataclass
class TextPage:
    lines: list[TextLine] = field(default_factory=list)


@dataclass(frozen=True)
class ImagePage:
    """A page that is only a picture (a scan): JPEG bytes and the pixel size."""

    jpeg: bytes
    width_px: int
    height_px: int


Page = TextPage | ImagePage


class PageLayout:
    """Flows headings, paragraphs and table rows down A4 pages, breaking pages as needed."""

    def __init__(self) -> None:
        self.pages: list[TextPage] = [TextPage()]
        self.y: float = PAGE_HEIGHT - MARGIN

    def _need(self, height: float) -> None:
        if self.y - height < MARGIN:
            self.new_page()

    def new_page(self) -> None:
        self.pages.append(TextPage())
        self.y = PAGE_HEIGHT - MARGIN

    def _line(self, text: str, size: float, bold: bool, x: float = MARGIN) -> None:
        self._need(size * LEADING)
        self.y -= size * LEADING
        self.pages[-1].lines.append(TextLine(text, x, self.y, size, bold))

    def title(self, text: str) -> None:
        self._line(text, TITLE_SIZE, True)
        self.y -= TITLE_SIZE * 0.6

    def heading(self, text: str) -> None:
        self._need(HEADING_SIZE * LEADING * 3)  # keep a heading with its first lines
        self.y -= HEADING_SIZE * 0.5
        self._line(text, HEADING_SIZE, True)
        # A clear gap, as word processors leave: pdfminer then keeps the heading a text box of
        # its own, which unstructured classifies as a Title.
        self.y -= HEADING_SIZE * 0.6

    def paragraph(self, text: str, width_chars: int = 95) -> None:
        for line in wrap(text, width_chars):
            self._line(line, BODY_SIZE, False)
        self.y -= BODY_SIZE * 0.6

    def table(self, header: list[str], rows: list[list[str]]) -> None:
        """One text line per row, cells separated by a rule.

        Drawn cell by cell, pdfminer reads a table column by column (the ``fast`` strategy has
        no table model), which separates every value from its row; a line per row keeps them.
        """
        for cells, bold in [(header, True), *[(r, False) for r in rows]]:
            self._line("  |  ".join(cells), BODY_SIZE, bold)
        self.y -= BODY_SIZE * 0.6


def wrap(text: str, width: int) -> list[str]:
    """Greedy word wrap at ``width`` characters (Helvetica at 10.5 pt fits about 95 on A4)."""
    lines: list[str] = []
    current = ""
    for word in text.split():
        if current and len(current) + 1 + len(word) > width:
            lines.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    if current:
        lines.append(current)
    return lines


def scanned_page(lines: list[str], dpi: int = 150) -> ImagePage:
    """Render text lines to a greyscale A4 picture, as a scanner would deliver it."""
    from PIL import Image, ImageDraw, ImageFont

    width, height = int(PAGE_WIDTH / 72 * dpi), int(PAGE_HEIGHT / 72 * dpi)
    image = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=int(dpi / 72 * 12))
    y = int(dpi * 0.9)
    for line in lines:
        draw.text((int(dpi * 0.8), y), line, fill=0, font=font)
        y += int(dpi / 72 * 12 * 1.6)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return ImagePage(buffer.getvalue(), width, height)


#: The creation date written into every file, so that the same pages give the same bytes.
FIXED_DATE = datetime(2026, 1, 1, tzinfo=UTC)


def _text(text: str) -> str:
    """``text`` as the standard fonts can draw it (Windows-1252; anything else becomes ``?``)."""
    return text.encode("cp1252", errors="replace").decode("cp1252")


def write_pdf(path: str | Path, pages: Sequence[Page], *, title: str = "") -> Path:
    """Write ``pages`` to ``path`` as a PDF (deterministic: same pages, same bytes)."""
    pdf = FPDF(unit="pt", format=(PAGE_WIDTH, PAGE_HEIGHT))
    pdf.core_fonts_encoding = "windows-1252"
    pdf.set_auto_page_break(False)
    pdf.set_creation_date(FIXED_DATE)
    pdf.set_title(title)
    pdf.set_producer("tracseq_dagster.documents.pdf (fpdf2)")
    for page in pages:
        pdf.add_page()
        if isinstance(page, ImagePage):
            pdf.image(io.BytesIO(page.jpeg), x=0, y=0, w=PAGE_WIDTH, h=PAGE_HEIGHT)
            continue
        for line in page.lines:
            pdf.set_font("helvetica", style="B" if line.bold else "", size=line.size)
            pdf.text(line.x, PAGE_HEIGHT - line.y, _text(line.text))  # our y is from the bottom, fpdf2's from the top
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    pdf.output(str(target))
    return target
