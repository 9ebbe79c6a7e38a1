"""The helpers the contract rules decide with: parse issues located on rows, whole numbers, the
typed-frame dtypes (the rules mutants test_validation.py left alive)."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from tracseq_dagster.contract import ROW_NUMBER, SOURCE_FILE, Kind
from tracseq_dagster.rules import RuleContext, _locate_parse_issues, has_contract_dtype, whole_numbers

NOW = pd.Timestamp("2025-06-01T00:00:00Z")


def _frame(files: list[str], rows: list[int]) -> pd.DataFrame:
    return pd.DataFrame({SOURCE_FILE: pd.Series(files, dtype="string"), ROW_NUMBER: pd.Series(rows, dtype="Int64")})


def _issues(rows: list[object], columns: list[str], files: list[str] | None = None) -> pd.DataFrame:
    data: dict[str, object] = {ROW_NUMBER: rows, "column": columns, "value": ["x"] * len(rows), "message": ["bad"] * len(rows)}
    if files is not None:
        data[SOURCE_FILE] = files
    return pd.DataFrame(data)


def test_no_issues_locate_to_nothing() -> None:
    frame = _frame(["a.csv"], [2])
    assert _locate_parse_issues(frame, None) is None
    assert _locate_parse_issues(frame, _issues([], [])) is None
    context = RuleContext.for_frame(frame, now=NOW)
    assert context.parse_issues is None and context.known_sample_ids is None
    assert context.parse_issues_for("volume_ul").empty
    assert context.parse_issue_mask("volume_ul", 3).tolist() == [False, False, False]


def test_issues_are_located_by_file_and_line() -> None:
    # Two files with the same line numbers: the file tells them apart.
    frame = _frame(["a.csv", "a.csv", "b.csv", "b.csv"], [2, 3, 2, 3])
    issues = _issues(["3", 2, 2], ["volume_ul", "rin", "volume_ul"], files=["a.csv", "b.csv", "b.csv"])
    located = _locate_parse_issues(frame, issues)
    assert located is not None
    assert located["_pos"].dtype == np.int64
    assert sorted(zip(located["_pos"], located["column"])) == [(1, "volume_ul"), (2, "rin"), (2, "volume_ul")]
    assert list(located.index) == list(range(len(located)))
    context = RuleContext.for_frame(frame, now=NOW, parse_issues=issues)
    assert context.parse_issue_mask("volume_ul", 4).tolist() == [False, True, True, False]
    assert context.parse_issue_mask("rin", 4).tolist() == [False, False, True, False]
    assert context.parse_issues_for("rin")["_pos"].tolist() == [2]


def test_without_files_on_both_sides_issues_are_located_by_line_only() -> None:
    frame = _frame(["a.csv", "a.csv"], [2, 3])
    located = _locate_parse_issues(frame, _issues([3], ["rin"]))  # the issues name no file
    assert located["_pos"].tolist() == [1]  # type: ignore[index]
    no_file_column = frame.drop(columns=SOURCE_FILE)
    located = _locate_parse_issues(no_file_column, _issues([2], ["rin"], files=["a.csv"]))
    assert located["_pos"].tolist() == [0]  # type: ignore[index]


def test_the_first_row_of_a_repeated_line_and_one_issue_per_cell_are_kept() -> None:
    frame = _frame(["a.csv", "a.csv", "a.csv"], [2, 2, 3])  # line 2 twice (a frame concatenated twice)
    located = _locate_parse_issues(frame, _issues([2, 2, 2], ["rin", "rin", "din"], files=["a.csv"] * 3))
    assert located is not None
    assert sorted(zip(located["_pos"], located["column"])) == [(0, "din"), (0, "rin")]
    assert located["message"].tolist() == ["bad", "bad"]


def test_issues_on_rows_not_in_the_frame_are_dropped_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    frame = _frame(["a.csv"], [2])
    with caplog.at_level(logging.WARNING):
        located = _locate_parse_issues(frame, _issues([2, 9, "not a line"], ["rin", "rin", "din"], files=["a.csv"] * 3))
    assert located is not None and located["_pos"].tolist() == [0] and located["column"].tolist() == ["rin"]
    assert "2 parse issue(s) refer to rows that are not in the frame" in caplog.text and "_row_number" in caplog.text
    assert "[9, <NA>]" in caplog.text


def test_issues_need_the_line_numbers_of_the_frame() -> None:
    with pytest.raises(ValueError, match="^parse issues are matched to rows by '_row_number', which the frame lacks$"):
        _locate_parse_issues(pd.DataFrame({"sample_id": ["TS-2025-000001"]}), _issues([2], ["rin"]))


def test_the_context_takes_known_ids_in_any_shape_and_the_clock_in_utc() -> None:
    frame = _frame(["a.csv"], [2])
    for ids in (["TS-1"], ("TS-1",), pd.Series(["TS-1"]), np.array(["TS-1"]), pd.Index(["TS-1"])):
        context = RuleContext.for_frame(frame, now=NOW, known_sample_ids=ids)
        assert isinstance(context.known_sample_ids, pd.Index) and context.known_sample_ids.tolist() == ["TS-1"]
    naive = RuleContext.for_frame(frame, now=pd.Timestamp("2025-06-01T02:00:00"))
    assert naive.now == pd.Timestamp("2025-06-01T02:00:00Z")
    zoned = RuleContext.for_frame(frame, now=pd.Timestamp("2025-06-01T02:00:00+02:00"))
    assert zoned.now == NOW and str(zoned.now.tz) == "UTC"
    assert abs(RuleContext.for_frame(frame).now - pd.Timestamp.now(tz="UTC")) < pd.Timedelta(minutes=5)


def test_whole_numbers() -> None:
    values = np.array([0.0, -3.0, 2.5, np.nan, np.inf, -np.inf, 2.0**62, 2.0**63, -(2.0**63), 1e300, -0.5])
    assert whole_numbers(values).tolist() == [True, True, False, False, False, False, True, False, False, False, False]


@pytest.mark.parametrize(
    ("series", "kind", "expected"),
    [
        (pd.Series(["a"], dtype="string"), Kind.STRING, True),
        (pd.Series(["a"], dtype=object), Kind.STRING, False),
        (pd.Series(["DNA"], dtype="string"), Kind.ENUM, True),
        (pd.Series(["DNA"], dtype=object), Kind.ENUM, False),
        (pd.Series(pd.to_datetime(["2025-01-01"], utc=True)), Kind.TIMESTAMP, True),
        (pd.Series(pd.to_datetime(["2025-01-01"]).tz_localize("Europe/Berlin")), Kind.TIMESTAMP, False),
        (pd.Series(pd.to_datetime(["2025-01-01"], utc=True)).dt.as_unit("us"), Kind.TIMESTAMP, False),
        (pd.Series(pd.to_datetime(["2025-01-01"])), Kind.TIMESTAMP, False),
        (pd.Series([1.0]), Kind.FLOAT, True),
        (pd.Series([1], dtype="Int64"), Kind.FLOAT, False),
        (pd.Series([1], dtype="Int64"), Kind.INT, True),
        (pd.Series([1.0]), Kind.INT, False),
    ],
)
def test_contract_dtypes(series: pd.Series, kind: Kind, expected: bool) -> None:
    assert has_contract_dtype(series, kind) is expected
