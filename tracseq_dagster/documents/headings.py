"""Which of a PDF's "titles" are headings, and the heading path above each passage.

unstructured's fast strategy calls a Title any short line set apart from its neighbours: on
real manuals that is a heading, but also a line of code (``names(x)[3] <- "Three"``), a table
cell ("CARD32", "Code"), a bullet ("| numeric literals;") or the end of a broken sentence
("arguments to a function."). Every Title starts a new chunk and becomes the section of the
passages after it, so on the benchmark's manuals most chunks were a line or two long and
carried a meaningless section. ``is_heading`` keeps the titles that read as headings: a
numbered one ("2.6 Comments", "Chapter 3", "A.3.1 BLAS"), or a short capitalised phrase
without sentence or code punctuation; the others are passage text.

``HeadingPath`` follows the numbering to give each passage the path of headings above it
("4 Statements > 4.7 Check statement"): the question's words are often those of a parent
heading, not of the passage or its own heading.
"""

from __future__ import annotations

import re

MAX_HEADING_WORDS = 10
_NUMBERED = re.compile(r"^(?:(?:chapter|appendix|part|section)\s+)?([A-Z]|\d+)((?:\.\d+)*)\.?(?:\s+|$)", re.IGNORECASE)
_CODE_OR_SENTENCE = re.compile(r"[|{}<>=;\[\]\\$#@*`]|<-|::=|\(.*\)|[.,:;]$")


def heading_level(text: str) -> int | None:
    """1 for "3 Expressions" or "Chapter 3", 2 for "3.4 Set expressions", ...; None when unnumbered."""
    match = _NUMBERED.match(text.strip())
    if not match:
        return None
    rest = text.strip()[match.end() :]
    first = match.group(1)
    if first.isalpha() and not (rest and rest[0].isupper()) and not re.match(r"(?i)appendix", text.strip()):
        return None  # "A word" is not section A; "A.3 BLAS" and "Appendix B" are
    return 1 + match.group(2).count(".")


def is_heading(text: str) -> bool:
    """A title that reads as a heading, not a line of code, a table cell, a bullet or a sentence end."""
    text = " ".join(text.split())
    words = text.split()
    if not words or len(words) > MAX_HEADING_WORDS or len(text) < 3:
        return False
    if heading_level(text) is not None and any(w[:1].isalpha() for w in words[1:] or words):
        return not re.search(r"[|{}<>=;`]|<-", text)
    if _CODE_OR_SENTENCE.search(text):
        return False
    letters = sum(ch.isalpha() for ch in text)
    return text[0].isupper() and letters >= 0.6 * len(text.replace(" ", "")) and not text.isupper()


class HeadingPath:
    """The headings above the current position, outermost first, by their numbering."""

    def __init__(self) -> None:
        self._path: list[tuple[int, str]] = []  # (level, heading)

    def enter(self, heading: str) -> None:
        heading = " ".join(heading.split())
        level = heading_level(heading)
        if level is None:  # an unnumbered heading sits under the last numbered one, beside earlier unnumbered ones
            numbered = [(lvl, h) for lvl, h in self._path if heading_level(h) is not None]
            level = (numbered[-1][0] if numbered else 0) + 1
            self._path = numbered
        self._path = [(lvl, h) for lvl, h in self._path if lvl < level] + [(level, heading)]

    @property
    def path(self) -> str:
        return " > ".join(h for _, h in self._path)
