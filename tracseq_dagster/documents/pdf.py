"""A minimal PDF writer: text pages with a real text layer, and image-only (scanned) pages.

The example lab documents (``tracseq documents generate-examples``), the tests and the
retrieval benchmark need PDFs with known facts on known pages. No PDF library in the lock
writes text, so this writes PDF 1.4 by hand: the standard Helvetica fonts (every reader
has them, nothing to embed), one content stream per page, and a JPEG XObject for a
scanned page. pdfminer (unstructured's fast strategy) reads the text layer back exactly.
"""

from __future__ import annotations

import io
import zlib
from dataclasses import dataclass, field
from pathlib import Path

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
        self.y = PAGE_HEIGHT - MARGIN

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


def _escape(text: str) -> bytes:
    encoded = text.encode("cp1252", errors="replace")
    return encoded.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")


def _content(page: Page) -> bytes:
    if isinstance(page, ImagePage):
        return f"q {PAGE_WIDTH} 0 0 {PAGE_HEIGHT} 0 0 cm /Scan Do Q".encode()
    parts = []
    for line in page.lines:
        font = "/F2" if line.bold else "/F1"
        parts.append(b"BT %s %.1f Tf %.2f %.2f Td (%s) Tj ET" % (font.encode(), line.size, line.x, line.y, _escape(line.text)))
    return b"\n".join(parts)


def write_pdf(path: str | Path, pages: list[Page], *, title: str = "") -> Path:
    """Write ``pages`` to ``path`` as a PDF 1.4 file (deterministic: same pages, same bytes)."""
    objects: list[bytes] = []

    def add(body: bytes) -> int:
        objects.append(body)
        return len(objects)

    catalog = add(b"")  # filled in once the page tree exists
    pages_id = add(b"")
    regular = add(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>")
    bold = add(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica-Bold /Encoding /WinAnsiEncoding >>")
    info = add(b"<< /Title (%s) /Producer (tracseq_dagster.documents.pdf) >>" % _escape(title))
    kids = []
    for page in pages:
        resources = b"/Font << /F1 %d 0 R /F2 %d 0 R >>" % (regular, bold)
        if isinstance(page, ImagePage):
            image = add(
                b"<< /Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceGray "
                b"/BitsPerComponent 8 /Filter /DCTDecode /Length %d >>\nstream\n%s\nendstream"
                % (page.width_px, page.height_px, len(page.jpeg), page.jpeg)
            )
            resources += b" /XObject << /Scan %d 0 R >>" % image
        stream = zlib.compress(_content(page))
        content = add(b"<< /Length %d /Filter /FlateDecode >>\nstream\n%s\nendstream" % (len(stream), stream))
        kids.append(
            add(
                b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 %d %d] /Resources << %s >> /Contents %d 0 R >>"
                % (pages_id, PAGE_WIDTH, PAGE_HEIGHT, resources, content)
            )
        )
    objects[catalog - 1] = b"<< /Type /Catalog /Pages %d 0 R >>" % pages_id
    objects[pages_id - 1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (
        b" ".join(b"%d 0 R" % k for k in kids),
        len(kids),
    )

    out = io.BytesIO()
    out.write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n%s\nendobj\n" % (number, body))
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(
        b"trailer\n<< /Size %d /Root %d 0 R /Info %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, catalog, info, xref)
    )
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(out.getvalue())
    return target
