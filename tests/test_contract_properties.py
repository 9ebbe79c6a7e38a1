"""The export contract holds for every column, in every accepted format (issue 17).

Hypothesis builds lab exports of good rows (every column filled within its rules, enum
values in any case, columns in any order) in five formats: plain CSV (UTC or offset
timestamps), an Excel-style European CSV (UTF-8 BOM or cp1252, semicolons, decimal commas,
``dd.mm.yy[yy] HH:MM``, CRLF, "Title Case" headers, trailing blank lines), a tab-separated CSV
(naive, ``yyyy/mm/dd`` or Excel serial timestamps), JSON Lines (numbers as numbers or text)
and Parquet (native types; text where a column holds a defect); each file also picks its null
token, cell padding and parser chunk size (:func:`styles`). Then one row gets a defect from
:func:`defect_catalogue` (every kind of defect every column can have) and the file goes the
way an export goes in production: parsed to the lake's Parquet, read back as the validation
asset reads it, validated.

Per file: exactly the defective row (and, for a duplicated id, its twin) is quarantined,
with exactly the expected rules, each naming the defective column; every other row is
accepted with the values that were written. Per batch of files: the Great Expectations
suite of the blocking check passes on the accepted rows, and on the raw rows GX flags the
same rows under the same rules as the pandas rendering (:func:`assert_gx_agrees`).

GX is the slow part (about half a second per run, whatever the rows), so every example is
a batch of files and GX runs twice per batch on their concatenation; sample ids are unique
across the files of a batch so that the concatenation adds no duplicates of its own.
Deterministic: ``derandomize=True`` and no example database, so CI replays the same cases:
16 examples, 896 files (every defect in every format twice, 72 rows with 2-4 defects, 2 at
the future tolerance), about 75 s on two busy cores. For a wider search, raise ``max_examples`` and set
``derandomize=False`` locally (3,400 files found nothing more after the fixes in git log).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tracseq_dagster.contract import (
    COLUMN_BY_NAME,
    COLUMNS,
    CONTRACT_COLUMNS,
    DNA_TYPES,
    RNA_TYPES,
    ROW_NUMBER,
    SAMPLE_TYPES,
    WHOLE_ROW,
    Kind,
)
from tracseq_dagster.expectations import run_expectation_suite
from tracseq_dagster.rules import (
    EARLIEST_PLAUSIBLE_DATE,
    FUTURE_TOLERANCE,
    RULE_NAMES,
    OrderRule,
    order_rules,
    timestamp_chain,
)
from tracseq_dagster.validation import validate_samples

NOW = pd.Timestamp("2025-06-01T12:00:00", tz="UTC")
CHAIN = timestamp_chain()
SETTINGS = dict(
    deadline=None,
    derandomize=True,
    database=None,
    # No shrinking: an example is a batch of files, shrinking one takes many minutes, and every
    # assertion already names the format, the defect and the file.
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
        HealthCheck.function_scoped_fixture,
    ],
)


# --------------------------------------------------------------------------------------
# Good rows
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Raw:
    """A cell written verbatim as text, whatever the column's type (a Parquet column holding
    one is written as text throughout, as a LIMS that exports strings does)."""

    text: str


def minutes(n: int) -> pd.Timedelta:
    return pd.Timedelta(minutes=n)


def any_case(draw, value: str) -> str:
    """Labs vary the case of enumerated values; the parser must read them all."""
    return draw(st.sampled_from([value, value.upper(), value.lower(), value.title()]))


def good_row(draw, sample_id: str) -> tuple[dict, dict]:
    """(cells as written, values expected in the typed frame) of one sample that breaks no rule.

    Timestamps at minute resolution between 1995 and early 2025 (every format can write them
    exactly); numbers on a grid of tenths or hundredths, so their text round-trips exactly.
    """
    sample_type = draw(st.sampled_from(SAMPLE_TYPES))
    collection = pd.Timestamp("1995-01-01", tz="UTC") + minutes(draw(st.integers(0, 30 * 365 * 24 * 60)))
    received = collection + minutes(draw(st.integers(0, 30 * 24 * 60)))
    extraction = received + minutes(draw(st.integers(0, 30 * 24 * 60))) if draw(st.booleans()) else None
    sequencing = (extraction or received) + minutes(draw(st.integers(0, 30 * 24 * 60))) if draw(st.booleans()) else None
    tenths = lambda lo, hi: draw(st.integers(lo, hi)) / 10  # noqa: E731
    hundredths = lambda lo, hi: draw(st.integers(lo, hi)) / 100  # noqa: E731
    rin = tenths(10, 100) if sample_type in RNA_TYPES and draw(st.booleans()) else None
    din = tenths(10, 100) if sample_type in DNA_TYPES and draw(st.booleans()) else None
    location = (
        f"{draw(st.sampled_from(['FRZ', 'LN2', 'F']))}-{draw(st.integers(1, 999)):02d}/R{draw(st.integers(1, 99))}"
        f"/B{draw(st.integers(1, 999))}/{draw(st.sampled_from('ABCH'))}{draw(st.integers(1, 12))}"
    )
    priority = draw(st.sampled_from(["routine", "urgent"]))
    qc = draw(st.sampled_from(["pass", "borderline", "fail", None]))
    expected = dict(
        sample_id=sample_id,
        project_id=draw(st.sampled_from(["P-ALPHA", "PRJ-01", "Projekt Größe"])),
        sample_type=sample_type,
        collection_ts=collection,
        received_ts=received,
        extraction_ts=extraction,
        sequencing_ts=sequencing,
        storage_temp_c=tenths(-2000, 400),
        temp_excursions=draw(st.integers(0, 20)),
        max_temp_deviation_c=tenths(0, 300),
        freeze_thaw_cycles=draw(st.integers(0, 50)),
        concentration_ng_ul=hundredths(0, 100_000),
        volume_ul=tenths(1, 5000),
        a260_280=hundredths(0, 500),
        a260_230=hundredths(0, 500),
        rin=rin,
        din=din,
        storage_location=location,
        box_occupancy=draw(st.integers(0, 100)),
        operator_id=draw(st.sampled_from(["OP-01", "op-02", "Ana Müller"])),
        site=draw(st.sampled_from(["site-A", "Zürich", "Bergen"])),
        priority=priority,
        qc_status=qc,
    )
    written = dict(expected)
    for name in ("sample_type", "priority", "qc_status"):
        if written[name] is not None:
            written[name] = any_case(draw, written[name])
    return written, expected


# --------------------------------------------------------------------------------------
# Defects: what one row gets, and what the validator must say about it
# --------------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What must happen to the defective row: exactly ``rules``, each naming ``column``;
    ``twins`` are other rows (positions) quarantined with it (a duplicated id)."""

    rules: set[str]
    twins: set[int] = field(default_factory=set)


