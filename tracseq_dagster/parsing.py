"""Parse one LIMS export file (CSV, Parquet or JSON Lines) into the typed sample frame.

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
"""

from __future__ import annotations

import codecs
import csv
import json
import os
import re
import uuid
import zoneinfo
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import charset_normalizer
import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from tracseq_dagster.contract import (
    COLUMN_BY_NAME,
    COLUMNS,
    CONTRACT_COLUMNS,
    ENUM_SPELLINGS,
    FILE_HASH,
    FLOAT_COLUMNS,
    LINEAGE_COLUMNS,
    REQUIRED_COLUMNS,
    ROW_NUMBER,
    SOURCE_FILE,
    TIMESTAMP_COLUMNS,
    WHOLE_ROW,
    Kind,
    normalise_column_name,
)
from tracseq_dagster.rules import whole_numbers

__all__ = [
    "ExportDialect",
    "ExportParseError",
    "ExportReader",
    "ISSUE_COLUMNS",
    "ParseSummary",
    "ParsedChunk",
    "coerce_columns",
    "issues_arrow_schema",
    "iter_export_chunks",
    "parse_export_to_parquet",
    "read_export",
    "typed_arrow_schema",
]

SNIFF_BYTES = 64 * 1024
_READ_BLOCK = 8 * 1024 * 1024
STRING_DTYPE = pd.StringDtype("pyarrow")
ISSUE_COLUMNS: tuple[str, ...] = (ROW_NUMBER, "column", "value", "rule", "message")
_MAX_SHORT_ROW_WARNINGS = 20

_SUFFIX_FORMATS = {
    ".csv": "csv",
    ".tsv": "csv",
    ".txt": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}
_SEPARATORS = (",", ";", "\t", "|")
_SEPARATOR_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe", " ": "space"}
_MAGIC = (
    (b"PAR1", "a Parquet file"),
    (b"\x89PNG", "a PNG image"),
    (b"PK\x03\x04", "a ZIP archive (an .xlsx workbook?)"),
    (b"%PDF", "a PDF document"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"\xd0\xcf\x11\xe0", "an OLE2 file (an .xls workbook?)"),
    (b"\xff\xd8\xff", "a JPEG image"),
)
# Text that means "no value" in a numeric or timestamp cell (compared case-insensitively).
NULL_TOKENS = frozenset({"na", "n/a", "n.a.", "nan", "null", "none", "nat", "-", "--", "#n/a", "?"})

# Regular expressions (RE2 syntax, also valid Python `re`).
_NUM_RE = r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$"
_ISO_NAIVE_RE = r"^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}(?::\d{2}(?::\d{2}(?:\.\d{1,9})?)?)?)?$"
_ISO_ZONED_RE = (
    r"^\d{4}-\d{2}-\d{2}[T ]\d{2}(?::\d{2}(?::\d{2}(?:\.\d{1,9})?)?)? ?(?:Z|z|UTC|[+-]\d{2}(?::?\d{2})?)$"
)
_TIME_PART = (
    r"(?:(?:[ T]+|, ?)(?P<H>\d{1,2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?:[.,](?P<F>\d{1,9}))?)?"
    r"(?: ?(?P<P>[AaPp][Mm]))?)?$"
)
_DMY_RE = r"^(?P<a>\d{1,2})(?P<sep>[./-])(?P<b>\d{1,2})[./-](?P<y>\d{4}|\d{2})" + _TIME_PART
_YMD_RE = r"^(?P<y>\d{4})(?P<sep>[./-])(?P<b>\d{1,2})[./-](?P<a>\d{1,2})" + _TIME_PART
_EXCEL_RE = r"^\d{5}(?:\.\d+)?$"
_TS_STAGES = ("iso_naive", "iso_zoned", "dmy", "ymd", "excel")
_TS_STAGE_RE = {
    "iso_naive": _ISO_NAIVE_RE,
    "iso_zoned": _ISO_ZONED_RE,
    "dmy": _DMY_RE,
    "ymd": _YMD_RE,
    "excel": _EXCEL_RE,
}
_TS_STAGE_PY = {k: re.compile(v) for k, v in _TS_STAGE_RE.items()}
_NAT = np.iinfo(np.int64).min
_NS_PER_DAY = 86_400 * 10**9
_EXCEL_EPOCH_NS = int(np.datetime64("1899-12-30T00:00:00", "ns").view(np.int64))
_EXCEL_MIN, _EXCEL_MAX = 10_000.0, 100_000.0
_PY_NUM = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_GROUPED_COMMA_DECIMAL = re.compile(r"[+-]?\d{1,3}(?:[.\s\u00a0\u202f']\d{3})+(?:,\d+)?")
_GROUPED_DOT_DECIMAL = re.compile(r"[+-]?\d{1,3}(?:[,\s\u00a0\u202f']\d{3})+(?:\.\d+)?")
_GROUP_SEPARATORS = re.compile(r"[.,\s\u00a0\u202f']")


# --------------------------------------------------------------------------------------
# Public data types
# --------------------------------------------------------------------------------------


class ExportParseError(ValueError):
    """The whole file cannot be parsed. ``str(e)`` is ``"{file}: line {line}, column {column}: {reason}"``
    with the parts that are ``None`` left out."""

    def __init__(self, file: str, line: int | None = None, column: str | None = None, reason: str = "") -> None:
        self.file = str(file)
        self.line = line
        self.column = column
        self.reason = reason
        super().__init__(self._message())

    def _message(self) -> str:
        where = []
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.column is not None:
            where.append(f"column {self.column}")
        return f"{self.file}: {', '.join(where)}: {self.reason}" if where else f"{self.file}: {self.reason}"

    def __str__(self) -> str:
        return self._message()

    def __reduce__(self):  # keep file/line/column/reason when pickled across processes
        return (type(self), (self.file, self.line, self.column, self.reason))


@dataclass
class ParsedChunk:
    """One bounded chunk: the typed rows and the cells that could not be typed."""

    frame: pd.DataFrame
    issues: pd.DataFrame


