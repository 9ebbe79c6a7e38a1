"""Tests for tracseq_dagster.parsing: every fixture is written by hand into tmp_path."""

from __future__ import annotations

import io
import json
import os
import pickle
import random
import zipfile
from pathlib import Path

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tracseq_dagster.contract import (
    CONTRACT_COLUMNS,
    FILE_HASH,
    FLOAT_COLUMNS,
    INT_COLUMNS,
    LINEAGE_COLUMNS,
    ROW_NUMBER,
    SOURCE_FILE,
    STRING_COLUMNS,
    TIMESTAMP_COLUMNS,
    WHOLE_ROW,
)
from tracseq_dagster.parsing import (
    ISSUE_COLUMNS,
    ExportParseError,
    ParsedChunk,
    iter_export_chunks,
    parse_export_to_parquet,
    read_export,
)

# --------------------------------------------------------------------------------------
# The two samples every dialect below spells differently, and their typed values
# --------------------------------------------------------------------------------------

ROW_A = dict(
    sample_id="TS-2025-000001",
    project_id="PRJ-01",
    sample_type="DNA",
    collection_ts="2025-11-20 08:30",
    received_ts="2025-11-21 14:05",
    extraction_ts="2025-11-22 09:00",
    sequencing_ts=None,
    storage_temp_c=-80.5,
    temp_excursions=1,
    max_temp_deviation_c=2.25,
    freeze_thaw_cycles=2,
    concentration_ng_ul=12.5,
    volume_ul=50.0,
    a260_280=1.85,
    a260_230=2.1,
    rin=None,
    din=7.5,
    storage_location="FRZ-03/R2/B14/A7",
    box_occupancy=42,
    operator_id="OP-07",
    site="Zürich",
    priority="routine",
    qc_status="pass",
)
ROW_B = dict(
    sample_id="TS-2025-000002",
    project_id="PRJ-01",
    sample_type="RNA",
    collection_ts="2025-11-20 09:00",
    received_ts="2025-11-21 15:10",
    extraction_ts=None,
    sequencing_ts=None,
    storage_temp_c=-20.0,
    temp_excursions=0,
    max_temp_deviation_c=0.0,
    freeze_thaw_cycles=0,
    concentration_ng_ul=140.0,
    volume_ul=25.5,
    a260_280=2.01,
    a260_230=1.95,
    rin=8.2,
    din=None,
    storage_location="FRZ-01/R1/B2/C3",
    box_occupancy=7,
    operator_id="OP-08",
    site="Bergen",
    priority="urgent",
    qc_status=None,
)

HEADER = ",".join(CONTRACT_COLUMNS)
LINE_A = (
    "TS-2025-000001,PRJ-01,DNA,2025-11-20T08:30:00Z,2025-11-21T14:05:00Z,2025-11-22T09:00:00Z,,"
    "-80.5,1,2.25,2,12.5,50,1.85,2.1,,7.5,FRZ-03/R2/B14/A7,42,OP-07,Zürich,routine,pass"
)
LINE_B = (
    "TS-2025-000002,PRJ-01,RNA,2025-11-20T09:00:00Z,2025-11-21T15:10:00Z,,,"
    "-20,0,0,0,140,25.5,2.01,1.95,8.2,,FRZ-01/R1/B2/C3,7,OP-08,Bergen,urgent,"
)
CANONICAL = f"{HEADER}\n{LINE_A}\n{LINE_B}\n"


def expected_frame(*rows: dict) -> pd.DataFrame:
    data = {}
    for name in CONTRACT_COLUMNS:
        values = [r[name] for r in rows]
        if name in TIMESTAMP_COLUMNS:
            data[name] = pd.to_datetime(pd.Series(values, dtype=object), utc=True).astype("datetime64[ns, UTC]")
        elif name in FLOAT_COLUMNS:
            data[name] = pd.Series([np.nan if v is None else v for v in values], dtype="float64")
        elif name in INT_COLUMNS:
            data[name] = pd.Series(values, dtype="Int64")
        else:
            data[name] = pd.Series(values, dtype=pd.StringDtype("pyarrow"))
    return pd.DataFrame(data)


def assert_typed(frame: pd.DataFrame, *rows: dict) -> None:
    pd.testing.assert_frame_equal(frame[list(CONTRACT_COLUMNS)], expected_frame(*rows))


def write(tmp_path: Path, name: str, content: str | bytes, encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode(encoding))
    return path


def fatal(path, **kw) -> ExportParseError:
    with pytest.raises(ExportParseError) as info:
        read_export(path, file_hash="h", **kw)
    return info.value


# --------------------------------------------------------------------------------------
# The typed frame convention
# --------------------------------------------------------------------------------------


def test_canonical_csv_gives_the_typed_frame_convention(tmp_path):
    path = write(tmp_path, "export.csv", CANONICAL)
    frame, issues, summary = read_export(path, file_hash="abc123")
    assert list(frame.columns) == list(CONTRACT_COLUMNS) + list(LINEAGE_COLUMNS)
    assert_typed(frame, ROW_A, ROW_B)
    for name in STRING_COLUMNS:
        assert frame[name].dtype == "string"
    for name in TIMESTAMP_COLUMNS:
        assert str(frame[name].dtype) == "datetime64[ns, UTC]"
    for name in FLOAT_COLUMNS:
        assert frame[name].dtype == np.float64
    for name in INT_COLUMNS:
        assert frame[name].dtype == "Int64"
    assert frame[FILE_HASH].dtype == "string" and frame[FILE_HASH].tolist() == ["abc123", "abc123"]
    assert frame[SOURCE_FILE].tolist() == [str(path), str(path)]
    assert frame[ROW_NUMBER].dtype == np.int64 and frame[ROW_NUMBER].tolist() == [2, 3]
    assert issues.empty and list(issues.columns) == list(ISSUE_COLUMNS)
    assert summary.rows == 2 and summary.issues == 0 and summary.file_hash == "abc123"
    assert summary.dialect.format == "csv" and summary.dialect.separator == ","
    assert summary.dialect.encoding == "utf-8" and summary.dialect.bom is False
    assert summary.dialect.date_style == "ISO 8601"
    assert summary.extra_columns == [] and summary.warnings == []


# --------------------------------------------------------------------------------------
# Every accepted dialect parses to exactly the same typed values
# --------------------------------------------------------------------------------------

EUROPEAN = (
    "\ufeffSample ID;Type;Project;Collected;Received;Extraction TS;Storage Temp C;Temp Excursions;"
    "Max Temp Deviation C;Freeze-Thaw Cycles;Concentration ng/ul;Volume ul;A260/280;A260/230;RIN;DIN;"
    "Storage Location;Box Occupancy;Operator;Site;Priority;QC\r\n"
    "TS-2025-000001;DNA;PRJ-01;20.11.2025 08:30;21.11.2025 14:05;22.11.2025 09:00;-80,5;1;2,25;2;12,5;50;"
    "1,85;2,1;;7,5;FRZ-03/R2/B14/A7;42;OP-07;Zürich;routine;pass\r\n"
    "TS-2025-000002;RNA;PRJ-01;20.11.2025 09:00;21.11.2025 15:10;;-20;0;0;0;140;25,5;2,01;1,95;8,2;;"
    "FRZ-01/R1/B2/C3;7;OP-08;Bergen;urgent;\r\n"
    "\r\n\r\n"
)