@dataclass(frozen=True)
class Defect:
    kind: str
    column: str
    apply: Callable  # (draw, rows, at, case) -> Outcome; rows are the written cells
    formats: frozenset[str] | None = None  # None: every format
    touches: frozenset[str] = frozenset()  # columns it writes, for combining defects in one row
    combinable: bool = True

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.column}"


def present_neighbour(row: dict, column: str, step: int) -> str | None:
    """The nearest timestamp before (step -1) or after (+1) ``column`` in the chain that the row has."""
    i = CHAIN.index(column) + step
    while 0 <= i < len(CHAIN):
        if row[CHAIN[i]] is not None:
            return CHAIN[i]
        i += step
    return None


def set_cell(column: str, values, rules: Callable[[str], set[str]]) -> Callable:
    def apply(draw, rows, at, case):
        rows[at][column] = draw(st.sampled_from(values)) if isinstance(values, list) else values
        return Outcome(rules(column))

    return apply


def number_out_of_range(column: str, side: str) -> Callable:
    c = COLUMN_BY_NAME[column]

    def apply(draw, rows, at, case):
        row = rows[at]
        if column == "rin":  # only measured on RNA: keep the row otherwise right
            row.update(sample_type="RNA", din=None)
        if column == "din":
            row.update(sample_type=draw(st.sampled_from(DNA_TYPES)), rin=None)
        step = 1 if c.kind is Kind.INT else draw(st.integers(1, 50)) / 10
        if side == "below":
            value = c.minimum if c.exclusive_minimum and draw(st.booleans()) else c.minimum - step
        else:
            value = c.maximum + step
        row[column] = int(value) if c.kind is Kind.INT else float(value)
        return Outcome({f"range:{column}"})

    return apply


def timestamp_out_of_bounds(column: str, side: str) -> Callable:
    def apply(draw, rows, at, case):
        row = rows[at]
        if side == "early":
            row[column] = EARLIEST_PLAUSIBLE_DATE - minutes(draw(st.integers(1, 20 * 365 * 24 * 60)))
            neighbour = present_neighbour(row, column, -1)
            order = {f"order:{neighbour}<={column}"} if neighbour else set()
        else:
            row[column] = NOW + FUTURE_TOLERANCE + minutes(draw(st.integers(60, 400 * 24 * 60)))
            neighbour = present_neighbour(row, column, +1)
            order = {f"order:{column}<={neighbour}"} if neighbour else set()
        return Outcome({f"plausible_date:{column}"} | order)

    return apply