@dataclass
class ExportDialect:
    """What was sniffed: ``format`` is ``"csv"``, ``"jsonl"`` or ``"parquet"``; ``date_style`` is
    e.g. ``"ISO 8601"``, ``"DD.MM.YYYY"``, ``"Excel serial"``, ``"native"`` (Parquet timestamps)
    or ``"mixed: ISO 8601, DD.MM.YYYY"``; ``None`` where it does not apply or nothing was seen."""

    format: str
    encoding: str | None = None
    separator: str | None = None
    decimal: str | None = None
    bom: bool = False
    date_style: str | None = None


@dataclass
class ParseSummary:
    source: str
    file_hash: str
    rows: int
    issues: int
    dialect: ExportDialect
    extra_columns: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def typed_arrow_schema(extra_columns: Sequence[str] = ()) -> pa.Schema:
    """The Arrow schema of the typed frame (what :func:`parse_export_to_parquet` writes)."""
    kinds = {
        Kind.STRING: pa.string(),
        Kind.ENUM: pa.string(),
        Kind.TIMESTAMP: pa.timestamp("ns", tz="UTC"),
        Kind.FLOAT: pa.float64(),
        Kind.INT: pa.int64(),
    }
    fields = [pa.field(c.name, kinds[c.kind]) for c in COLUMNS]
    fields += [pa.field(name, pa.string()) for name in extra_columns]
    fields += [pa.field(FILE_HASH, pa.string()), pa.field(SOURCE_FILE, pa.string()), pa.field(ROW_NUMBER, pa.int64())]
    # The typed frame's pandas metadata goes with the schema, so that pd.read_parquet gives the
    # typed frame back: without it an int column with one empty cell reads back as float64
    # (and the GX type check downstream rejects the whole export), text as object.
    empty, _, _ = coerce_columns({}, np.empty(0, dtype=np.int64), extra_columns=extra_columns)
    return pa.schema(fields, metadata=pa.Schema.from_pandas(empty, preserve_index=False).metadata)


def issues_arrow_schema() -> pa.Schema:
    return pa.schema(
        [pa.field(ROW_NUMBER, pa.int64())] + [pa.field(name, pa.string()) for name in ISSUE_COLUMNS[1:]]
    )


def _empty_issues() -> pd.DataFrame:
    return pd.DataFrame(
        {
            ROW_NUMBER: pd.Series([], dtype="int64"),
            **{name: pd.Series([], dtype=STRING_DTYPE) for name in ISSUE_COLUMNS[1:]},
        }
    )


# --------------------------------------------------------------------------------------
# Small Arrow helpers
# --------------------------------------------------------------------------------------


def _np_bool(x: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Boolean Arrow data as a numpy bool array, null -> False."""
    return np.asarray(pc.fill_null(x, False).to_numpy(zero_copy_only=False), dtype=bool)


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def _plain(arr: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Decode dictionaries, turn the null type into null strings, large_string into string."""
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode() if isinstance(arr, pa.Array) else pa.chunked_array(
            [c.dictionary_decode() for c in arr.chunks], type=arr.type.value_type
        )
    if pa.types.is_null(arr.type) or pa.types.is_large_string(arr.type):
        arr = arr.cast(pa.string())
    return arr


def _as_text(arr: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Any Arrow array as strings (the raw text a person would see)."""
    if _is_text(arr.type):
        return arr.cast(pa.string())
    try:
        return pc.cast(arr, pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        values = arr.to_pylist()
        return pa.array(
            [None if v is None else json.dumps(v, default=str) if isinstance(v, (dict, list)) else str(v) for v in values],
            pa.string(),
        )


def _clean_text(arr: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Strip whitespace; empty -> null."""
    trimmed = pc.utf8_trim_whitespace(arr)
    return pc.if_else(pc.equal(trimmed, ""), pa.scalar(None, pa.string()), trimmed)


def _null_ts(n: int) -> pd.Series:
    return pd.Series(pd.DatetimeIndex(np.full(n, _NAT, dtype=np.int64).view("M8[ns]")).tz_localize("UTC"))


def _const_string(value: str, n: int) -> pd.Series:
    arr = pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, dtype=np.int32)), pa.array([value], pa.string()))
    return pd.Series(pd.arrays.ArrowStringArray(pa.chunked_array([arr.dictionary_decode()])))


def _string_series(arr: pa.Array | pa.ChunkedArray) -> pd.Series:
    if isinstance(arr, pa.Array):
        arr = pa.chunked_array([arr], type=pa.string())
    return pd.Series(pd.arrays.ArrowStringArray(arr.cast(pa.string())))


# --------------------------------------------------------------------------------------
# Type coercion: one vectorised implementation for all three formats
# --------------------------------------------------------------------------------------


def _fix_number(text: str, comma_decimal: bool) -> float | None:
    """Last resort for a numeric cell that failed the vectorised casts (few values)."""
    s = text.strip().replace("\u2212", "-")
    if s.lower() in NULL_TOKENS:
        return float("nan")
    if comma_decimal and _GROUPED_COMMA_DECIMAL.fullmatch(s):
        s = _GROUP_SEPARATORS.sub("", s[: s.rfind(",")] if "," in s else s) + (
            "." + s[s.rfind(",") + 1 :] if "," in s else ""
        )
    elif not comma_decimal and _GROUPED_DOT_DECIMAL.fullmatch(s):
        s = _GROUP_SEPARATORS.sub("", s[: s.rfind(".")] if "." in s else s) + (
            "." + s[s.rfind(".") + 1 :] if "." in s else ""
        )
    elif comma_decimal:
        s = s.replace(",", ".")
    if _PY_NUM.fullmatch(s):
        return float(s)
    return None


