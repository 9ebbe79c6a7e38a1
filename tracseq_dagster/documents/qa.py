"""Question answering over the index: what ``tracseq ask`` and the ``/ask`` service share."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from tracseq_dagster.documents.answering import Answer, answer_question
from tracseq_dagster.documents.embedding import Embedder, make_embedder
from tracseq_dagster.documents.evidence import TermStatistics
from tracseq_dagster.documents.index import DocumentIndex, table_name_for
from tracseq_dagster.documents.learned_rerank import learned_rerank
from tracseq_dagster.documents.llm import OllamaChat
from tracseq_dagster.documents.rerank import CANDIDATES
from tracseq_dagster.documents.retrieval import DEFAULT_MIN_SIMILARITY, DEFAULT_TOP_K, Filters, Passage, retrieve
from tracseq_dagster.documents.term_store import index_statistics


def open_index(uri: str, embedder: Embedder) -> DocumentIndex:
    """The chunk table of ``embedder`` in the LanceDB database at ``uri`` (created if missing)."""
    return DocumentIndex(uri, table_name_for(embedder.name), embedder_dimensions(embedder))


def embedder_dimensions(embedder: Embedder) -> int:
    """Known without loading the model when the embedder says (MiniLM); otherwise by embedding a word."""
    known = getattr(embedder, "dimensions", None)
    return int(known) if known else int(embedder.embed_query("dimensions").shape[0])


@dataclass
class DocumentQA:
    index: DocumentIndex
    embedder: Embedder
    chat: OllamaChat | None
    min_similarity: float = DEFAULT_MIN_SIMILARITY
    _statistics: tuple[int, TermStatistics] | None = field(default=None, repr=False)

    def statistics(self) -> TermStatistics:
        """The index's term statistics (evidence.py): once per table version, stored by the ingest (term_store.py)."""
        version = self.index.version
        if self._statistics is None or self._statistics[0] != version:
            self._statistics = (version, index_statistics(self.index))
        return self._statistics[1]

    @classmethod
    def open(
        cls,
        lancedb_uri: str,
        *,
        embedder: str = "minilm",
        ollama_host: str | None = None,
        model: str | None = None,
        num_ctx: int | None = None,
        timeout_s: float | None = None,
        generate: bool = True,
        min_similarity: float = DEFAULT_MIN_SIMILARITY,
    ) -> DocumentQA:
        chat = None
        if generate:
            chat = OllamaChat()
            for name, value in (("host", ollama_host), ("model", model), ("num_ctx", num_ctx), ("timeout_s", timeout_s)):
                if value is not None:
                    setattr(chat, name, value)
        vectors = make_embedder(embedder, ollama_host=ollama_host)
        return cls(open_index(lancedb_uri, vectors), vectors, chat, min_similarity)

    def search(self, question: str, *, top_k: int = DEFAULT_TOP_K, filters: Filters | None = None) -> list[Passage]:
        """Hybrid retrieval of ``rerank.CANDIDATES`` passages, re-ordered by the trained reranker (learned_rerank.py).

        The trained one, not rerank.py's coverage score, for its worst case: on the held-out
        real questions the coverage score found the right page first for 0.759 of them (MRR@10
        0.862), the trained model for 0.862 (0.931); on the second, independent held-out set
        the coverage score did better (1.000 against 0.842, MRR@10 1.000 against 0.921). Over
        both sets they tie at hit@1 (41 of 48 each); the trained model's worst split is 0.842 /
        0.917, the coverage score's 0.759 / 0.862 (BENCHMARKS.md).
        """
        candidates = retrieve(self.index, self.embedder, question, top_k=max(top_k, CANDIDATES), filters=filters)
        return learned_rerank(question, candidates, self.statistics())[:top_k]

    def ask(
        self,
        question: str,
        *,
        top_k: int = DEFAULT_TOP_K,
        filters: Filters | None = None,
        on_token: Callable[[str], None] | None = None,
    ) -> Answer:
        passages = self.search(question, top_k=top_k, filters=filters)
        return answer_question(
            question,
            passages,
            self.chat,
            min_similarity=self.min_similarity,
            on_token=on_token,
            statistics=self.statistics(),
            verify=True,
        )
