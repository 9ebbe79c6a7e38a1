"""Row-level validation (quarantine with reasons) and the Great Expectations suite.

Frames are small and handmade, in the parser's typed convention: contract columns in order
(strings "string", timestamps datetime64[ns, UTC], floats float64, ints Int64), an extra
column, then the lineage columns. ``NOW`` pins the clock of the plausible-date rules.
"""

from __future__ import annotations

import os

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")

from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Any

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from tracseq_dagster.contract import (  # noqa: E402
    COLUMNS,
    CONTRACT_COLUMNS,
    FILE_HASH,
    INT_COLUMNS,
    ROW_NUMBER,
    SOURCE_FILE,
    WHOLE_ROW,
    Kind,
)
from tracseq_dagster.lake import Lake  # noqa: E402
from tracseq_dagster.parsing import parse_export_to_parquet  # noqa: E402
from tracseq_dagster.rules import RULE_NAMES, RULES  # noqa: E402
from tracseq_dagster.validation import VIOLATION_COLUMNS, validate_samples  # noqa: E402

NOW = pd.Timestamp("2025-06-01T12:00:00", tz="UTC")
UTC = "UTC"


def ts(value: str | None) -> pd.Timestamp:
    return pd.NaT if value is None else pd.Timestamp(value, tz=UTC)


def clean_frame() -> pd.DataFrame:
    """Five valid samples: RNA (rin), DNA (din), blood (no rin/din, no optional times), RNA, FFPE."""
    rows = [
        # sample_id, project, type, collection, received, extraction, sequencing, temp, exc, dev,
        # ft, conc, vol, 280, 230, rin, din, location, box, operator, site, priority, qc
        (
            "TS-2024-000101",
            "P-ALPHA",
            "RNA",
            "2025-01-10T08:00",
            "2025-01-11T09:30",
            "2025-01-12T10:00",
            "2025-01-20T12:00",
            -80.0,
            0,
            0.0,
            1,
            55.2,
            40.0,
            2.05,
            2.10,
            8.1,
            None,
            "FRZ-01/R1/B1/A1",
            10,
            "op-01",
            "site-A",
            "routine",
            "pass",
        ),
        (
            "TS-2024-000102",
            "P-ALPHA",
            "DNA",
            "2025-01-10T08:30",
            "2025-01-11T09:30",
            "2025-01-13T10:00",
            "2025-01-21T12:00",
            -20.0,
            1,
            2.5,
            0,
            120.0,
            25.0,
            1.85,
            2.00,
            None,
            7.5,
            "FRZ-01/R1/B1/A2",
            11,
            "op-02",
            "site-A",
            "urgent",
            "borderline",
        ),
        (
            "TS-2024-000103",
            "P-BETA",
            "blood",
            "2025-02-01T07:00",
            "2025-02-01T15:00",
            None,
            None,
            4.0,
            0,
            0.0,
            0,
            0.0,
            500.0,
            1.70,
            1.50,
            None,
            None,
            "FRZ-02/R3/B14/A7",
            0,
            "op-03",
            "site-B",
            "routine",
            None,
        ),
        (
            "TS-2024-000104",
            "P-BETA",
            "RNA",
            "2025-02-02T07:00",
            "2025-02-03T15:00",
            "2025-02-03T16:00",
            None,
            -196.0,
            3,
            6.0,
            50,
            12.5,
            0.5,
            2.10,
            0.00,
            6.0,
            None,
            "LN2-1/R10/B100/H12",
            100,
            "op-01",
            "site-B",
            "routine",
            "fail",
        ),
        (
            "TS-2024-000105",
            "P-GAMMA",
            "FFPE",
            "2025-03-01T07:00",
            "2025-03-01T07:00",
            "2025-03-01T07:00",
            "2025-03-01T07:00",
            40.0,
            0,
            0.0,
            0,
            5.0,
            10.0,
            5.00,
            5.00,
            None,
            1.0,
            "FRZ-03/R2/B14/A7",
            5,
            "op-02",
            "site-C",
            "urgent",
            "pass",
        ),
    ]
    columns = list(zip(*rows))
    data: dict[str, Any] = {}
    for col, values in zip(COLUMNS, columns):
        if col.kind is Kind.TIMESTAMP:
            data[col.name] = pd.Series([ts(v) for v in values], dtype="datetime64[ns, UTC]")
        elif col.kind is Kind.FLOAT:
            data[col.name] = pd.Series([np.nan if v is None else v for v in values], dtype="float64")
        elif col.kind is Kind.INT:
            data[col.name] = pd.array(values, dtype="Int64")
        else:
            data[col.name] = pd.array(values, dtype="string")
    frame = pd.DataFrame(data)
    frame["lab_comment"] = pd.array(["ok", None, "rush", None, "x"], dtype="string")  # unknown extra column
    frame[FILE_HASH] = pd.array(["h1"] * 5, dtype="string")
    frame[SOURCE_FILE] = pd.array(["export_a.csv"] * 5, dtype="string")
    frame[ROW_NUMBER] = pd.array([2, 3, 4, 5, 6], dtype="Int64")
    return frame