def timestamp_out_of_order(rule: OrderRule) -> Callable:
    """``rule.later`` before ``rule.earlier``, every timestamp between them emptied (so the
    rule, not an adjacent one, is the one compared; a required one empty is a defect too)."""

    def apply(draw, rows, at, case):
        row = rows[at]
        if row[rule.earlier] is None:  # an optional start (extraction_ts): put it where it may be
            row[rule.earlier] = row[present_neighbour(row, rule.earlier, -1)]
        for middle in rule.between:
            row[middle] = None
        row[rule.later] = row[rule.earlier] - minutes(draw(st.integers(1, 10 * 24 * 60)))
        return Outcome({rule.name} | {f"required:{m}" for m in rule.between if COLUMN_BY_NAME[m].required})

    return apply


def duplicate_id(draw, rows, at, case):
    twin = draw(st.sampled_from([i for i in range(len(rows)) if i != at]))
    rows[at]["sample_id"] = rows[twin]["sample_id"]
    return Outcome({"unique:sample_id"}, {twin})


def measure_on_wrong_type(column: str) -> Callable:
    allowed = RNA_TYPES if column == "rin" else DNA_TYPES

    def apply(draw, rows, at, case):
        row = rows[at]
        row["sample_type"] = any_case(draw, draw(st.sampled_from([t for t in SAMPLE_TYPES if t not in allowed])))
        row["rin"] = row["din"] = None
        row[column] = draw(st.integers(10, 100)) / 10
        return Outcome({"rin_only_rna" if column == "rin" else "din_only_dna"})

    return apply


def truncated_row(draw, rows, at, case):
    """The row ends early: the cells after the cut are empty (CSV: missing fields; JSON Lines:
    missing keys). Only the required ones among them are defects."""
    # at least one written cell stays: a line of empty fields is a blank line, not a row
    first = next(i for i, c in enumerate(case.order) if rows[at][c] is not None)
    keep = draw(st.integers(first + 1, len(case.order) - 1))
    rows[at]["__keep__"] = keep
    missing = case.order[keep:]
    for c in missing:  # if only optional cells were cut, the row is accepted with them empty
        case.expected[at][c] = None
    return Outcome({f"required:{c}" for c in missing if COLUMN_BY_NAME[c].required})


def extra_field(draw, rows, at, case):
    """CSV: more fields than the header; the row's cells may be shifted, so it is quarantined.
    JSON Lines names every value: an extra key is an unknown extra column, kept with a warning,
    and the row is fine."""
    surplus = [draw(st.sampled_from(["x", "12,5", "note"]))] + draw(st.lists(st.sampled_from(["", "y"]), max_size=2))
    if case.fmt == "jsonl":
        rows[at]["__extra_key__"] = "; ".join(surplus)
        return Outcome(set())
    rows[at]["__surplus__"] = draw(st.permutations(surplus))
    return Outcome({"field_count"})


def trailing_separators(draw, rows, at, case):
    """Empty fields past the header's, as spreadsheets write them: nothing lost or shifted."""
    rows[at]["__surplus__"] = [""] * draw(st.integers(1, 3))
    return Outcome(set())


NOT_A_NUMBER = ["abc", "12 ng", "ten", "x7", "1,2,3", "--5"]
NOT_A_TIMESTAMP = ["yesterday", "tbd", "soon", "12h"]
IMPOSSIBLE_DATE = {  # by format: a date that does not exist, written the way the format writes dates
    "csv": "2025-02-30T10:00:00Z",
    "csv-excel-eu": "30.02.2024 10:00",
    "csv-tab": "2025-13-01 10:00",
    "jsonl": "2025-02-29T10:00:00Z",
    "parquet": "2024-04-31T10:00:00Z",
}
BAD_ENUM = {
    "sample_type": ["plasma", "DNA/RNA", "cells"],
    "priority": ["asap", "high", "stat"],
    "qc_status": ["ok", "passed", "?!"],
}
# Functions of the good value: a bad sample_id stays unique across the batch.
BAD_PATTERN = {
    "sample_id": [
        lambda v: v.replace("TS-2025-", "TS-25-"),
        lambda v: v[:-1],
        lambda v: v.lower().replace("-", "_"),
        lambda v: v + "2",
        lambda v: v[3:],
    ],
    "storage_location": [lambda v: v.rsplit("/", 1)[0], lambda v: v + "/X", str.lower, lambda v: v.replace("-", "", 1)],
}


