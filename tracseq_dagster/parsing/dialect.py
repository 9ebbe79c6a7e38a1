"""Sniffing an export's dialect: its format, separator and date style.

The first 64 KB decide: the suffix (or the content) picks the format, the header and the
lines below it pick the separator (or say which one it looks like when none fits), and a
sample of timestamp cells names the date style reported in the summary.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc

from tracseq_dagster.contract import SAMPLE_CONTRACT
from tracseq_dagster.export_contract import ExportContract
from tracseq_dagster.parsing.arrow_text import _as_text, _is_text, _plain
from tracseq_dagster.parsing.timestamps import _TS_STAGE_PY

SNIFF_BYTES = 64 * 1024
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


def _split_header(line: str, sep: str) -> list[str]:
    return next(csv.reader([line], delimiter=sep, quotechar='"'), [])


def _sniff_separator(header: str, data_lines: Sequence[str], contract: ExportContract = SAMPLE_CONTRACT) -> tuple[str, list[str]]:
    best: tuple[tuple[int, int, int], str, list[str]] | None = None
    for sep in _SEPARATORS:
        fields = _split_header(header, sep)
        hits = sum(contract.normalise_column_name(x) in contract.column_by_name for x in fields)
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