def line_of(frame: pd.DataFrame, i: int) -> int:
    return int(frame[ROW_NUMBER].iloc[i])


# ---------------------------------------------------------------------------------------
# One case per rule: a mutation of one row (or two, for duplicates), the rows expected out,
# the rules they must break (exactly), and fragments every message of the rule must contain.
# ---------------------------------------------------------------------------------------


@dataclass
class Case:
    rule: str
    mutate: Callable[[pd.DataFrame], None]
    rows: tuple[int, ...]
    rules: frozenset[str]
    fragments: tuple[str, ...]
    parse_issues: pd.DataFrame | None = None
    known: tuple[str, ...] | None = None


def setter(row: int, **values: Any) -> Callable[[pd.DataFrame], None]:
    def mutate(frame: pd.DataFrame) -> None:
        for col, value in values.items():
            frame.loc[row, col] = value

    return mutate


def _fmt_number(kind: Kind, value: float) -> str:
    return str(int(value)) if kind is Kind.INT else repr(float(value))


def build_cases() -> list[Case]:
    cases: list[Case] = []
    # required:<col> (row 1, DNA); null sample_type must not also fire enum/rin/din rules
    for col in COLUMNS:
        if col.required:
            na = pd.NaT if col.kind is Kind.TIMESTAMP else None
            cases.append(
                Case(
                    f"required:{col.name}",
                    setter(1, **{col.name: na}),
                    (1,),
                    frozenset({f"required:{col.name}"}),
                    (col.name, "<empty>", "required"),
                )
            )
    # type:<col>: the parser could not type the cell (left NA) and reported it
    for col in COLUMNS:
        row = 0 if col.name == "rin" else 1  # rin on the RNA row, everything else on the DNA row
        na = pd.NaT if col.kind is Kind.TIMESTAMP else None
        issues = pd.DataFrame(
            {
                ROW_NUMBER: [3 if row == 1 else 2],
                "column": [col.name],
                "value": ["n/a?x"],
                "rule": ["type"],
                "message": [f"could not parse {col.kind.value}"],
            }
        )
        cases.append(
            Case(
                f"type:{col.name}",
                setter(row, **{col.name: na}),
                (row,),
                frozenset({f"type:{col.name}"}),
                (col.name, "'n/a?x'"),
                parse_issues=issues,
            )
        )
    # enum:<col> (row 2, blood, carries neither rin nor din)
    for col in COLUMNS:
        if col.allowed:
            cases.append(
                Case(
                    f"enum:{col.name}",
                    setter(2, **{col.name: "plasma"}),
                    (2,),
                    frozenset({f"enum:{col.name}"}),
                    (f"{col.name} = 'plasma'", "is not one of"),
                )
            )
    # range:<col>: just outside the bound (rin on an RNA row, din on a DNA row)
    for col in COLUMNS:
        if col.minimum is None and col.maximum is None:
            continue
        row = {"rin": 0, "din": 1}.get(col.name, 2)
        if col.maximum is not None:
            value, words = col.maximum + 1, f"above the maximum {int(col.maximum)}"
        elif col.exclusive_minimum:
            value, words = col.minimum, f"not above the exclusive minimum {int(col.minimum)}"
        else:
            value, words = col.minimum - 1, f"below the minimum {int(col.minimum)}"
        value = int(value) if col.kind is Kind.INT else float(value)
        cases.append(
            Case(
                f"range:{col.name}",
                setter(row, **{col.name: value}),
                (row,),
                frozenset({f"range:{col.name}"}),
                (f"{col.name} = {_fmt_number(col.kind, value)}", words),
            )
        )
    cases += [
        Case(
            "pattern:sample_id",
            setter(3, sample_id="TS-24-104"),
            (3,),
            frozenset({"pattern:sample_id"}),
            ("sample_id = 'TS-24-104'", "does not match"),
        ),
        Case(
            "pattern:storage_location",
            setter(3, storage_location="FRZ-01/R1/B1/A1/extra"),
            (3,),
            frozenset({"pattern:storage_location"}),
            ("storage_location = 'FRZ-01/R1/B1/A1/extra'", "does not match"),
        ),
        Case(
            "order:collection_ts<=received_ts",
            setter(0, received_ts=ts("2025-01-09T08:00")),
            (0,),
            frozenset({"order:collection_ts<=received_ts"}),
            ("received_ts = 2025-01-09T08:00:00+00:00 is before collection_ts = 2025-01-10T08:00:00+00:00",),
        ),
        Case(
            "order:received_ts<=extraction_ts",
            setter(0, extraction_ts=ts("2025-01-11T09:00")),
            (0,),
            frozenset({"order:received_ts<=extraction_ts"}),
            ("extraction_ts = 2025-01-11T09:00:00+00:00", "received_ts"),
        ),
        Case(
            "order:extraction_ts<=sequencing_ts",
            setter(0, sequencing_ts=ts("2025-01-12T09:59")),
            (0,),
            frozenset({"order:extraction_ts<=sequencing_ts"}),
            ("sequencing_ts = 2025-01-12T09:59:00+00:00", "extraction_ts"),
        ),
        # transitive comparisons only when the middle is missing (received is required, so it fires too)
        Case(
            "order:collection_ts<=extraction_ts",
            setter(0, received_ts=pd.NaT, extraction_ts=ts("2025-01-09T00:00"), sequencing_ts=pd.NaT),
            (0,),
            frozenset({"required:received_ts", "order:collection_ts<=extraction_ts"}),
            ("extraction_ts = 2025-01-09T00:00:00+00:00 is before collection_ts",),
        ),
        Case(
            "order:received_ts<=sequencing_ts",
            setter(1, extraction_ts=pd.NaT, sequencing_ts=ts("2025-01-11T09:00")),
            (1,),
            frozenset({"order:received_ts<=sequencing_ts"}),
            ("sequencing_ts = 2025-01-11T09:00:00+00:00 is before received_ts",),
        ),
        Case(
            "order:collection_ts<=sequencing_ts",
            setter(1, received_ts=pd.NaT, extraction_ts=pd.NaT, sequencing_ts=ts("2025-01-01T00:00")),
            (1,),
            frozenset({"required:received_ts", "order:collection_ts<=sequencing_ts"}),
            ("sequencing_ts = 2025-01-01T00:00:00+00:00 is before collection_ts",),
        ),
        Case(
            "plausible_date:collection_ts",
            setter(2, collection_ts=ts("1985-02-01T07:00")),
            (2,),
            frozenset({"plausible_date:collection_ts"}),
            ("collection_ts = 1985-02-01T07:00:00+00:00", "before 1990"),
        ),
        Case(
            "plausible_date:received_ts",
            setter(2, received_ts=ts("2030-02-01T15:00")),
            (2,),
            frozenset({"plausible_date:received_ts"}),
            ("received_ts = 2030-02-01T15:00:00+00:00", "in the future"),
        ),
        Case(
            "plausible_date:extraction_ts",
            setter(3, extraction_ts=ts("2030-01-01")),
            (3,),
            frozenset({"plausible_date:extraction_ts"}),
            ("extraction_ts = 2030-01-01T00:00:00+00:00", "in the future"),
        ),
        Case(
            "plausible_date:sequencing_ts",
            setter(0, sequencing_ts=ts("2025-06-03T00:00")),
            (0,),
            frozenset({"plausible_date:sequencing_ts"}),
            ("sequencing_ts = 2025-06-03T00:00:00+00:00", "in the future"),
        ),
        Case("rin_only_rna", setter(1, rin=7.0), (1,), frozenset({"rin_only_rna"}), ("rin = 7.0", "sample_type = 'DNA'")),
        Case("din_only_dna", setter(3, din=6.5), (3,), frozenset({"din_only_dna"}), ("din = 6.5", "sample_type = 'RNA'")),
        Case(
            "unique:sample_id",
            setter(3, sample_id="TS-2024-000101"),
            (0, 3),
            frozenset({"unique:sample_id"}),
            ("sample_id = 'TS-2024-000101'", "duplicated"),
        ),
        Case(
            "unique_across_exports:sample_id",
            lambda f: None,
            (1,),
            frozenset({"unique_across_exports:sample_id"}),
            ("sample_id = 'TS-2024-000102'", "already accepted"),
            known=("TS-2023-000001", "TS-2024-000102"),
        ),
        # the parser reported a CSV row with more fields than the header
        Case(
            "field_count",
            lambda f: None,
            (2,),
            frozenset({"field_count"}),
            ("row has 25 fields but the header has 23", "surplus 'x,y'", "shifted"),
            parse_issues=pd.DataFrame(
                {
                    ROW_NUMBER: [4],
                    "column": [WHOLE_ROW],
                    "value": ["x,y"],
                    "rule": ["fields"],
                    "message": ["row has 25 fields but the header has 23"],
                }
            ),
        ),
    ]
    return cases