def test_semicolon_bom_decimal_comma_dayfirst_lims_headers_reordered_crlf(tmp_path):
    frame, issues, summary = read_export(write(tmp_path, "eu.csv", EUROPEAN), file_hash="h")
    assert_typed(frame, ROW_A, ROW_B)
    assert frame[ROW_NUMBER].tolist() == [2, 3]
    assert issues.empty
    d = summary.dialect
    assert (d.separator, d.decimal, d.bom, d.encoding, d.date_style) == (";", ",", True, "utf-8", "DD.MM.YYYY")
    assert summary.warnings == ["optional column(s) not in the file, left empty: sequencing_ts"]


def test_tab_separated_slash_dates_padded_cells(tmp_path):
    text = (
        "sample_id\tproject_id\tsample_type\tcollection_ts\treceived_ts\textraction_ts\tstorage_temp_c\t"
        "temp_excursions\tmax_temp_deviation_c\tfreeze_thaw_cycles\tconcentration_ng_ul\tvolume_ul\ta260_280\t"
        "a260_230\trin\tdin\tstorage_location\tbox_occupancy\toperator_id\tsite\tpriority\tqc_status\n"
        " TS-2025-000001 \tPRJ-01\tDNA\t20/11/2025 08:30\t21/11/2025 14:05\t22/11/2025 09:00\t -80,5 \t1\t2,25\t"
        "2\t12,5\t50\t1,85\t2,1\t \t7,5\tFRZ-03/R2/B14/A7\t42\tOP-07\tZürich\troutine\tpass\n"
        "TS-2025-000002\tPRJ-01\tRNA\t20/11/2025 09:00\t21/11/2025 15:10\t\t-20\t0\t0\t0\t140\t25,5\t2,01\t1,95\t"
        "8,2\t\tFRZ-01/R1/B2/C3\t7\tOP-08\tBergen\turgent\t  \n"
    )
    frame, issues, summary = read_export(write(tmp_path, "export.tsv", text), file_hash="h")
    assert_typed(frame, ROW_A, ROW_B)
    assert issues.empty
    assert summary.dialect.separator == "\t" and summary.dialect.date_style == "DD/MM/YYYY"


def test_pipe_separated_cp1252_naive_iso_quoted_fields(tmp_path):
    text = (
        "sample_id|project_id|sample_type|collection_ts|received_ts|extraction_ts|sequencing_ts|storage_temp_c|"
        "temp_excursions|max_temp_deviation_c|freeze_thaw_cycles|concentration_ng_ul|volume_ul|a260_280|"
        "a260_230|rin|din|storage_location|box_occupancy|operator_id|site|priority|qc_status|notes\r\n"
        '"TS-2025-000001"|"PRJ-01"|DNA|2025-11-20 08:30|2025-11-21 14:05:00|2025-11-22T09:00||-80.5|1|2.25|2|'
        '12.5|50|1.85|2.1||7.5|FRZ-03/R2/B14/A7|42|OP-07|"Zürich"|routine|pass|"Lagerung < 20 µl, °C | ok"\r\n'
        "TS-2025-000002|PRJ-01|RNA|2025-11-20 09:00|2025-11-21 15:10|||-20|0|0|0|140|25.5|2.01|1.95|8.2||"
        "FRZ-01/R1/B2/C3|7|OP-08|Bergen|urgent||\r\n"
    )
    path = write(tmp_path, "export.txt", text, encoding="cp1252")
    assert "Zürich".encode("cp1252") in path.read_bytes()  # really not UTF-8
    frame, issues, summary = read_export(path, file_hash="h")
    assert_typed(frame, ROW_A, ROW_B)
    assert frame["notes"].tolist() == ["Lagerung < 20 µl, °C | ok", pd.NA]
    assert summary.dialect.encoding == "cp1252" and summary.dialect.separator == "|"
    assert summary.extra_columns == ["notes"]
    assert issues.empty


def test_utf16_excel_unicode_text_and_sep_line(tmp_path):
    text = "sep=;\r\n" + EUROPEAN.lstrip("\ufeff")
    frame, issues, summary = read_export(write(tmp_path, "unicode.txt", text, encoding="utf-16"), file_hash="h")
    assert_typed(frame, ROW_A, ROW_B)
    assert frame[ROW_NUMBER].tolist() == [3, 4]  # the sep= line is line 1, the header line 2
    assert summary.dialect.encoding == "utf-16" and summary.dialect.bom is True


def test_old_mac_cr_line_ends(tmp_path):
    frame, _, _ = read_export(write(tmp_path, "mac.csv", CANONICAL.replace("\n", "\r")), file_hash="h")
    assert_typed(frame, ROW_A, ROW_B)
    assert frame[ROW_NUMBER].tolist() == [2, 3]


def test_jsonl_lims_keys_numbers_and_strings(tmp_path):
    a = {
        "Sample ID": "TS-2025-000001",
        "project_id": "PRJ-01",
        "Type": "DNA",
        "collection_ts": "2025-11-20T08:30:00Z",
        "received_ts": "2025-11-21T15:05:00+01:00",
        "extraction_ts": "22.11.2025 09:00",
        "storage_temp_c": -80.5,
        "temp_excursions": 1,
        "max_temp_deviation_c": "2.25",
        "freeze_thaw_cycles": 2,
        "concentration_ng_ul": 12.5,
        "volume_ul": 50,
        "A260/280": 1.85,
        "A260/230": 2.1,
        "rin": None,
        "din": 7.5,
        "storage_location": "FRZ-03/R2/B14/A7",
        "box_occupancy": 42,
        "operator": "OP-07",
        "site": "Zürich",
        "priority": "routine",
        "qc_status": "pass",
    }
    b = {
        "Sample ID": "TS-2025-000002",
        "project_id": "PRJ-01",
        "Type": "RNA",
        "collection_ts": "2025-11-20 09:00",
        "received_ts": "2025-11-21T15:10:00Z",
        "storage_temp_c": -20,
        "temp_excursions": 0,
        "max_temp_deviation_c": 0,
        "freeze_thaw_cycles": 0,
        "concentration_ng_ul": 140,
        "volume_ul": 25.5,
        "A260/280": 2.01,
        "A260/230": 1.95,
        "rin": 8.2,
        "storage_location": "FRZ-01/R1/B2/C3",
        "box_occupancy": 7,
        "operator": "OP-08",
        "site": "Bergen",
        "priority": "urgent",
        "qc_status": "",
    }
    text = json.dumps(a, ensure_ascii=False) + "\n\n" + json.dumps(b) + "\n\n"
    frame, issues, summary = read_export(write(tmp_path, "export.jsonl", text), file_hash="h")
    assert_typed(frame, ROW_A, ROW_B)
    assert frame[ROW_NUMBER].tolist() == [1, 3]
    assert issues.empty
    assert summary.dialect.format == "jsonl" and summary.dialect.separator is None


