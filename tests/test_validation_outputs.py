"""The frames validate_samples hands on, typed and shaped the same whether rows were rejected or not
(the lake writes them to Parquet, whose schema must not depend on the data): the validation
mutants test_validation.py left alive."""

from __future__ import annotations

import pandas as pd

from tests.test_validation import NOW, clean_frame
from tracseq_dagster.contract import ROW_NUMBER, SOURCE_FILE
from tracseq_dagster.validation import REASONS_COLUMN, RULES_COLUMN, VIOLATION_COLUMNS, validate_samples

VIOLATION_DTYPES = {
    SOURCE_FILE: "string",
    ROW_NUMBER: "Int64",
    "sample_id": "string",
    "rule": "string",
    "column": "string",
    "message": "string",
}


def _dtypes(frame: pd.DataFrame) -> dict[str, str]:
    return {name: str(dtype) for name, dtype in frame.dtypes.items()}


def test_violations_and_quarantine_are_typed_when_rows_are_rejected() -> None:
    frame = clean_frame()
    frame.loc[frame.index[1], "volume_ul"] = -1.0  # one rule broken
    frame.loc[frame.index[2], "volume_ul"] = -1.0  # two rules broken on one row
    frame.loc[frame.index[2], "freeze_thaw_cycles"] = 99
    result = validate_samples(frame, None, None, now=NOW)
    assert list(result.violations.columns) == list(VIOLATION_COLUMNS)
    assert _dtypes(result.violations) == VIOLATION_DTYPES
    assert list(result.violations.index) == list(range(3))
    assert result.violations["rule"].tolist() == ["range:volume_ul", "range:freeze_thaw_cycles", "range:volume_ul"]
    assert result.violations[ROW_NUMBER].tolist() == frame[ROW_NUMBER].iloc[[1, 2, 2]].tolist()
    assert str(result.quarantined[RULES_COLUMN].dtype) == str(result.quarantined[REASONS_COLUMN].dtype) == "string"
    assert result.quarantined[RULES_COLUMN].tolist() == ["range:volume_ul", "range:freeze_thaw_cycles;range:volume_ul"]
    assert result.quarantined[REASONS_COLUMN].str.count("; ").tolist() == [0, 1]


def test_a_clean_frame_gives_empty_frames_of_the_same_types() -> None:
    result = validate_samples(clean_frame(), None, None, now=NOW)
    assert result.violations.empty and result.quarantined.empty
    assert list(result.violations.columns) == list(VIOLATION_COLUMNS) and _dtypes(result.violations) == VIOLATION_DTYPES
    assert str(result.quarantined[RULES_COLUMN].dtype) == str(result.quarantined[REASONS_COLUMN].dtype) == "string"


def test_violations_without_lineage_columns_have_typed_empty_cells() -> None:
    frame = clean_frame().drop(columns=[SOURCE_FILE, ROW_NUMBER], errors="ignore")
    frame.loc[frame.index[0], "volume_ul"] = -1.0
    result = validate_samples(frame, None, None, now=NOW)
    assert _dtypes(result.violations) == VIOLATION_DTYPES and len(result.violations) == 1
    assert result.violations[SOURCE_FILE].isna().all() and result.violations[ROW_NUMBER].isna().all()
    assert list(result.violations.index) == [0]