def defect_catalogue() -> list[Defect]:
    """Every kind of defect every contract column can have, derived from the contract."""
    defects: list[Defect] = []
    for c in COLUMNS:
        name = c.name
        if c.required:
            defects.append(Defect("empty", name, set_cell(name, None, lambda n: {f"required:{n}"}), touches=frozenset({name})))
        if c.kind in (Kind.FLOAT, Kind.INT):
            defects.append(
                Defect(
                    "type",
                    name,
                    set_cell(name, [Raw(v) for v in NOT_A_NUMBER], lambda n: {f"type:{n}"}),
                    touches=frozenset({name}),
                )
            )
        if c.kind is Kind.INT:
            defects.append(
                Defect(
                    "fraction",
                    name,
                    set_cell(name, [Raw("2.5"), Raw("7.25")], lambda n: {f"type:{n}"}),
                    touches=frozenset({name}),
                )
            )
        if c.kind is Kind.TIMESTAMP:
            defects.append(
                Defect(
                    "type",
                    name,
                    set_cell(name, [Raw(v) for v in NOT_A_TIMESTAMP], lambda n: {f"type:{n}"}),
                    touches=frozenset({name}),
                )
            )
            defects.append(Defect("impossible_date", name, impossible_date(name), touches=frozenset({name})))
            for side in ("early", "future"):
                defects.append(Defect(f"{side}_date", name, timestamp_out_of_bounds(name, side), combinable=False))
        touched = frozenset({name, "sample_type", "rin", "din"}) if name in ("rin", "din") else frozenset({name})
        if c.minimum is not None:
            defects.append(Defect("below_minimum", name, number_out_of_range(name, "below"), touches=touched))
        if c.maximum is not None:
            defects.append(Defect("above_maximum", name, number_out_of_range(name, "above"), touches=touched))
        if c.allowed is not None:
            enum_touches = frozenset({name, "rin", "din"}) if name == "sample_type" else frozenset({name})
            defects.append(Defect("bad_enum", name, bad_enum(name), touches=enum_touches))
        if c.pattern is not None:
            defects.append(Defect("bad_pattern", name, bad_pattern(name), touches=frozenset({name})))
    defects += [Defect(f"before_{r.earlier}", r.later, timestamp_out_of_order(r), combinable=False) for r in order_rules()]
    defects += [
        Defect("duplicate", "sample_id", duplicate_id, combinable=False),
        Defect("wrong_sample_type", "rin", measure_on_wrong_type("rin"), touches=frozenset({"rin", "din", "sample_type"})),
        Defect("wrong_sample_type", "din", measure_on_wrong_type("din"), touches=frozenset({"rin", "din", "sample_type"})),
        Defect(
            "truncated", "row", truncated_row, formats=frozenset({"csv", "csv-excel-eu", "csv-tab", "jsonl"}), combinable=False
        ),
        Defect(
            "extra_field",
            WHOLE_ROW,
            extra_field,
            formats=frozenset({"csv", "csv-excel-eu", "csv-tab", "jsonl"}),
            combinable=False,
        ),
        Defect(
            "trailing_separators",
            "row",
            trailing_separators,
            formats=frozenset({"csv", "csv-excel-eu", "csv-tab"}),
            combinable=False,
        ),
    ]
    return defects


def impossible_date(column: str) -> Callable:
    def apply(draw, rows, at, case):
        rows[at][column] = Raw(IMPOSSIBLE_DATE[case.fmt])
        return Outcome({f"type:{column}"})

    return apply


def bad_pattern(column: str) -> Callable:
    def apply(draw, rows, at, case):
        rows[at][column] = draw(st.sampled_from(BAD_PATTERN[column]))(rows[at][column])
        return Outcome({f"pattern:{column}"})

    return apply


def bad_enum(column: str) -> Callable:
    def apply(draw, rows, at, case):
        rows[at][column] = draw(st.sampled_from(BAD_ENUM[column]))
        if column == "sample_type":  # rin/din on an unknown type would break rin_only_rna/din_only_dna too
            rows[at]["rin"] = rows[at]["din"] = None
        return Outcome({f"enum:{column}"})

    return apply


DEFECTS = defect_catalogue()


# --------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------

FORMATS = ("csv", "csv-excel-eu", "csv-tab", "jsonl", "parquet")


