"""The JSON Lines reader: one object per line, keys as columns, values kept as Arrow infers them.

JSON Lines has no header, so the first chunk fixes the columns and a required key is
checked once every record has been read; nested values and booleans are kept as JSON text.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa

from tracseq_dagster.contract import SAMPLE_CONTRACT
from tracseq_dagster.export_contract import ExportContract
from tracseq_dagster.parsing.errors import ExportParseError
from tracseq_dagster.parsing.line_stream import _LineStream
from tracseq_dagster.parsing.raw_chunk import _RawChunk


class _JsonlSource:
    drop_blank = False
    separator = None
    decimal = None
    comma_decimal = False

    def __init__(self, stream: _LineStream, file: str, chunk_rows: int, contract: ExportContract = SAMPLE_CONTRACT) -> None:
        self.file = file
        self._contract = contract
        self._stream = stream
        self._chunk_rows = chunk_rows
        self.columns: list[str] | None = None  # fixed by the first chunk
        self.header_names: list[str] = []
        self.first_record_line = 1
        self.late_keys: dict[str, int] = {}
        # JSON Lines has no header: a contract key is "in the file" if any record has it, which
        # is known at the end only (the first chunk may lack a key later records have).
        self.keys_seen: set[str] = set()

    def _records(self) -> Iterator[tuple[list[dict[str, Any]], list[int]]]:
        while True:
            chunk, first, _ = self._stream.take_lines(self._chunk_rows)
            if not chunk:
                return
            records: list[dict[str, Any]] = []
            numbers: list[int] = []
            for i, line in enumerate(chunk.split(b"\n")):
                line = line.strip()
                if not line:
                    continue
                try:
                    obj = json.loads(line)
                except (json.JSONDecodeError, UnicodeDecodeError) as e:
                    detail = f"{e.msg} at character {e.pos + 1}" if isinstance(e, json.JSONDecodeError) else str(e)
                    raise ExportParseError(self.file, first + i, None, f"invalid JSON: {detail}") from None
                if not isinstance(obj, dict):
                    raise ExportParseError(self.file, first + i, None, f"not a JSON object (a JSON {type(obj).__name__} instead)")
                records.append(obj)
                numbers.append(first + i)
            if records:
                yield records, numbers

    def chunks(self) -> Iterator[_RawChunk]:
        for records, numbers in self._records():
            raw_keys: dict[str, Any] = {}
            for record in records:
                raw_keys.update(record)  # every key once, in first-seen order
            keys: dict[str, list[str]] = {}  # normalised -> raw keys, first seen first
            for key in raw_keys:
                keys.setdefault(self._contract.normalise_column_name(str(key)) or "unnamed", []).append(key)
            self.keys_seen.update(keys)
            if self.columns is None:
                self.first_record_line = numbers[0]
                self.columns = list(keys)
                self.header_names = [spellings[0] for spellings in keys.values()]
            raw: dict[str, pa.Array] = {}
            for name, spellings in keys.items():
                if name not in self.columns and name not in self._contract.column_by_name:
                    self.late_keys.setdefault(name, numbers[0])
                    continue
                if len(spellings) == 1:
                    values = [r.get(spellings[0]) for r in records]
                else:
                    values = [next((r[k] for k in spellings if r.get(k) is not None), None) for r in records]
                raw[name] = _json_array(values)
            yield _RawChunk(raw, np.asarray(numbers, dtype=np.int64))


def _json_array(values: list[Any]) -> pa.Array:
    try:
        arr = pa.array(values)
        if not (pa.types.is_struct(arr.type) or pa.types.is_list(arr.type) or pa.types.is_boolean(arr.type)):
            return arr
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        pass
    return pa.array(
        [
            None if v is None else v if isinstance(v, str) else json.dumps(v) if isinstance(v, (dict, list, bool)) else str(v)
            for v in values
        ],
        pa.string(),
    )
