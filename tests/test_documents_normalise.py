"""Text normalisation: what PDF text layers of real manuals contain, and what a search must meet.

The strings are the shapes found in the Debian manuals of the retrieval benchmark
(benchmarks/rag_corpus.py): ligature glyphs (glpk's graphs.pdf: "Duﬀ", "oﬀset"), pdfminer's
cid codes for TeX fonts without a ToUnicode map (gmpl.pdf: "(cid:12)rst", "(cid:13)ow"),
words hyphenated at a line end ("descrip- tion"), and soft hyphens.
"""

from __future__ import annotations

from tracseq_dagster.documents.chunking import Chunk, chunk_id
from tracseq_dagster.documents.normalise import normalise
from tracseq_dagster.documents.retrieval import fts_query


def test_ligature_glyphs_become_letters() -> None:
    assert (
        normalise("the \ufb01lter \ufb02ag is o\ufb00 in the \ufb03x and \ufb04ow")
        == "the filter flag is off in the ffix and fflow"
    )
    assert normalise("Duﬀ18") == "Duff18"  # NFKC also turns the footnote's digits plain


def test_cid_codes_of_tex_fonts_become_ligatures_only_inside_words() -> None:
    assert normalise("the (cid:12)rst minimum cost (cid:13)ow problem") == "the first minimum cost flow problem"
    assert normalise("identi(cid:12)es") == "identifies"
    # Outside a word the same slot is a math symbol (cmmi's delta): dropped, not made "ffi".
    assert normalise("x (cid:20) y and (cid:14) 3") == "x y and 3"
    assert "cid" not in normalise("(cid:80)(cid:0)")


def test_line_end_hyphenation_and_soft_hyphens_are_undone() -> None:
    assert normalise("the model descrip- tion should have") == "the model description should have"
    assert normalise("mem-\nory is released") == "memory is released"
    assert normalise("inter\u00adnational") == "international"
    # A real hyphenated pair and a suspended hyphen keep their hyphens.
    assert normalise("the built-in pre- and post-processing") == "the built-in pre- and post-processing"
    assert normalise("Set - or unset") == "Set - or unset"


def test_question_and_passage_meet_on_the_same_words() -> None:
    page = "Suﬃxes can be used to retrieve the (cid:12)rst value; see the de(cid:12)- nition"
    words = set(normalise(page).lower().replace(";", " ").split())
    assert {"suffixes", "first", "definition"} <= words
    assert set(fts_query("Suﬃxes, (cid:12)rst: de(cid:12)nition?").lower().split()) == {"suffixes", "first", "definition"}
    assert fts_query("ﬁlter (cid:13)ag") == "filter flag"


def test_citations_keep_the_original_text_and_ids_follow_the_normalisation() -> None:
    original = "The \ufb01lter descrip- tion"
    chunk = Chunk(chunk_id("d", 0, original), "d", "/docs/m.pdf", "m.pdf", "manual", "Manual", "Filters", 3, 3, 0, original)
    assert chunk.text == original  # what a citation shows
    assert chunk.search_text == "Manual / Filters\nThe filter description"  # what is embedded and searched
    assert chunk_id("d", 0, original) != chunk_id("d", 1, original) != chunk_id("e", 0, original)
