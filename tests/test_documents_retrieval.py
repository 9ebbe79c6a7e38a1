"""The LanceDB index and hybrid retrieval over the example documents, and answers through the official ollama client."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.documents_helpers import example_folder, protocol_manual
from tests.fake_ollama import FakeOllama
from tracseq_dagster.cli import app
from tracseq_dagster.documents.answering import answer_question
from tracseq_dagster.documents.embedding import MiniLMEmbedder, OllamaEmbedder, make_embedder
from tracseq_dagster.documents.examples import (
    EXAMPLE_QUESTIONS,
    SUBMISSION_SAMPLES,
    UNANSWERABLE_QUESTIONS,
    submission_form_lines,
)
from tracseq_dagster.documents.index import FTS_COLUMN, VECTOR_COLUMN, vector_matrix
from tracseq_dagster.documents.llm import OllamaChat
from tracseq_dagster.documents.pipeline import index_folder, sync_index
from tracseq_dagster.documents.prefetch import EmbeddingPrefetcher
from tracseq_dagster.documents.qa import open_index
from tracseq_dagster.documents.retrieval import Filters, evidence_is_weak, fts_query, retrieve, search_passages
from tracseq_dagster.documents.store import DocumentStore
from tracseq_dagster.documents.submission_forms import Extraction, extract_with_ollama, parse_template, submission_rows

SOP = "SOP-014-nucleic-acid-extraction.pdf"


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("rag")
    folder = example_folder(root)
    index, embedder, _ = index_folder(folder, lake_root=root / "lake", lancedb_uri=root / "lancedb", in_process=True)
    return index, embedder, root


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_hybrid_retrieval_finds_every_known_fact_on_its_page(indexed) -> None:  # type: ignore[no-untyped-def]
    index, embedder, _ = indexed
    hits = 0
    for q in EXAMPLE_QUESTIONS:
        passages = retrieve(index, embedder, q.question)
        assert len(passages) == 5
        if any(
            p.file_name == q.file_name and p.page_start <= q.page <= p.page_end and q.answer_contains in p.text for p in passages
        ):
            hits += 1
    assert hits / len(EXAMPLE_QUESTIONS) >= 0.9
    # An exact identifier is found by the full-text side of the fusion.
    top = retrieve(index, embedder, "TS-2025-000117")[0]
    assert (top.file_name, top.page_start) == ("QC-report-run-R-2025-031.pdf", 2)


def test_direct_fusion_ranks_and_scores_as_lancedb_hybrid_query_with_its_rrf_reranker(indexed) -> None:  # type: ignore[no-untyped-def]
    from lancedb.rerankers import RRFReranker

    index, embedder, _ = indexed
    questions = [q.question for q in EXAMPLE_QUESTIONS] + ["TS-2025-000117", "freezer FRZ-07 rotor"]
    for question in questions:
        vector = embedder.embed_query(question)
        mine = search_passages(index, vector, question, top_k=10)
        theirs = (
            index.table.search(query_type="hybrid", vector_column_name=VECTOR_COLUMN, fts_columns=FTS_COLUMN)
            .vector(vector)
            .text(fts_query(question))
            .rerank(RRFReranker())
            .distance_type("cosine")
            .limit(30)
            .to_arrow()
            .slice(0, 10)
        )
        assert [p.chunk_id for p in mine] == theirs.column("chunk_id").to_pylist(), question
        assert np.allclose([p.score for p in mine], theirs.column("_relevance_score").to_pylist(), atol=1e-6)
        stored = vector_matrix(theirs)
        assert np.allclose([p.similarity for p in mine], stored @ vector, atol=1e-6)
    # No words to search for: vector search alone, scored by cosine similarity.
    only_vector = search_passages(index, embedder.embed_query("?!"), "?!", top_k=3)
    assert len(only_vector) == 3 and all(p.score == p.similarity for p in only_vector)
    assert [p.similarity for p in only_vector] == sorted((p.similarity for p in only_vector), reverse=True)


def test_minilm_query_path_equals_the_batch_encoder_and_stops_at_256_word_pieces(indexed) -> None:  # type: ignore[no-untyped-def]
    _, embedder, _ = indexed
    assert embedder.load() == 0.0  # loaded once per process, by the fixture
    assert embedder._model().max_seq_length == 256
    texts = ["Where are DNA extracts stored?", "freezer " * 400, "TS-2025-000117"]
    batch = embedder.embed_documents(texts)
    assert batch.dtype == np.float32 and batch.shape == (3, 384)
    assert np.allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-5)
    for text, row in zip(texts, batch):
        assert np.allclose(embedder.embed_query(text), row, atol=1e-5), text
    assert np.allclose(embedder.embed_documents(["freezer " * 800])[0], batch[1], atol=1e-5)  # cut at 256
    assert not np.allclose(embedder.embed_documents(["freezer " * 100])[0], batch[1], atol=1e-3)
    assert embedder.embed_documents([]).shape == (0, 384)


def test_a_changed_document_embeds_only_its_changed_chunks(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    manual = protocol_manual(folder)
    (folder / "other.txt").write_text("Freezer FRZ-09 holds the plasma aliquots at -80 C.")
    _, embedder, first = index_folder(folder, lake_root=tmp_path / "lake", lancedb_uri=tmp_path / "db")
    assert first.chunks_reused == 0 and first.chunks_embedded == first.rows >= 6
    assert set(first.seconds) >= {"model_load", "embed", "write", "indexes"}

    manual.write_text(manual.read_text().replace("reagent lot L-003", "reagent lot L-303"))
    _, _, second = index_folder(folder, lake_root=tmp_path / "lake", lancedb_uri=tmp_path / "db")
    assert len(second.written) == 1 and second.unchanged == 1 and second.removed
    assert second.chunks_embedded == 1 and second.chunks_reused == first.rows - 2  # one changed, other.txt untouched
    rows = open_index(str(tmp_path / "db"), embedder).table.to_arrow()
    texts = rows.column("search_text").to_pylist()
    assert rows.num_rows == first.rows and any("L-303" in t for t in texts) and not any("L-003" in t for t in texts)
    assert np.allclose(vector_matrix(rows), embedder.embed_documents(texts), atol=1e-5)  # reused = recomputed


@pytest.fixture(scope="module")
def pipelined(indexed):  # type: ignore[no-untyped-def]
    """The example documents indexed again, each embedded by a worker process while the next was parsed."""
    _, _, root = indexed
    return index_folder(root / "documents", lake_root=root / "lake-pipelined", lancedb_uri=root / "db-pipelined", prefetch=True)


def test_pipelined_ingest_gives_the_sequential_chunks_and_vectors(indexed, pipelined) -> None:  # type: ignore[no-untyped-def]
    """Embedding in a worker process while parsing goes on changes nothing in the index."""
    sequential, embedder, root = indexed
    index, _, report = pipelined
    assert report.chunks_prefetched == report.rows == sequential.count() and report.chunks_embedded == 0
    assert report.seconds["model_load"] == 0.0  # everything was embedded by the worker
    columns = ["chunk_id", "document_id", "file_name", "title", "section", "page_start", "page_end", "text", FTS_COLUMN]
    mine, theirs = (i.table.to_arrow().sort_by("chunk_id") for i in (index, sequential))
    assert mine.select(columns).to_pylist() == theirs.select(columns).to_pylist()
    assert np.allclose(vector_matrix(mine), vector_matrix(theirs), atol=1e-5)
    store = DocumentStore(root / "lake-pipelined")
    assert all(store.read_vectors(d, embedder.identity) for d in store.document_ids())


def test_vectors_another_model_made_are_embedded_again_by_worker_processes(tmp_path: Path, indexed, pipelined) -> None:  # type: ignore[no-untyped-def]
    """sync_index ignores vectors stamped with another model, and embeds new documents in
    single-threaded worker processes with the vectors of the in-process path."""
    sequential, embedder, root = indexed
    lake = tmp_path / "lake"
    shutil.copytree(root / "lake-pipelined" / "documents" / "chunks", lake / "documents" / "chunks")
    store = DocumentStore(lake)
    ids = store.document_ids()
    chunks = store.read_chunks(ids[0])
    store.write_vectors(ids[0], "all-MiniLM-L6-v2 int8", [c.chunk_id for c in chunks], np.ones((len(chunks), 384), np.float32))
    assert store.read_vectors(ids[0], "all-MiniLM-L6-v2 int8") and not store.read_vectors(ids[0], embedder.identity)
    index = open_index(str(tmp_path / "db"), embedder)
    report = sync_index(store, index, embedder, set(ids), parallel_min_chunks=1)
    assert report.chunks_embedded == report.rows == sequential.count() and report.chunks_prefetched == 0
    assert report.seconds["model_load"] == 0.0  # the workers embedded everything
    assert all(store.read_vectors(d, embedder.identity) for d in ids)  # the stale file was replaced
    mine, theirs = (i.table.to_arrow().sort_by("chunk_id") for i in (index, sequential))
    assert mine.column("chunk_id").to_pylist() == theirs.column("chunk_id").to_pylist()
    assert np.allclose(vector_matrix(mine), vector_matrix(theirs), atol=1e-5)


def test_ollama_embedder_prefetches_through_the_worker_with_its_prefixes(tmp_path: Path, indexed) -> None:  # type: ignore[no-untyped-def]
    _, _, root = indexed
    shutil.copytree(root / "lake" / "documents" / "chunks", tmp_path / "lake" / "documents" / "chunks")
    store = DocumentStore(tmp_path / "lake")
    document_id = store.document_ids()[0]
    chunks = store.read_chunks(document_id)
    with FakeOllama(models=("nomic-embed-text",)) as fake:
        with EmbeddingPrefetcher(tmp_path / "lake", "ollama:nomic-embed-text", ollama_host=fake.url, workers=1) as workers:
            workers.submit(document_id)
        sent = [text for path, body in fake.requests if path == "/api/embed" for text in body["input"]]
        embedder = make_embedder("ollama:nomic-embed-text", ollama_host=fake.url)
        expected = embedder.embed_documents([c.search_text for c in chunks])
    assert workers.report.chunks == len(chunks) and not workers.report.errors
    assert sent == [f"search_document: {c.search_text}" for c in chunks]
    vectors = store.read_vectors(document_id, embedder.identity)
    assert np.allclose(np.stack([vectors[c.chunk_id] for c in chunks]), expected)
    assert not store.read_vectors(document_id, MiniLMEmbedder().identity)


def test_small_document_batches_give_the_vectors_of_large_ones(indexed) -> None:  # type: ignore[no-untyped-def]
    """Batches of 8 (less padding, the default) and of 64 give the same vectors."""
    _, embedder, _ = indexed
    texts = [f"Step {n}: " + "centrifuge the plasma at 4000 g " * n for n in range(1, 40, 3)]
    assert embedder.batch_size == 8
    small = embedder.embed_documents(texts)
    large = MiniLMEmbedder(batch_size=64).embed_documents(texts)
    assert np.allclose(small, large, atol=1e-5)


def test_filters_by_document_type_and_file(indexed) -> None:  # type: ignore[no-untyped-def]
    index, embedder, _ = indexed
    sops = retrieve(index, embedder, "Where are extracts stored?", filters=Filters(document_type="sop"))
    assert sops and {p.document_type for p in sops} == {"sop"}
    only = retrieve(index, embedder, "freezer", filters=Filters(file_name="freezer-map.html"))
    assert only and {p.file_name for p in only} == {"freezer-map.html"}


def test_evidence_threshold_turns_away_questions_the_documents_do_not_answer(indexed) -> None:  # type: ignore[no-untyped-def]
    index, embedder, _ = indexed
    for question in UNANSWERABLE_QUESTIONS:
        assert evidence_is_weak(retrieve(index, embedder, question)), question
        answer = answer_question(question, retrieve(index, embedder, question), OllamaChat(host="http://127.0.0.1:9"))
        assert (answer.mode, answer.text) == ("not_found", "The documents do not answer this question.")
    strong = [not evidence_is_weak(retrieve(index, embedder, q.question)) for q in EXAMPLE_QUESTIONS]
    assert sum(strong) / len(strong) >= 0.9


def test_grounded_answer_streams_with_file_and_page_citations(indexed) -> None:  # type: ignore[no-untyped-def]
    index, embedder, _ = indexed
    passages = retrieve(index, embedder, "At what temperature are DNA extracts stored?")
    storage = next(i for i, p in enumerate(passages, 1) if p.file_name == SOP and p.page_start == 2)
    pieces: list[str] = []
    with FakeOllama(reply=lambda messages, fmt: f"DNA extracts are stored at -20 C in freezer FRZ-03 [{storage}].") as fake:
        answer = answer_question(
            "At what temperature are DNA extracts stored?", passages, OllamaChat(host=fake.url), on_token=pieces.append
        )
        path, request = fake.requests[-1]
    assert path == "/api/chat" and request["stream"] is True
    assert request["model"] == "llama3.2:3b" and request["options"]["num_ctx"] == 8192
    assert "freezer FRZ-07" in request["messages"][1]["content"]  # the passages are in the prompt
    assert len(pieces) > 5 and "".join(pieces).strip().endswith(f"[{storage}].")
    assert answer.mode == "generated" and answer.notice is None
    assert answer.citations == [f"{SOP}, p. 2"]
    assert answer.text == f"DNA extracts are stored at -20 C in freezer FRZ-03 [{SOP}, p. 2]."


def test_model_says_the_passages_do_not_answer(indexed) -> None:  # type: ignore[no-untyped-def]
    index, embedder, _ = indexed
    passages = retrieve(index, embedder, "Which freezer holds the RNA extracts?")
    with FakeOllama(reply=lambda m, f: "NOT_IN_DOCUMENTS") as fake:
        answer = answer_question("Which freezer holds the RNA extracts?", passages, OllamaChat(host=fake.url))
    assert answer.mode == "not_found"


@pytest.mark.parametrize("failure", ["model_not_pulled", "server_down", "timeout", "server_error"])
def test_without_ollama_the_answer_is_retrieval_only_with_one_line_and_the_fix(indexed, failure: str) -> None:  # type: ignore[no-untyped-def]
    index, embedder, _ = indexed
    passages = retrieve(index, embedder, "Which rotor does the centrifuge use?")
    expected = {
        "model_not_pulled": "model llama3.2:3b is not pulled on the Ollama server",
        "server_down": "Ollama is not reachable at",
        "timeout": "did not answer within 0.5 s",
        "server_error": "failed: boom",
    }[failure]
    with FakeOllama(models=() if failure == "model_not_pulled" else ("llama3.2:3b",)) as fake:
        host = fake.url if failure != "server_down" else f"http://127.0.0.1:{_free_port()}"
        fake.delay_s = 2.0 if failure == "timeout" else 0.0
        fake.fail_with = (500, "boom") if failure == "server_error" else None
        answer = answer_question("Which rotor does the centrifuge use?", passages, OllamaChat(host=host, timeout_s=0.5))
    assert answer.mode == "retrieval_only"
    assert answer.notice is not None and "\n" not in answer.notice and expected in answer.notice, answer.notice
    assert "`ollama pull" in answer.notice
    assert answer.citations[0] == passages[0].citation and f"{SOP}, p. 4" in answer.citations
    assert answer.passages == passages


def test_ollama_embedder_sends_nomic_prefixes_and_normalises() -> None:
    with FakeOllama(models=("nomic-embed-text",)) as fake:
        embedder = make_embedder("ollama:nomic-embed-text", ollama_host=fake.url)
        assert isinstance(embedder, OllamaEmbedder)
        documents = embedder.embed_documents(["freezer FRZ-03", "rotor R-77"])
        query = embedder.embed_query("which freezer")
        sent = [body["input"] for path, body in fake.requests if path == "/api/embed"]
    assert sent == [["search_document: freezer FRZ-03", "search_document: rotor R-77"], ["search_query: which freezer"]]
    assert documents.shape == (2, 64) and np.allclose(np.linalg.norm(documents, axis=1), 1.0)
    assert query.shape == (64,)


def test_submission_forms_template_parser_and_ollama_structured_output() -> None:
    fields, rows = submission_form_lines()
    extraction = parse_template("TracSeq Sample Submission Form\n" + "\n".join(fields + rows))
    assert extraction.fields["principal_investigator"] == "Prof. Lena Okafor"
    assert extraction.fields["project_id"] == "PRJ-0042" and extraction.fields["date_submitted"] == "2025-03-04"
    table = submission_rows(extraction, document_id="d", source="form.pdf")
    assert list(table["sample_id"]) == [s[0] for s in SUBMISSION_SAMPLES]
    assert (table["violations"] == "").all() and table["volume_ul"].tolist() == [50.0, 45.0, 30.0, 25.0]

    bad = submission_rows(
        Extraction(
            "template",
            {"project_id": "P1"},
            [
                {"sample_id": "TS-25-1", "sample_type": "plasma", "volume_ul": 0.0, "concentration_ng_ul": -1.0},
                {"sample_id": "TS-2025-000001", "sample_type": "rna", "volume_ul": 10.0, "concentration_ng_ul": 5.0},
                {"sample_id": "TS-2025-000001", "sample_type": "RNA", "volume_ul": 10.0, "concentration_ng_ul": 5.0},
            ],
        ),
        document_id="d",
        source="x",
    )
    problems = bad["violations"].tolist()
    assert "does not match" in problems[0] and "not one of" in problems[0] and "volume_ul 0 must be > 0" in problems[0]
    assert "concentration_ng_ul -1 must be >= 0" in problems[0]
    assert problems[1] == "" and bad["sample_type"][1] == "RNA"  # case is normalised as the export parser does
    assert "appears twice" in problems[2]

    reply = {
        "submitter": "Maria Lindqvist",
        "principal_investigator": "Dr. Samuel Berg",
        "project_id": "PRJ-0077",
        "requested_service": "poly-A RNA-seq",
        "date_submitted": "2025-04-02",
        "samples": [{"sample_id": "TS-2025-000201", "sample_type": "RNA", "volume_ul": 40, "concentration_ng_ul": 120}],
    }
    with FakeOllama(reply=lambda m, fmt: json.dumps(reply) if isinstance(fmt, dict) else "not json") as fake:
        extracted = extract_with_ollama("Hello, I am sending RNA samples ...", OllamaChat(host=fake.url))
        body = fake.requests[-1][1]
    assert body["format"]["properties"]["samples"]["type"] == "array" and body["stream"] is False
    rows = submission_rows(extracted, document_id="e", source="mail.txt")
    assert rows.loc[0, "principal_investigator"] == "Dr. Samuel Berg" and rows.loc[0, "violations"] == ""


def test_cli_ask_streams_an_answer_and_falls_back_without_a_traceback(indexed) -> None:  # type: ignore[no-untyped-def]
    _, _, root = indexed
    runner = CliRunner()
    question = "Which rotor does the centrifuge use?"
    down = runner.invoke(
        app, ["ask", question, "--lancedb", str(root / "lancedb")], env={"OLLAMA_HOST": f"127.0.0.1:{_free_port()}"}
    )
    assert down.exit_code == 0, down.output
    assert "Traceback" not in down.output and down.exception is None
    assert "No generated answer: Ollama is not reachable" in down.output and "ollama pull llama3.2:3b" in down.output
    assert f"{SOP}, p. 4" in down.output
    with FakeOllama(reply=lambda m, f: "The centrifuge uses rotor R-77 [1].") as fake:
        up = runner.invoke(app, ["ask", question, "--lancedb", str(root / "lancedb"), "--json"], env={"OLLAMA_HOST": fake.url})
    answer = json.loads(up.output)
    assert answer["mode"] == "generated" and answer["citations"] == [answer["passages"][0]["citation"]]
    empty = runner.invoke(app, ["ask", question, "--lancedb", str(root / "empty")])
    assert empty.exit_code == 2 and "tracseq documents ingest" in empty.output