def test_parquet_native_types(tmp_path):
    table = pa.table(
        {
            "Sample ID": ["TS-2025-000001", "TS-2025-000002"],
            "project_id": ["PRJ-01", "PRJ-01"],
            "sample_type": pa.array(["DNA", "RNA"]).dictionary_encode(),
            "collection_ts": pa.array(
                [pd.Timestamp("2025-11-20 09:30"), pd.Timestamp("2025-11-20 10:00")], pa.timestamp("us")
            ),  # naive, read in Europe/Oslo (UTC+1)
            "received_ts": pa.array(
                [pd.Timestamp("2025-11-21 14:05", tz="UTC"), pd.Timestamp("2025-11-21 15:10", tz="UTC")],
                pa.timestamp("ms", tz="UTC"),
            ),
            "extraction_ts": pa.array([pd.Timestamp("2025-11-22").date(), None], pa.date32()),
            "storage_temp_c": [-80.5, -20.0],
            "temp_excursions": pa.array([1, 0], pa.int32()),
            "max_temp_deviation_c": [2.25, 0.0],
            "freeze_thaw_cycles": [2, 0],
            "concentration_ng_ul": [12.5, 140.0],
            "volume_ul": [50, 25.5],
            "a260_280": [1.85, 2.01],
            "a260_230": [2.1, 1.95],
            "rin": [None, 8.2],
            "din": [7.5, None],
            "storage_location": ["FRZ-03/R2/B14/A7", "FRZ-01/R1/B2/C3"],
            "box_occupancy": [42, 7],
            "operator_id": ["OP-07", "OP-08"],
            "site": ["Zürich", "Bergen"],
            "priority": ["routine", "urgent"],
            "qc_status": ["pass", None],
        }
    )
    path = tmp_path / "export.parquet"
    pq.write_table(table, path)
    frame, issues, summary = read_export(path, file_hash="h", naive_timezone="Europe/Oslo")
    # extraction_ts: a naive date at Oslo midnight is 23:00 UTC the day before
    assert_typed(frame, ROW_A | {"extraction_ts": "2025-11-21 23:00"}, ROW_B)
    assert frame[ROW_NUMBER].tolist() == [1, 2]
    assert issues.empty
    assert summary.dialect.format == "parquet" and summary.dialect.date_style == "native"


def test_parquet_numbers_stored_as_strings_with_garbage_become_issues(tmp_path):
    table = pa.table(
        {
            "sample_id": ["TS-2025-000001", "TS-2025-000002", "TS-2025-000003"],
            "project_id": ["P"] * 3,
            "sample_type": ["DNA"] * 3,
            "collection_ts": ["2025-11-20T08:30:00Z", "yesterday", None],
            "received_ts": ["2025-11-21 14:05", "2025-11-21 14:05", "2025-11-21 14:05"],
            "storage_temp_c": ["-80.5", "cold", ""],
            "temp_excursions": ["1", "2.5", " 3 "],
            "max_temp_deviation_c": [1.0, 2.0, 3.0],
            "freeze_thaw_cycles": [1, 2, 3],
            "concentration_ng_ul": ["12,5", "1e2", "n/a"],
            "volume_ul": [10.0, 20.0, 30.0],
            "a260_280": [1.8] * 3,
            "a260_230": [2.0] * 3,
            "storage_location": ["FRZ-01/R1/B1/A1"] * 3,
            "box_occupancy": [1, 2, 3],
            "operator_id": ["OP"] * 3,
            "site": ["S"] * 3,
            "priority": ["routine"] * 3,
        }
    )
    path = tmp_path / "strings.parquet"
    pq.write_table(table, path)
    frame, issues, summary = read_export(path, file_hash="h")
    assert frame["storage_temp_c"].tolist()[0] == -80.5 and frame["storage_temp_c"].isna().tolist() == [False, True, True]
    assert frame["temp_excursions"].tolist() == [1, pd.NA, 3]
    assert frame["concentration_ng_ul"].isna().tolist() == [True, False, True]  # no decimal comma in Parquet
    assert frame["concentration_ng_ul"].tolist()[1] == 100.0
    assert frame["collection_ts"].tolist()[0] == pd.Timestamp("2025-11-20 08:30", tz="UTC")
    got = issues[[ROW_NUMBER, "column", "value", "rule", "message"]].astype(object).values.tolist()
    assert got == [
        [1, "concentration_ng_ul", "12,5", "type", "not a number: '12,5'"],
        [2, "collection_ts", "yesterday", "type", "not a timestamp: 'yesterday'"],
        [2, "storage_temp_c", "cold", "type", "not a number: 'cold'"],
        [2, "temp_excursions", "2.5", "type", "not an integer: '2.5'"],
    ]
    assert summary.issues == 4


# --------------------------------------------------------------------------------------
# Timestamps
# --------------------------------------------------------------------------------------

TS_HEADER = (
    "sample_id;project_id;sample_type;collection_ts;received_ts;storage_temp_c;temp_excursions;"
    "max_temp_deviation_c;freeze_thaw_cycles;concentration_ng_ul;volume_ul;a260_280;a260_230;storage_location;"
    "box_occupancy;operator_id;site;priority\n"
)
TS_REST = ";-80;0;0;0;1;1;1,8;2;FRZ-01/R1/B1/A1;1;OP;S;routine\n"


def ts_file(tmp_path: Path, values: list[str]) -> Path:
    lines = [f"TS-2025-{i:06d};P;DNA;{v};2025-11-30{TS_REST}" for i, v in enumerate(values)]
    return write(tmp_path, "ts.csv", TS_HEADER + "".join(lines))


def test_timestamp_styles_zones_and_naive_timezone(tmp_path):
    values = [
        "2025-11-23T14:05:00Z",  # zoned
        "2025-11-23T15:05:00+02:00",  # zoned, other offset
        "2025-11-23T14:05:00.250-0100",  # zoned, fraction, compact offset
        "2025-11-23 14:05",  # naive ISO
        "23.11.2025 14:05",  # Excel, day first
        "23/11/2025 14:05:30",  # slash, day first, seconds
        "2025-11-23",  # date only
        "23.11.25",  # two-digit year, date only
        "45678.5",  # Excel serial: 2025-01-21 12:00 local
        "2025/11/23 14:05",  # year first with slashes
    ]
    frame, issues, summary = read_export(ts_file(tmp_path, values), file_hash="h", naive_timezone="Europe/Oslo")
    assert issues.empty
    assert frame["collection_ts"].tolist() == [
        pd.Timestamp("2025-11-23 14:05", tz="UTC"),
        pd.Timestamp("2025-11-23 13:05", tz="UTC"),
        pd.Timestamp("2025-11-23 15:05:00.250", tz="UTC"),
        pd.Timestamp("2025-11-23 13:05", tz="UTC"),  # Oslo is UTC+1 in November
        pd.Timestamp("2025-11-23 13:05", tz="UTC"),
        pd.Timestamp("2025-11-23 13:05:30", tz="UTC"),
        pd.Timestamp("2025-11-22 23:00", tz="UTC"),
        pd.Timestamp("2025-11-22 23:00", tz="UTC"),
        pd.Timestamp("2025-01-21 11:00", tz="UTC"),
        pd.Timestamp("2025-11-23 13:05", tz="UTC"),
    ]
    assert summary.dialect.date_style.startswith("mixed: ISO 8601")
    # Summer time: naive values in July are UTC+2 in Oslo.
    frame, _, _ = read_export(ts_file(tmp_path, ["01.07.2025 12:00"]), file_hash="h", naive_timezone="Europe/Oslo")
    assert frame["collection_ts"].tolist() == [pd.Timestamp("2025-07-01 10:00", tz="UTC")]
    # DST changes: 02:30 on 30 March does not exist (moves past the gap), on 26 October it happens twice.
    frame, issues, _ = read_export(
        ts_file(tmp_path, ["30.03.2025 02:30", "26.10.2025 02:30"]), file_hash="h", naive_timezone="Europe/Oslo"
    )
    assert issues.empty
    assert frame["collection_ts"].tolist() == [
        pd.Timestamp("2025-03-30 01:00", tz="UTC"),
        pd.Timestamp("2025-10-26 00:30", tz="UTC"),
    ]


