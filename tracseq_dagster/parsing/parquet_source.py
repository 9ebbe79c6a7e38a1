"""The Parquet reader: record batches with their native types, record numbers as row numbers.

Parquet needs no sniffing: its schema is the header, and its typed columns go through the
same cell typers as text (a timestamp column is taken as is, a text one is parsed).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tracseq_dagster.contract import SAMPLE_CONTRACT
from tracseq_dagster.export_contract import ExportContract
from tracseq_dagster.parsing.errors import ExportParseError
from tracseq_dagster.parsing.header import _check_required, _normalise_header
from tracseq_dagster.parsing.raw_chunk import _RawChunk


class _ParquetSource:
    drop_blank = False
    separator = None
    decimal = None
    comma_decimal = False

    def __init__(self, f: IO[bytes], file: str, chunk_rows: int, contract: ExportContract = SAMPLE_CONTRACT) -> None:
        self.file = file
        self._chunk_rows = chunk_rows
        try:
            self._pf = pq.ParquetFile(f)
            names = self._pf.schema_arrow.names
        except (pa.ArrowException, OSError, ValueError) as e:
            raise ExportParseError(file, None, None, f"not a readable Parquet file: {e}") from None
        self.header_names = list(names)
        self.columns = _normalise_header(names, file, None, contract)
        _check_required(self.columns, file, None, contract)
        if self._pf.metadata.num_rows == 0:
            raise ExportParseError(file, None, None, "header only, no data rows (the Parquet file has 0 records)")
        self.first_record_line = None

    def chunks(self) -> Iterator[_RawChunk]:
        done = 0
        try:
            for batch in self._pf.iter_batches(batch_size=self._chunk_rows, use_threads=True):
                rows = np.arange(done + 1, done + batch.num_rows + 1, dtype=np.int64)
                done += batch.num_rows
                yield _RawChunk({name: batch.column(i) for i, name in enumerate(self.columns)}, rows)
        except (pa.ArrowException, OSError) as e:
            raise ExportParseError(self.file, None, None, f"not a readable Parquet file: {e}") from None
