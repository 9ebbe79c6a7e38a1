"""SOP citations for bench recommendations, over the example lab documents."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.documents_helpers import example_folder
from tracseq_dagster.documents.pipeline import index_folder
from tracseq_dagster.documents.qa import DocumentQA
from tracseq_dagster.documents.sop_citations import RECOMMENDATION_QUESTIONS, SopCitations

SOP = "SOP-014-nucleic-acid-extraction.pdf"


@pytest.fixture(scope="module")
def qa(tmp_path_factory: pytest.TempPathFactory) -> DocumentQA:
    root = tmp_path_factory.mktemp("sop")
    index, embedder, _ = index_folder(example_folder(root), lake_root=root / "lake", lancedb_uri=root / "db", in_process=True)
    return DocumentQA(index, embedder, None)


def test_freeze_thaw_and_storage_recommendations_cite_the_sop_page(qa: DocumentQA) -> None:
    citations = SopCitations(qa)
    freeze_thaw = citations.for_kind("freeze_thaw_cycles")
    assert freeze_thaw and freeze_thaw[0].citation == f"{SOP}, p. 2"
    assert "at most three freeze-thaw cycles" in freeze_thaw[0].text
    storage = citations.for_kind("storage_temp_deviation_c")
    assert storage[0].citation == f"{SOP}, p. 2" and "-20 C in freezer FRZ-03" in storage[0].text
    concentration = citations.for_kind("log_concentration")
    assert any(c.citation == f"{SOP}, p. 3" and "10 ng/uL" in c.text for c in concentration)
    assert all(c.file_name.startswith("SOP-") for kind in RECOMMENDATION_QUESTIONS for c in citations.for_kind(kind))
    assert set(freeze_thaw[0].as_dict()) == {"citation", "file_name", "page_start", "page_end", "text"}


def test_looked_up_once_per_kind_and_index_version(qa: DocumentQA, monkeypatch: pytest.MonkeyPatch) -> None:
    citations = SopCitations(qa)
    searched: list[str] = []
    original = qa.search
    monkeypatch.setattr(qa, "search", lambda question, **kw: searched.append(question) or original(question, **kw))
    first = citations.for_kind("freeze_thaw_cycles")
    assert citations.for_kind("freeze_thaw_cycles") is first and citations.for_kind("max_temp_deviation_c")
    assert len(searched) == 2
    assert citations.for_kind("no_such_kind") == () and len(searched) == 2
    # Kinds that lead to the same action share a question: looked up once for all of them.
    assert citations.for_kind("storage_temp_deviation_c") == citations.for_kind("max_temp_deviation_c")
    assert len(searched) == 2


def test_without_documents_or_evidence_there_are_no_citations(tmp_path: Path, qa: DocumentQA) -> None:
    from tracseq_dagster.documents.qa import open_index

    empty = DocumentQA(open_index(str(tmp_path / "empty"), qa.embedder), qa.embedder, None)
    assert SopCitations(empty).for_kind("freeze_thaw_cycles") == ()
    # A kind whose question the SOPs do not answer cites nothing rather than the nearest passage.
    assert SopCitations(qa).for_kind("transit_time_hours") == ()