def test_month_first_when_dayfirst_is_false(tmp_path):
    path = ts_file(tmp_path, ["11/23/2025 2:05 PM", "11/23/2025 14:05", "12.11.2025 14:05", "23/11/2025 14:05"])
    frame, issues, _ = read_export(path, file_hash="h", dayfirst=False)
    assert frame["collection_ts"].tolist()[:3] == [
        pd.Timestamp("2025-11-23 14:05", tz="UTC"),
        pd.Timestamp("2025-11-23 14:05", tz="UTC"),
        pd.Timestamp("2025-11-12 14:05", tz="UTC"),  # dots are always day first
    ]
    assert issues["value"].tolist() == ["23/11/2025 14:05"]  # month 23 does not exist


def test_impossible_dates_are_issues(tmp_path):
    values = [
        "31.02.2025 10:00",
        "29.02.2025",
        "2025-02-31",
        "2025-11-23T25:00",
        "30.04.2025 24:00",
        "soon",
        "29.02.2024 10:00",
        "123456",
    ]
    frame, issues, _ = read_export(ts_file(tmp_path, values), file_hash="h")
    assert frame["collection_ts"].isna().tolist() == [True] * 6 + [False, True]
    assert frame["collection_ts"].tolist()[6] == pd.Timestamp("2024-02-29 10:00", tz="UTC")  # a leap day
    assert issues[ROW_NUMBER].tolist() == [2, 3, 4, 5, 6, 7, 9]
    assert set(issues["column"]) == {"collection_ts"}
    assert issues["message"].tolist()[0] == "not a timestamp: '31.02.2025 10:00'"
    assert issues["value"].tolist() == values[:6] + ["123456"]
    assert len(frame) == len(values)  # the rows stay; the validator decides


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    stamps=st.lists(
        st.datetimes(min_value=pd.Timestamp("1990-01-01").to_pydatetime(), max_value=pd.Timestamp("2060-12-31").to_pydatetime()),
        min_size=1,
        max_size=8,
    ),
    temps=st.lists(st.floats(min_value=-200, max_value=40, allow_nan=False).map(lambda x: round(x, 3)), min_size=8, max_size=8),
)
def test_dayfirst_and_decimal_comma_round_trip(tmp_path, stamps, temps):
    lines = []
    for i, ts in enumerate(stamps):
        temp = repr(temps[i]).replace(".", ",")
        lines.append(
            f"TS-2025-{i:06d};P;DNA;{ts:%d.%m.%Y %H:%M};2025-11-30;{temp};0;0;0;1;1;1,8;2;FRZ-01/R1/B1/A1;1;OP;S;routine\n"
        )
    frame, issues, _ = read_export(write(tmp_path, "prop.csv", TS_HEADER + "".join(lines)), file_hash="h")
    assert issues.empty
    assert frame["collection_ts"].tolist() == [pd.Timestamp(ts.replace(second=0, microsecond=0), tz="UTC") for ts in stamps]
    assert frame["storage_temp_c"].tolist() == temps[: len(stamps)]


# --------------------------------------------------------------------------------------
# Issues, warnings and row numbers
# --------------------------------------------------------------------------------------


def test_text_in_numeric_columns_and_fractional_ints_are_issues(tmp_path):
    bad = LINE_B.replace(",140,", ",abc,").replace(",-20,0,", ",-20,2.5,").replace(",7,OP-08", ",1.234,OP-08")
    frame, issues, summary = read_export(write(tmp_path, "bad.csv", f"{HEADER}\n{LINE_A}\n{bad}\n"), file_hash="h")
    assert_typed(frame, ROW_A, ROW_B | {"concentration_ng_ul": None, "temp_excursions": None, "box_occupancy": None})
    got = issues.astype(object).values.tolist()
    assert got == [
        [3, "temp_excursions", "2.5", "type", "not an integer: '2.5'"],
        [3, "concentration_ng_ul", "abc", "type", "not a number: 'abc'"],
        [3, "box_occupancy", "1.234", "type", "not an integer: '1.234'"],
    ]
    assert issues[ROW_NUMBER].dtype == np.int64 and issues["column"].dtype == "string"
    assert summary.issues == 3


def test_null_tokens_thousands_and_whitespace_are_not_issues(tmp_path):
    lines = [
        "TS-2025-000001;P;DNA;NA;2025-11-30;-80;0;0;0;1.234,5;1;1,8;2;FRZ-01/R1/B1/A1;1;OP;S;routine\n",
        "TS-2025-000002;P;DNA;n/a;2025-11-30;\u221280,5; 0 ;0;0;-;1;1,8;2;FRZ-01/R1/B1/A1;1;OP;S;routine\n",
    ]
    frame, issues, _ = read_export(write(tmp_path, "tokens.csv", TS_HEADER + "".join(lines)), file_hash="h")
    assert issues.empty
    assert frame["collection_ts"].isna().all()
    assert frame["concentration_ng_ul"].tolist()[0] == 1234.5 and np.isnan(frame["concentration_ng_ul"].tolist()[1])
    assert frame["storage_temp_c"].tolist() == [-80.0, -80.5]
    assert frame["temp_excursions"].tolist() == [0, 0]


def test_row_numbers_are_physical_lines_with_bom_and_blank_lines(tmp_path):
    text = "\ufeff" + HEADER + "\n\n" + LINE_A + "\n   \n\n" + LINE_B + "\n\n\n"
    path = write(tmp_path, "blank.csv", text)
    frame, _, summary = read_export(path, file_hash="h")
    assert frame[ROW_NUMBER].tolist() == [3, 6]
    lines = path.read_text(encoding="utf-8-sig").split("\n")
    for sample, row in zip(frame["sample_id"], frame[ROW_NUMBER]):
        assert lines[row - 1].startswith(sample)
    assert summary.rows == 2 and summary.warnings == []  # blank and whitespace-only lines are not rows


