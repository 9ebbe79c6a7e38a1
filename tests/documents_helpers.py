"""Documents shared by the document tests: the examples plus broken PDFs, made once per session."""

from __future__ import annotations

from pathlib import Path

from tracseq_dagster.documents.examples import generate_examples
from tracseq_dagster.documents.pdf import PageLayout, TextPage, write_pdf


def write_broken_pdfs(folder: Path) -> dict[str, Path]:
    """A truncated PDF, a password-protected PDF, and a PDF whose only page is blank."""
    from pypdf import PdfReader, PdfWriter

    layout = PageLayout()
    layout.title("Confidential report")
    layout.paragraph("This report is protected by a password.")
    plain = write_pdf(folder / "plain.tmp.pdf", layout.pages)
    writer = PdfWriter()
    for page in PdfReader(plain).pages:
        writer.add_page(page)
    writer.encrypt(user_password="secret", owner_password="owner")
    encrypted = folder / "encrypted.pdf"
    with encrypted.open("wb") as handle:
        writer.write(handle)
    corrupt = folder / "corrupt.pdf"
    corrupt.write_bytes(plain.read_bytes()[:300])
    plain.unlink()
    blank = write_pdf(folder / "blank.pdf", [TextPage()])
    return {"corrupt": corrupt, "encrypted": encrypted, "blank": blank}


def example_folder(root: Path) -> Path:
    folder = root / "documents"
    generate_examples(folder)
    return folder