CASES = build_cases()


def test_every_rule_has_a_case():
    assert {c.rule for c in CASES} == set(RULE_NAMES)
    assert len(RULE_NAMES) == len(set(RULE_NAMES))


@pytest.mark.parametrize("case", CASES, ids=[c.rule for c in CASES])
def test_one_violation_quarantines_exactly_that_row(case: Case):
    frame = clean_frame()
    case.mutate(frame)
    result = validate_samples(frame, case.parse_issues, case.known, now=NOW)

    assert sorted(result.quarantined.index) == list(case.rows)
    assert sorted(result.valid.index) == sorted(set(range(5)) - set(case.rows))
    for i in case.rows:
        assert set(result.quarantined.loc[i, "_rules"].split(";")) == case.rules
    mine = result.violations[result.violations["rule"] == case.rule]
    assert sorted(mine[ROW_NUMBER].tolist()) == [line_of(frame, i) for i in case.rows]
    for message in mine["message"]:
        for fragment in case.fragments:
            assert fragment in message, (fragment, message)
    for i in case.rows:
        reasons = result.quarantined.loc[i, "_reasons"]
        assert any(m in reasons for m in mine["message"])
    assert result.rule_counts[case.rule] == len(case.rows)
    assert sum(1 for v in result.rule_counts.values() if v) == len(case.rules)
    # nothing lost, nothing duplicated
    assert len(result.valid) + len(result.quarantined) == len(frame)
    assert sorted(pd.concat([result.valid, result.quarantined])[ROW_NUMBER].tolist()) == [2, 3, 4, 5, 6]


