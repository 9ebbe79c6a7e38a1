"""Refusal evidence from words: the rare terms of a question covered by its best passages.

Hand-made passages and a small chunk collection, so each decision is pinned: a question whose
rarest word is in no passage is refused even when a passage is close in meaning; one whose
words are all there is answered; common words weigh almost nothing. The calibration itself
(DEFAULT_MIN_COVERAGE on real manuals) is benchmarks/rag_eval.py's.
"""

from __future__ import annotations

import pytest

from tests.documents_helpers import example_folder
from tracseq_dagster.documents.answering import NOT_FOUND_TEXT, answer_question
from tracseq_dagster.documents.evidence import (
    COMMON_WORD_WEIGHT,
    DEFAULT_MIN_COVERAGE,
    TermStatistics,
    common_english_words,
    coverage,
    judge,
    stem,
    terms,
)
from tracseq_dagster.documents.retrieval import Passage

CHUNKS = [
    "Reading fixed-width files: read.fwf takes a vector of field widths and reads each line.",
    "Spreadsheet-like data: read.table reads a file into a data frame; the file has one line per row.",
    "Connections: a file connection is opened with file() and closed with close().",
    "Binary files: readBin and writeBin read and write binary data on a connection.",
    "Data frames hold the columns of a data set; a data frame is a list of columns.",
]
STATISTICS = TermStatistics.from_texts(CHUNKS)


def passage(text: str, similarity: float = 0.6, section: str = "") -> Passage:
    return Passage(
        "c1", "/docs/R-data.pdf", "R-data.pdf", "manual", "R Data Import/Export", section, 3, 3, text, 0.03, similarity
    )


def test_terms_are_normalised_content_words_with_light_stemming() -> None:
    assert terms("How do I read the ﬁles, in fixed columns?") == ["read", "file", "fix", "column"]
    assert terms("How fast and how long are tubes spun?") == ["tube", "spun"]  # the quantity asked for is a number
    assert [stem(w) for w in ("paths", "path", "closed", "close", "matches", "libraries", "class")] == [
        "path",
        "path",
        "clos",
        "clos",
        "match",
        "library",
        "class",
    ]
    assert terms("asn1_strerror and read.fwf") == ["asn1_strerror", "read.fwf"]  # identifiers stay whole
    # A possessive ending is no term ("GLPK's" once made "s", held by most chunks), nor is "whose".
    assert terms("GLPK’s routines and the file's name, whose end") == ["glpk", "routin", "file", "name", "end"]
    assert terms("It's the users' files") == ["user", "file"]


def test_a_term_in_no_chunk_weighs_most_and_one_in_every_chunk_least() -> None:
    assert STATISTICS.chunks == len(CHUNKS)
    assert STATISTICS.idf("parquet") > STATISTICS.idf("read.fwf") > STATISTICS.idf("data") > 0
    assert STATISTICS.frequency["file"] == 4


def test_general_english_words_weigh_a_quarter_of_specialised_terms() -> None:
    common = common_english_words()
    assert {"require", "located", "kind", "read", "file"} <= common
    assert not {"parquet", "cuda", "pairlist", "fortran"} & common  # split into word pieces by MiniLM's tokenizer
    # Same chunk frequency (none), different weight: what the question asks about weighs most.
    assert STATISTICS.weight("located") == pytest.approx(COMMON_WORD_WEIGHT * STATISTICS.weight("parquet"))
    plain = TermStatistics.from_texts(CHUNKS, common=frozenset())
    assert plain.weight("located") == plain.weight("parquet") == plain.idf("locat")
    # A small collection: the passage misses a common word of the question, not its subject.
    share, missing = coverage("Where is readBin located?", [passage(CHUNKS[3])], STATISTICS)
    assert missing == ("locat",) and share >= DEFAULT_MIN_COVERAGE
    assert coverage("Where is readBin located?", [passage(CHUNKS[3])], plain)[0] < DEFAULT_MIN_COVERAGE