DATE_STYLES = {  # how a format may write timestamps (all read back to the same instant)
    "csv": ["%Y-%m-%dT%H:%M:%SZ", "offset"],
    "csv-excel-eu": ["%d.%m.%Y %H:%M", "%d.%m.%y %H:%M"],
    "csv-tab": ["%Y-%m-%d %H:%M", "%Y/%m/%d %H:%M", "excel"],
    "jsonl": ["%Y-%m-%dT%H:%M:%SZ", "offset"],
    "parquet": ["%Y-%m-%dT%H:%M:%SZ"],  # only for text columns; native timestamps otherwise
}
EXCEL_EPOCH = pd.Timestamp("1899-12-30", tz="UTC")


@dataclass(frozen=True)
class Style:
    """How one file spells things, within its format."""

    dates: str = "%Y-%m-%dT%H:%M:%SZ"
    offset_minutes: int = 0  # for dates == "offset"
    null: str = ""  # an empty numeric or timestamp cell in CSV ("NA", "n/a", "-" ... are empty too)
    padded: bool = False  # CSV cells with spaces around
    encoding: str = "utf-8"
    numbers_as_text: bool = False  # JSON Lines: "12.5" instead of 12.5
    chunk_rows: int = 250_000


@st.composite
def styles(draw, fmt: str) -> Style:
    csv_like = fmt.startswith("csv")
    return Style(
        dates=draw(st.sampled_from(DATE_STYLES[fmt])),
        offset_minutes=draw(st.sampled_from([-330, -60, 60, 120, 345])),
        null=draw(st.sampled_from(["", "NA", "n/a", "-", "null"])) if csv_like else "",
        padded=draw(st.booleans()) if csv_like else False,
        encoding=draw(st.sampled_from(["utf-8-sig", "cp1252"])) if fmt == "csv-excel-eu" else "utf-8",
        numbers_as_text=draw(st.booleans()) if fmt == "jsonl" else False,
        chunk_rows=draw(st.sampled_from([1, 2, 250_000])),
    )


@dataclass
class Case:
    """One generated export: its format, column order, rows, and what must become of them."""

    fmt: str
    order: list[str]
    written: list[dict]
    expected: list[dict]
    defective: dict[int, Outcome] = field(default_factory=dict)
    defects: list[str] = field(default_factory=list)
    style: Style = Style()

    def line(self, position: int) -> int:
        """The ROW_NUMBER the parser gives the row at ``position`` (a CSV header is line 1)."""
        return position + (2 if self.fmt.startswith("csv") else 1)


def cell_text(value, case: Case, column: str) -> str:
    style = case.style
    if value is None:
        return style.null if COLUMN_BY_NAME[column].kind in (Kind.FLOAT, Kind.INT, Kind.TIMESTAMP) else ""
    if isinstance(value, Raw):
        text = value.text
    elif isinstance(value, pd.Timestamp):
        if style.dates == "offset":
            text = value.tz_convert(timezone(timedelta(minutes=style.offset_minutes))).isoformat()
        elif style.dates == "excel":  # serial days since 1899-12-30, naive (read as UTC)
            text = repr((value - EXCEL_EPOCH) / pd.Timedelta(days=1))
        else:
            text = value.strftime(style.dates)  # naive styles are read as UTC
    elif isinstance(value, float):
        text = repr(value).replace(".", ",") if case.fmt == "csv-excel-eu" else repr(value)
    else:
        text = str(value)
    return f"  {text} " if style.padded and text else text


