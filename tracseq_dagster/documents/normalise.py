"""Text as people type it: what is indexed and what is searched, made comparable.

PDF text layers keep the typography of the page. LaTeX and Texinfo manuals set "fi", "fl",
"ff", "ffi" and "ffl" as single ligature glyphs (U+FB00-FB04), so a full-text search for
"filter" misses every "ﬁlter"; TeX fonts without a ToUnicode map come out of pdfminer as
``(cid:12)`` for "fi" and ``(cid:13)`` for "fl" (the OT1 encoding's slots); words broken at
the end of a line keep their hyphen ("descrip- tion" once the lines are joined); soft
hyphens (U+00AD) sit invisibly inside words. ``normalise`` undoes all of these, the same way
for passages before they are embedded and full-text indexed and for questions before they
are searched, so both sides meet on the same words. The passage's original text is kept
for citations (``Chunk.text``): people check a citation against the page.

NFKC does the ligatures and other compatibility forms (full-width letters, non-breaking
spaces, superscript digits). What it does not know (cid codes, line-end hyphens, soft
hyphens) is done here, before it.
"""

from __future__ import annotations

import re
import unicodedata

# Bumped whenever ``normalise`` changes what it returns: chunk ids include it, so an index
# built with an older normalisation is re-embedded instead of mixing the two.
NORMALISATION_VERSION = 1

SOFT_HYPHEN = "\u00ad"
# TeX's OT1 text encoding puts the ligatures at these slots; pdfminer reports a glyph of a
# font without a ToUnicode map as "(cid:<slot>)". The same slots hold math symbols in TeX's
# math fonts (cid 14 is a delta in cmmi), so a code becomes a ligature only inside a word.
_CID_LIGATURES = {"11": "ff", "12": "fi", "13": "fl", "14": "ffi", "15": "ffl"}
_CID_IN_WORD = re.compile(r"(?<=[A-Za-z])\(cid:(1[1-5])\)|\(cid:(1[1-5])\)(?=[a-z])")
_OTHER_CID = re.compile(r"\(cid:\d+\)")
# A lowercase word part, a hyphen, a line break or the space that replaced it, and a
# lowercase continuation: one word broken by the typesetter. "pre- and post-processing"
# keeps its hyphen (the continuation is a conjunction).
_BROKEN_AT_LINE_END = re.compile(r"(?<=[a-z])-(?:[ \t]*\n[ \t]*| )(?=[a-z])(?!(?:and|or|to|nor|und)\b)")
_SPACES = re.compile(r"[ \t\u00a0]+")


def _cid(match: re.Match[str]) -> str:
    return _CID_LIGATURES[match.group(1) or match.group(2)]


def normalise(text: str) -> str:
    """``text`` with ligatures, cid codes, soft hyphens and line-end hyphenation undone, NFKC."""
    if not text:
        return ""
    text = text.replace(SOFT_HYPHEN, "")
    text = _CID_IN_WORD.sub(_cid, text)
    text = _OTHER_CID.sub(" ", text)
    text = unicodedata.normalize("NFKC", text)
    text = _BROKEN_AT_LINE_END.sub("", text)
    return _SPACES.sub(" ", text).strip()