def test_transitive_order_is_not_checked_when_the_middle_is_present():
    frame = clean_frame()
    # received and extraction both before collection: one error (received), reported once
    frame.loc[0, ["received_ts", "extraction_ts"]] = [ts("2025-01-09T08:00"), ts("2025-01-09T12:00")]
    result = validate_samples(frame, now=NOW)
    assert result.quarantined.loc[0, "_rules"] == "order:collection_ts<=received_ts"
    frame.loc[0, "received_ts"] = pd.NaT  # now the gap is compared across the missing middle
    result = validate_samples(frame, now=NOW)
    assert result.quarantined.loc[0, "_rules"] == "required:received_ts;order:collection_ts<=extraction_ts"


def test_clean_frame_quarantines_nothing():
    frame = clean_frame()
    result = validate_samples(frame, now=NOW)
    assert result.quarantined.empty
    assert result.violations.empty
    assert list(result.violations.columns) == list(VIOLATION_COLUMNS)
    assert set(result.rule_counts) == set(RULE_NAMES)
    assert not any(result.rule_counts.values())
    pd.testing.assert_frame_equal(result.valid, frame)
    assert list(result.quarantined.columns) == list(frame.columns) + ["_rules", "_reasons"]


def test_storage_temperature_message_is_exact():
    frame = clean_frame()
    frame.loc[2, "storage_temp_c"] = 55.0
    result = validate_samples(frame, now=NOW)
    assert result.quarantined.loc[2, "_reasons"] == "storage_temp_c = 55.0 is above the maximum 40"
    row = result.violations.iloc[0]
    assert (row[SOURCE_FILE], row[ROW_NUMBER], row["sample_id"], row["rule"], row["column"]) == (
        "export_a.csv",
        4,
        "TS-2024-000103",
        "range:storage_temp_c",
        "storage_temp_c",
    )