def write_export(case: Case, path: Path) -> None:
    rows = [{k: v for k, v in r.items() if not k.startswith("__")} for r in case.written]
    keep = [r.get("__keep__", len(case.order)) for r in case.written]
    surplus = [r.get("__surplus__", []) for r in case.written]
    if case.fmt.startswith("csv"):
        sep = {"csv": ",", "csv-excel-eu": ";", "csv-tab": "\t"}[case.fmt]
        newline = "\r\n" if case.fmt == "csv-excel-eu" else "\n"
        out = io.StringIO()
        writer = csv.writer(out, delimiter=sep, lineterminator=newline)
        header = [c.replace("_", " ").title() if case.fmt == "csv-excel-eu" else c for c in case.order]
        writer.writerow(header)
        for row, k, more in zip(rows, keep, surplus):
            writer.writerow([cell_text(row[c], case, c) for c in case.order[:k]] + more)
        text = out.getvalue()
        if case.fmt == "csv-excel-eu":
            text += newline + newline
        path.write_bytes(text.encode(case.style.encoding))
    elif case.fmt == "jsonl":
        lines = []
        for row, k, written in zip(rows, keep, case.written):
            obj = {}
            for c in case.order[:k]:
                v = row[c]
                text = isinstance(v, (Raw, pd.Timestamp)) or (case.style.numbers_as_text and isinstance(v, (int, float)))
                obj[c] = cell_text(v, case, c) if text and v is not None else v
            if "__extra_key__" in written:
                obj["Lab Note"] = written["__extra_key__"]
            lines.append(json.dumps(obj, ensure_ascii=False))
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    else:
        arrays = {}
        for c in case.order:
            values = [row[c] for row in rows]
            kind = COLUMN_BY_NAME[c].kind
            if any(isinstance(v, Raw) for v in values) or (
                kind in (Kind.FLOAT, Kind.INT) and any(isinstance(v, str) for v in values)
            ):
                arrays[c] = pa.array([None if v is None else cell_text(v, case, c) for v in values], pa.string())
            elif kind is Kind.TIMESTAMP:
                arrays[c] = pa.array(values, pa.timestamp("ns", tz="UTC"))
            elif kind is Kind.FLOAT:
                arrays[c] = pa.array([None if v is None else float(v) for v in values], pa.float64())
            elif kind is Kind.INT:
                arrays[c] = pa.array(values, pa.int64())
            else:
                arrays[c] = pa.array(values, pa.string())
        pq.write_table(pa.table(arrays), path)


@st.composite
def cases(draw, fmt: str, defects: list[list[Defect]], block: int, rows: tuple[int, int] = (2, 5)) -> list[Case]:
    """One case per entry of ``defects`` (the defects of its one bad row), all in ``fmt``.
    Case ``k`` of the batch numbers its sample ids ``TS-2025-(block+k)NN`` so ids never repeat
    across the batch."""
    out = []
    for k, row_defects in enumerate(defects):
        n = draw(st.integers(*rows))
        order = list(draw(st.permutations(CONTRACT_COLUMNS)))
        pairs = [good_row(draw, f"TS-2025-{(block + k) * 100 + i:06d}") for i in range(n)]
        case = Case(fmt, order, [w for w, _ in pairs], [e for _, e in pairs], style=draw(styles(fmt)))
        at = draw(st.integers(0, n - 1))
        rules: set[str] = set()
        twins: set[int] = set()
        for defect in row_defects:
            outcome = defect.apply(draw, case.written, at, case)
            rules |= outcome.rules
            twins |= outcome.twins
        case.defective[at] = Outcome(rules, twins)
        case.defects = [d.name for d in row_defects]
        out.append(case)
    return out


# --------------------------------------------------------------------------------------
# Running a batch the way production does, and the checks
# --------------------------------------------------------------------------------------


@dataclass
class Checked:
    case: Case
    raw: pd.DataFrame  # typed rows as read back from the lake's Parquet
    accepted: pd.DataFrame


def ingest(case: Case, folder: Path, index: int) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """Parse to the lake's Parquet and read it back, as raw_lab_exports and validate_lab_export do."""
    from tracseq_dagster.lake import Lake
    from tracseq_dagster.parsing import parse_export_to_parquet

    suffix = {"jsonl": "jsonl", "parquet": "parquet"}.get(case.fmt, "csv")
    path = folder / f"export_{index}.{suffix}"
    write_export(case, path)
    lake = Lake(folder / "lake")
    summary = parse_export_to_parquet(path, lake.raw_path(f"h{index}"), file_hash=f"h{index}", chunk_rows=case.style.chunk_rows)
    return lake.read_table(lake.raw_path(f"h{index}")), lake.read_table(lake.issues_path(f"h{index}")), summary.warnings


