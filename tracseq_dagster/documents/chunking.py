"""Elements into chunks: bounded by titles, each with its page span, section and a stable id.

unstructured's ``chunk_by_title`` starts a chunk at every title and splits long sections;
each chunk keeps its original elements, whose page numbers give the chunk's first and last
page (the citation). The id is a hash of the document's content hash, the chunk's position
and its text, so the same bytes always yield the same ids: re-indexing an unchanged
document matches every row and writes nothing.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tracseq_dagster.documents.headings import HeadingPath, is_heading
from tracseq_dagster.documents.normalise import NORMALISATION_VERSION, normalise
from tracseq_dagster.documents.parsing import ParsedDocument

# Chosen on the dev half of the real-document benchmark (benchmarks/rag_eval.py --sweep,
# BENCHMARKS.md): 800/600 found the right page first for 26 of 30 dev questions, 1200/900
# (about MiniLM's 256-token limit, the earlier default) for 23, 600/450 for 25 with a false
# refusal, 1600-2000 for 23-24. Smaller passages keep one fact each; MiniLM sees all of it.
MAX_CHARACTERS = 800
NEW_AFTER_CHARACTERS = 600
COMBINE_UNDER_CHARACTERS = 200


@dataclass(frozen=True)
class Chunk:
    """One passage of a document, as stored in the lake and the index."""

    chunk_id: str
    document_id: str  # content hash of the file (the Dagster partition key)
    source: str  # path of the file in the landing folder
    file_name: str
    document_type: str
    title: str
    section: str
    page_start: int
    page_end: int
    chunk_index: int
    text: str

    @property
    def pages(self) -> str:
        return f"p. {self.page_start}" if self.page_start == self.page_end else f"pp. {self.page_start}-{self.page_end}"

    @property
    def search_text(self) -> str:
        """What is embedded and full-text indexed: the passage with its title and section, normalised.

        A passage often does not repeat the words of its heading ("Storage", "Centrifugation"),
        which is what questions use. Normalised (normalise.py) as questions are, so "ﬁlter"
        on the page meets "filter" in the question; ``text`` keeps the page's own spelling.
        """
        heading = " / ".join(part for part in (self.title, self.section) if part)
        return normalise(f"{heading}\n{self.text}" if heading else self.text)

    def to_record(self) -> dict[str, Any]:
        return asdict(self)


def chunk_id(document_id: str, index: int, text: str) -> str:
    """Stable per document, position and text, and the normalisation its search text went through."""
    digest = hashlib.sha256(f"{document_id}\x00{index}\x00{text}\x00n{NORMALISATION_VERSION}".encode()).hexdigest()
    return digest[:24]


def document_title(parsed: ParsedDocument) -> str:
    """The first title on the first page that has one, else the file name without suffix."""
    for element in parsed.elements:
        if type(element).__name__ == "Title" and len(element.text.strip()) > 3:
            return element.text.strip()
    return Path(parsed.path).stem


def chunk_document(
    parsed: ParsedDocument,
    *,
    document_id: str,
    source: str,
    document_type: str,
    max_characters: int = MAX_CHARACTERS,
    new_after_characters: int = NEW_AFTER_CHARACTERS,
    combine_under_characters: int = COMBINE_UNDER_CHARACTERS,
    headings_only: bool = False,
) -> list[Chunk]:
    """Chunk a parsed document; every chunk carries title, heading path, pages and a stable id.

    With ``headings_only`` the titles that do not read as headings (code lines, table cells,
    bullets: headings.is_heading) are passage text, so they neither cut a chunk nor name a
    section; the section is the heading path (headings.HeadingPath). Off by default: on the
    dev half of the real-document benchmark it found the right page first for 25 of 30
    questions against 26 without it at 800 characters, 21 against 23 at 1200 (BENCHMARKS.md).
    """
    from unstructured.chunking.title import chunk_by_title
    from unstructured.documents.elements import NarrativeText

    title = document_title(parsed)
    elements = parsed.elements
    if headings_only:
        elements = [
            NarrativeText(text=e.text, metadata=e.metadata) if type(e).__name__ == "Title" and not is_heading(e.text) else e
            for e in elements
        ]
    # Page by page: chunk_by_title's multipage_sections=False still merges small sections
    # across a page break (unstructured 0.27.32), and a citation must name the right page.
    composite = []
    for page in sorted({e.metadata.page_number for e in elements}):
        composite += chunk_by_title(
            [e for e in elements if e.metadata.page_number == page],
            max_characters=max_characters,
            new_after_n_chars=new_after_characters,
            combine_text_under_n_chars=combine_under_characters,
            include_orig_elements=True,
        )
    chunks: list[Chunk] = []
    section = ""
    path = HeadingPath()
    for element in composite:
        text = (element.text or "").strip()
        if not text:
            continue
        originals = element.metadata.orig_elements or [element]
        titles = [o.text.strip() for o in originals if type(o).__name__ == "Title" and o.text.strip() not in ("", title)]
        if titles and headings_only:  # the path at the first heading the chunk opens; the rest follow it
            path.enter(titles[0])
            section = path.path
            for heading in titles[1:]:
                path.enter(heading)
        elif titles:  # the first section the chunk opens; continuations keep the last one seen
            section = titles[0]
        pages = [o.metadata.page_number for o in originals if o.metadata.page_number is not None] or [1]
        index = len(chunks)
        chunks.append(
            Chunk(
                chunk_id=chunk_id(document_id, index, text),
                document_id=document_id,
                source=source,
                file_name=Path(source).name,
                document_type=document_type,
                title=title,
                section=section if section != title else "",
                page_start=min(pages),
                page_end=max(pages),
                chunk_index=index,
                text=text,
            )
        )
    return chunks