def test_several_rules_on_one_row_are_all_reported_in_rule_order():
    frame = clean_frame()
    frame.loc[4, ["storage_temp_c", "priority"]] = [55.0, "asap"]
    frame.loc[4, "sample_id"] = "TS-2024-105"
    result = validate_samples(frame, now=NOW)
    assert list(result.quarantined.index) == [4]
    assert result.quarantined.loc[4, "_rules"] == "enum:priority;range:storage_temp_c;pattern:sample_id"
    reasons = result.quarantined.loc[4, "_reasons"].split("; ")
    assert reasons == [
        "priority = 'asap' is not one of routine, urgent",
        "storage_temp_c = 55.0 is above the maximum 40",
        r"sample_id = 'TS-2024-105' does not match the pattern TS-\d{4}-\d{6}",
    ]
    assert len(result.violations) == 3
    # the quarantined row keeps every original column and value
    pd.testing.assert_frame_equal(result.quarantined[frame.columns], frame.iloc[[4]])


def test_duplicates_inside_a_file_name_the_other_lines():
    frame = clean_frame()
    frame.loc[[2, 4], "sample_id"] = "TS-2024-000101"  # lines 2, 4 and 6 share an id
    result = validate_samples(frame, now=NOW)
    assert sorted(result.quarantined.index) == [0, 2, 4]
    msgs = result.violations.set_index(ROW_NUMBER)["message"]
    assert msgs[2].endswith("(also on lines 4, 6)")
    assert msgs[4].endswith("(also on lines 2, 6)")
    assert msgs[6].endswith("(also on lines 2, 4)")
    assert result.rule_counts["unique:sample_id"] == 3


def test_duplicate_of_an_id_accepted_from_another_export():
    frame = clean_frame()
    known = pd.Index(["TS-2024-000101", "TS-2024-000105", "TS-2099-000000"])
    result = validate_samples(frame, known_sample_ids=known, now=NOW)
    assert sorted(result.quarantined.index) == [0, 4]
    assert set(result.quarantined["_rules"]) == {"unique_across_exports:sample_id"}
    assert result.quarantined.loc[4, "_reasons"] == "sample_id = 'TS-2024-000105' was already accepted from another export"
    # a generator of ids works too
    again = validate_samples(frame, known_sample_ids=(i for i in ["TS-2024-000103"]), now=NOW)
    assert list(again.quarantined.index) == [2]


def test_parse_issue_on_required_cell_is_a_type_violation_not_an_empty_one():
    frame = clean_frame()
    frame.loc[3, "storage_temp_c"] = np.nan
    frame.loc[0, "collection_ts"] = pd.NaT
    issues = pd.DataFrame(
        {
            ROW_NUMBER: [5, 2],
            "column": ["storage_temp_c", "collection_ts"],
            "value": ["-80,5,1", "31/31/2025"],
            "rule": ["type", "type"],
            "message": ["not a number", "not a date"],
        }
    )
    result = validate_samples(frame, issues, now=NOW)
    assert sorted(result.quarantined.index) == [0, 3]
    assert result.quarantined.loc[3, "_rules"] == "type:storage_temp_c"
    assert result.quarantined.loc[3, "_reasons"] == "storage_temp_c = '-80,5,1' could not be read as a number (not a number)"
    assert result.quarantined.loc[0, "_rules"] == "type:collection_ts"
    assert result.rule_counts["required:storage_temp_c"] == 0


def test_values_of_the_wrong_type_in_an_untyped_frame_are_type_violations():
    frame = clean_frame()
    frame["freeze_thaw_cycles"] = pd.Series(["1", "0", "two", "50", "2.5"], dtype=object)
    result = validate_samples(frame, now=NOW)
    assert sorted(result.quarantined.index) == [2, 4]
    assert set(result.quarantined["_rules"]) == {"type:freeze_thaw_cycles"}
    assert "freeze_thaw_cycles = 'two' is not a whole number" in result.quarantined.loc[2, "_reasons"]


def test_missing_required_column_quarantines_every_row():
    frame = clean_frame().drop(columns=["site"])
    result = validate_samples(frame, now=NOW)
    assert len(result.valid) == 0 and len(result.quarantined) == 5
    assert set(result.quarantined["_rules"]) == {"required:site"}
    assert "site is required but the column is missing" in result.quarantined["_reasons"].iloc[0]