def check_case(case: Case, folder: Path, index: int) -> Checked:
    frame, issues, warnings = ingest(case, folder, index)
    label = f"{case.fmt} {case.style} {case.defects} ({folder.name}/export_{index})"
    result = validate_samples(frame, issues, now=NOW)
    assert len(frame) == len(case.written), label

    ((at, outcome),) = case.defective.items()
    bad_positions = {at} | outcome.twins if outcome.rules else set()
    assert sorted(result.quarantined[ROW_NUMBER]) == sorted(case.line(p) for p in bad_positions), (
        label,
        result.violations.to_dict("records"),
    )
    if outcome.rules:
        mine = result.violations[result.violations[ROW_NUMBER] == case.line(at)]
        assert set(mine["rule"]) == outcome.rules, (label, mine.to_dict("records"))
        for column, message in zip(mine["column"], mine["message"]):
            named = column.split(",")
            if named == [WHOLE_ROW]:  # no column is at fault; the message says what is
                assert "fields but the header has" in message, (label, message)
                continue
            assert all(c in CONTRACT_COLUMNS for c in named), (label, column)
            assert any(c in message for c in named), (label, message)  # the message names the field
        defect_columns = {d.split(":", 1)[1] for d in case.defects}
        if defect_columns != {"row"}:  # a truncated row names the missing columns instead
            assert defect_columns <= {c for col in mine["column"] for c in col.split(",")}, (label, mine["column"].tolist())
    if "truncated:row" in case.defects and case.fmt.startswith("csv"):
        assert any(f"line {case.line(at)}" in w for w in warnings), (label, warnings)
    if "trailing_separators:row" in case.defects:
        assert any("1 row ends in empty fields past the header's 23" in w for w in warnings), (label, warnings)
    if f"extra_field:{WHOLE_ROW}" in case.defects and case.fmt == "jsonl":
        # kept as an extra column if the first chunk has it, else dropped (the first chunk fixes the columns)
        assert any(w.startswith(("unknown extra column 'lab_note'", "unknown key 'lab_note'")) for w in warnings), (
            label,
            warnings,
        )

    accepted = result.valid
    good = [p for p in range(len(case.written)) if p not in bad_positions]
    assert accepted[ROW_NUMBER].tolist() == [case.line(p) for p in good], label
    assert_values(accepted, [case.expected[p] for p in good], label)
    return Checked(case, frame, accepted)


def assert_values(accepted: pd.DataFrame, rows: list[dict], label: str) -> None:
    """Accepted rows hold exactly what was written, enums in the contract's spelling."""
    for c in COLUMNS:
        got = accepted[c.name].tolist()
        want = [r[c.name] for r in rows]
        for g, w in zip(got, want):
            if w is None:
                assert pd.isna(g), (label, c.name, g)
            else:
                assert g == w, (label, c.name, g, w)


def assert_batch(checked: list[Checked]) -> None:
    """GX on the batch: the blocking check's suite passes on the accepted rows, and on the raw
    rows it flags the same (row, rule) pairs as the pandas rendering of the same rules."""
    accepted = pd.concat([c.accepted for c in checked], ignore_index=True)
    blocking = run_expectation_suite(accepted, include_cross_export_uniqueness=False, now=NOW)
    assert blocking.success, [r for r in blocking.results if not r["success"]]
    assert_gx_agrees(checked)


def assert_gx_agrees(checked: list[Checked]) -> None:
    """Same rows, same rules. GX sees the typed rows only, so the pandas side is validated
    without the parser's issues (cells it could not type are empty to both); the issues'
    type:<col> violations are checked per file in :func:`check_case`. Cross-export uniqueness is
    left out: row level it compares with other exports' ids, which a single batch does not have."""
    raw = pd.concat([c.raw for c in checked], ignore_index=True)
    offsets = np.cumsum([0] + [len(c.raw) for c in checked])
    pandas_flags = set()
    for k, c in enumerate(checked):
        result = validate_samples(c.raw, now=NOW)
        lines = c.raw[ROW_NUMBER].tolist()
        for line, rule in zip(result.violations[ROW_NUMBER], result.violations["rule"]):
            pandas_flags.add((int(offsets[k] + lines.index(line)), rule))
    gx = run_expectation_suite(raw, include_cross_export_uniqueness=False, now=NOW, result_format={"result_format": "COMPLETE"})
    gx_flags = {(int(i), rule) for rule, rows in gx.unexpected_rows().items() for i in rows}
    column_level = [rule for rule, rows in gx.unexpected_rows().items() if not rows]
    assert not column_level, f"GX failed column-level expectations on typed rows: {column_level}"
    assert gx_flags == pandas_flags, {"only GX": sorted(gx_flags - pandas_flags), "only pandas": sorted(pandas_flags - gx_flags)}


