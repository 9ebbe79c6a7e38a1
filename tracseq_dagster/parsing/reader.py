"""The chunked driver: open an export, sniff it, and type it chunk by chunk.

:class:`ExportReader` picks the format reader, types each raw chunk with
:func:`~tracseq_dagster.parsing.typed_frame.coerce_columns`, and collects what concerns the
file as a whole (short rows, trailing separators, respelled enums, unknown and missing
columns) into warnings reported once per file. Memory stays bounded by ``chunk_rows``.
"""

from __future__ import annotations

import codecs
import os
import zoneinfo
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import PurePosixPath
from typing import IO, Any

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa

from tracseq_dagster.contract import LINEAGE_COLUMNS, ROW_NUMBER, SAMPLE_CONTRACT, WHOLE_ROW, Kind
from tracseq_dagster.export_contract import ExportContract
from tracseq_dagster.parsing.csv_source import _CsvSource
from tracseq_dagster.parsing.dialect import _SUFFIX_FORMATS, SNIFF_BYTES, _date_style, _sample_text
from tracseq_dagster.parsing.encoding import _CONTROL_CHARS, _binary_reason, _detect_encoding
from tracseq_dagster.parsing.errors import ExportParseError
from tracseq_dagster.parsing.header import _check_required
from tracseq_dagster.parsing.issues import ISSUE_COLUMNS, STRING_DTYPE
from tracseq_dagster.parsing.jsonl_source import _JsonlSource
from tracseq_dagster.parsing.line_stream import _LineStream
from tracseq_dagster.parsing.parquet_source import _ParquetSource
from tracseq_dagster.parsing.raw_chunk import _RawChunk
from tracseq_dagster.parsing.results import ExportDialect, ParsedChunk, ParseSummary
from tracseq_dagster.parsing.typed_frame import coerce_columns

_MAX_SHORT_ROW_WARNINGS = 20


