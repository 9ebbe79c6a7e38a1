"""Headings among unstructured's titles, and the heading path each chunk carries.

The non-headings are lines unstructured's fast strategy called Title in the benchmark's real
manuals (benchmarks/rag_corpus.py): code, table cells, bullets, sentence ends.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tracseq_dagster.documents.chunking import chunk_document
from tracseq_dagster.documents.headings import HeadingPath, heading_level, is_heading
from tracseq_dagster.documents.parsing import parse_document
from tracseq_dagster.documents.pdf import PageLayout, write_pdf

HEADINGS = [
    "2.6 Comments",
    "Chapter 3",
    "Expressions",
    "A.3.1 BLAS",
    "Appendix B Configuration on a Unix-alike",
    "SPACING Field",
    "2.1.11 Pairlist objects",
    "Storage of extracts",
    "1.2.4 glp set vertex name — assign (change) vertex name",
]
NOT_HEADINGS = [
    "| numeric characters:",
    'names(x)[3] <- "Three"',
    "CARD32",
    "arguments to a function.",
    "A simple example:",
    "sys.frame",
    "MIME_TYPE_OFFSET PARENTS_OFFSET",
    "StdCharsetRegistryName | PrivCharsetRegistryName",
    "y <- 10 g <- function(x) x + y return(g)",
    "OrganizationId ::=",
    "a word that goes on and on for far too many words to be a heading",
]


@pytest.mark.parametrize("text", HEADINGS)
def test_headings_are_kept(text: str) -> None:
    assert is_heading(text)


@pytest.mark.parametrize("text", NOT_HEADINGS)
def test_code_cells_bullets_and_sentences_are_not_headings(text: str) -> None:
    assert not is_heading(text)


def test_numbering_gives_the_level() -> None:
    assert [
        heading_level(t)
        for t in ("3 Expressions", "Chapter 3", "3.4 Set expressions", "A.3.1 BLAS", "Appendix B", "Expressions", "A word")
    ] == [1, 1, 2, 3, 1, None, None]


def test_the_path_follows_the_numbering_and_unnumbered_headings_sit_under_the_last_numbered() -> None:
    path = HeadingPath()
    seen = []
    for heading in [
        "Chapter 4",
        "Statements",
        "4.7 Check statement",
        "Examples",
        "4.8 Display statement",
        "5 Model data",
        "5.1 Coding",
    ]:
        path.enter(heading)
        seen.append(path.path)
    assert seen == [
        "Chapter 4",
        "Chapter 4 > Statements",
        "Chapter 4 > 4.7 Check statement",
        "Chapter 4 > 4.7 Check statement > Examples",
        "Chapter 4 > 4.8 Display statement",
        "5 Model data",
        "5 Model data > 5.1 Coding",
    ]


def test_chunks_carry_the_heading_path_and_code_lines_do_not_cut_them(tmp_path: Path) -> None:
    layout = PageLayout()
    layout.title("MathProg language reference")
    layout.heading("4 Statements")
    layout.paragraph("Statements are the basic units of a model description. " * 3)
    layout.heading("4.7 Check statement")
    layout.paragraph("The check statement allows checking the resultant value of a logical expression.")
    layout.heading("check: x + y <= 1;")  # set apart like a heading, but code
    layout.paragraph("If the value is false, an error is reported and translation stops.")
    parsed = parse_document(write_pdf(tmp_path / "gmpl.pdf", layout.pages), pdf_engine="unstructured")
    titles = [e.text for e in parsed.elements if type(e).__name__ == "Title"]
    assert "check: x + y <= 1;" in titles  # unstructured calls the code line a title (pdfium's rules do not)
    chunks = chunk_document(
        parsed, document_id="d", source=str(tmp_path / "gmpl.pdf"), document_type="manual", headings_only=True
    )
    check = next(c for c in chunks if "check statement allows" in c.text)
    assert check.section == "4 Statements > 4.7 Check statement"
    assert "check: x + y <= 1;" in check.text and "error is reported" in check.text  # one passage, not three
    assert "4 Statements > 4.7 Check statement" in check.search_text

    # Without merging small sections, the code line cut the passage before (and named a section).
    def sections(headings_only: bool) -> list[str]:
        split = chunk_document(
            parsed,
            document_id="d",
            source="gmpl.pdf",
            document_type="manual",
            combine_under_characters=0,
            headings_only=headings_only,
        )
        return [c.section for c in split]

    assert sections(False) == ["", "4 Statements", "4.7 Check statement", "check: x + y <= 1;"]
    assert sections(True) == ["", "4 Statements", "4 Statements > 4.7 Check statement"]
