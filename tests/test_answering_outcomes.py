"""The three outcomes of ``answer_question`` decided on hand-made passages and a scripted model.

No index and no server: the passages carry the similarity to decide on, and the chat is a stub
with ``stream_chat`` (the retrieval and Ollama client paths are tested in
test_documents_retrieval.py). Each branch of the decision is pinned, with what it says.
"""

from __future__ import annotations

from collections.abc import Iterator

from tracseq_dagster.documents.answering import (
    NOT_FOUND_TEXT,
    NOT_IN_DOCUMENTS,
    answer_question,
    build_messages,
    resolve_citations,
)
from tracseq_dagster.documents.llm import OllamaUnavailable
from tracseq_dagster.documents.retrieval import DEFAULT_MIN_SIMILARITY, Passage, evidence_is_weak


def passage(
    similarity: float, page: int = 2, file_name: str = "SOP-014.pdf", text: str = "DNA extracts are stored at -20 C."
) -> Passage:
    return Passage(f"c{page}", f"/docs/{file_name}", file_name, "sop", "SOP-014", "Storage", page, page, text, 0.03, similarity)


STRONG = [passage(0.6, 2), passage(0.4, 3, text="RNA extracts are stored at -80 C.")]


class ScriptedChat:
    """Says ``pieces`` one by one, or raises ``error`` after ``fail_after`` pieces."""

    model = "llama3.2:3b"

    def __init__(self, *pieces: str, error: OllamaUnavailable | None = None, fail_after: int = 0) -> None:
        self.pieces, self.error, self.fail_after = pieces, error, fail_after
        self.asked: list[list[dict[str, str]]] = []

    def stream_chat(self, messages: list[dict[str, str]]) -> Iterator[str]:
        self.asked.append(messages)
        for number, piece in enumerate(self.pieces):
            if self.error is not None and number == self.fail_after:
                raise self.error
            yield piece
        if self.error is not None:
            raise self.error


def test_weak_evidence_is_refused_before_the_model_is_asked() -> None:
    chat = ScriptedChat("anything")
    weak = [passage(DEFAULT_MIN_SIMILARITY - 0.01), passage(0.05, 3)]
    answer = answer_question("Where is the cafeteria?", weak, chat)  # type: ignore[arg-type]
    assert (answer.mode, answer.text, answer.passages, answer.citations, answer.model) == (
        "not_found",
        NOT_FOUND_TEXT,
        weak,
        [],
        None,
    )
    assert chat.asked == []
    assert answer_question("q", [], chat).mode == "not_found"  # type: ignore[arg-type]
    assert answer.question == "Where is the cafeteria?"
    # The caller's threshold replaces the calibrated one, both ways.
    assert answer_question("q", weak, None, min_similarity=0.1).mode == "retrieval_only"
    assert answer_question("q", STRONG, None, min_similarity=0.7).mode == "not_found"


def test_evidence_is_the_best_passage_not_the_first() -> None:
    assert not evidence_is_weak([passage(0.01), passage(0.5, 3)])
    assert evidence_is_weak([passage(0.1), passage(0.17, 3)])


def test_a_generated_answer_resolves_its_markers_to_file_and_page() -> None:
    chat = ScriptedChat("DNA extracts are stored ", "at -20 C [1]. RNA at -80 C [2, 1].")
    streamed: list[str] = []
    answer = answer_question("Where are extracts stored?", STRONG, chat, on_token=streamed.append)  # type: ignore[arg-type]
    assert answer.mode == "generated" and answer.model == "llama3.2:3b" and answer.notice is None
    assert (answer.question, answer.passages) == ("Where are extracts stored?", STRONG)
    assert (
        answer.text
        == "DNA extracts are stored at -20 C [SOP-014.pdf, p. 2]. RNA at -80 C [SOP-014.pdf, p. 3; SOP-014.pdf, p. 2]."
    )
    assert answer.citations == ["SOP-014.pdf, p. 2", "SOP-014.pdf, p. 3"]
    assert streamed == list(chat.pieces)
    assert chat.asked == [build_messages("Where are extracts stored?", STRONG)]


def test_an_answer_without_citations_says_so() -> None:
    answer = answer_question("How?", STRONG, ScriptedChat("Extracts are kept cold."))  # type: ignore[arg-type]
    assert (answer.mode, answer.citations, answer.question, answer.passages) == ("generated", [], "How?", STRONG)
    assert answer.notice == "The model cited no passage; check the sources below before relying on this answer."


def test_the_model_saying_not_in_documents_or_nothing_is_a_refusal() -> None:
    for pieces in [(NOT_IN_DOCUMENTS,), ("The passages say: ", NOT_IN_DOCUMENTS), ("  ", "\n"), ()]:
        answer = answer_question("Is it?", STRONG, ScriptedChat(*pieces))  # type: ignore[arg-type]
        assert (answer.mode, answer.text, answer.model, answer.citations) == ("not_found", NOT_FOUND_TEXT, "llama3.2:3b", []), (
            pieces
        )
        assert (answer.question, answer.passages) == ("Is it?", STRONG)


def test_an_unreachable_model_gives_the_passages_with_one_line_and_the_fix() -> None:
    down = OllamaUnavailable("Ollama is not reachable at http://127.0.0.1:9", "start it with `ollama serve`")
    for fail_after in (0, 1):  # before the first token, or half-way through the answer
        answer = answer_question("Where?", STRONG, ScriptedChat("DNA ", "extracts", error=down, fail_after=fail_after))  # type: ignore[arg-type]
        assert (answer.mode, answer.question, answer.passages) == ("retrieval_only", "Where?", STRONG)
        assert (
            answer.notice
            == "No generated answer: Ollama is not reachable at http://127.0.0.1:9. Fix: start it with `ollama serve`"
        )
        assert answer.citations == ["SOP-014.pdf, p. 2", "SOP-014.pdf, p. 3"]
        assert (
            answer.text
            == "- SOP-014.pdf, p. 2: DNA extracts are stored at -20 C.\n- SOP-014.pdf, p. 3: RNA extracts are stored at -80 C."
        )
    off = answer_question("Where?", STRONG, None)
    assert (off.mode, off.question, off.passages) == ("retrieval_only", "Where?", STRONG)
    assert off.notice == "No generated answer: generation is turned off (--no-generate)."
    long = [passage(0.5, text="x" * 299 + "yz")]  # each passage shows its first 300 characters
    assert answer_question("q", long, None).text == "- SOP-014.pdf, p. 2: " + "x" * 299 + "y"


def test_markers_out_of_range_are_dropped() -> None:
    text, cited = resolve_citations("Stored cold [3]. At -20 C [1, 7].", STRONG)
    assert (text, cited) == ("Stored cold . At -20 C [SOP-014.pdf, p. 2].", ["SOP-014.pdf, p. 2"])
