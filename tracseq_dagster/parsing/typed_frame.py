"""Raw columns into the typed frame: one vectorised implementation for all three formats.

:func:`coerce_columns` is what CSV, JSON Lines and Parquet chunks (and the serving layer's
columnar requests) go through, so a cell is typed the same whichever way it arrived;
:func:`typed_arrow_schema` is the frame's Arrow schema, derived from the same code so that
a written file reads back with the same dtypes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from tracseq_dagster.contract import FILE_HASH, ROW_NUMBER, SAMPLE_CONTRACT, SOURCE_FILE, Kind
from tracseq_dagster.export_contract import ExportContract
from tracseq_dagster.parsing.arrow_text import _as_text, _clean_text, _np_bool, _plain
from tracseq_dagster.parsing.enums import _contract_spelling
from tracseq_dagster.parsing.issues import ISSUE_COLUMNS, STRING_DTYPE, _empty_issues
from tracseq_dagster.parsing.numbers import _coerce_float
from tracseq_dagster.parsing.timestamps import _NAT, _coerce_timestamp
from tracseq_dagster.rules import whole_numbers


def typed_arrow_schema(extra_columns: Sequence[str] = (), contract: ExportContract = SAMPLE_CONTRACT) -> pa.Schema:
    """The Arrow schema of the typed frame of ``contract`` (what :func:`parse_export_to_parquet` writes)."""
    kinds = {
        Kind.STRING: pa.string(),
        Kind.ENUM: pa.string(),
        Kind.TIMESTAMP: pa.timestamp("ns", tz="UTC"),
        Kind.FLOAT: pa.float64(),
        Kind.INT: pa.int64(),
    }
    fields = [pa.field(c.name, kinds[c.kind]) for c in contract.columns]
    fields += [pa.field(name, pa.string()) for name in extra_columns]
    fields += [pa.field(FILE_HASH, pa.string()), pa.field(SOURCE_FILE, pa.string()), pa.field(ROW_NUMBER, pa.int64())]
    # The typed frame's pandas metadata goes with the schema, so that pd.read_parquet gives the
    # typed frame back: without it an int column with one empty cell reads back as float64
    # (and the GX type check downstream rejects the whole export), text as object.
    empty, _, _ = coerce_columns({}, np.empty(0, dtype=np.int64), extra_columns=extra_columns, contract=contract)
    return pa.schema(fields, metadata=pa.Schema.from_pandas(empty, preserve_index=False).metadata)


def _null_ts(n: int) -> pd.Series:
    return pd.Series(pd.DatetimeIndex(np.full(n, _NAT, dtype=np.int64).view("M8[ns]")).tz_localize("UTC"))


def _const_string(value: str, n: int) -> pd.Series:
    arr = pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, dtype=np.int32)), pa.array([value], pa.string()))
    return pd.Series(pd.arrays.ArrowStringArray(pa.chunked_array([arr.dictionary_decode()])))


def _string_series(arr: pa.Array | pa.ChunkedArray) -> pd.Series:
    if isinstance(arr, pa.Array):
        arr = pa.chunked_array([arr], type=pa.string())
    return pd.Series(pd.arrays.ArrowStringArray(arr.cast(pa.string())))


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
    contract: ExportContract = SAMPLE_CONTRACT,
) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """Type one chunk of raw columns (the one implementation used for CSV, JSON Lines and Parquet).

    ``raw`` maps normalised column names to Arrow arrays of equal length (text from CSV/JSON,
    native types from Parquet or JSON numbers); ``row_numbers`` holds each row's
    ``ROW_NUMBER``. Returns ``(frame, issues, kept)``: the typed frame (the package docstring),
    one issue row per non-empty cell that could not be typed, and the mask of input rows kept
    (``drop_blank`` drops rows whose cells are all empty, e.g. blank CSV lines).

    Enum values in another case (``URGENT``, ``dna``) are stored in the contract's spelling
    (:attr:`~tracseq_dagster.export_contract.ExportContract.enum_spellings`); ``respelled``, when given, counts them
    per column, so that a reader can warn once per file rather than once per chunk.
    ``contract`` names the columns and their kinds (default: the sample export).
    """
    column_by_name = contract.column_by_name
    all_columns = list(contract.column_names) + list(extra_columns)
    n = len(row_numbers)
    rows = np.asarray(row_numbers, dtype=np.int64)
    columns: dict[str, Any] = {}
    present = np.zeros(n, dtype=bool)
    issue_parts: list[tuple[str, np.ndarray, pa.Array | pa.ChunkedArray, str]] = []

    for name in all_columns:
        kind = column_by_name[name].kind if name in column_by_name else Kind.STRING
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
                text, changed = _contract_spelling(text, contract.enum_spellings[name])
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
    for name in all_columns:
        kind = column_by_name[name].kind if name in column_by_name else Kind.STRING
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
        order = {name: i for i, name in enumerate(all_columns)}
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