def test_row_numbers_with_quoted_multiline_values(tmp_path):
    text = (
        HEADER
        + ",notes\n"
        + LINE_A
        + ',"two\nlines, and ""quotes"""\n'
        + "\n"
        + LINE_B
        + ',"x;y"\n'
        + LINE_B.replace("000002", "000003")
        + ',"a\r\nb\nc"\n'
        + LINE_B.replace("000002", "000004")
        + ",\n"
    )
    path = write(tmp_path, "quoted.csv", text)
    frame, issues, summary = read_export(path, file_hash="h")
    assert frame[ROW_NUMBER].tolist() == [2, 5, 6, 9]
    assert frame["notes"].tolist() == ['two\nlines, and "quotes"', "x;y", "a\r\nb\nc", pd.NA]
    assert_typed(frame.iloc[:2].reset_index(drop=True), ROW_A, ROW_B)
    assert summary.warnings == ["unknown extra column 'notes' kept"] and issues.empty


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_enum_values_in_another_case_are_read_in_the_contract_spelling_with_one_warning(tmp_path, fmt):
    """Issue 17: labs vary case (URGENT, dna, Pass); that is not a reason to quarantine a row."""
    spelled = [
        ("dna", "URGENT", "PASS"),
        (" rna ", "Routine", "Fail"),
        ("cfdna", "routine", None),
        ("ffpe", "urgent", "Borderline"),
        ("Tissue", "URGENT ", "pass"),
        ("plasma", "soon", "ok"),
    ]
    rows = [
        ROW_A | {"sample_id": f"TS-2025-{i:06d}", "sample_type": t, "priority": p, "qc_status": q, "rin": None, "din": None}
        for i, (t, p, q) in enumerate(spelled, start=1)
    ]
    path = tmp_path / f"cases.{fmt}"
    table = pd.DataFrame(rows)[list(CONTRACT_COLUMNS)]
    if fmt == "csv":
        table.to_csv(path, index=False)
    elif fmt == "jsonl":
        table.to_json(path, orient="records", lines=True, force_ascii=False)
    else:
        table.to_parquet(path, index=False)
    # chunk_rows=2: the counts add up over chunks into one warning per column
    frame, issues, summary = read_export(path, file_hash="h", chunk_rows=2)
    assert frame["sample_type"].tolist() == ["DNA", "RNA", "cfDNA", "FFPE", "tissue", "plasma"]
    assert frame["priority"].tolist() == ["urgent", "routine", "routine", "urgent", "urgent", "soon"]
    assert frame["qc_status"].tolist() == ["pass", "fail", pd.NA, "borderline", "pass", "ok"]
    assert issues.empty
    assert [w for w in summary.warnings if "another case" in w] == [
        "sample_type: 5 values in another case were read as the contract's spelling",
        "priority: 3 values in another case were read as the contract's spelling",
        "qc_status: 3 values in another case were read as the contract's spelling",
    ]


def test_one_enum_value_in_another_case_is_one_value_in_the_warning(tmp_path):
    frame, _, summary = read_export(write(tmp_path, "one.csv", CANONICAL.replace(",urgent,", ",Urgent,")), file_hash="h")
    assert frame["priority"].tolist() == ["routine", "urgent"]
    assert summary.warnings == ["priority: 1 value in another case was read as the contract's spelling"]


def test_extra_columns_are_kept_and_warned(tmp_path):
    text = "Freezer Notes," + HEADER + ",lot\n" + "door open," + LINE_A + ",L1\n" + "," + LINE_B + ",\n"
    frame, _, summary = read_export(write(tmp_path, "extra.csv", text), file_hash="h")
    assert list(frame.columns) == list(CONTRACT_COLUMNS) + ["freezer_notes", "lot"] + list(LINEAGE_COLUMNS)
    assert frame["freezer_notes"].tolist() == ["door open", pd.NA]
    assert frame["lot"].dtype == "string" and frame["lot"].tolist() == ["L1", pd.NA]
    assert summary.extra_columns == ["freezer_notes", "lot"]
    assert summary.warnings == [
        "unknown extra column 'freezer_notes' (header 'Freezer Notes') kept",
        "unknown extra column 'lot' kept",
    ]


def test_truncated_last_line_is_a_warning_not_fatal(tmp_path):
    truncated = ",".join(LINE_B.split(",")[:5])
    for name, text in [
        ("plain.csv", f"{HEADER}\n{LINE_A}\n\n{truncated}"),
        ("quoted.csv", f'{HEADER}\n"{LINE_A[:14]}"{LINE_A[14:]}\n\n{truncated}'),  # the exact (csv module) path
    ]:
        frame, issues, summary = read_export(write(tmp_path, name, text), file_hash="h")
        assert frame[ROW_NUMBER].tolist() == [2, 4]
        assert frame["sample_id"].tolist() == ["TS-2025-000001", "TS-2025-000002"]
        assert frame.iloc[1][["storage_temp_c", "operator_id", "priority"]].isna().all()
        assert frame["received_ts"].tolist()[1] == pd.Timestamp("2025-11-21 15:10", tz="UTC")
        assert summary.warnings == ["last line 4 is truncated (5 of 23 fields); missing cells left empty"]
        assert issues.empty


def test_short_row_in_the_middle_is_named(tmp_path):
    short = ",".join(LINE_A.split(",")[:3])
    frame, _, summary = read_export(write(tmp_path, "mid.csv", f"{HEADER}\n{short}\n{LINE_B}\n"), file_hash="h")
    assert frame[ROW_NUMBER].tolist() == [2, 3]
    assert summary.warnings == ["line 2 has 3 of 23 fields; missing cells left empty"]


# --------------------------------------------------------------------------------------
# Fatal: the whole file is rejected with file, line and column
# --------------------------------------------------------------------------------------


def test_empty_file(tmp_path):
    for name in ("empty.csv", "empty.jsonl", "empty.parquet"):
        path = write(tmp_path, name, b"")
        e = fatal(path)
        assert (e.file, e.line, e.column, e.reason) == (str(path), 1, None, "file is empty")
        assert str(e) == f"{path}: line 1: file is empty"
    assert fatal(write(tmp_path, "blank.csv", "\n \n\n")).reason.startswith("file is empty")


def test_header_only(tmp_path):
    path = write(tmp_path, "header.csv", HEADER + "\n\n\n")
    e = fatal(path)
    assert (e.line, e.column, e.reason) == (1, None, "header only, no data rows")
    assert str(e) == f"{path}: line 1: header only, no data rows"


@pytest.mark.parametrize("kind", ["png", "zip", "parquet", "random"])
def test_binary_content_in_a_text_file(tmp_path, kind):
    if kind == "png":
        content = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"
    elif kind == "zip":
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr("export.csv", CANONICAL)
        content = buf.getvalue()
    elif kind == "parquet":
        buf = io.BytesIO()
        pq.write_table(pa.table({"a": [1]}), buf)
        content = buf.getvalue()
    else:
        content = random.Random(7).randbytes(5000).replace(b"\x00", b"\x01")
    path = write(tmp_path, "renamed.csv", content)
    e = fatal(path)
    assert e.line == 1 and e.column is None
    assert e.reason.startswith("not a text file")
    assert str(e).startswith(f"{path}: line 1: not a text file")


