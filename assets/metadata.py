"""Dagster metadata built from tables, shared by every asset and check."""

from __future__ import annotations

from typing import Any

import dagster as dg
import pandas as pd

PREVIEW_ROWS = 10


def preview(frame: pd.DataFrame, rows: int = PREVIEW_ROWS) -> dg.MetadataValue:
    """The first rows of a table as Markdown, readable in the asset's page."""
    head = frame.head(rows)
    if head.empty:
        return dg.MetadataValue.md("_(no rows)_")
    return dg.MetadataValue.md(head.astype(str).to_markdown(index=False))


def records_table(records: list[dict[str, Any]]) -> dg.MetadataValue:
    """A list of flat dicts as a Markdown table (one row per dict)."""
    if not records:
        return dg.MetadataValue.md("_(none)_")
    return dg.MetadataValue.md(pd.DataFrame(records).to_markdown(index=False))


def column_summary(frame: pd.DataFrame, columns: list[str] | tuple[str, ...]) -> pd.DataFrame:
    """Null rate and summary statistics per column (numeric: mean, std, min, median, max)."""
    rows = []
    for name in columns:
        series = frame[name]
        row: dict[str, Any] = {"column": name, "null_rate": round(float(series.isna().mean()), 4) if len(series) else 0.0}
        if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
            values = pd.to_numeric(series, errors="coerce").astype("float64")
            row.update(mean=values.mean(), std=values.std(), min=values.min(), median=values.median(), max=values.max())
        else:
            counts = series.astype("string").value_counts(dropna=True)
            row.update(distinct=int(counts.size), top=str(counts.index[0]) if counts.size else "")
        rows.append(row)
    return pd.DataFrame(rows)


def expectation_metadata(summary: Any) -> dict[str, Any]:
    """A Great Expectations run (GXRunSummary) as check metadata: counts, failures, Data Docs."""
    failed = [r for r in summary.results if not r["success"]]
    metadata: dict[str, Any] = {
        "expectations_evaluated": summary.evaluated,
        "expectations_successful": summary.successful,
        "expectations_unsuccessful": summary.unsuccessful,
        "failed_expectations": records_table(
            [
                {k: r.get(k) for k in ("rule", "expectation_type", "column", "unexpected_count", "unexpected_percent")}
                for r in failed
            ]
        ),
    }
    if summary.data_docs_index is not None:
        metadata["data_docs"] = dg.MetadataValue.url(summary.data_docs_index.as_uri())
    return metadata
