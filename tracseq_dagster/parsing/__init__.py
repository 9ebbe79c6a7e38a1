"""Parse one LIMS export file (CSV, Parquet or JSON Lines) into the typed frame of its kind.

The typed frame (downstream code relies on it)
-----------------------------------------------
* one column per contract column, in contract order (``contract.CONTRACT_COLUMNS``); a
  missing optional column is added as all-null;
* string and enum columns: pandas ``"string"`` dtype (Arrow-backed ``string[pyarrow]``,
  which compares equal to ``"string"``), stripped, empty -> ``<NA>``;
* timestamp columns: ``datetime64[ns, UTC]``; float columns: ``float64``; int columns:
  ``"Int64"``;
* then unknown extra columns, under their normalised names, ``"string"`` dtype, in file order;
* then the lineage columns ``FILE_HASH`` (as passed in), ``SOURCE_FILE`` (the path or URL as
  given) and ``ROW_NUMBER`` (``int64``): the 1-based physical line of the row in a CSV or
  JSON Lines file (a CSV header is line 1; blank lines and lines inside quoted multi-line
  values count, so ``sed -n 57p file`` shows the row), the 1-based record number in Parquet.

Blank CSV lines (and lines whose fields are all empty) are not rows; JSON Lines blank lines
are skipped too. Every other record becomes a row, however bad its cells are.

What happens to bad input
-------------------------
* A cell that cannot be typed becomes ``<NA>`` and one row of the ``issues`` frame
  (``ROW_NUMBER``, ``column``, ``value`` = the raw text, ``rule`` = ``"type"``, ``message``,
  e.g. ``"not a number: 'abc'"``, ``"not an integer: '2.5'"``,
  ``"not a timestamp: '31.02.2025 10:00'"``). The row itself is kept; the validator decides.
* A row with fewer fields than the header (e.g. a truncated last line) keeps its missing
  cells as ``<NA>`` and adds a warning naming the line. A CSV row with more fields than the
  header keeps its first fields and adds an issue (``column`` = ``WHOLE_ROW``, ``rule`` =
  ``"fields"``, ``value`` = the surplus fields): its cells may be shifted, so the validator
  quarantines it, and the rest of the file goes on. Surplus fields that are all empty are
  trailing separators: ignored, with one warning for the file. Unknown extra columns are kept and
  warned about; missing optional columns are added empty and warned about.
* Enum values in another case or with surrounding spaces (``URGENT``, `` dna``, ``Pass``) are
  stored in the contract's spelling; the file gets one warning per column with the count.
  Values that match no allowed value case-insensitively stay as written, for ``enum:<col>``.
* Everything that makes the file as a whole unusable raises :class:`ExportParseError`
  naming the file, the line and the column where that makes sense: an empty file, a header
  with no data rows, binary content, a header that does not split with any accepted
  separator, missing required columns (JSON Lines: a key no record has, known at the end;
  a record without it only has empty cells), duplicate columns, an undecodable byte, an invalid JSON
  line, an unreadable Parquet file.

Accepted dialects
-----------------
Separators ``,`` ``;`` tab ``|`` (sniffed from the first 64 KB; an Excel ``sep=X`` first line
is honoured). Encodings: UTF-8 with or without BOM, UTF-16 with BOM, otherwise cp1252 (Western
European Windows; latin-1 text decodes the same) when it decodes and most letters are ASCII,
else charset-normalizer's pick (non-Latin code pages; no pick means "not a text file").
CRLF, LF or CR line ends; quoted fields (RFC 4180, including quoted newlines); decimal commas
when the separator is not a comma (also ``1.234,5``); null tokens (``NA``, ``N/A``, ``null``,
``-`` ...) in numeric and timestamp columns.

Timestamps: ISO 8601 with or without a zone (zoned values are converted to UTC; naive ones
are read in ``naive_timezone``: an ambiguous local time at the autumn DST change takes the
earlier instant, a non-existent one in the spring gap moves to the first instant after it),
date-only values, ``dd.mm.yyyy[ hh:mm[:ss]]`` (always day first), ``dd/mm/yyyy`` and
``dd-mm-yyyy`` (day first unless ``dayfirst=False``, then month first, with optional AM/PM),
``yyyy/mm/dd``, two-digit years (``00-68`` -> 20xx, as POSIX ``%y``), and Excel serial day
numbers ``10000 <= x < 100000`` (1927-2173), rounded to the millisecond.

Speed: CSV is tokenised by ``pyarrow.csv`` on line-aligned byte chunks; every format is
typed by the one vectorised :func:`coerce_columns` (pyarrow.compute casts with a fast path for
clean columns; regular-expression classification and pandas only for the values that fail).

Layout
------
One concept per module; this package re-exports the public API (and the names tests and
benchmarks reach for), so ``from tracseq_dagster.parsing import X`` is the import to use:

* ``errors``: :class:`ExportParseError`, the one exception for a file unusable as a whole;
* ``results``: :class:`ParsedChunk`, :class:`ExportDialect`, :class:`ParseSummary`;
* ``issues``: the issues frame's columns, dtypes and Arrow schema;
* ``arrow_text``: raw Arrow cells as text, trimmed; the null tokens;
* ``numbers``, ``timestamps``, ``enums``: typing one kind of cell;
* ``typed_frame``: :func:`coerce_columns` (raw columns into the typed frame) and its schema;
* ``encoding``: which text encoding a file is in, and whether it is text at all;
* ``line_stream``: a text file as whole UTF-8 lines with physical line numbers;
* ``dialect``: sniffing the format, the separator and the date style;
* ``header``: a header's names into contract columns (duplicates, required columns);
* ``raw_chunk``, ``csv_source``, ``jsonl_source``, ``parquet_source``: the format readers;
* ``reader``: :class:`ExportReader`, the chunked driver, with :func:`iter_export_chunks` and
  :func:`read_export`;
* ``to_parquet``: :func:`parse_export_to_parquet`, what the landing asset runs;
* ``kind``: :func:`detect_export_kind`, which export kind (samples, runs) a file is.

Every function that reads or types a file takes ``contract`` (an
:class:`~tracseq_dagster.export_contract.ExportContract`, default the sample export): the
columns, aliases and kinds above are that contract's, so a sequencing run export goes through
the very same code with ``contract=RUN_CONTRACT``.
"""

