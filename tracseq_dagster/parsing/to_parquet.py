"""An export parsed straight to Parquet: the typed rows and the issues, chunk by chunk.

This is what the landing asset runs for each new file: memory stays bounded by the chunk
size, both files appear atomically (temporary names, renamed at the end) and the summary
travels in the data file's metadata.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tracseq_dagster.contract import SAMPLE_CONTRACT
from tracseq_dagster.export_contract import ExportContract
from tracseq_dagster.parsing.issues import issues_arrow_schema
from tracseq_dagster.parsing.reader import iter_export_chunks
from tracseq_dagster.parsing.results import ParseSummary
from tracseq_dagster.parsing.typed_frame import typed_arrow_schema


def parse_export_to_parquet(
    source: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    *,
    file_hash: str,
    chunk_rows: int = 250_000,
    dayfirst: bool = True,
    naive_timezone: str = "UTC",
    contract: ExportContract = SAMPLE_CONTRACT,
) -> ParseSummary:
    """Parse ``source`` and write the typed rows to ``dest`` and the issues to
    ``dest.with_suffix(".issues.parquet")``, chunk by chunk. Both are written under temporary
    names and renamed at the end; a failed parse leaves neither behind. The summary is also
    stored in the data file's key-value metadata under ``tracseq.parse_summary``. ``contract``
    is the export's kind (default: samples; :func:`~tracseq_dagster.parsing.kind.detect_export_kind`
    tells them apart)."""
    dest = Path(dest)
    issues_dest = dest.with_suffix(".issues.parquet")
    dest.parent.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex[:12]
    tmp = dest.with_name(f".{dest.name}.{token}.tmp")
    tmp_issues = dest.with_name(f".{issues_dest.name}.{token}.tmp")
    writer = issues_writer = None
    try:
        with iter_export_chunks(
            source,
            file_hash=file_hash,
            chunk_rows=chunk_rows,
            dayfirst=dayfirst,
            naive_timezone=naive_timezone,
            contract=contract,
        ) as reader:
            schema = typed_arrow_schema(reader.extra_columns, contract)
            issue_schema = issues_arrow_schema()
            writer = pq.ParquetWriter(tmp, schema)
            issues_writer = pq.ParquetWriter(tmp_issues, issue_schema)
            for chunk in reader:
                if len(chunk.frame):
                    writer.write_table(pa.Table.from_pandas(chunk.frame, schema=schema, preserve_index=False))
                if len(chunk.issues):
                    issues_writer.write_table(pa.Table.from_pandas(chunk.issues, schema=issue_schema, preserve_index=False))
            summary = reader.summary()
        writer.add_key_value_metadata({"tracseq.parse_summary": json.dumps(summary.to_dict())})
        writer.close()
        writer = None
        issues_writer.close()
        issues_writer = None
        os.replace(tmp_issues, issues_dest)
        os.replace(tmp, dest)
        return summary
    except BaseException:
        for w in (writer, issues_writer):
            if w is not None:
                try:
                    w.close()
                except Exception:  # noqa: BLE001 - cleaning up after the real error
                    pass
        for path in (tmp, tmp_issues):
            path.unlink(missing_ok=True)
        raise
