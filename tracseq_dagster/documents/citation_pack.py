"""Pack the SOP citations of every recommendation kind into a prediction bundle, at Bento build time.

The prediction service cannot retrieve (no torch, sentence-transformers or LanceDB in its
environment, issue 20; and a retrieval costs more than a prediction), so the ``prediction_bento``
asset calls :func:`pack_sop_citations` where the documents environment is: each kind's question
(sop_citations.RECOMMENDATION_QUESTIONS) is asked once of the SOPs of the document index, and
what the evidence supports is written to ``sop_citations.json`` in the bundle, stamped with the
index's table version, for :mod:`tracseq_dagster.serving.recommendation_citations` to serve.

Nothing is written, and the Bento is built as before, when there is no documents environment,
no chunk table for the embedder, no SOP in it, or no kind the SOPs answer; the returned
``PackOutcome.status`` says which, for the asset's metadata. Opening the index never creates a
database or a table (the build only reads).

Every build records the index version it read (``PackOutcome.index_version``, also when it
packed nothing) in its rollout announcement; :func:`indexed_version` reads the current one the
same way, without loading a model, so the rollout sensor can rebuild the Bento once per new
version of the SOPs (assets/serving/rollout.py).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tracseq_dagster.serving.recommendation_citations import CITATIONS_FILE, CITATIONS_FORMAT

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PackOutcome:
    status: str  # "packed", or why nothing was packed
    kinds: dict[str, list[str]] = field(default_factory=dict)  # kind -> its citations ("file, p. N")
    index_version: int | None = None
    seconds: float = 0.0

    @property
    def packed(self) -> bool:
        return self.status == "packed"

    def metadata(self) -> dict[str, Any]:
        return {"status": self.status, "index_version": self.index_version, "kinds": self.kinds,
                "seconds": round(self.seconds, 2)}  # fmt: skip


def citation_table(qa: Any) -> dict[str, Any]:
    """The file's content for a ``DocumentQA``: every cited kind's passages and the index version."""
    from tracseq_dagster.documents.sop_citations import RECOMMENDATION_QUESTIONS, SopCitations

    found = SopCitations(qa).table()
    return {
        "format": CITATIONS_FORMAT,
        "index_version": qa.index.version,
        "table": qa.index.table.name,
        "embedder": qa.embedder.identity,
        "questions": {kind: RECOMMENDATION_QUESTIONS[kind] for kind in found},
        "kinds": {kind: [c.as_dict() for c in citations] for kind, citations in sorted(found.items())},
    }


def write_citations(bundle_dir: str | Path, table: dict[str, Any]) -> Path:
    """``sop_citations.json`` in the bundle (sorted keys, no timestamps: same citations, same bytes)."""
    path = Path(bundle_dir) / CITATIONS_FILE
    path.write_text(json.dumps(table, indent=1, sort_keys=True, ensure_ascii=False))
    return path


def pack_sop_citations(bundle_dir: str | Path, lancedb_uri: str, embedder: str = "minilm") -> PackOutcome:
    """Write the citations into ``bundle_dir`` when the SOPs indexed at ``lancedb_uri`` answer any kind."""
    started = time.perf_counter()
    try:
        import lancedb

        from tracseq_dagster.documents.embedding import make_embedder
        from tracseq_dagster.documents.index import table_name_for
        from tracseq_dagster.documents.qa import DocumentQA, open_index
    except ImportError as error:  # the documents role is not installed where the Bento is built
        return PackOutcome(f"no documents environment ({error.name or error})")
    vectors = make_embedder(embedder)
    name = table_name_for(vectors.name)
    if not _database_exists(lancedb_uri) or name not in lancedb.connect(lancedb_uri).table_names():
        return PackOutcome(f"no document index for {vectors.name} at {lancedb_uri}")
    qa = DocumentQA(open_index(lancedb_uri, vectors), vectors, None)
    if qa.index.is_empty():
        return PackOutcome("the document index is empty", index_version=qa.index.version)
    try:
        table = citation_table(qa)
    except ImportError as error:  # the embedding model's packages (torch, sentence-transformers) are missing
        return PackOutcome(f"no documents environment ({error.name or error})", index_version=qa.index.version)
    except Exception as error:  # the models are packed regardless: citations are an addition to their answers
        log.warning("SOP citations not packed: the retrieval failed", exc_info=True)
        return PackOutcome(f"not packed: the retrieval failed ({type(error).__name__}: {error})",
                           index_version=qa.index.version)  # fmt: skip
    seconds = time.perf_counter() - started
    if not table["kinds"]:
        return PackOutcome("no recommendation kind is answered by an indexed SOP", index_version=table["index_version"],
                           seconds=seconds)  # fmt: skip
    write_citations(bundle_dir, table)
    kinds = {kind: [c["citation"] for c in found] for kind, found in table["kinds"].items()}
    log.info("packed SOP citations for %d kinds from index version %s at %s", len(kinds), table["index_version"],
             datetime.now(UTC).isoformat(timespec="seconds"))  # fmt: skip
    return PackOutcome("packed", kinds, table["index_version"], time.perf_counter() - started)


def indexed_version(lancedb_uri: str, embedder: str = "minilm") -> int | None:
    """The version of the chunk table :func:`pack_sop_citations` would read now; None without one.

    The same table and the same version a build records (``PackOutcome.index_version``), so
    "the index moved since the served Bento was built" is one comparison. Cheap enough for a
    sensor: no embedding model is loaded (only its name is needed) and nothing is created.
    """
    try:
        import lancedb

        from tracseq_dagster.documents.embedding import make_embedder
        from tracseq_dagster.documents.index import table_name_for
    except ImportError:  # no documents environment: no build here could pack citations either
        return None
    name = table_name_for(make_embedder(embedder).name)
    if not _database_exists(lancedb_uri):
        return None
    database = lancedb.connect(lancedb_uri)
    if name not in database.table_names():
        return None
    return int(database.open_table(name).version)


def _database_exists(uri: str) -> bool:
    """A local database folder exists (remote URIs are asked of LanceDB, which creates nothing by listing)."""
    if "://" in uri and not uri.startswith("file://"):
        return True
    return Path(uri.removeprefix("file://")).is_dir()
