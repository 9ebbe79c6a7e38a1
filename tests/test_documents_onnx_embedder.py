"""MiniLM on onnxruntime: exported from the package's weights (no hub), the same vectors as torch in float32.

The export is kept in the user's model cache (onnx_embedding.model_dir), so only the first run
on a machine pays for it.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from tests.documents_helpers import example_folder
from tracseq_dagster.documents.embedding import MiniLMEmbedder, local_spec, make_embedder
from tracseq_dagster.documents.examples import EXAMPLE_QUESTIONS
from tracseq_dagster.documents.onnx_embedding import OnnxMiniLMEmbedder, exported_model
from tracseq_dagster.documents.pipeline import index_folder
from tracseq_dagster.documents.qa import DocumentQA


def texts(n: int = 40) -> list[str]:
    """Texts of very different lengths (a few words to past the 256-word-piece limit) from the README."""
    words = (Path(__file__).resolve().parents[1] / "README.md").read_text().split()
    rng = random.Random(7)
    return [" ".join(rng.choice(words) for _ in range(rng.randint(3, 400))) for _ in range(n)]


def test_float32_onnx_vectors_equal_torchs() -> None:
    sample = texts()
    torch_vectors = MiniLMEmbedder().embed_documents(sample)
    onnx = OnnxMiniLMEmbedder()
    onnx_vectors = onnx.embed_documents(sample)
    assert onnx_vectors.shape == (len(sample), 384) and onnx_vectors.dtype == np.float32
    np.testing.assert_allclose(onnx_vectors, torch_vectors, atol=1e-5)
    question = "How many freeze-thaw cycles may an extract go through?"
    np.testing.assert_allclose(onnx.embed_query(question), MiniLMEmbedder().embed_query(question), atol=1e-5)
    # A text's vector does not depend on its batch-mates (padding is masked out of the pooling).
    np.testing.assert_allclose(onnx.embed_documents(sample[:1])[0], onnx_vectors[0], atol=1e-5)


def test_int8_vectors_stay_close_and_have_their_own_table() -> None:
    sample = texts()
    float32 = OnnxMiniLMEmbedder().embed_documents(sample)
    int8 = OnnxMiniLMEmbedder(quantized=True)
    cosine = (int8.embed_documents(sample) * float32).sum(axis=1)
    assert cosine.min() > 0.95, cosine.min()
    assert int8.name != MiniLMEmbedder().name and int8.identity != OnnxMiniLMEmbedder().identity
    assert OnnxMiniLMEmbedder().name == MiniLMEmbedder().name  # float32: the same vectors, the same table


def test_the_export_is_made_once_and_reused() -> None:
    path = exported_model()
    stamp = path.stat().st_mtime_ns
    assert exported_model() == path and path.stat().st_mtime_ns == stamp
    assert "all-MiniLM-L6-v2" in path.name and path.suffix == ".onnx"


def test_specs_build_the_variants() -> None:
    for spec in ("minilm-onnx", "minilm-onnx-int8"):
        embedder = make_embedder(spec)
        assert isinstance(embedder, OnnxMiniLMEmbedder) and local_spec(embedder) == spec
    assert local_spec(MiniLMEmbedder()) == "minilm"
    assert local_spec(make_embedder("ollama:nomic-embed-text")) is None
    with pytest.raises(ValueError, match="minilm-onnx"):
        make_embedder("minilm-fast")


def test_the_example_questions_find_their_page_with_the_onnx_embedder(tmp_path: Path) -> None:
    index, embedder, report = index_folder(example_folder(tmp_path), lake_root=tmp_path / "lake",
                                           lancedb_uri=tmp_path / "db", embedder="minilm-onnx", in_process=True)  # fmt: skip
    assert isinstance(embedder, OnnxMiniLMEmbedder) and report.chunks_embedded > 0
    qa = DocumentQA(index, embedder, None)
    first = [qa.search(q.question, top_k=5) for q in EXAMPLE_QUESTIONS]
    hits = sum(any(p.file_name == q.file_name and p.page_start <= q.page <= p.page_end for p in found)
               for q, found in zip(EXAMPLE_QUESTIONS, first, strict=True))  # fmt: skip
    assert hits == len(EXAMPLE_QUESTIONS)