def test_wrong_separator(tmp_path):
    header = HEADER.replace(",", ":")
    path = write(tmp_path, "colon.csv", header + "\n" + LINE_A.replace(",", ":") + "\n")
    e = fatal(path)
    assert e.line == 1 and e.column == header
    assert "':'" in e.reason and "comma, semicolon, tab or pipe" in e.reason
    assert str(e).startswith(f"{path}: line 1, column {header}: the header does not split")
    spaced = write(tmp_path, "spaced.csv", HEADER.replace(",", " ") + "\n" + LINE_A.replace(",", " ") + "\n")
    assert "space" in fatal(spaced).reason


def test_missing_required_columns(tmp_path):
    columns = [c for c in CONTRACT_COLUMNS if c not in ("project_id", "site")]
    keep = [i for i, c in enumerate(CONTRACT_COLUMNS) if c in columns]
    row = ",".join(LINE_A.split(",")[i] for i in keep)
    path = write(tmp_path, "missing.csv", ",".join(columns) + "\n" + row + "\n")
    e = fatal(path)
    assert (e.line, e.column, e.reason) == (1, "project_id, site", "missing required columns")
    one = write(tmp_path, "one.csv", CANONICAL.replace("site", "place"))
    assert str(fatal(one)) == f"{one}: line 1, column site: missing required column"
    # Missing optional columns are fine.
    optional = [c for c in CONTRACT_COLUMNS if c not in ("rin", "qc_status")]
    keep = [i for i, c in enumerate(CONTRACT_COLUMNS) if c in optional]
    ok = write(tmp_path, "optional.csv", ",".join(optional) + "\n" + ",".join(LINE_A.split(",")[i] for i in keep) + "\n")
    frame, _, _ = read_export(ok, file_hash="h")
    assert frame["rin"].isna().all() and frame["qc_status"].isna().all() and frame["qc_status"].dtype == "string"


def test_duplicate_columns(tmp_path):
    path = write(tmp_path, "dup.csv", "Sample ID," + CANONICAL.replace("\n", ",x\n", 1))
    e = fatal(path)
    assert e.line == 1 and e.column == "sample_id" and e.reason.startswith("duplicate column")


def test_row_with_more_fields_than_the_header_is_an_issue_not_fatal(tmp_path):
    """Issue 17: one long row used to refuse the whole file; now it is that row's issue."""
    for name, text, line, surplus in [
        ("long.csv", f"{HEADER}\n{LINE_A}\n\n{LINE_B},extra\n", 4, "extra"),
        ("long2.csv", f"{HEADER}\n{LINE_A},x,y\n{LINE_B}\n", 2, "x,y"),
        ("quoted.csv", f'{HEADER}\n"{LINE_A[:14]}"{LINE_A[14:]}\n"multi\nline",{LINE_B}x\n', 3, "x"),
    ]:
        frame, issues, summary = read_export(write(tmp_path, name, text), file_hash="h")
        assert len(frame) == 2, name
        shape = issues[issues["rule"] == "fields"]
        assert shape[[ROW_NUMBER, "column", "value"]].values.tolist() == [[line, WHOLE_ROW, surplus]]
        fields = 23 + len(surplus.split(","))
        assert shape["message"].tolist() == [f"row has {fields} fields but the header has 23"]
        # quoted.csv's long row is shifted by one field, so some of its cells do not type either
        assert summary.issues == len(issues) and (len(issues) == 1) == (name != "quoted.csv")
    assert frame[ROW_NUMBER].tolist() == [2, 3]  # quoted.csv: the long record starts on line 3
    assert frame["sample_id"].tolist() == ["TS-2025-000001", "multi\nline"]  # the first fields, as they came


def test_trailing_separators_are_not_surplus_fields(tmp_path):
    text = f"{HEADER}\n{LINE_A},,\n{LINE_B},\n"
    frame, issues, summary = read_export(write(tmp_path, "excel.csv", text), file_hash="h")
    assert_typed(frame, ROW_A, ROW_B)
    assert issues.empty
    assert summary.warnings == ["2 rows end in empty fields past the header's 23 (trailing separators); ignored"]


def test_long_row_in_a_later_chunk_is_found_there(tmp_path):
    lines = [LINE_B.replace("000002", f"{i:06d}") for i in range(30)]
    lines[25] += ",surplus"
    path = write(tmp_path, "late.csv", HEADER + "\n" + "\n".join(lines) + "\n")
    parse_export_to_parquet(path, tmp_path / "late.parquet", file_hash="h", chunk_rows=7)
    issues = pd.read_parquet(tmp_path / "late.issues.parquet")
    assert issues[[ROW_NUMBER, "value", "rule"]].values.tolist() == [[27, "surplus", "fields"]]
    assert len(pd.read_parquet(tmp_path / "late.parquet")) == 30


def test_invalid_json_in_a_later_chunk_leaves_nothing_behind(tmp_path):
    lines = [json.dumps(ROW_B | {"sample_id": f"TS-2025-{i:06d}"}) for i in range(30)]
    lines[25] = lines[25][:40]  # cut off mid-object
    path = write(tmp_path, "late.jsonl", "\n".join(lines) + "\n")
    out = tmp_path / "out"
    with pytest.raises(ExportParseError) as info:
        parse_export_to_parquet(path, out / "late.parquet", file_hash="h", chunk_rows=7)
    assert info.value.line == 26
    assert list(out.iterdir()) == []  # no half-written output and no temp files