def test_coverage_is_the_idf_weighted_share_of_question_terms_in_the_best_passages() -> None:
    best = [passage(CHUNKS[0]), passage(CHUNKS[1])]
    share, missing = coverage("How do I read fixed-width files with read.fwf?", best, STATISTICS)
    assert (share, missing) == (1.0, ())
    share, missing = coverage("How do I read a Parquet file into a data frame?", best, STATISTICS)
    assert missing == ("parquet",)
    weights = {w: STATISTICS.weight(w) for w in ("read", "parquet", "file", "data", "frame")}
    assert share == pytest.approx(1 - weights["parquet"] / sum(weights.values()))
    assert share < DEFAULT_MIN_COVERAGE
    # Only the best passages count: the same words further down do not cover the question.
    assert coverage("readBin", [passage(CHUNKS[0])] * 5 + [passage(CHUNKS[3])], STATISTICS)[0] == 0.0
    # A question of stop words only has nothing to miss.
    assert coverage("What is it?", best, STATISTICS) == (1.0, ())


def test_the_section_heading_counts_as_passage_words() -> None:
    plain = passage("read.fwf takes a vector of widths.")
    assert set(coverage("fixed columns read.fwf", [plain], STATISTICS)[1]) == {"column", "fix"}
    headed = passage("read.fwf takes a vector of widths.", section="Fixed columns")
    assert coverage("fixed columns read.fwf", [headed], STATISTICS)[1] == ()


def test_judge_refuses_on_either_piece_of_evidence_and_says_which() -> None:
    close_but_uncovered = judge("How do I read a Parquet file?", [passage(CHUNKS[1], 0.7)], STATISTICS, min_similarity=0.18)
    assert close_but_uncovered.weak and close_but_uncovered.similarity == 0.7
    assert close_but_uncovered.reason == "no passage mentions parquet"
    covered_but_far = judge("read.fwf widths", [passage(CHUNKS[0], 0.1)], STATISTICS, min_similarity=0.18)
    assert covered_but_far.weak and covered_but_far.coverage == 1.0
    assert covered_but_far.reason == "no passage is close enough to the question"
    fine = judge("read.fwf widths", [passage(CHUNKS[0], 0.5)], STATISTICS, min_similarity=0.18)
    assert not fine.weak and fine.reason == ""
    assert judge("read.fwf", [], STATISTICS, min_similarity=0.18).weak
    # The caller's coverage threshold is used, both ways.
    assert not judge(
        "How do I read a Parquet file?", [passage(CHUNKS[1], 0.7)], STATISTICS, min_similarity=0.18, min_coverage=0.05
    ).weak
    assert judge("read.fwf widths", [passage(CHUNKS[0], 0.5)], STATISTICS, min_similarity=0.18, min_coverage=1.01).weak


def test_answer_question_refuses_uncovered_questions_only_when_given_the_statistics() -> None:
    passages = [passage(CHUNKS[1], 0.7)]
    refused = answer_question("How do I read a Parquet file?", passages, None, statistics=STATISTICS)
    assert (refused.mode, refused.text, refused.notice) == ("not_found", NOT_FOUND_TEXT, "Refused: no passage mentions parquet.")
    assert answer_question("How do I read a Parquet file?", passages, None).mode == "retrieval_only"  # similarity alone
    answered = answer_question("How do I read a file into a data frame?", passages, None, statistics=STATISTICS)
    assert answered.mode == "retrieval_only" and answered.citations == ["R-data.pdf, p. 3"]


def test_document_qa_uses_statistics_of_its_index_stored_by_the_ingest_and_renews_them(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from tracseq_dagster.documents import term_store
    from tracseq_dagster.documents.pipeline import index_folder
    from tracseq_dagster.documents.qa import DocumentQA

    index, embedder, _ = index_folder(
        example_folder(tmp_path), lake_root=tmp_path / "lake", lancedb_uri=tmp_path / "db", in_process=True
    )
    stored = term_store.statistics_path(index)
    assert stored is not None and stored.exists()  # counted by sync_index, at the current version
    counted = []
    monkeypatch.setattr(
        term_store.TermStatistics,
        "from_texts",
        classmethod(lambda cls, texts, common=None: counted.append(1) or TermStatistics(0, {})),
    )
    qa = DocumentQA(index, embedder, None)
    first = qa.statistics()
    assert counted == [] and first.chunks == index.count() and first.frequency  # loaded, not counted
    assert qa.statistics() is first  # and kept in memory
    assert qa.ask("Which courier firm ships our parquet flooring samples?").mode == "not_found"
    index.delete_documents([next(iter(index.documents()))])  # a new table version: the stored counts are stale
    assert term_store.load_statistics(index) is None
    renewed = qa.statistics()
    assert counted == [1] and renewed is not first
