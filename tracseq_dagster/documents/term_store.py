"""The index's term statistics kept beside it, so no question waits for them to be counted.

evidence.TermStatistics counts, for every term, the chunks that contain it: a pass over every
chunk's text, about 35-45 s at 100,000 chunks on this machine (BENCHMARKS.md). Counted at
question time, the first question after every index change would wait that long. So
``sync_index`` (the ingest) counts them once after it writes, and stores them next to the
LanceDB table as JSON stamped with the table version they were counted at; questions load
that file (milliseconds) and count again only when the table has moved on since (then the
new count is stored for the next process).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from tracseq_dagster.documents.evidence import TermStatistics, common_english_words
from tracseq_dagster.documents.index import DocumentIndex


def statistics_path(index: DocumentIndex) -> Path | None:
    """Where the statistics of this table live; None for an index that is not on a local disk."""
    if "://" in index.uri and not index.uri.startswith("file://"):
        return None
    return Path(index.uri.removeprefix("file://")) / f"{index.table.name}.terms.json"


def load_statistics(index: DocumentIndex) -> TermStatistics | None:
    """The stored statistics if they were counted at the table's current version, else None."""
    path = statistics_path(index)
    if path is None or not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if data.get("version") != index.version:
        return None
    return TermStatistics(int(data["chunks"]), {str(k): int(v) for k, v in data["frequency"].items()}, common_english_words())


def store_statistics(index: DocumentIndex, statistics: TermStatistics) -> None:
    path = statistics_path(index)
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(handle, "w") as out:
        json.dump({"version": index.version, "chunks": statistics.chunks, "frequency": statistics.frequency}, out)
    os.replace(tmp, path)


def index_statistics(index: DocumentIndex) -> TermStatistics:
    """The table's term statistics: stored ones when current, else counted now and stored."""
    stored = load_statistics(index)
    if stored is not None:
        return stored
    statistics = TermStatistics.from_texts(index.search_texts())
    store_statistics(index, statistics)
    return statistics
