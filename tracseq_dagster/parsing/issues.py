"""The issues frame: one row per cell that could not be typed (or row with surplus fields).

Its column order, dtypes and Arrow schema live here because the cell typers, the reader
(surplus-field issues) and the Parquet writer must all produce the same frame.
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa

from tracseq_dagster.contract import ROW_NUMBER

STRING_DTYPE = pd.StringDtype("pyarrow")
ISSUE_COLUMNS: tuple[str, ...] = (ROW_NUMBER, "column", "value", "rule", "message")


def issues_arrow_schema() -> pa.Schema:
    return pa.schema([pa.field(ROW_NUMBER, pa.int64())] + [pa.field(name, pa.string()) for name in ISSUE_COLUMNS[1:]])


def _empty_issues() -> pd.DataFrame:
    return pd.DataFrame(
        {
            ROW_NUMBER: pd.Series([], dtype="int64"),
            **{name: pd.Series([], dtype=STRING_DTYPE) for name in ISSUE_COLUMNS[1:]},
        }
    )
