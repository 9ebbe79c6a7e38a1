"""The LanceDB table of chunks: written by merge on chunk id, searchable by vector and text.

One table per embedding model (``chunks_<model>``): vectors of different models cannot be
compared, so switching the embedder builds a new table beside the old one.

Writes are per document and only when something changed. A document whose chunk ids are
all present (the same bytes) writes nothing. A new or changed one is merged on
``chunk_id``: new chunks are inserted and, in the same atomic commit, the chunks of the
same source file that are not in the new set (the old version) are deleted. Documents gone
from the landing folder are deleted by id.

Beside the vector column there is a full-text (BM25) index on ``search_text``, brought up
to date after every write; a vector ANN index is built once the table is large enough for
one to pay off (below that a flat scan is exact and fast).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from tracseq_dagster.documents.chunking import Chunk

FTS_COLUMN = "search_text"
VECTOR_COLUMN = "vector"
# A flat scan of 384-dim float32 vectors is ~1 ms per 5k rows on these cores; past this size
# an IVF index keeps retrieval under its latency budget.
ANN_MIN_ROWS = 20_000


@dataclass(frozen=True)
class WriteStats:
    inserted: int = 0
    deleted: int = 0
    skipped: bool = False  # nothing changed: no commit was made


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def sql_in(column: str, values: Iterable[str]) -> str:
    return f"{column} IN ({', '.join(_quote(v) for v in values)})"


def table_name_for(embedder_name: str) -> str:
    return "chunks_" + re.sub(r"[^a-z0-9]+", "_", embedder_name.lower()).strip("_")


def schema(dimensions: int) -> pa.Schema:
    return pa.schema(
        [
            pa.field("chunk_id", pa.string(), nullable=False),
            pa.field("document_id", pa.string()),
            pa.field("source", pa.string()),
            pa.field("file_name", pa.string()),
            pa.field("document_type", pa.string()),
            pa.field("title", pa.string()),
            pa.field("section", pa.string()),
            pa.field("page_start", pa.int32()),
            pa.field("page_end", pa.int32()),
            pa.field("chunk_index", pa.int32()),
            pa.field("text", pa.string()),
            pa.field(FTS_COLUMN, pa.string()),
            pa.field(VECTOR_COLUMN, pa.list_(pa.float32(), dimensions)),
        ]
    )


def vector_matrix(rows: pa.Table) -> np.ndarray:
    """The vector column of query results as one (rows, dimensions) float32 array, no Python lists."""
    column = rows.column(VECTOR_COLUMN).combine_chunks()
    return column.flatten().to_numpy(zero_copy_only=False).reshape(len(column), -1).astype(np.float32, copy=False)


def vector_array(vectors: np.ndarray) -> pa.FixedSizeListArray:
    """A (rows, dimensions) array as Arrow's fixed-size list of float32, no Python lists."""
    flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).ravel(), type=pa.float32())
    return pa.FixedSizeListArray.from_arrays(flat, int(vectors.shape[1]))


def chunk_table(chunks: list[Chunk], vectors: np.ndarray) -> pa.Table:
    """Chunks and their vectors as an Arrow table of the index schema."""
    dimensions = int(vectors.shape[1])
    columns: dict[str, list[Any]] = {name: [] for name in schema(dimensions).names}
    for chunk in chunks:
        for name, value in chunk.to_record().items():
            columns[name].append(value)
        columns[FTS_COLUMN].append(chunk.search_text)
    columns[VECTOR_COLUMN] = vector_array(vectors)
    return pa.table(columns, schema=schema(dimensions))