def run_batch(batch: list[Case], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    checked = [check_case(case, folder, i) for i, case in enumerate(batch)]
    assert_batch(checked)


def fresh(tmp_path: Path) -> Path:
    """A new folder per Hypothesis example (the fixture's tmp_path is shared by all of them)."""
    n = len(list(tmp_path.iterdir()))
    return tmp_path / f"example_{n}"


# --------------------------------------------------------------------------------------
# The properties
# --------------------------------------------------------------------------------------


@settings(max_examples=1, **SETTINGS)
@given(data=st.data())
def test_the_catalogue_covers_every_column_and_every_rule(data):
    """Every contract column has its defects, and every rule is the expected outcome of one
    (but cross-export uniqueness, which needs other exports: test_validation, test_pipeline;
    and type:<col> of text columns, which a file cannot break)."""
    assert all(d.formats is None or "csv" in d.formats for d in DEFECTS)  # so the CSV batch has them all
    outcomes = set()
    for case in data.draw(cases("csv", [[d] for d in DEFECTS], block=0)):
        outcomes |= {rule for outcome in case.defective.values() for rule in outcome.rules}
    text_types = {f"type:{c.name}" for c in COLUMNS if c.kind in (Kind.STRING, Kind.ENUM)}  # any text is text
    assert outcomes == set(RULE_NAMES) - {"unique_across_exports:sample_id"} - text_types
    columns = {d.column for d in DEFECTS}
    assert set(CONTRACT_COLUMNS) <= columns
    for c in COLUMNS:
        kinds = {d.kind for d in DEFECTS if d.column == c.name}
        assert ("empty" in kinds) == c.required, c.name
        assert ("type" in kinds) == (c.kind in (Kind.FLOAT, Kind.INT, Kind.TIMESTAMP)), c.name
        assert ("bad_enum" in kinds) == (c.allowed is not None) and ("bad_pattern" in kinds) == (c.pattern is not None)
        assert ("below_minimum" in kinds) == (c.minimum is not None), c.name


@pytest.mark.parametrize("fmt", FORMATS)
@settings(max_examples=2, **SETTINGS)
@given(data=st.data())
def test_one_defect_quarantines_exactly_its_row_in_every_format(tmp_path, fmt, data):
    """Every defect of the catalogue, each in its own file of good rows, in this format."""
    defects = [[d] for d in DEFECTS if d.formats is None or fmt in d.formats]
    batch = data.draw(cases(fmt, defects, block=100))
    run_batch(batch, fresh(tmp_path))


def combinable_defects(draw, fmt: str) -> list[Defect]:
    pool = [d for d in DEFECTS if d.combinable and (d.formats is None or fmt in d.formats)]
    wanted = draw(st.integers(2, 4))
    chosen: list[Defect] = []
    for d in draw(st.permutations(pool)):
        if len(chosen) == wanted:
            break
        if all(not (d.touches & other.touches) and d.column != other.column for other in chosen):
            chosen.append(d)
    return chosen


@settings(max_examples=6, **SETTINGS)
@given(data=st.data())
def test_several_defects_in_one_row_are_all_named(tmp_path, data):
    """Two to four independent defects in one row: that row alone is quarantined, with all of them."""
    fmt = data.draw(st.sampled_from(FORMATS))
    defects = [combinable_defects(data.draw, fmt) for _ in range(12)]
    batch = data.draw(cases(fmt, defects, block=300))
    assert all(len(c.defects) >= 2 for c in batch)
    run_batch(batch, fresh(tmp_path))


@pytest.mark.parametrize(("ahead", "accepted"), [(pd.Timedelta(hours=23), True), (pd.Timedelta(hours=25), False)])
def test_the_future_tolerance_is_one_day(tmp_path, ahead, accepted):
    """A sequencing time 23 h ahead of the validation clock is a local time read as UTC and
    is accepted; 25 h ahead is in the future and is quarantined, by pandas and GX alike."""
    rows = []
    for i in range(3):
        row = dict(
            sample_id=f"TS-2025-{990000 + i:06d}",
            project_id="P",
            sample_type="DNA",
            collection_ts=NOW - pd.Timedelta(days=3),
            received_ts=NOW - pd.Timedelta(days=2),
            extraction_ts=None,
            sequencing_ts=NOW - pd.Timedelta(days=1),
            storage_temp_c=-20.0,
            temp_excursions=0,
            max_temp_deviation_c=0.0,
            freeze_thaw_cycles=0,
            concentration_ng_ul=10.0,
            volume_ul=10.0,
            a260_280=1.8,
            a260_230=2.0,
            rin=None,
            din=7.0,
            storage_location="FRZ-01/R1/B1/A1",
            box_occupancy=3,
            operator_id="OP",
            site="S",
            priority="routine",
            qc_status=None,
        )
        rows.append(row)
    rows[1]["sequencing_ts"] = NOW + ahead
    outcome = Outcome(set() if accepted else {"plausible_date:sequencing_ts"})
    case = Case("csv", list(CONTRACT_COLUMNS), [dict(r) for r in rows], rows, {1: outcome}, ["future:sequencing_ts"])
    checked = check_case(case, tmp_path, 0)
    assert (len(checked.accepted) == 3) is accepted
    assert_gx_agrees([checked])