def test_large_frame_is_split_without_loss():
    base = clean_frame()
    frame = pd.concat([base] * 2000, ignore_index=True)
    frame["sample_id"] = pd.array([f"TS-2024-{i:06d}" for i in range(len(frame))], dtype="string")
    frame[ROW_NUMBER] = pd.array(np.arange(2, len(frame) + 2), dtype="Int64")
    frame.loc[frame.index[::100], "storage_temp_c"] = 99.0
    frame.loc[frame.index[::250], "sample_id"] = "TS-2024-000001"
    result = validate_samples(frame, now=NOW)
    assert len(result.valid) + len(result.quarantined) == len(frame)
    assert result.rule_counts["range:storage_temp_c"] == 100
    assert result.rule_counts["unique:sample_id"] == 41  # 40 overwritten rows + the original holder (row 1)
    assert result.quarantined.index.is_unique
    assert set(result.valid.index).isdisjoint(result.quarantined.index)


# ---------------------------------------------------------------------------------------
# Great Expectations
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gx_api():
    from tracseq_dagster import expectations

    return expectations


def dirty_frame() -> tuple[pd.DataFrame, dict[str, int]]:
    """Several kinds of errors (no parse issues) and the expected rows per rule."""
    frame = pd.concat([clean_frame()] * 3, ignore_index=True)
    frame["sample_id"] = pd.array([f"TS-2024-{i:06d}" for i in range(15)], dtype="string")
    frame[ROW_NUMBER] = pd.array(np.arange(2, 17), dtype="Int64")
    frame.loc[[2, 7], "storage_temp_c"] = 55.0
    frame.loc[5, "volume_ul"] = 0.0
    frame.loc[[1, 3, 6], "priority"] = "ASAP"
    frame.loc[[8, 9], "sample_id"] = "TS-2024-000003"  # with row 3: three rows share an id
    frame.loc[12, "sample_id"] = "TS-24-12"
    frame.loc[10, "site"] = None
    frame.loc[11, "received_ts"] = ts("2024-12-01")  # before collection
    frame.loc[6, "rin"] = 5.0  # row 6 is DNA
    frame.loc[13, "din"] = 5.0  # row 13 is RNA
    frame.loc[14, "collection_ts"] = ts("1980-03-01")
    frame.loc[4, ["extraction_ts", "sequencing_ts"]] = [pd.NaT, ts("2025-02-01")]  # before received, extraction missing
    expected = {
        "range:storage_temp_c": 2,
        "range:volume_ul": 1,
        "enum:priority": 3,
        "unique:sample_id": 3,
        "unique_across_exports:sample_id": 3,
        "pattern:sample_id": 1,
        "required:site": 1,
        "order:collection_ts<=received_ts": 1,
        "rin_only_rna": 1,
        "din_only_dna": 1,
        "plausible_date:collection_ts": 1,
        "order:received_ts<=sequencing_ts": 1,
    }
    return frame, expected


def test_suite_is_built_from_the_rules(gx_api):
    suite = gx_api.build_expectation_suite(now=NOW)
    assert suite.name == gx_api.SUITE_NAME == "lab_export_contract"
    rules = [e.meta["rule"] for e in suite.expectations]
    assert set(rules) == {r.name for r in RULES if r.in_gx_suite} == set(RULE_NAMES) - {"field_count"}
    by_rule = {r.name: r for r in RULES}
    assert len(suite.expectations) == sum(len(by_rule[name].expectations()) for name in RULE_NAMES)
    types = {e.meta["rule"]: e.expectation_type for e in suite.expectations}
    assert types["range:storage_temp_c"] == "expect_column_values_to_be_between"
    assert types["enum:sample_type"] == "expect_column_values_to_be_in_set"
    assert types["pattern:sample_id"] == "expect_column_values_to_match_regex"
    assert types["order:collection_ts<=received_ts"] == "expect_column_pair_values_a_to_be_greater_than_b"
    assert types["rin_only_rna"] == "expect_column_values_to_be_null"
    assert types["unique_across_exports:sample_id"] == "expect_column_values_to_be_unique"
    volume = next(e for e in suite.expectations if e.meta["rule"] == "range:volume_ul")
    assert volume.strict_min is True and volume.min_value == 0
    without = gx_api.build_expectation_suite(include_cross_export_uniqueness=False, now=NOW)
    assert "unique_across_exports:sample_id" not in {e.meta["rule"] for e in without.expectations}
    assert "unique:sample_id" in {e.meta["rule"] for e in without.expectations}
    named = {c for e in suite.expectations for c in (getattr(e, "column", None), getattr(e, "column_A", None))}
    assert named - {None} <= set(CONTRACT_COLUMNS)  # lineage / extra columns are never named