def _coerce_float(arr: pa.Array | pa.ChunkedArray, comma_decimal: bool) -> tuple[np.ndarray, np.ndarray]:
    """(float64 values with NaN for missing, mask of cells that are not numbers)."""
    n = len(arr)
    no_bad = np.zeros(n, dtype=bool)
    t = arr.type
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        return np.asarray(pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64), no_bad
    if not _is_text(t):
        arr = _as_text(arr)
    try:  # fast path: a clean column (CSV empties are already null)
        return np.asarray(pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64), no_bad
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    if comma_decimal:  # a clean decimal-comma column
        try:
            values = pc.cast(pc.replace_substring(arr, ",", "."), pa.float64())
            return np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.float64), no_bad
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
    text = _clean_text(arr)
    candidate = pc.replace_substring(text, "\u2212", "-")
    if comma_decimal:
        candidate = pc.replace_substring(candidate, ",", ".")
    try:
        return np.asarray(pc.cast(candidate, pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64), no_bad
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    ok = pc.fill_null(pc.match_substring_regex(candidate, _NUM_RE), False)
    values = pc.cast(pc.if_else(ok, candidate, pa.scalar(None, pa.string())), pa.float64())
    values = np.array(values.to_numpy(zero_copy_only=False), dtype=np.float64)
    bad = _np_bool(pc.and_(pc.is_valid(text), pc.invert(ok)))
    idx = np.flatnonzero(bad)
    if len(idx):
        for i, raw in zip(idx, text.take(pa.array(idx)).to_pylist()):
            fixed = _fix_number(raw, comma_decimal)
            if fixed is not None:
                values[i] = fixed
                bad[i] = False
    return values, bad


def _build_naive_ns(y, mo, d, hh, mm, ss, frac) -> tuple[np.ndarray, np.ndarray]:
    """Validated wall-clock components -> (int64 ns since epoch as naive wall time, valid mask)."""
    valid = (
        (y >= 1678) & (y <= 2261) & (mo >= 1) & (mo <= 12) & (d >= 1)
        & (hh >= 0) & (hh <= 23) & (mm >= 0) & (mm <= 59) & (ss >= 0) & (ss <= 59)
    )
    months = np.where(valid, (y - 1970) * 12 + (mo - 1), 0)
    start = months.astype("datetime64[M]").astype("datetime64[D]")
    days_in_month = ((months + 1).astype("datetime64[M]").astype("datetime64[D]") - start).astype(np.int64)
    valid &= d <= days_in_month
    day = start.astype(np.int64) + np.where(valid, d - 1, 0)
    ns = day * _NS_PER_DAY + ((hh * 60 + mm) * 60 + ss) * 10**9 + frac
    return np.where(valid, ns, _NAT), valid


def _ints(struct: pa.StructArray | pa.ChunkedArray, name: str, default: int = 0) -> np.ndarray:
    part = pc.struct_field(struct, name)
    part = pc.if_else(pc.equal(part, ""), pa.scalar(str(default)), part)
    return np.asarray(pc.cast(part, pa.int64()).to_numpy(zero_copy_only=False), dtype=np.int64)


def _parse_components(sub: pa.Array, pattern: str, *, year_first: bool, dayfirst: bool) -> np.ndarray:
    parts = pc.extract_regex(sub, pattern)
    a, b, y = _ints(parts, "a"), _ints(parts, "b"), _ints(parts, "y")
    hh, mm, ss = _ints(parts, "H"), _ints(parts, "M"), _ints(parts, "S")
    frac_text = pc.struct_field(parts, "F")
    frac = np.asarray(
        pc.cast(pc.utf8_rpad(pc.if_else(pc.equal(frac_text, ""), pa.scalar("0"), frac_text), width=9, padding="0"),
                pa.int64()).to_numpy(zero_copy_only=False),
        dtype=np.int64,
    )
    y = np.where(y < 100, np.where(y < 69, 2000 + y, 1900 + y), y)  # POSIX %y
    if year_first:
        mo, d = b, a
    else:
        dot = _np_bool(pc.equal(pc.struct_field(parts, "sep"), "."))
        day_first = dot | dayfirst
        d, mo = np.where(day_first, a, b), np.where(day_first, b, a)
    meridiem = np.asarray(pc.utf8_lower(pc.struct_field(parts, "P")).to_numpy(zero_copy_only=False), dtype=object)
    has_ampm = meridiem != ""
    bad_ampm = has_ampm & ((hh < 1) | (hh > 12))
    hh = np.where(has_ampm & (meridiem == "am") & (hh == 12), 0, hh)
    hh = np.where(has_ampm & (meridiem == "pm") & (hh < 12), hh + 12, hh)
    ns, valid = _build_naive_ns(y, mo, d, hh, mm, ss, frac)
    return np.where(valid & ~bad_ampm, ns, _NAT)


def _dmy_format(value: str, dayfirst: bool) -> tuple[str, bool] | None:
    """The strptime format of one day/month/year value, and whether the first number is the day
    (``None`` for layouts the fast path does not cover: fractions of a second, other shapes)."""
    m = _TS_STAGE_PY["dmy"].match(value)
    if m is None or m.group("F"):
        return None
    sep = m.group("sep")
    day_first = sep == "." or dayfirst
    fmt = ("%d" if day_first else "%m") + sep + ("%m" if day_first else "%d")
    fmt += value[m.end("b") : m.start("y")] + ("%Y" if len(m.group("y")) == 4 else "%y")
    if m.group("H"):
        fmt += value[m.end("y") : m.start("H")] + ("%I" if m.group("P") else "%H") + ":%M"
        last = "M"
        if m.group("S"):
            fmt += ":%S"
            last = "S"
        if m.group("P"):
            fmt += value[m.end(last) : m.start("P")] + "%p"
    return fmt, day_first


def _cast_iso(sub: pa.Array, zoned: bool) -> np.ndarray:
    target = pa.timestamp("ns", tz="UTC") if zoned else pa.timestamp("ns")
    try:
        out = pc.cast(sub, target)
        return np.asarray(pc.fill_null(out.cast(pa.int64()), _NAT).to_numpy(zero_copy_only=False), dtype=np.int64)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        parsed = pd.to_datetime(sub.to_pandas(), format="ISO8601", errors="coerce", utc=zoned)
        return pd.DatetimeIndex(parsed).asi8.astype(np.int64)


def _localize(ns: np.ndarray, tz: str) -> np.ndarray:
    """Naive wall-clock ns (``_NAT`` = missing) -> UTC ns, read in ``tz``."""
    if tz == "UTC":
        return ns
    missing = ns == _NAT
    arr = pa.array(ns, type=pa.timestamp("ns"), mask=missing)
    local = pc.assume_timezone(arr, timezone=tz, ambiguous="earliest", nonexistent="latest")
    return np.asarray(pc.fill_null(local.cast(pa.int64()), _NAT).to_numpy(zero_copy_only=False), dtype=np.int64)


def _coerce_timestamp(arr: pa.Array | pa.ChunkedArray, dayfirst: bool, tz: str) -> tuple[np.ndarray, np.ndarray]:
    """(int64 UTC ns with ``_NAT`` for missing, mask of cells that are not timestamps)."""
    n = len(arr)
    no_bad = np.zeros(n, dtype=bool)
    t = arr.type
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        try:
            if pa.types.is_timestamp(t) and t.tz is not None:
                out = pc.cast(arr, pa.timestamp("ns", tz="UTC"))
                return np.asarray(pc.fill_null(out.cast(pa.int64()), _NAT).to_numpy(zero_copy_only=False), np.int64), no_bad
            out = pc.cast(arr, pa.timestamp("ns"))
            ns = np.asarray(pc.fill_null(out.cast(pa.int64()), _NAT).to_numpy(zero_copy_only=False), np.int64)
            return _localize(ns, tz), no_bad
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):  # out of the ns range
            arr = _as_text(arr)
    elif pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        arr = _as_text(arr)  # numbers are Excel serial days, judged as text below
    elif not _is_text(t):
        arr = _as_text(arr)

    for target in (pa.timestamp("ns"), pa.timestamp("ns", tz="UTC")):  # fast paths: a clean ISO column
        try:
            out = pc.cast(arr, target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
        ns = np.asarray(pc.fill_null(out.cast(pa.int64()), _NAT).to_numpy(zero_copy_only=False), np.int64)
        return (ns if target.tz else _localize(ns, tz)), no_bad

    text = _clean_text(arr)
    if isinstance(text, pa.ChunkedArray):
        text = text.combine_chunks()
    valid = _np_bool(pc.is_valid(text))
    out = np.full(n, _NAT, dtype=np.int64)
    naive = np.zeros(n, dtype=bool)
    remaining = valid.copy()
    probe = pc.drop_null(text).slice(0, 32).to_pylist()
    # Fast path for a day-first column in one fixed layout (e.g. Excel's "23.11.2025 14:05"):
    # one strptime with the layout of the first such value; anything it does not take
    # (other layouts, impossible dates) goes on to the general stages below.
    layout = next((f for f in map(lambda v: _dmy_format(v, dayfirst), probe) if f is not None), None)
    if layout is not None:
        fmt, day_first = layout
        parsed = pc.strptime(text, format=fmt, unit="ns", error_is_null=True)
        # strptime rolls 31.02 over into March: the first number must survive unchanged.
        digits = pc.replace_substring_regex(pc.utf8_slice_codeunits(text, 0, 2), r"\D", "")
        first_number = pc.cast(pc.if_else(pc.equal(digits, ""), pa.scalar(None, pa.string()), digits), pa.int64())
        survived = pc.equal(first_number, pc.day(parsed) if day_first else pc.month(parsed))
        hit = _np_bool(pc.and_(pc.is_valid(parsed), survived))
        if hit.any():
            ns = np.asarray(pc.fill_null(parsed.cast(pa.int64()), _NAT).to_numpy(zero_copy_only=False), np.int64)
            out[hit] = ns[hit]
            naive |= hit
            remaining &= ~hit
    # Try the shapes most common in this column first, so the rest only see leftovers.
    counts = {stage: sum(bool(_TS_STAGE_PY[stage].match(v)) for v in probe) for stage in _TS_STAGES}
    for stage in sorted(_TS_STAGES, key=lambda s: -counts[s]):
        if not remaining.any():
            break
        idx = np.flatnonzero(remaining)
        sub = text.take(pa.array(idx))
        hit = _np_bool(pc.match_substring_regex(sub, _TS_STAGE_RE[stage]))
        if not hit.any():
            continue
        where = idx[hit]
        sub = sub.filter(pa.array(hit))
        if stage in ("iso_naive", "iso_zoned"):
            values = _cast_iso(sub, zoned=stage == "iso_zoned")
        elif stage == "excel":
            days = np.asarray(pc.cast(sub, pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)
            in_range = (days >= _EXCEL_MIN) & (days < _EXCEL_MAX)
            ms = np.round(np.where(in_range, days, 0.0) * 86_400_000).astype(np.int64)
            values = np.where(in_range, _EXCEL_EPOCH_NS + ms * 1_000_000, _NAT)
        else:
            values = _parse_components(sub, _TS_STAGE_RE[stage], year_first=stage == "ymd", dayfirst=dayfirst)
        out[where] = values
        naive[where] = stage != "iso_zoned"
        remaining[where] = False
    if naive.any() and tz != "UTC":
        out[naive] = _localize(out[naive], tz)
    bad = valid & (out == _NAT)
    idx = np.flatnonzero(bad)
    if len(idx):  # "NA", "n/a", "-" ... mean no value, not a bad one
        tokens = np.array([v.lower() in NULL_TOKENS for v in text.take(pa.array(idx)).to_pylist()], dtype=bool)
        bad[idx[tokens]] = False
    return out, bad


def _contract_spelling(text: pa.Array | pa.ChunkedArray, spellings: Mapping[str, str]) -> tuple[pa.Array | pa.ChunkedArray, int]:
    """Enum text with every case-insensitive match of an allowed value in the contract's spelling,
    and how many values that changed. Values that match nothing are left for ``enum:<col>``."""
    lowered = pa.array(list(spellings), pa.string())
    at = pc.index_in(pc.utf8_lower(text), value_set=lowered)
    canonical = pc.take(pa.array(list(spellings.values()), pa.string()), at)
    changed = pc.sum(pc.fill_null(pc.not_equal(text, canonical), False).cast(pa.int64())).as_py() or 0
    if not changed:
        return text, 0
    return pc.coalesce(canonical, text), changed


def coerce_columns(
    raw: Mapping[str, pa.Array | pa.ChunkedArray],
    row_numbers: np.ndarray,
    *,
    extra_columns: Sequence[str] = (),
    file_hash: str = "",
    source: str = "",
    comma_decimal: bool = False,
    dayfirst: bool = True,
    naive_timezone: str = "UTC",
    drop_blank: bool = False,
    respelled: Counter[str] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """Type one chunk of raw columns (the one implementation used for CSV, JSON Lines and Parquet).

    ``raw`` maps normalised column names to Arrow arrays of equal length (text from CSV/JSON,
    native types from Parquet or JSON numbers); ``row_numbers`` holds each row's
    ``ROW_NUMBER``. Returns ``(frame, issues, kept)``: the typed frame (module docstring),
    one issue row per non-empty cell that could not be typed, and the mask of input rows kept
    (``drop_blank`` drops rows whose cells are all empty, e.g. blank CSV lines).

    Enum values in another case (``URGENT``, ``dna``) are stored in the contract's spelling
    (:data:`~tracseq_dagster.contract.ENUM_SPELLINGS`); ``respelled``, when given, counts them
    per column, so that a reader can warn once per file rather than once per chunk.
    """
    n = len(row_numbers)
    rows = np.asarray(row_numbers, dtype=np.int64)
    columns: dict[str, Any] = {}
    present = np.zeros(n, dtype=bool)
    issue_parts: list[tuple[str, np.ndarray, pa.Array | pa.ChunkedArray, str]] = []

    for name in list(CONTRACT_COLUMNS) + list(extra_columns):
        kind = COLUMN_BY_NAME[name].kind if name in COLUMN_BY_NAME else Kind.STRING
        arr = raw.get(name)
        if arr is None:
            columns[name] = None
            continue
        arr = _plain(arr)
        if len(arr) != n:
            raise ValueError(f"column {name!r} has {len(arr)} values, expected {n}")
        if kind in (Kind.STRING, Kind.ENUM):
            text = _clean_text(_as_text(arr))
            present |= _np_bool(pc.is_valid(text))
            if kind is Kind.ENUM:
                text, changed = _contract_spelling(text, ENUM_SPELLINGS[name])
                if changed and respelled is not None:
                    respelled[name] += changed
            columns[name] = text
            continue
        if kind is Kind.TIMESTAMP:
            ns, bad = _coerce_timestamp(arr, dayfirst, naive_timezone)
            present |= (ns != _NAT) | bad
            columns[name] = ns
            if bad.any():
                issue_parts.append((name, bad, arr, "not a timestamp"))
            continue
        values, bad = _coerce_float(arr, comma_decimal)
        if kind is Kind.INT:
            fractional = ~np.isnan(values) & ~whole_numbers(values)
            if fractional.any():
                issue_parts.append((name, fractional, arr, "not an integer"))
                values = np.where(fractional, np.nan, values)
            present |= fractional
        present |= ~np.isnan(values) | bad
        columns[name] = values
        if bad.any():
            issue_parts.append((name, bad, arr, "not a number"))

    kept = present if drop_blank else np.ones(n, dtype=bool)
    all_kept = bool(kept.all())
    kept_idx = None if all_kept else pa.array(np.flatnonzero(kept))
    m = int(kept.sum())

    out: dict[str, pd.Series] = {}
    for name in list(CONTRACT_COLUMNS) + list(extra_columns):
        kind = COLUMN_BY_NAME[name].kind if name in COLUMN_BY_NAME else Kind.STRING
        value = columns[name]
        if kind in (Kind.STRING, Kind.ENUM):
            if value is None:
                value = pa.nulls(m, pa.string())
            elif kept_idx is not None:
                value = value.take(kept_idx)
            out[name] = _string_series(value)
        elif kind is Kind.TIMESTAMP:
            if value is None:
                out[name] = _null_ts(m)
            else:
                ns = value if all_kept else value[kept]
                out[name] = pd.Series(pd.DatetimeIndex(ns.view("M8[ns]")).tz_localize("UTC"))
        else:
            values = np.full(m, np.nan) if value is None else (value if all_kept else value[kept])
            if kind is Kind.INT:
                mask = np.isnan(values)
                out[name] = pd.Series(pd.arrays.IntegerArray(np.where(mask, 0, values).astype(np.int64), mask))
            else:
                out[name] = pd.Series(values.astype(np.float64, copy=False))
    out[FILE_HASH] = _const_string(file_hash, m)
    out[SOURCE_FILE] = _const_string(source, m)
    out[ROW_NUMBER] = pd.Series(rows if all_kept else rows[kept], dtype="int64")
    frame = pd.DataFrame(out, copy=False)

    if issue_parts:
        order = {name: i for i, name in enumerate(list(CONTRACT_COLUMNS) + list(extra_columns))}
        pieces = []
        for name, bad, arr, message in issue_parts:
            idx = np.flatnonzero(bad)
            values = _as_text(arr).take(pa.array(idx)).to_pylist()
            pieces.append(
                pd.DataFrame(
                    {
                        ROW_NUMBER: rows[idx],
                        "column": name,
                        "value": values,
                        "rule": "type",
                        "message": [f"{message}: {v!r}" for v in values],
                        "_order": order[name],
                    }
                )
            )
        issues = pd.concat(pieces, ignore_index=True).sort_values([ROW_NUMBER, "_order"], kind="stable")
        issues = issues.drop(columns="_order").reset_index(drop=True)
        issues[ROW_NUMBER] = issues[ROW_NUMBER].astype("int64")
        for name in ISSUE_COLUMNS[1:]:
            issues[name] = issues[name].astype(STRING_DTYPE)
    else:
        issues = _empty_issues()
    return frame, issues, kept


# --------------------------------------------------------------------------------------
# Reading text: encoding detection and a line-aligned UTF-8 byte stream
# --------------------------------------------------------------------------------------


def _binary_reason(head: bytes) -> str:
    for magic, what in _MAGIC:
        if head.startswith(magic):
            return f"not a text file (looks like {what})"
    return "not a text file (binary content)"


def _detect_encoding(head: bytes, complete: bool, file: str) -> tuple[str, int, bool]:
    """(codec name, bytes of BOM to skip before decoding, had a BOM)."""
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8", 3, True
    if head.startswith(codecs.BOM_UTF16_LE) or head.startswith(codecs.BOM_UTF16_BE):
        return "utf-16", 0, True  # the utf-16 codec consumes the BOM
    if b"\x00" in head:
        raise ExportParseError(file, 1, None, _binary_reason(head))
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=complete)
        return "utf-8", 0, False
    except UnicodeDecodeError:
        pass
    # Not UTF-8. Labs that do not write UTF-8 write a Windows code page, in Western Europe
    # cp1252. charset-normalizer cannot tell the Latin code pages apart on a short, mostly ASCII
    # sample (it guesses cp1250, iso8859_16 or even shift_jis for German text), so cp1252 wins
    # when it decodes and most letters are ASCII; charset-normalizer decides the rest (text in
    # a non-Latin script, bytes cp1252 cannot decode) and whether the bytes are text at all.
    try:
        text = head.decode("cp1252")
    except UnicodeDecodeError:
        text = None
    if text is not None:
        letters = [ch for ch in text if ch.isalpha()]
        foreign = sum(not ch.isascii() for ch in letters)
        if foreign <= 0.3 * max(len(letters), 1):
            return "cp1252", 0, False
    best = charset_normalizer.from_bytes(head).best()
    if best is None:
        raise ExportParseError(file, 1, None, _binary_reason(head) + ": the bytes do not decode in any text encoding")
    return best.encoding, 0, False


_CONTROL_CHARS = re.compile(r"[\x01-\x08\x0b\x0e-\x1a\x1c-\x1f\x7f]")


class _LineStream:
    """The text of a file as UTF-8 bytes, handed out in whole lines with physical line numbers."""

    def __init__(self, f, head: bytes, encoding: str, skip: int, cr_newlines: bool, file: str) -> None:
        self._f = f
        self._pending = head[skip:]
        self._encoding = encoding
        self._ascii_compatible = codecs.lookup(encoding).name not in ("utf-16", "utf-16-le", "utf-16-be")
        self._decoder = codecs.getincrementaldecoder(encoding)("strict")
        self._cr = cr_newlines
        self._file = file
        self._buf = bytearray()
        self._buf_nl = 0  # newlines in self._buf
        self._converted_nl = 0  # newlines in everything converted so far
        self._done = False
        self.line = 1  # physical line number of the next line handed out

    def _read_block(self) -> bool:
        if self._done:
            return False
        if self._pending:
            raw, self._pending = self._pending, b""
        else:
            raw = self._f.read(_READ_BLOCK)
        final = not raw
        if self._ascii_compatible and raw.isascii() and not self._decoder.getstate()[0]:
            out = raw  # ASCII is the same bytes in UTF-8: skip the decode/encode round trip
        else:
            try:
                text = self._decoder.decode(raw, final=final)
            except UnicodeDecodeError as e:
                line = (self._converted_nl + raw[: max(e.start, 0)].count(b"\n") + 1) if self._ascii_compatible else None
                bad = raw[e.start : e.start + 4] if e.start >= 0 else b""
                raise ExportParseError(
                    self._file, line, None,
                    f"bytes {bad!r} are not valid {self._encoding} text (mixed encodings in one file?)",
                ) from None
            out = text.encode("utf-8")
        if self._cr:
            out = out.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        nul = out.find(b"\x00")
        if nul >= 0:
            line = self._converted_nl + out.count(b"\n", 0, nul) + 1
            raise ExportParseError(self._file, line, None, "not a text file (NUL byte in the data)")
        count = out.count(b"\n")
        self._converted_nl += count
        self._buf_nl += count
        self._buf += out
        if final:
            self._done = True
        return True

    def take_lines(self, k: int, *, quote_aware: bool = False) -> tuple[bytes, int, int]:
        """The next ``k`` lines (fewer at the end) as ``(bytes, first line number, number of lines)``.

        With ``quote_aware``, a cut that would fall inside a quoted value (an odd number of
        ``"`` before it) moves on to the next line end, so a record is never split.
        """
        while self._buf_nl < k and self._read_block():
            pass
        buf = self._buf
        if self._buf_nl >= k:
            newlines = k
            view = np.frombuffer(buf, dtype=np.uint8)
            cut = int(np.flatnonzero(view == 10)[k - 1]) + 1
            del view  # release the export so the bytearray can shrink
        else:
            newlines = self._buf_nl
            cut = len(buf)
        if quote_aware and buf.find(b'"', 0, cut) >= 0:
            quotes = buf.count(b'"', 0, cut)
            while quotes % 2:
                nxt = buf.find(b"\n", cut)
                while nxt < 0 and self._read_block():
                    nxt = buf.find(b"\n", cut)
                if nxt < 0:
                    newlines += buf.count(b"\n", cut)
                    cut = len(buf)
                    break
                quotes += buf.count(b'"', cut, nxt + 1)
                cut = nxt + 1
                newlines += 1
        with memoryview(buf) as view:
            chunk = bytes(view[:cut])
        del buf[:cut]
        self._buf_nl -= newlines
        lines = newlines + (1 if chunk and not chunk.endswith(b"\n") else 0)
        first = self.line
        self.line += lines
        return chunk, first, lines


def _split_lines(text: str) -> list[str]:
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


# --------------------------------------------------------------------------------------
# Sniffing
# --------------------------------------------------------------------------------------


def _split_header(line: str, sep: str) -> list[str]:
    return next(csv.reader([line], delimiter=sep, quotechar='"'), [])


def _sniff_separator(header: str, data_lines: Sequence[str]) -> tuple[str, list[str]]:
    best: tuple[tuple[int, int, int], str, list[str]] | None = None
    for sep in _SEPARATORS:
        fields = _split_header(header, sep)
        hits = sum(normalise_column_name(x) in COLUMN_BY_NAME for x in fields)
        consistent = sum(len(_split_header(line, sep)) == len(fields) for line in data_lines[:50])
        key = (hits, consistent, len(fields))
        if best is None or key > best[0]:
            best = (key, sep, fields)
    assert best is not None
    return best[1], best[2]


def _suggest_separator(header: str) -> str:
    counts: dict[str, int] = {}
    for ch in header:
        if not ch.isalnum() and ch not in "_\"'\ufeff":
            counts[ch] = counts.get(ch, 0) + 1
    non_space = {c: k for c, k in counts.items() if c != " "}
    pool = non_space or counts
    if not pool:
        return "the header does not split into columns with a comma, semicolon, tab or pipe; is it a LIMS export?"
    ch = max(pool, key=lambda c: pool[c])
    shown = f"a {_SEPARATOR_NAMES[ch]} ({ch!r})" if ch in _SEPARATOR_NAMES else repr(ch)
    return (
        f"the header does not split into columns; the separator looks like {shown},"
        " but only comma, semicolon, tab or pipe separated files are accepted"
    )


def _date_style(values: Sequence[str], dayfirst: bool) -> str | None:
    labels: dict[str, int] = {}
    for v in values:
        v = v.strip()
        if _TS_STAGE_PY["iso_naive"].match(v) or _TS_STAGE_PY["iso_zoned"].match(v):
            label = "ISO 8601"
        elif m := _TS_STAGE_PY["dmy"].match(v):
            sep = m.group("sep")
            label = "DD.MM.YYYY" if sep == "." else (f"DD{sep}MM{sep}YYYY" if dayfirst else f"MM{sep}DD{sep}YYYY")
        elif m := _TS_STAGE_PY["ymd"].match(v):
            sep = m.group("sep")
            label = f"YYYY{sep}MM{sep}DD"
        elif _TS_STAGE_PY["excel"].match(v):
            label = "Excel serial"
        else:
            label = "other"
        labels[label] = labels.get(label, 0) + 1
    if not labels:
        return None
    ordered = sorted(labels, key=lambda k: -labels[k])
    return ordered[0] if len(ordered) == 1 else "mixed: " + ", ".join(ordered)


def _sample_text(arr: pa.Array | pa.ChunkedArray | None, k: int = 200) -> list[str]:
    if arr is None:
        return []
    if not _is_text(arr.type):
        arr = _as_text(_plain(arr))
    values = pc.drop_null(arr).slice(0, k * 4).to_pylist()
    return [v for v in values if v.strip()][:k]


# --------------------------------------------------------------------------------------
# Format readers: each yields raw chunks (raw Arrow columns, row numbers, fields per row)
# --------------------------------------------------------------------------------------


@dataclass
class _RawChunk:
    raw: dict[str, pa.Array | pa.ChunkedArray]
    rows: np.ndarray
    fields: np.ndarray | None = None  # CSV only: fields found on each row
    surplus: dict[int, list[str]] = field(default_factory=dict)  # CSV only: position -> fields past the header's


class _CsvSource:
    drop_blank = True

    def __init__(self, stream: _LineStream, file: str, head_text: str, complete: bool, chunk_rows: int) -> None:
        self.file = file
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
            sep, names = _sniff_separator(header_text, data_lines)
        else:
            names = _split_header(header_text, sep)
        if len(names) <= 1 and not (names and normalise_column_name(names[0]) in COLUMN_BY_NAME):
            raise ExportParseError(file, self.header_line, header_text, _suggest_separator(header_text))
        self.separator = sep
        self.header_names = names
        self.n_fields = len(names)
        self.columns = _normalise_header(names, file, self.header_line)
        _check_required(self.columns, file, self.header_line)
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
        float_positions = [i for i, name in enumerate(self.columns) if name in FLOAT_COLUMNS]
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

        def handler(row):
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


def _normalise_header(names: Sequence[str], file: str, line: int | None) -> list[str]:
    columns: list[str] = []
    seen: dict[str, str] = {}
    for i, raw_name in enumerate(names):
        name = normalise_column_name(str(raw_name)) or f"unnamed_{i + 1}"
        if name in seen:
            raise ExportParseError(
                file, line, name, f"duplicate column (headers {seen[name]!r} and {raw_name!r} both mean {name!r})"
            )
        seen[name] = str(raw_name)
        columns.append(name)
    return columns


def _check_required(columns: Sequence[str], file: str, line: int | None) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        reason = "missing required column" if len(missing) == 1 else "missing required columns"
        raise ExportParseError(file, line, ", ".join(missing), reason)


class _JsonlSource:
    drop_blank = False
    separator = None
    decimal = None
    comma_decimal = False

    def __init__(self, stream: _LineStream, file: str, chunk_rows: int) -> None:
        self.file = file
        self._stream = stream
        self._chunk_rows = chunk_rows
        self.columns: list[str] | None = None  # fixed by the first chunk
        self.header_names: list[str] = []
        self.first_record_line = 1
        self.late_keys: dict[str, int] = {}
        # JSON Lines has no header: a contract key is "in the file" if any record has it, which
        # is known at the end only (the first chunk may lack a key later records have).
        self.keys_seen: set[str] = set()

    def _records(self) -> Iterator[tuple[list[dict], list[int]]]:
        while True:
            chunk, first, _ = self._stream.take_lines(self._chunk_rows)
            if not chunk:
                return
            records: list[dict] = []
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
                    raise ExportParseError(
                        self.file, first + i, None, f"not a JSON object (a JSON {type(obj).__name__} instead)"
                    )
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
                keys.setdefault(normalise_column_name(str(key)) or "unnamed", []).append(key)
            self.keys_seen.update(keys)
            if self.columns is None:
                self.first_record_line = numbers[0]
                self.columns = list(keys)
                self.header_names = [spellings[0] for spellings in keys.values()]
            raw: dict[str, pa.Array] = {}
            for name, spellings in keys.items():
                if name not in self.columns and name not in COLUMN_BY_NAME:
                    self.late_keys.setdefault(name, numbers[0])
                    continue
                if len(spellings) == 1:
                    values = [r.get(spellings[0]) for r in records]
                else:
                    values = [next((r[k] for k in spellings if r.get(k) is not None), None) for r in records]
                raw[name] = _json_array(values)
            yield _RawChunk(raw, np.asarray(numbers, dtype=np.int64))


def _json_array(values: list) -> pa.Array:
    try:
        arr = pa.array(values)
        if not (pa.types.is_struct(arr.type) or pa.types.is_list(arr.type) or pa.types.is_boolean(arr.type)):
            return arr
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        pass
    return pa.array(
        [
            None if v is None else v if isinstance(v, str)
            else json.dumps(v) if isinstance(v, (dict, list, bool)) else str(v)
            for v in values
        ],
        pa.string(),
    )


class _ParquetSource:
    drop_blank = False
    separator = None
    decimal = None
    comma_decimal = False

    def __init__(self, f, file: str, chunk_rows: int) -> None:
        self.file = file
        self._chunk_rows = chunk_rows
        try:
            self._pf = pq.ParquetFile(f)
            names = self._pf.schema_arrow.names
        except (pa.ArrowException, OSError, ValueError) as e:
            raise ExportParseError(file, None, None, f"not a readable Parquet file: {e}") from None
        self.header_names = list(names)
        self.columns = _normalise_header(names, file, None)
        _check_required(self.columns, file, None)
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


# --------------------------------------------------------------------------------------
# The reader
# --------------------------------------------------------------------------------------


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
    ) -> None:
        if chunk_rows < 1:
            raise ValueError("chunk_rows must be at least 1")
        try:
            zoneinfo.ZoneInfo(naive_timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as e:
            raise ValueError(f"unknown naive_timezone {naive_timezone!r}") from e
        self.source = str(source)
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
        self._file = None
        self._finished = False
        try:
            self._open(chunk_rows)
        except BaseException:
            self.close()
            raise

    # -- setup ------------------------------------------------------------------------

    def _open(self, chunk_rows: int) -> None:
        fs, path = fsspec.core.url_to_fs(self.source)
        self._file = fs.open(path, "rb")
        head = self._file.read(SNIFF_BYTES)
        if not head:
            raise ExportParseError(self.source, 1, None, "file is empty")
        complete = len(head) < SNIFF_BYTES
        if not complete:
            more = self._file.read(1)
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
            self._file.seek(0)
            src: Any = _ParquetSource(self._file, self.source, chunk_rows)
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
            stream = _LineStream(self._file, head, encoding, skip, cr_newlines, self.source)
            if fmt == "csv":
                src = _CsvSource(stream, self.source, head_text, complete, chunk_rows)
            else:
                src = _JsonlSource(stream, self.source, chunk_rows)
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
        self.extra_columns = [c for c in columns if c not in COLUMN_BY_NAME]
        raw_names = dict(zip(columns, src.header_names))
        for name in self.extra_columns:
            spelled = raw_names.get(name, name)
            shown = f"'{name}'" if spelled == name else f"'{name}' (header {spelled!r})"
            self.warnings.append(f"unknown extra column {shown} kept")
        if self._format != "jsonl":  # JSON Lines: known once every record was read (_finish)
            self._warn_missing_optional(columns)
        self.columns = list(CONTRACT_COLUMNS) + self.extra_columns + list(LINEAGE_COLUMNS)
        timestamps = [first.raw.get(c) for c in TIMESTAMP_COLUMNS if first.raw.get(c) is not None]
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
        missing_optional = [c for c in CONTRACT_COLUMNS if c not in columns]
        if missing_optional:
            self.warnings.append("optional column(s) not in the file, left empty: " + ", ".join(missing_optional))

    def _no_rows(self) -> None:
        line = getattr(self._src, "header_line", None) or getattr(self._src, "first_record_line", None)
        if self._format == "jsonl" and self._src.columns is None:
            raise ExportParseError(self.source, 1, None, "file is empty (blank lines only)")
        raise ExportParseError(self.source, line if self._format != "parquet" else None, None, "header only, no data rows")

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
            _check_required(self._src.keys_seen, self.source, None)
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

    def __exit__(self, *exc) -> None:
        self.close()


# --------------------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------------------


def iter_export_chunks(
    source: str | os.PathLike[str],
    *,
    file_hash: str,
    chunk_rows: int = 250_000,
    dayfirst: bool = True,
    naive_timezone: str = "UTC",
) -> ExportReader:
    """Open ``source`` (a local path or an fsspec URL) and return an :class:`ExportReader`:
    iterate it for :class:`ParsedChunk` s of at most ``chunk_rows`` rows."""
    return ExportReader(
        source, file_hash=file_hash, chunk_rows=chunk_rows, dayfirst=dayfirst, naive_timezone=naive_timezone
    )


def parse_export_to_parquet(
    source: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    *,
    file_hash: str,
    chunk_rows: int = 250_000,
    dayfirst: bool = True,
    naive_timezone: str = "UTC",
) -> ParseSummary:
    """Parse ``source`` and write the typed rows to ``dest`` and the issues to
    ``dest.with_suffix(".issues.parquet")``, chunk by chunk. Both are written under temporary
    names and renamed at the end; a failed parse leaves neither behind. The summary is also
    stored in the data file's key-value metadata under ``tracseq.parse_summary``."""
    dest = Path(dest)
    issues_dest = dest.with_suffix(".issues.parquet")
    dest.parent.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex[:12]
    tmp = dest.with_name(f".{dest.name}.{token}.tmp")
    tmp_issues = dest.with_name(f".{issues_dest.name}.{token}.tmp")
    writer = issues_writer = None
    try:
        with iter_export_chunks(
            source, file_hash=file_hash, chunk_rows=chunk_rows, dayfirst=dayfirst, naive_timezone=naive_timezone
        ) as reader:
            schema = typed_arrow_schema(reader.extra_columns)
            issue_schema = issues_arrow_schema()
            writer = pq.ParquetWriter(tmp, schema)
            issues_writer = pq.ParquetWriter(tmp_issues, issue_schema)
            for chunk in reader:
                if len(chunk.frame):
                    writer.write_table(pa.Table.from_pandas(chunk.frame, schema=schema, preserve_index=False))
                if len(chunk.issues):
                    issues_writer.write_table(
                        pa.Table.from_pandas(chunk.issues, schema=issue_schema, preserve_index=False)
                    )
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