def test_corrupt_parquet(tmp_path):
    buf = io.BytesIO()
    pq.write_table(pa.table({"sample_id": ["a"] * 100}), buf)
    data = buf.getvalue()
    for name, content in [("cut.parquet", data[: len(data) // 2]), ("text.parquet", CANONICAL.encode())]:
        path = write(tmp_path, name, content)
        e = fatal(path)
        assert e.line is None and e.column is None
        assert e.reason.startswith("not a readable Parquet file: ")
        assert str(e).startswith(f"{path}: not a readable Parquet file")


def test_invalid_json_line(tmp_path):
    good = json.dumps({c: v for c, v in ROW_A.items() if v is not None})
    path = write(tmp_path, "bad.jsonl", good + "\n\n" + good + "\n" + '{"sample_id": "TS-2025-000009",' + "\n")
    e = fatal(path)
    assert e.line == 4 and e.column is None and e.reason.startswith("invalid JSON")
    assert str(e).startswith(f"{path}: line 4: invalid JSON")
    not_object = write(tmp_path, "list.jsonl", good + "\n[1, 2]\n")
    assert fatal(not_object).line == 2
    missing = write(tmp_path, "missing.jsonl", json.dumps({"sample_id": "x"}) + "\n")
    e = fatal(missing)
    assert e.line is None and e.reason == "missing required columns" and e.column.startswith("project_id, ")


@pytest.mark.parametrize("chunk_rows", [1, 1000])
def test_jsonl_keys_are_those_of_the_whole_file_not_of_the_first_chunk(tmp_path, chunk_rows):
    """Found by the contract property test: a first record without a required key (a truncated
    record) made the whole file fatal when the first chunk held that record alone."""
    first = {c: v for c, v in ROW_A.items() if c not in ("site", "rin", "priority", "qc_status", "sequencing_ts")}
    second = {c: v for c, v in ROW_B.items() if c != "sequencing_ts"}
    text = json.dumps(first) + "\n" + json.dumps(second) + "\n"
    frame, issues, summary = read_export(write(tmp_path, "keys.jsonl", text), file_hash="h", chunk_rows=chunk_rows)
    assert frame["site"].tolist() == [pd.NA, "Bergen"] and frame["priority"].tolist() == [pd.NA, "urgent"]
    assert issues.empty
    assert summary.warnings == ["optional column(s) not in the file, left empty: sequencing_ts"]


def test_undecodable_bytes_after_the_sniffed_head_name_the_line(tmp_path):
    lines = [LINE_B.replace("000002", f"{i:06d}") for i in range(800)]  # > 64 KB
    data = (HEADER + "\n" + "\n".join(lines) + "\n").encode()
    bad = data[::-1].replace(b"negreB", b"n\xe9greB", 1)[::-1]  # a cp1252 byte in the last row only
    path = write(tmp_path, "mixed.csv", bad)
    e = fatal(path)
    assert e.line == 801 and "not valid utf-8" in e.reason


def test_errors_pickle_with_their_fields():
    e = pickle.loads(pickle.dumps(ExportParseError("f.csv", 3, "site", "missing required column")))
    assert (e.file, e.line, e.column, e.reason) == ("f.csv", 3, "site", "missing required column")
    assert str(e) == "f.csv: line 3, column site: missing required column"
    assert str(ExportParseError("f.parquet", None, None, "boom")) == "f.parquet: boom"
    assert isinstance(e, ValueError)


# --------------------------------------------------------------------------------------
# Chunks, output files, sources
# --------------------------------------------------------------------------------------


def fifty_rows(tmp_path: Path) -> Path:
    lines = []
    for i in range(50):
        line = LINE_A.replace("000001", f"{i + 1:06d}").replace(",42,", f",{i},")
        if i % 9 == 4:
            line = line.replace(",12.5,", ",twelve,")
        if i % 11 == 3:
            line = line.replace("2025-11-21T14:05:00Z", "21.11.2025 14:05")
        lines.append(line + (",note" if i % 2 else ","))
        if i % 10 == 0:
            lines.append("")  # blank lines move the physical line numbers
    return write(tmp_path, "fifty.csv", HEADER + ",notes\n" + "\n".join(lines) + "\n")


def test_chunked_parse_equals_one_chunk(tmp_path):
    path = fifty_rows(tmp_path)
    with iter_export_chunks(path, file_hash="h", chunk_rows=7) as reader:
        chunks = list(reader)
        summary = reader.summary()
    assert all(isinstance(c, ParsedChunk) for c in chunks)
    assert len(chunks) >= 7 and all(len(c.frame) <= 7 for c in chunks)
    assert summary.rows == 50 and summary.issues == 6

    small = parse_export_to_parquet(path, tmp_path / "small" / "out.parquet", file_hash="h", chunk_rows=7)
    whole = parse_export_to_parquet(path, tmp_path / "whole" / "out.parquet", file_hash="h", chunk_rows=1000)
    a = pq.read_table(tmp_path / "small" / "out.parquet").to_pandas()
    b = pq.read_table(tmp_path / "whole" / "out.parquet").to_pandas()
    pd.testing.assert_frame_equal(a, b)
    assert len(a) == 50 and a[ROW_NUMBER].is_monotonic_increasing and a[ROW_NUMBER].iloc[-1] == 56
    ia = pq.read_table(tmp_path / "small" / "out.issues.parquet").to_pandas()
    ib = pq.read_table(tmp_path / "whole" / "out.issues.parquet").to_pandas()
    pd.testing.assert_frame_equal(ia, ib)
    assert len(ia) == 6 and set(ia["column"]) == {"concentration_ng_ul"}
    assert (small.rows, small.issues, small.warnings) == (whole.rows, whole.issues, whole.warnings)
    in_memory, _, _ = read_export(path, file_hash="h", chunk_rows=5)
    assert in_memory[ROW_NUMBER].tolist() == a[ROW_NUMBER].tolist()


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chunk_rows=st.integers(min_value=1, max_value=60))
def test_any_chunk_size_gives_the_same_frame(tmp_path, chunk_rows):
    path = tmp_path / "fifty.csv"
    if not path.exists():
        fifty_rows(tmp_path)
    reference, ref_issues, _ = read_export(path, file_hash="h", chunk_rows=1000)
    frame, issues, _ = read_export(path, file_hash="h", chunk_rows=chunk_rows)
    pd.testing.assert_frame_equal(frame, reference)
    pd.testing.assert_frame_equal(issues, ref_issues)


def test_parquet_output_files_schema_and_metadata(tmp_path):
    path = write(tmp_path, "eu.csv", EUROPEAN)
    dest = tmp_path / "lake" / "raw.parquet"
    summary = parse_export_to_parquet(path, dest, file_hash="f00d")
    assert sorted(p.name for p in dest.parent.iterdir()) == ["raw.issues.parquet", "raw.parquet"]
    typed = pq.read_table(dest)
    assert typed.schema.field("collection_ts").type == pa.timestamp("ns", tz="UTC")
    assert typed.schema.field("temp_excursions").type == pa.int64()
    assert typed.schema.names == list(CONTRACT_COLUMNS) + list(LINEAGE_COLUMNS)
    assert typed.column(FILE_HASH).to_pylist() == ["f00d", "f00d"]
    stored = json.loads(pq.ParquetFile(dest).metadata.metadata[b"tracseq.parse_summary"])
    assert stored["rows"] == 2 and stored["dialect"]["separator"] == ";"
    assert summary.rows == 2 and pq.read_table(dest.with_suffix(".issues.parquet")).num_rows == 0


def test_parquet_output_reads_back_as_the_typed_frame(tmp_path):
    """pandas must read the lake's Parquet back in the typed convention: an int column with an
    empty cell stays Int64 (not float64), text stays "string" (not object)."""
    path = write(tmp_path, "export.csv", CANONICAL.replace(",42,OP-07", ",,OP-07"))
    dest = tmp_path / "raw.parquet"
    parse_export_to_parquet(path, dest, file_hash="h")
    frame, _, _ = read_export(path, file_hash="h")
    back = pd.read_parquet(dest)
    assert back["box_occupancy"].dtype == "Int64" and back["box_occupancy"].tolist() == [pd.NA, 7]
    pd.testing.assert_frame_equal(back, frame, check_dtype=False)
    for name in frame.columns:  # "string" is the convention; pandas picks the storage on reading
        expected = "string" if frame[name].dtype == "string" else frame[name].dtype
        assert back[name].dtype == expected, (name, back[name].dtype)


def test_source_file_is_not_modified(tmp_path):
    path = write(tmp_path, "keep.csv", EUROPEAN)
    os.utime(path, ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))
    before = (path.read_bytes(), path.stat().st_mtime_ns, path.stat().st_size)
    parse_export_to_parquet(path, tmp_path / "out.parquet", file_hash="h")
    read_export(path, file_hash="h")
    assert (path.read_bytes(), path.stat().st_mtime_ns, path.stat().st_size) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.csv", "out.issues.parquet", "out.parquet"]


def test_memory_url(tmp_path):
    fs = fsspec.filesystem("memory")
    url = "memory://lims/exports/eu.csv"
    with fs.open("/lims/exports/eu.csv", "wb") as f:
        f.write(EUROPEAN.encode())
    try:
        frame, _, summary = read_export(url, file_hash="m")
        assert_typed(frame, ROW_A, ROW_B)
        assert frame[SOURCE_FILE].tolist() == [url, url] and summary.source == url
        parse_export_to_parquet(url, tmp_path / "m.parquet", file_hash="m")
        assert pq.read_table(tmp_path / "m.parquet").num_rows == 2
        missing = "memory://lims/exports/nope.csv"
        with pytest.raises(FileNotFoundError):
            read_export(missing, file_hash="m")
    finally:
        fs.rm("/lims", recursive=True)


def test_format_sniffed_without_a_known_suffix(tmp_path):
    assert read_export(write(tmp_path, "export.dat", EUROPEAN), file_hash="h")[2].dialect.format == "csv"
    line = json.dumps({c: v for c, v in ROW_A.items() if v is not None})
    assert read_export(write(tmp_path, "export", line + "\n"), file_hash="h")[2].dialect.format == "jsonl"
    buf = io.BytesIO()
    pq.write_table(pa.table({c: [v] for c, v in ROW_A.items() if v is not None}), buf)
    frame, _, summary = read_export(write(tmp_path, "export.bin", buf.getvalue()), file_hash="h")
    assert summary.dialect.format == "parquet" and frame["sample_id"].tolist() == ["TS-2025-000001"]


def test_reader_reports_metadata_before_iterating(tmp_path):
    reader = iter_export_chunks(fifty_rows(tmp_path), file_hash="h", chunk_rows=10)
    assert reader.dialect.separator == "," and reader.extra_columns == ["notes"]
    assert reader.columns == list(CONTRACT_COLUMNS) + ["notes"] + list(LINEAGE_COLUMNS)
    first = next(iter(reader))
    assert list(first.frame.columns) == reader.columns and list(first.issues.columns) == list(ISSUE_COLUMNS)
    reader.close()


# --------------------------------------------------------------------------------------
# Speed: the fast paths are taken (the exact csv-module path is only for quoted ragged rows)
# --------------------------------------------------------------------------------------


def test_fast_paths_do_not_need_the_csv_module(tmp_path, monkeypatch):
    from tracseq_dagster import parsing

    def forbidden(self, chunk, first):
        raise AssertionError("the slow exact path was used")

    monkeypatch.setattr(parsing._CsvSource, "_tokenise_exact", forbidden)
    quoted = HEADER + ",notes\n" + LINE_A + ',"a\nb"\n\n' + LINE_B + ',"x\r\ny\nz"\n' + LINE_B + ",\n"
    frame, _, _ = read_export(write(tmp_path, "q.csv", quoted), file_hash="h")
    assert frame[ROW_NUMBER].tolist() == [2, 5, 8]
    ragged = f"{HEADER}\n\n{LINE_A}\n   \n{','.join(LINE_B.split(',')[:4])}\n"
    frame, _, summary = read_export(write(tmp_path, "r.csv", ragged), file_hash="h")
    assert frame[ROW_NUMBER].tolist() == [3, 5] and "last line 5 is truncated (4 of 23 fields)" in summary.warnings[0]
    long = f"{HEADER}\n{LINE_A},x,,y\n\n{LINE_B},,z\n{','.join(LINE_B.split(',')[:4])}\n{LINE_B}\n"
    frame, issues, summary = read_export(write(tmp_path, "l.csv", long), file_hash="h")
    assert frame[ROW_NUMBER].tolist() == [2, 4, 5, 6]
    assert issues[[ROW_NUMBER, "value", "rule"]].values.tolist() == [[2, "x,,y", "fields"], [4, ",z", "fields"]]
    assert_typed(frame.iloc[[0, 1]].reset_index(drop=True), ROW_A, ROW_B)  # the header's fields, unshifted
    assert summary.warnings == ["line 5 has 4 of 23 fields; missing cells left empty"]


@pytest.mark.slow
def test_large_messy_file_takes_the_vectorised_path(tmp_path, monkeypatch):
    """200,000 messy rows in bounded chunks, never through the per-row fallback.

    Speed itself is measured by benchmarks/spine_benchmark.py, not here.
    """
    import pyarrow.csv as pacsv

    from tracseq_dagster import parsing

    monkeypatch.setattr(parsing._CsvSource, "_tokenise_exact", lambda *a: pytest.fail("slow exact path used"))
    n = 200_000
    i = np.arange(n)
    day = (i % 28 + 1).astype(str)
    stamps = pa.array(np.char.add(np.char.add(np.char.zfill(day, 2), ".11.2025 "), np.char.zfill((i % 24).astype(str), 2)))
    table = pa.table(
        {
            "Sample ID": pa.array(np.char.add("TS-2025-", np.char.zfill(i.astype(str), 6))),
            "Project": pa.array(np.full(n, "PRJ-01")),
            "Type": pa.array(np.full(n, "DNA")),
            "Collected": pa.compute.binary_join_element_wise(stamps, pa.array(np.full(n, ":05")), ""),
            "Received": pa.compute.binary_join_element_wise(stamps, pa.array(np.full(n, ":35")), ""),
            **{
                c: pa.array(np.char.replace((i % 97 / 7).round(3).astype(str), ".", ","))
                for c in (
                    "storage_temp_c",
                    "max_temp_deviation_c",
                    "concentration_ng_ul",
                    "volume_ul",
                    "a260_280",
                    "a260_230",
                    "din",
                )
            },
            **{c: pa.array((i % 5).astype(str)) for c in ("temp_excursions", "freeze_thaw_cycles", "box_occupancy")},
            "storage_location": pa.array(np.full(n, "FRZ-01/R1/B1/A1")),
            "operator": pa.array(np.full(n, "OP-1")),
            "site": pa.array(np.full(n, "Zürich")),
            "priority": pa.array(np.full(n, "routine")),
            "notes": pa.array(np.where(i % 50 == 0, "door; left\nopen", "")),
        }
    )
    path = tmp_path / "big.csv"
    with pa.OSFile(str(path), "wb") as f:
        f.write(b"\xef\xbb\xbf")
        pacsv.write_csv(table, f, write_options=pacsv.WriteOptions(delimiter=";", quoting_style="needed"))
    summary = parse_export_to_parquet(path, tmp_path / "big.parquet", file_hash="h", chunk_rows=50_000)
    assert summary.rows == n and summary.issues == 0
    out = pq.read_table(tmp_path / "big.parquet", columns=[ROW_NUMBER, "collection_ts", "a260_280"])
    assert out.column(ROW_NUMBER)[-1].as_py() == n + 1 + n // 50  # every 50th row spans two lines
    assert out.column("collection_ts")[1].as_py() == pd.Timestamp("2025-11-02 01:05", tz="UTC")
    assert out.column("a260_280")[7].as_py() == 1.0