def test_gx_suite_passes_a_clean_frame_with_lineage_and_extra_columns(gx_api):
    summary = gx_api.run_expectation_suite(clean_frame(), now=NOW)
    failed = [r for r in summary.results if not r["success"]]
    assert summary.success, failed
    assert summary.unsuccessful == 0
    assert summary.evaluated == summary.successful == len(gx_api.build_expectation_suite(now=NOW).expectations)
    assert summary.data_docs_index is None


def test_gx_and_pandas_agree_on_a_dirty_frame(gx_api):
    frame, expected = dirty_frame()
    pandas_result = validate_samples(frame, now=NOW)
    summary = gx_api.run_expectation_suite(frame, now=NOW)
    assert not summary.success
    gx_failed = summary.failed_rules()
    assert gx_failed == expected
    pandas_failed = pandas_result.failed_rules
    # the cross-export rule needs known ids row-level; everything else must match GX exactly
    assert pandas_failed == {k: v for k, v in expected.items() if k != "unique_across_exports:sample_id"}
    for r in summary.results:
        if r["rule"] == "range:storage_temp_c":
            assert r["partial_unexpected_list"] == [55.0, 55.0]
            assert r["unexpected_percent"] == pytest.approx(100 * 2 / 15)
            assert r["column"] == "storage_temp_c"
        if r["rule"] == "order:collection_ts<=received_ts":
            assert r["column"] == "collection_ts,received_ts"
    assert len(pandas_result.quarantined) == 14  # every row but row 0


def test_cross_export_uniqueness_runs_on_the_union_of_exports(gx_api):
    accepted = clean_frame()
    new = clean_frame()
    new["sample_id"] = pd.array(
        ["TS-2025-000001", "TS-2024-000104", "TS-2025-000003", "TS-2025-000004", "TS-2025-000005"], dtype="string"
    )
    new[SOURCE_FILE] = pd.array(["export_b.csv"] * 5, dtype="string")
    row_level = validate_samples(new, known_sample_ids=accepted["sample_id"], now=NOW)
    assert list(row_level.quarantined.index) == [1]
    assert row_level.quarantined.loc[1, "_rules"] == "unique_across_exports:sample_id"

    union = pd.concat([accepted, new], ignore_index=True)
    summary = gx_api.run_expectation_suite(union, now=NOW)
    assert summary.failed_rules() == {"unique_across_exports:sample_id": 2, "unique:sample_id": 2}
    alone = gx_api.run_expectation_suite(new, now=NOW, include_cross_export_uniqueness=False)
    assert alone.success


def test_gx_type_check_catches_an_untyped_column(gx_api):
    frame = clean_frame()
    frame["storage_temp_c"] = frame["storage_temp_c"].astype(str).astype("string")
    summary = gx_api.run_expectation_suite(frame, now=NOW)
    assert "type:storage_temp_c" in summary.failed_rules()


@pytest.mark.parametrize("column", [*INT_COLUMNS, "storage_temp_c"])
def test_one_empty_required_number_quarantines_only_its_row_after_the_lake_round_trip(gx_api, tmp_path, column):
    """Issue 17: an empty required *integer* cell used to fail the blocking check for the whole file.

    The lake stores the parsed rows as Parquet and the validation asset reads them back; an
    integer column with one empty cell came back as float64, the accepted rows kept that dtype,
    and the GX type expectation failed for every good row. The float column is the control.
    """
    written = clean_frame()[list(CONTRACT_COLUMNS)]
    written[column] = written[column].astype("object")
    written.loc[3, column] = None
    export = tmp_path / "landing" / "export.csv"
    export.parent.mkdir()
    written.to_csv(export, index=False)
    lake = Lake(tmp_path / "lake")
    parse_export_to_parquet(export, lake.raw_path("h"), file_hash="h")

    frame = lake.read_table(lake.raw_path("h"))  # exactly as the validation asset reads it
    result = validate_samples(frame, lake.read_table(lake.issues_path("h")), now=NOW)

    assert result.quarantined[ROW_NUMBER].tolist() == [5]  # header is line 1, the fourth row line 5
    (violation,) = result.violations.to_dict("records")
    assert (violation[SOURCE_FILE], violation[ROW_NUMBER], violation["rule"], violation["column"]) == (
        str(export),
        5,
        f"required:{column}",
        column,
    )
    assert result.valid[ROW_NUMBER].tolist() == [2, 3, 4, 6]
    summary = gx_api.run_expectation_suite(result.valid, include_cross_export_uniqueness=False, now=NOW)
    assert summary.success, [r for r in summary.results if not r["success"]]
    for name in INT_COLUMNS:
        assert result.valid[name].dtype == "Int64", name


