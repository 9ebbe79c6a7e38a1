"""Typing timestamp cells: ISO 8601, day/month/year layouts, two-digit years, Excel serials.

The layouts a lab sends are tried as stages (most common in the column first), each a
vectorised regular-expression match and cast; naive values are read in the export's time
zone and everything is returned as UTC nanoseconds. The stage patterns are shared with the
dialect sniffer, which names the date style it saw.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from tracseq_dagster.parsing.arrow_text import NULL_TOKENS, _as_text, _clean_text, _is_text, _np_bool

# Regular expressions (RE2 syntax for pyarrow.compute, also valid Python `re`).
_ISO_NAIVE_RE = r"^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}(?::\d{2}(?::\d{2}(?:\.\d{1,9})?)?)?)?$"
_ISO_ZONED_RE = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}(?::\d{2}(?::\d{2}(?:\.\d{1,9})?)?)? ?(?:Z|z|UTC|[+-]\d{2}(?::?\d{2})?)$"
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


def _build_naive_ns(
    y: np.ndarray, mo: np.ndarray, d: np.ndarray, hh: np.ndarray, mm: np.ndarray, ss: np.ndarray, frac: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Validated wall-clock components -> (int64 ns since epoch as naive wall time, valid mask)."""
    valid = (
        (y >= 1678)
        & (y <= 2261)
        & (mo >= 1)
        & (mo <= 12)
        & (d >= 1)
        & (hh >= 0)
        & (hh <= 23)
        & (mm >= 0)
        & (mm <= 59)
        & (ss >= 0)
        & (ss <= 59)
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
        pc.cast(
            pc.utf8_rpad(pc.if_else(pc.equal(frac_text, ""), pa.scalar("0"), frac_text), width=9, padding="0"), pa.int64()
        ).to_numpy(zero_copy_only=False),
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