from __future__ import annotations

from tracseq_dagster.parsing.arrow_text import NULL_TOKENS as NULL_TOKENS
from tracseq_dagster.parsing.csv_source import _CsvSource as _CsvSource
from tracseq_dagster.parsing.dialect import SNIFF_BYTES as SNIFF_BYTES
from tracseq_dagster.parsing.errors import ExportParseError
from tracseq_dagster.parsing.issues import ISSUE_COLUMNS, issues_arrow_schema
from tracseq_dagster.parsing.issues import STRING_DTYPE as STRING_DTYPE
from tracseq_dagster.parsing.jsonl_source import _JsonlSource as _JsonlSource
from tracseq_dagster.parsing.kind import ExportKindError, detect_export_kind
from tracseq_dagster.parsing.parquet_source import _ParquetSource as _ParquetSource
from tracseq_dagster.parsing.reader import ExportReader, iter_export_chunks, read_export
from tracseq_dagster.parsing.results import ExportDialect, ParsedChunk, ParseSummary
from tracseq_dagster.parsing.to_parquet import parse_export_to_parquet
from tracseq_dagster.parsing.typed_frame import coerce_columns, typed_arrow_schema

__all__ = [
    "ExportDialect",
    "ExportKindError",
    "ExportParseError",
    "ExportReader",
    "ISSUE_COLUMNS",
    "ParseSummary",
    "ParsedChunk",
    "coerce_columns",
    "detect_export_kind",
    "issues_arrow_schema",
    "iter_export_chunks",
    "parse_export_to_parquet",
    "read_export",
    "typed_arrow_schema",
]
# Also importable from here, outside __all__ (as before the split): the module-level constants
# NULL_TOKENS, SNIFF_BYTES and STRING_DTYPE, and the format readers that tests patch
# (``_CsvSource._tokenise_exact``).