class DocumentIndex:
    """The chunk table of one embedding model in an embedded LanceDB database."""

    def __init__(self, uri: str | Path, table_name: str, dimensions: int) -> None:
        import lancedb

        self.uri = str(uri)
        self.db = lancedb.connect(self.uri)
        self.table = self.db.create_table(table_name, schema=schema(dimensions), exist_ok=True)

    # -- reading -------------------------------------------------------------------------
    def count(self) -> int:
        return self.table.count_rows()

    def is_empty(self) -> bool:
        return self.table.count_rows() == 0

    def chunk_ids(self, document_ids: Iterable[str]) -> set[str]:
        ids = list(document_ids)
        if not ids or self.count() == 0:
            return set()
        rows = self.table.search().where(sql_in("document_id", ids)).select(["chunk_id"]).limit(None).to_arrow()
        return set(rows.column("chunk_id").to_pylist())

    @property
    def version(self) -> int:
        """The table's version: changes with every write, so caches keyed on it stay true."""
        return int(self.table.version)

    def search_texts(self) -> list[str]:
        """Every chunk's normalised search text (for the term statistics of evidence.py)."""
        if self.count() == 0:
            return []
        return self.table.search().select([FTS_COLUMN]).limit(None).to_arrow().column(FTS_COLUMN).to_pylist()

    def documents(self) -> dict[str, str]:
        """Every indexed document: its id (content hash) and source path."""
        if self.count() == 0:
            return {}
        rows = self.table.search().select(["document_id", "source"]).limit(None).to_arrow()
        return dict(zip(rows.column("document_id").to_pylist(), rows.column("source").to_pylist()))

    def vectors_by_text(self, sources: Iterable[str]) -> dict[str, np.ndarray]:
        """``search_text`` -> stored vector, for the chunks indexed from these source files.

        A changed document keeps most of its text; its chunks whose text is already here need
        not be embedded again (the table belongs to one embedding model, see table_name_for).
        """
        wanted = list(sources)
        if not wanted or self.count() == 0:
            return {}
        rows = self.table.search().where(sql_in("source", wanted)).select([FTS_COLUMN, VECTOR_COLUMN]).limit(None).to_arrow()
        if rows.num_rows == 0:
            return {}
        vectors = vector_matrix(rows)
        return dict(zip(rows.column(FTS_COLUMN).to_pylist(), vectors))

    # -- writing -------------------------------------------------------------------------
    def needs_write(self, chunks: list[Chunk]) -> bool:
        """False when every chunk of this document is already indexed (same bytes)."""
        if not chunks:
            return False
        return not {c.chunk_id for c in chunks} <= self.chunk_ids({c.document_id for c in chunks})

    def upsert_document(self, chunks: list[Chunk], vectors: np.ndarray) -> WriteStats:
        """Merge one document's chunks; its source file's older chunks go in the same commit."""
        if not self.needs_write(chunks):
            return WriteStats(skipped=True)
        before = self.count()
        source = chunks[0].source
        result = (
            self.table.merge_insert("chunk_id")
            .when_not_matched_insert_all()
            .when_not_matched_by_source_delete(f"source = {_quote(source)}")
            .execute(chunk_table(chunks, vectors))
        )
        inserted = int(getattr(result, "num_inserted_rows", len(chunks)))
        deleted = int(getattr(result, "num_deleted_rows", before + inserted - self.count()))
        return WriteStats(inserted=inserted, deleted=deleted)

    def delete_documents(self, document_ids: Iterable[str]) -> int:
        ids = list(document_ids)
        if not ids:
            return 0
        before = self.count()
        self.table.delete(sql_in("document_id", ids))
        return before - self.count()

    # -- indexes -------------------------------------------------------------------------
    def index_names(self) -> dict[str, str]:
        return {i.name: i.index_type for i in self.table.list_indices()}

    def refresh_indexes(self, *, ann_min_rows: int = ANN_MIN_ROWS) -> dict[str, str]:
        """Full-text index always; vector ANN index from ``ann_min_rows`` rows. Returns what was done."""
        done: dict[str, str] = {}
        rows = self.count()
        if rows == 0:
            return done
        columns = {tuple(i.columns): i for i in self.table.list_indices()}
        if (FTS_COLUMN,) not in columns:
            self.table.create_fts_index(FTS_COLUMN, replace=True)
            done["fts"] = "created"
        if (VECTOR_COLUMN,) not in columns and rows >= ann_min_rows:
            self.create_ann_index(rows)
            done["ann"] = "created"
        if ("chunk_id",) not in columns and rows >= ann_min_rows:
            self.table.create_scalar_index("chunk_id", replace=True)  # merge_insert joins on it
            done["chunk_id"] = "created"
        if not done:
            # Existing indexes cover only the rows present when they were built: fold the rest in.
            self.table.optimize()
            done["optimize"] = "indexes updated"
        return done

    def create_ann_index(self, rows: int) -> None:
        """IVF partitions with HNSW inside, 8-bit scalar quantisation: high recall, small."""
        self.table.create_index(
            metric="cosine",
            vector_column_name=VECTOR_COLUMN,
            index_type="IVF_HNSW_SQ",
            num_partitions=max(1, int(math.sqrt(rows) / 2)),
            replace=True,
        )
