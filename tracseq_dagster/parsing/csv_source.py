"""The CSV reader: header and decimal sniffing, then pyarrow tokenising of line-aligned chunks.

A clean chunk is parsed by ``pyarrow.csv`` in one call; chunks with short or long rows take
a vectorised ragged path (pad short rows, cut long ones and keep their surplus fields for
the issue); only quoted chunks with ragged rows fall back to Python's ``csv`` module.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from tracseq_dagster.contract import SAMPLE_CONTRACT
from tracseq_dagster.export_contract import ExportContract, Kind
from tracseq_dagster.parsing.dialect import _sniff_separator, _split_header, _suggest_separator
from tracseq_dagster.parsing.errors import ExportParseError
from tracseq_dagster.parsing.header import _check_required, _normalise_header
from tracseq_dagster.parsing.line_stream import _LineStream, _split_lines
from tracseq_dagster.parsing.raw_chunk import _RawChunk


class _CsvSource:
    drop_blank = True

    def __init__(
        self,
        stream: _LineStream,
        file: str,
        head_text: str,
        complete: bool,
        chunk_rows: int,
        contract: ExportContract = SAMPLE_CONTRACT,
    ) -> None:
        self.file = file
        self._contract = contract
        self._stream = stream
        self._chunk_rows = chunk_rows
        lines = _split_lines(head_text)
        if not complete and len(lines) > 1:
            lines = lines[:-1]  # the last line of a partial head may be cut off
        idx = 0
        while idx < len(lines) and not lines[idx].strip():
            idx += 1
        if idx == len(lines):
            raise ExportParseError(file, 1, None, "file is empty (blank lines only)")
        explicit = re.fullmatch(r"\s*sep=(.)\s*", lines[idx], flags=re.IGNORECASE)
        sep: str | None = explicit.group(1) if explicit else None
        if explicit:
            idx += 1
            if idx == len(lines):
                raise ExportParseError(file, idx, None, "no header after the 'sep=' line")
        header_text = lines[idx]
        self.header_line = idx + 1
        data_lines = [line for line in lines[idx + 1 :] if line.strip()]
        if sep is None:
            sep, names = _sniff_separator(header_text, data_lines, contract)
        else:
            names = _split_header(header_text, sep)
        if len(names) <= 1 and not (names and contract.normalise_column_name(names[0]) in contract.column_by_name):
            raise ExportParseError(file, self.header_line, header_text, _suggest_separator(header_text))
        self.separator = sep
        self.header_names = names
        self.n_fields = len(names)
        self.columns = _normalise_header(names, file, self.header_line, contract)
        _check_required(self.columns, file, self.header_line, contract)
        self.comma_decimal = sep != ","
        self.decimal = self._sniff_decimal(data_lines)
        self._positional = [f"f{i}" for i in range(self.n_fields)]
        # Hand the stream over positioned after the header.
        skipped, _, _ = stream.take_lines(self.header_line)
        got = _split_lines(skipped.decode("utf-8"))
        if got[self.header_line - 1].rstrip("\r") != header_text.rstrip("\r"):  # pragma: no cover - defensive
            raise ExportParseError(file, self.header_line, None, "could not re-read the header")

    def _sniff_decimal(self, data_lines: Sequence[str]) -> str | None:
        if self.separator == ",":
            return "."
        comma = dot = 0
        floats = self._contract.names_of(Kind.FLOAT)
        float_positions = [i for i, name in enumerate(self.columns) if name in floats]
        for line in data_lines[:200]:
            fields = _split_header(line, self.separator)
            for i in float_positions:
                if i < len(fields):
                    v = fields[i].strip()
                    comma += bool(re.fullmatch(r"[+-]?\d+,\d+", v))
                    dot += bool(re.fullmatch(r"[+-]?\d+\.\d+", v))
        if comma > dot:
            return ","
        return "." if dot else None

    # -- chunks ---------------------------------------------------------------------

    def chunks(self) -> Iterator[_RawChunk]:
        while True:
            chunk, first, lines = self._stream.take_lines(self._chunk_rows, quote_aware=True)
            if not chunk:
                return
            yield self._tokenise(chunk, first, lines)

    def _named(self, table_columns: Sequence[pa.ChunkedArray | pa.Array]) -> dict[str, Any]:
        return {name: col for name, col in zip(self.columns, table_columns)}

    def _pyarrow_parse(self, data: bytes, newlines_in_values: bool) -> tuple[pa.Table | None, int]:
        invalid = 0

        def handler(row: Any) -> str:
            nonlocal invalid
            invalid += 1
            return "skip"

        try:
            table = pacsv.read_csv(
                pa.py_buffer(data),
                read_options=pacsv.ReadOptions(column_names=self._positional, use_threads=True, block_size=1 << 22),
                parse_options=pacsv.ParseOptions(
                    delimiter=self.separator,
                    quote_char='"',
                    double_quote=True,
                    escape_char=False,
                    newlines_in_values=newlines_in_values,
                    ignore_empty_lines=False,
                    invalid_row_handler=handler,
                ),
                convert_options=pacsv.ConvertOptions(
                    column_types={c: pa.string() for c in self._positional},
                    null_values=[""],
                    strings_can_be_null=True,
                    quoted_strings_can_be_null=True,
                    check_utf8=False,
                ),
            )
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return None, 1
        return table, invalid

    def _tokenise(self, chunk: bytes, first: int, lines: int) -> _RawChunk:
        quoted = b'"' in chunk
        table, invalid = self._pyarrow_parse(chunk, newlines_in_values=quoted)
        if table is not None and not invalid:
            rows = table.num_rows
            if not quoted:
                if rows == lines:
                    return _RawChunk(self._named(table.columns), first + np.arange(rows, dtype=np.int64))
            else:
                extra = np.zeros(rows, dtype=np.int64)
                for col in table.columns:
                    if pc.any(pc.match_substring(col, "\n")).as_py():
                        extra += np.asarray(
                            pc.fill_null(pc.count_substring(col, "\n"), 0).to_numpy(zero_copy_only=False), dtype=np.int64
                        )
                starts = first + np.arange(rows, dtype=np.int64) + np.concatenate(([0], np.cumsum(extra)[:-1]))
                if rows and starts[-1] + extra[-1] == first + lines - 1:
                    return _RawChunk(self._named(table.columns), starts)
        if not quoted:
            return self._tokenise_ragged(chunk, first)
        return self._tokenise_exact(chunk, first)

    def _tokenise_ragged(self, chunk: bytes, first: int) -> _RawChunk:
        """No quotes but short/long lines: count separators per line, pad short lines, cut long
        ones (keeping their surplus fields for the issue), re-parse."""
        sep = ord(self.separator)
        b = np.frombuffer(chunk, dtype=np.uint8)
        newlines = np.flatnonzero(b == 10)
        ends = newlines if chunk.endswith(b"\n") else np.append(newlines, len(b))
        starts = np.concatenate(([0], newlines + 1))[: len(ends)]
        seps = np.flatnonzero(b == sep)
        fields = np.searchsorted(seps, ends) - np.searchsorted(seps, starts) + 1
        content_end = ends - ((ends > starts) & (b[np.maximum(ends - 1, 0)] == 13))
        surplus: dict[int, list[str]] = {}
        long = np.flatnonzero(fields > self.n_fields)
        if len(long):  # cut each long line before its surplus fields, which become its issue
            cut = seps[np.searchsorted(seps, starts[long]) + self.n_fields - 1]
            dropped = np.zeros(len(b) + 1, dtype=np.int64)
            for i, at, end in zip(long.tolist(), cut.tolist(), content_end[long].tolist()):
                surplus[i] = chunk[at + 1 : end].decode("utf-8").split(self.separator)
                dropped[at] += 1
                dropped[end] -= 1
            keep = np.cumsum(dropped[:-1]) == 0
            removed_before = np.concatenate(([0], np.cumsum(~keep)))
            b = b[keep]
            content_end = content_end - removed_before[content_end]
        short = fields < self.n_fields
        padded = np.insert(b, np.repeat(content_end[short], self.n_fields - fields[short]), sep).tobytes()
        del b
        table, invalid = self._pyarrow_parse(padded, newlines_in_values=False)
        if table is None or invalid or table.num_rows != len(ends):
            return self._tokenise_exact(chunk, first)
        return _RawChunk(self._named(table.columns), first + np.arange(len(ends), dtype=np.int64), fields, surplus)

    def _tokenise_exact(self, chunk: bytes, first: int) -> _RawChunk:
        """The slow, exact path (Python's csv module) for quoted chunks with ragged rows."""
        text = chunk.decode("utf-8")
        pieces = text.split("\n")
        if pieces and pieces[-1] == "":
            pieces.pop()
            lines = [p + "\n" for p in pieces]
        else:
            lines = [p + "\n" for p in pieces[:-1]] + pieces[-1:]
        reader = csv.reader(iter(lines), delimiter=self.separator, quotechar='"', doublequote=True, strict=False)
        records: list[list[str]] = []
        starts: list[int] = []
        previous = 0
        try:
            for record in reader:
                starts.append(first + previous)
                previous = reader.line_num
                records.append(record)
        except csv.Error as e:
            raise ExportParseError(self.file, first + previous, None, f"malformed CSV: {e}") from None
        fields = np.fromiter((len(r) for r in records), dtype=np.int64, count=len(records))
        surplus = {i: r[self.n_fields :] for i, r in enumerate(records) if len(r) > self.n_fields}
        raw = {}
        for j, name in enumerate(self.columns):
            raw[name] = pa.array([(r[j] or None) if j < len(r) else None for r in records], pa.string())
        return _RawChunk(raw, np.asarray(starts, dtype=np.int64), np.maximum(fields, 1), surplus)
