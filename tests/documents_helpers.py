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


def protocol_manual(folder: Path) -> Path:
    """A Markdown protocol of five steps whose chunks differ by their reagent lot: edit one lot to change one chunk."""
    sections = [
        f"# Step {n}\n\n" + f"Step {n} of the protocol uses reagent lot L-{n:03d} and buffer B{n}. " * 6 for n in range(1, 6)
    ]
    manual = folder / "protocol.md"
    manual.write_text("# Protocol\n\n" + "\n\n".join(sections))
    return manual


def documents_definitions(root: Path, landing: Path):  # type: ignore[no-untyped-def]
    """The code location over ``landing`` with every store of its own under ``root``."""
    from tracseq_dagster.definitions import build_definitions

    return build_definitions(
        lake_dir=str(root / "lake"),
        documents_url=str(landing),
        lancedb_dir=str(root / "lancedb"),
        landing_url=str(root / "exports"),
        mlflow_tracking_uri=f"sqlite:///{root / 'm.db'}",
        optuna_storage=f"sqlite:///{root / 'o.db'}",
    )
