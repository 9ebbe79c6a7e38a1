"""The embedding model of the document index as a Dagster resource."""

import dagster as dg
from pydantic import Field

from tracseq_dagster.documents.embedding import Embedder, make_embedder


class EmbedderResource(dg.ConfigurableResource):
    """``minilm-onnx``: all-MiniLM-L6-v2 from the PyPI package on onnxruntime, fully offline (the default;
    ``minilm`` runs the same model on torch, ``minilm-onnx-int8`` an int8 version of it).
    ``ollama:<model>``: an Ollama embedding model such as ``ollama:nomic-embed-text``, whose
    query/document prefixes are applied automatically.
    """

    spec: str = Field(default="minilm-onnx", description="minilm-onnx, minilm, minilm-onnx-int8 or ollama:<model>")
    ollama_host: str | None = Field(default=None, description="Ollama server for ollama:<model>; OLLAMA_HOST otherwise")

    def embedder(self) -> Embedder:
        return make_embedder(self.spec, ollama_host=self.ollama_host)
