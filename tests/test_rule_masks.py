"""What each kind of contract rule flags at its edges: both ends of a range, a missing column,
missing values, dates on the plausible window's ends (rules mutants test_validation.py left alive)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tracseq_dagster.contract import COLUMN_BY_NAME
from tracseq_dagster.rules import EARLIEST_PLAUSIBLE_DATE, FUTURE_TOLERANCE, RULES, RuleContext

NOW = pd.Timestamp("2025-06-01T00:00:00Z")
BY_NAME = {rule.name: rule for rule in RULES}
CONTEXT = RuleContext(now=NOW)


def mask(rule: str, frame: pd.DataFrame) -> list[bool]:
    out = BY_NAME[rule].mask(frame, CONTEXT)
    assert out.dtype == bool and out.shape == (len(frame),)
    return out.tolist()


@pytest.mark.parametrize("name", [n.split(":", 1)[1] for n in BY_NAME if n.startswith("range:")])
def test_a_range_flags_both_ends_and_not_missing_values(name: str) -> None:
    column = COLUMN_BY_NAME[name]
    values: list[float] = []
    expected: list[bool] = []
    if column.minimum is not None:
        values += [column.minimum - 1.0, column.minimum + (0.5 if column.exclusive_minimum else 0.0)]
        expected += [True, False]
        if column.exclusive_minimum:
            values.append(column.minimum)
            expected.append(True)
    if column.maximum is not None:
        values += [column.maximum, column.maximum + 1.0]
        expected += [False, True]
    values.append(np.nan)
    expected.append(False)
    assert mask(f"range:{name}", pd.DataFrame({name: values})) == expected


def test_a_rule_on_a_column_the_frame_lacks() -> None:
    frame = pd.DataFrame({"other": [1, 2]})
    assert mask("range:volume_ul", frame) == [False, False]  # the type and required rules speak for it
    assert mask("required:volume_ul", frame) == [True, True]


def test_required_flags_missing_values_only() -> None:
    assert mask("required:operator_id", pd.DataFrame({"operator_id": pd.Series(["OP1", None, ""], dtype="string")})) == [
        False,
        True,
        False,
    ]


def test_enum_and_only_for_types_ignore_missing_values() -> None:
    types = pd.Series(["DNA", "dna?", None], dtype="string")
    assert mask("enum:sample_type", pd.DataFrame({"sample_type": types})) == [False, True, False]
    frame = pd.DataFrame({"sample_type": pd.Series(["DNA", "RNA", None, "RNA"], dtype="string"), "rin": [7.0, 7.0, 7.0, np.nan]})
    assert mask("rin_only_rna", frame) == [True, False, False, False]


def test_order_flags_only_when_both_stamps_are_known() -> None:
    stamps = pd.to_datetime(["2025-01-02", "2025-01-01", None, "2025-01-03"], utc=True)
    later = pd.to_datetime(["2025-01-01", "2025-01-02", "2025-01-01", None], utc=True)
    frame = pd.DataFrame({"collection_ts": stamps, "received_ts": later})
    assert mask("order:collection_ts<=received_ts", frame) == [True, False, False, False]
    # Through an empty stamp in between: checked only when the one between is empty.
    frame = pd.DataFrame({
        "received_ts": pd.to_datetime(["2025-01-05", "2025-01-05"], utc=True),
        "extraction_ts": pd.to_datetime([None, "2025-01-06"], utc=True),
        "sequencing_ts": pd.to_datetime(["2025-01-04", "2025-01-04"], utc=True),
    })  # fmt: skip
    assert mask("order:received_ts<=sequencing_ts", frame) == [True, False]


def test_plausible_dates_include_both_ends_of_the_window() -> None:
    latest = NOW + FUTURE_TOLERANCE
    stamps = pd.Series([EARLIEST_PLAUSIBLE_DATE - pd.Timedelta(seconds=1), EARLIEST_PLAUSIBLE_DATE, latest,
                        latest + pd.Timedelta(seconds=1), pd.NaT], dtype="datetime64[ns, UTC]")  # fmt: skip
    assert mask("plausible_date:received_ts", pd.DataFrame({"received_ts": stamps})) == [True, False, False, True, False]
