"""Where parsed documents live in the lake: one chunk table and one record per document.

Layout under the lake root::

    documents/chunks/<content hash>.parquet   the document's chunks (text, pages, ids)
    documents/chunks/<content hash>.json      what parsing found: source, pages, OCR pages, timings,
                                              and the identity of the parser that made the
                                              chunks (parsing.parser_identity)
    documents/vectors/<content hash>.parquet  the chunks' vectors, embedded while the next
                                              document was parsed (prefetch.py), with the
                                              identity of the model that made them
    documents/submission_samples.parquet      submission_metadata's validated table
    documents/extractions/<content hash>.json Ollama's extraction of a free-form form (cached)

Like the rest of the lake it is derived from the landing folder and can be rebuilt.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from tracseq_dagster.documents.chunking import Chunk
from tracseq_dagster.documents.index import VECTOR_COLUMN, vector_array, vector_matrix

# Schema metadata key of a vector file: which embedding model (and variant) made its vectors.
EMBEDDER_KEY = b"tracseq.embedder"


def _atomic_write(path: Path, write) -> None:  # type: ignore[no-untyped-def]
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(handle)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


class DocumentStore:
    def __init__(self, lake_root: str | Path) -> None:
        self.root = Path(lake_root) / "documents"

    def chunks_path(self, document_id: str) -> Path:
        return self.root / "chunks" / f"{document_id}.parquet"

    def record_path(self, document_id: str) -> Path:
        return self.root / "chunks" / f"{document_id}.json"

    def vectors_path(self, document_id: str) -> Path:
        return self.root / "vectors" / f"{document_id}.parquet"

    def extraction_path(self, document_id: str) -> Path:
        return self.root / "extractions" / f"{document_id}.json"

    @property
    def submissions_path(self) -> Path:
        return self.root / "submission_samples.parquet"

    def write(self, document_id: str, chunks: list[Chunk], record: dict[str, Any]) -> None:
        frame = pd.DataFrame([c.to_record() for c in chunks], columns=list(Chunk.__dataclass_fields__))
        _atomic_write(self.chunks_path(document_id), lambda tmp: frame.to_parquet(tmp, index=False))
        _atomic_write(self.record_path(document_id), lambda tmp: Path(tmp).write_text(json.dumps(record, indent=2)))

    def read_chunks(self, document_id: str) -> list[Chunk]:
        frame = pd.read_parquet(self.chunks_path(document_id))
        return [
            Chunk(
                **cast(
                    "dict[str, Any]",
                    {k: (int(v) if k in ("page_start", "page_end", "chunk_index") else v) for k, v in row.items()},
                )
            )
            for row in frame.to_dict("records")
        ]

    def write_vectors(self, document_id: str, identity: str, chunk_ids: list[str], vectors: np.ndarray) -> None:
        """The vectors of a document's chunks, stamped with the identity of the model that made them."""
        table = pa.table({"chunk_id": pa.array(chunk_ids, pa.string()), VECTOR_COLUMN: vector_array(vectors)})
        table = table.replace_schema_metadata({EMBEDDER_KEY: identity.encode()})
        _atomic_write(self.vectors_path(document_id), lambda tmp: pq.write_table(table, tmp))

    def read_vectors(self, document_id: str, identity: str) -> dict[str, np.ndarray]:
        """chunk id -> vector, or nothing when there are none or another model made them."""
        path = self.vectors_path(document_id)
        if not path.exists():
            return {}
        table = pq.read_table(path)
        if (table.schema.metadata or {}).get(EMBEDDER_KEY) != identity.encode():
            return {}
        return dict(zip(table.column("chunk_id").to_pylist(), vector_matrix(table)))

    def read_record(self, document_id: str) -> dict[str, Any]:
        return json.loads(self.record_path(document_id).read_text())

    def parsed_by_current(self, document_id: str, pdf_engine: str | None = None) -> bool:
        """True when the document's chunks come from the parser its file type gets now.

        The parser identity is stored in the record, as the embedder's is with vectors; a
        record without one is from before it was stored (unstructured). False when there is
        no record: the document must be parsed.
        """
        from tracseq_dagster.documents.parsing import parser_identity, recorded_parser

        try:
            record = self.read_record(document_id)
        except (OSError, ValueError):
            return False
        return recorded_parser(record) == parser_identity(str(record.get("file_type", "")), pdf_engine)

    def documents_by_source(self) -> dict[str, list[str]]:
        """Source file -> ids of the stored documents parsed from it (an older version and the new one)."""
        found: dict[str, list[str]] = {}
        for document_id in self.document_ids():
            try:
                source = self.read_record(document_id).get("source")
            except (OSError, ValueError):
                continue
            if source:
                found.setdefault(str(source), []).append(document_id)
        return found

    def document_ids(self) -> list[str]:
        folder = self.root / "chunks"
        return sorted(p.stem for p in folder.glob("*.parquet")) if folder.exists() else []

    def remove(self, document_id: str) -> None:
        for path in (
            self.chunks_path(document_id),
            self.record_path(document_id),
            self.vectors_path(document_id),
            self.extraction_path(document_id),
        ):
            path.unlink(missing_ok=True)

    def write_json(self, path: Path, data: Any) -> None:
        _atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(data, indent=2)))
