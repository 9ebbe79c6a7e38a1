"""Typing numeric cells: decimal commas, thousands separators, the minus sign, null tokens.

A clean column takes one ``pyarrow.compute`` cast; only the values that fail it are
classified by regular expression and, as a last resort, fixed one by one in Python.
"""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tracseq_dagster.parsing.arrow_text import NULL_TOKENS, _as_text, _clean_text, _is_text, _np_bool

# Regular expressions (RE2 syntax, also valid Python `re`).
_NUM_RE = r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$"
_PY_NUM = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_GROUPED_COMMA_DECIMAL = re.compile(r"[+-]?\d{1,3}(?:[.\s\u00a0\u202f']\d{3})+(?:,\d+)?")
_GROUPED_DOT_DECIMAL = re.compile(r"[+-]?\d{1,3}(?:[,\s\u00a0\u202f']\d{3})+(?:\.\d+)?")
_GROUP_SEPARATORS = re.compile(r"[.,\s\u00a0\u202f']")


def _fix_number(text: str, comma_decimal: bool) -> float | None:
    """Last resort for a numeric cell that failed the vectorised casts (few values)."""
    s = text.strip().replace("\u2212", "-")
    if s.lower() in NULL_TOKENS:
        return float("nan")
    if comma_decimal and _GROUPED_COMMA_DECIMAL.fullmatch(s):
        s = _GROUP_SEPARATORS.sub("", s[: s.rfind(",")] if "," in s else s) + ("." + s[s.rfind(",") + 1 :] if "," in s else "")
    elif not comma_decimal and _GROUPED_DOT_DECIMAL.fullmatch(s):
        s = _GROUP_SEPARATORS.sub("", s[: s.rfind(".")] if "." in s else s) + ("." + s[s.rfind(".") + 1 :] if "." in s else "")
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