def test_accepted_rows_leave_in_the_contract_dtypes_whatever_the_input_had(gx_api):
    """A lake table written before its Parquet carried pandas metadata reads back off the typed
    convention: float64 for an int column with an empty cell, object for text."""
    frame = clean_frame()
    frame["box_occupancy"] = frame["box_occupancy"].astype("float64")
    frame.loc[2, "box_occupancy"] = np.nan
    frame["sample_type"] = frame["sample_type"].astype(object)
    result = validate_samples(frame, now=NOW)
    assert list(result.quarantined.index) == [2]
    assert result.valid["box_occupancy"].dtype == "Int64" and result.valid["box_occupancy"].tolist() == [10, 11, 100, 5]
    assert result.valid["sample_type"].dtype == "string"
    assert result.quarantined["box_occupancy"].dtype == "float64", "quarantined rows are kept as they came"
    assert gx_api.run_expectation_suite(result.valid, include_cross_export_uniqueness=False, now=NOW).success


def test_file_mode_writes_data_docs_and_can_run_again(gx_api, tmp_path):
    frame, expected = dirty_frame()
    first = gx_api.run_expectation_suite(frame, project_dir=tmp_path, run_name="export_a", now=NOW)
    assert first.data_docs_index is not None and first.data_docs_index.exists()
    assert first.data_docs_index.name == "index.html"
    assert tmp_path in first.data_docs_index.parents
    assert gx_api.SUITE_NAME in first.data_docs_index.read_text(encoding="utf-8")
    assert first.failed_rules() == expected

    second = gx_api.run_expectation_suite(clean_frame(), project_dir=tmp_path, run_name="export_a", now=NOW)
    assert second.success
    assert second.evaluated == first.evaluated == len(gx_api.build_expectation_suite(now=NOW).expectations)
    assert second.data_docs_index == first.data_docs_index
    pages = list((tmp_path / "gx" / "uncommitted" / "data_docs" / "local_site" / "validations").rglob("*.html"))
    assert len(pages) == 2  # both runs kept, even with the same run name
    assert (tmp_path / "gx" / "expectations" / f"{gx_api.SUITE_NAME}.json").exists()


def test_detailing_failures_is_cheap_when_green_and_counts_when_red():
    from tracseq_dagster.expectations import run_expectation_suite_detailing_failures

    clean = clean_frame()
    green = run_expectation_suite_detailing_failures(clean, include_cross_export_uniqueness=False, now=NOW)
    assert green.success and all(r["unexpected_count"] is None for r in green.results), "BOOLEAN_ONLY carries no counts"
    dirty = clean.copy()
    dirty.loc[dirty.index[:3], "storage_temp_c"] = 99.0
    red = run_expectation_suite_detailing_failures(dirty, include_cross_export_uniqueness=False, now=NOW)
    assert not red.success and red.failed_rules() == {"range:storage_temp_c": 3}


def _file_mode_run(args):
    project_dir, run_name = args
    from tracseq_dagster.expectations import run_expectation_suite

    return run_expectation_suite(clean_frame(), project_dir=project_dir, run_name=run_name, now=NOW).success


@pytest.mark.slow
def test_parallel_processes_share_one_gx_project(tmp_path):
    """Dagster runs one process per export; their GX runs must not corrupt the shared stores."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    runs = [(tmp_path, f"parallel-{i}") for i in range(4)]
    with ProcessPoolExecutor(max_workers=4, mp_context=multiprocessing.get_context("spawn")) as pool:
        assert list(pool.map(_file_mode_run, runs)) == [True] * 4
    results = list((tmp_path / "gx" / "uncommitted" / "validations").rglob("*.json"))
    assert len(results) == 4