class ExportReader:
    """An opened export: sniffed eagerly, iterated once for :class:`ParsedChunk` s.

    Attributes known right after construction: ``source``, ``file_hash``, ``dialect``,
    ``columns`` (the typed frame's column order), ``extra_columns``. ``warnings``, ``rows``
    and ``issue_count`` grow while iterating; :meth:`summary` reports them (complete once the
    iteration has finished). Construction raises :class:`ExportParseError` for problems with
    the file as a whole; iteration raises it for a fatal row further down (a long row, an
    invalid JSON line). Use as a context manager (or call :meth:`close`) to release the file
    if you stop early.
    """

    def __init__(
        self,
        source: str | os.PathLike[str],
        *,
        file_hash: str,
        chunk_rows: int = 250_000,
        dayfirst: bool = True,
        naive_timezone: str = "UTC",
        contract: ExportContract = SAMPLE_CONTRACT,
    ) -> None:
        if chunk_rows < 1:
            raise ValueError("chunk_rows must be at least 1")
        try:
            zoneinfo.ZoneInfo(naive_timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as e:
            raise ValueError(f"unknown naive_timezone {naive_timezone!r}") from e
        self.source = str(source)
        self.contract = contract
        self.file_hash = file_hash
        self.dayfirst = dayfirst
        self.naive_timezone = naive_timezone
        self.warnings: list[str] = []
        self.rows = 0
        self.issue_count = 0
        self._short_rows: list[tuple[int, int]] = []
        self._respelled: Counter[str] = Counter()
        self._trailing_separators = 0
        self._short_count = 0
        self._last_line = 0
        self._file: IO[bytes] | None = None
        self._finished = False
        try:
            self._open(chunk_rows)
        except BaseException:
            self.close()
            raise

    # -- setup ------------------------------------------------------------------------

    def _open(self, chunk_rows: int) -> None:
        fs, path = fsspec.core.url_to_fs(self.source)
        file: IO[bytes] = fs.open(path, "rb")
        self._file = file
        head = file.read(SNIFF_BYTES)
        if not head:
            raise ExportParseError(self.source, 1, None, "file is empty")
        complete = len(head) < SNIFF_BYTES
        if not complete:
            more = file.read(1)
            complete = not more
            head += more
        fmt = _SUFFIX_FORMATS.get(PurePosixPath(path).suffix.lower())
        if fmt is None:  # sniff the content
            if head.startswith(b"PAR1"):
                fmt = "parquet"
            else:
                fmt = "text?"
        encoding = None
        bom = False
        if fmt == "parquet":
            file.seek(0)
            src: Any = _ParquetSource(file, self.source, chunk_rows, self.contract)
        else:
            encoding, skip, bom = _detect_encoding(head, complete, self.source)
            decoder = codecs.getincrementaldecoder(encoding)("strict")
            try:
                head_text = decoder.decode(head[skip:], final=complete)
            except UnicodeDecodeError as e:  # only at a partial head's end would this be spurious
                raise ExportParseError(self.source, 1, None, f"not a text file: {e.reason}") from None
            head_text = head_text.lstrip("\ufeff")
            if len(_CONTROL_CHARS.findall(head_text[:SNIFF_BYTES])) > max(2, len(head_text) // 100):
                raise ExportParseError(self.source, 1, None, _binary_reason(head))
            if not head_text.strip():
                raise ExportParseError(self.source, 1, None, "file is empty (blank lines only)")
            if fmt == "text?":
                first_char = head_text.lstrip()[:1]
                if first_char == "[":
                    raise ExportParseError(
                        self.source, 1, None, "a JSON array is not accepted; export JSON Lines (one object per line)"
                    )
                fmt = "jsonl" if first_char == "{" else "csv"
            cr_newlines = "\n" not in head_text and "\r" in head_text
            stream = _LineStream(file, head, encoding, skip, cr_newlines, self.source)
            if fmt == "csv":
                src = _CsvSource(stream, self.source, head_text, complete, chunk_rows, self.contract)
            else:
                src = _JsonlSource(stream, self.source, chunk_rows, self.contract)
        self._src = src
        self._format = fmt
        self._encoding = encoding
        self._bom = bom
        self._raw_chunks = src.chunks()
        # Prefetch until the first chunk with rows: problems near the top surface here, and
        # JSON Lines fixes its columns from its first chunk.
        self._first: ParsedChunk | None = None
        first_raw: _RawChunk | None = None
        while True:
            raw = next(self._raw_chunks, None)
            if raw is None:
                break
            if first_raw is None:
                first_raw = raw
                self._setup_columns(raw)
            parsed = self._type(raw)
            if len(parsed.frame):
                self._first = parsed
                break
        if self._first is None:
            self._no_rows()

    def _setup_columns(self, first: _RawChunk) -> None:
        src = self._src
        columns = list(src.columns or [])
        self.extra_columns = [c for c in columns if c not in self.contract.column_by_name]
        raw_names = dict(zip(columns, src.header_names))
        for name in self.extra_columns:
            spelled = raw_names.get(name, name)
            shown = f"'{name}'" if spelled == name else f"'{name}' (header {spelled!r})"
            self.warnings.append(f"unknown extra column {shown} kept")
        if self._format != "jsonl":  # JSON Lines: known once every record was read (_finish)
            self._warn_missing_optional(columns)
        self.columns = list(self.contract.column_names) + self.extra_columns + list(LINEAGE_COLUMNS)
        timestamp_columns = self.contract.names_of(Kind.TIMESTAMP)
        timestamps = [a for a in (first.raw.get(c) for c in timestamp_columns) if a is not None]
        date_style: str | None
        if timestamps and all(pa.types.is_timestamp(a.type) or pa.types.is_date(a.type) for a in timestamps):
            date_style = "native"
        else:
            samples = [v for a in timestamps for v in _sample_text(a, 100)]
            date_style = _date_style(samples, self.dayfirst)
        self.dialect = ExportDialect(
            format=self._format,
            encoding=self._encoding,
            separator=src.separator,
            decimal=src.decimal,
            bom=self._bom,
            date_style=date_style,
        )

    def _warn_missing_optional(self, columns: Sequence[str]) -> None:
        missing_optional = [c for c in self.contract.column_names if c not in columns]
        if missing_optional:
            self.warnings.append("optional column(s) not in the file, left empty: " + ", ".join(missing_optional))

    def _no_rows(self) -> None:
        line = getattr(self._src, "header_line", None) or getattr(self._src, "first_record_line", None)
        if self._format == "jsonl" and self._src.columns is None:
            raise ExportParseError(self.source, 1, None, "file is empty (blank lines only)")
        raise ExportParseError(self.source, line if self._format != "parquet" else None, None, "header only, no data rows")

    @property
    def header_columns(self) -> list[str]:
        """The file's normalised column names (JSON Lines: the keys of the records read so far)."""
        src = self._src
        return list(dict.fromkeys([*(src.columns or []), *sorted(getattr(src, "keys_seen", ()))]))

    # -- typing -------------------------------------------------------------------------

    def _type(self, raw: _RawChunk) -> ParsedChunk:
        frame, issues, kept = coerce_columns(
            raw.raw,
            raw.rows,
            extra_columns=self.extra_columns,
            file_hash=self.file_hash,
            source=self.source,
            comma_decimal=self._src.comma_decimal,
            dayfirst=self.dayfirst,
            naive_timezone=self.naive_timezone,
            drop_blank=self._src.drop_blank,
            respelled=self._respelled,
            contract=self.contract,
        )
        if raw.fields is not None:
            short = np.flatnonzero((raw.fields < self._src.n_fields) & kept)
            self._short_count += len(short)
            for i in short[: _MAX_SHORT_ROW_WARNINGS + 1 - len(self._short_rows)]:
                self._short_rows.append((int(raw.rows[i]), int(raw.fields[i])))
        if raw.surplus:
            issues = self._surplus_issues(raw, kept, issues)
        if len(frame):
            self._last_line = int(frame[ROW_NUMBER].iloc[-1])
        self.rows += len(frame)
        self.issue_count += len(issues)
        return ParsedChunk(frame, issues)

    def _surplus_issues(self, raw: _RawChunk, kept: np.ndarray, issues: pd.DataFrame) -> pd.DataFrame:
        """One ``fields`` issue per kept row with more fields than the header.

        Not fatal: the row keeps its first fields (they may be shifted, so the validator
        quarantines it by ``field_count``), and the rest of the file is read as usual.
        """
        where = [i for i in sorted(raw.surplus) if kept[i]]
        # Empty fields past the header's are trailing separators (spreadsheets write them):
        # nothing is lost or shifted by ignoring them, so they are not an issue.
        trailing = [i for i in where if not any(raw.surplus[i])]
        self._trailing_separators += len(trailing)
        where = [i for i in where if any(raw.surplus[i])]
        if not where:
            return issues
        sep = self._src.separator
        values = [sep.join(raw.surplus[i]) for i in where]
        extra = pd.DataFrame(
            {
                ROW_NUMBER: raw.rows[where].astype(np.int64),
                "column": WHOLE_ROW,
                "value": values,
                "rule": "fields",
                "message": [
                    f"row has {self._src.n_fields + len(raw.surplus[i])} fields but the header has {self._src.n_fields}"
                    for i in where
                ],
            }
        ).astype({name: STRING_DTYPE for name in ISSUE_COLUMNS[1:]})
        both = pd.concat([issues, extra], ignore_index=True) if len(issues) else extra
        return both.sort_values(ROW_NUMBER, kind="stable", ignore_index=True)

    # -- iteration -------------------------------------------------------------------------

    def __iter__(self) -> Iterator[ParsedChunk]:
        if self._finished or self._first is None:
            raise RuntimeError("an ExportReader can be iterated only once")
        first, self._first = self._first, None
        try:
            yield first
            for raw in self._raw_chunks:
                parsed = self._type(raw)
                if len(parsed.frame) or len(parsed.issues):
                    yield parsed
            self._finish()
        finally:
            self.close()

    def _finish(self) -> None:
        if self._finished:
            return
        self._finished = True
        n = getattr(self._src, "n_fields", None)
        for line, got in self._short_rows[:_MAX_SHORT_ROW_WARNINGS]:
            if line == self._last_line:
                self.warnings.append(f"last line {line} is truncated ({got} of {n} fields); missing cells left empty")
            else:
                self.warnings.append(f"line {line} has {got} of {n} fields; missing cells left empty")
        if self._short_count > _MAX_SHORT_ROW_WARNINGS:
            self.warnings.append(f"... and {self._short_count - _MAX_SHORT_ROW_WARNINGS} more short rows")
        if self._trailing_separators:
            rows = "row ends" if self._trailing_separators == 1 else "rows end"
            self.warnings.append(
                f"{self._trailing_separators} {rows} in empty fields past the header's {n} (trailing separators); ignored"
            )
        for name, count in self._respelled.items():
            values = "value in another case was" if count == 1 else "values in another case were"
            self.warnings.append(f"{name}: {count} {values} read as the contract's spelling")
        if self._format == "jsonl":
            _check_required(self._src.keys_seen, self.source, None, self.contract)
            self._warn_missing_optional(self._src.keys_seen)
        late = getattr(self._src, "late_keys", {})
        for name, line in late.items():
            self.warnings.append(
                f"unknown key '{name}' first seen on line {line}, after the first chunk fixed the columns; dropped"
            )

    def summary(self) -> ParseSummary:
        return ParseSummary(
            source=self.source,
            file_hash=self.file_hash,
            rows=self.rows,
            issues=self.issue_count,
            dialect=self.dialect,
            extra_columns=list(self.extra_columns),
            warnings=list(self.warnings),
        )

    def close(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            finally:
                self._file = None

    def __enter__(self) -> ExportReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def iter_export_chunks(
    source: str | os.PathLike[str],
    *,
    file_hash: str,
    chunk_rows: int = 250_000,
    dayfirst: bool = True,
    naive_timezone: str = "UTC",
    contract: ExportContract = SAMPLE_CONTRACT,
) -> ExportReader:
    """Open ``source`` (a local path or an fsspec URL) and return an :class:`ExportReader`:
    iterate it for :class:`ParsedChunk` s of at most ``chunk_rows`` rows, typed to ``contract``
    (default: the sample export)."""
    return ExportReader(
        source,
        file_hash=file_hash,
        chunk_rows=chunk_rows,
        dayfirst=dayfirst,
        naive_timezone=naive_timezone,
        contract=contract,
    )


def read_export(
    source: str | os.PathLike[str], *, file_hash: str = "", **kw: Any
) -> tuple[pd.DataFrame, pd.DataFrame, ParseSummary]:
    """The whole file in memory: ``(frame, issues, summary)``. ``kw`` as for :func:`iter_export_chunks`."""
    with iter_export_chunks(source, file_hash=file_hash, **kw) as reader:
        chunks = list(reader)
        summary = reader.summary()
    frame = pd.concat([c.frame for c in chunks], ignore_index=True)
    issues = pd.concat([c.issues for c in chunks], ignore_index=True)
    return frame, issues, summary
