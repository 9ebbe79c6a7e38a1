"""Feature statistics computed at each materialisation and kept per feature view version.

The statistics are Feast's own (``feast.monitoring.metrics_calculator.MetricsCalculator``, the
calculator of its monitoring service): rows, nulls, and for numbers mean, stddev, min, max,
p50..p99 and a histogram, for categories the most frequent values with their counts; ``count``
(non-null values) is added. Feast's monitoring service keys what it stores by date windows of
the event timestamps, not by registry version, so storage is ours: JSON under
``<feast folder>/statistics/<view>/<version>/<materialised at>.json`` (one file per
materialisation, so a version's history stays), read back per feature: the latest
materialisation of the view's latest version, or of a given version.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
from feast.monitoring.metrics_calculator import MetricsCalculator

HISTOGRAM_BINS = 10
TOP_CATEGORIES = 20

_CALCULATOR = MetricsCalculator(histogram_bins=HISTOGRAM_BINS, top_n=TOP_CATEGORIES)


def column_statistics(values: pd.Series) -> dict[str, Any]:
    """Feast's metrics of one column (numeric or categorical by its dtype), plus ``count``."""
    numeric = pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype)
    if numeric:
        array = pa.array(values.to_numpy(dtype="float64", na_value=float("nan")), type=pa.float64(), from_pandas=True)
        out = _CALCULATOR.compute_numeric(array)
    else:
        array = pa.array(values.astype("object").where(values.notna(), None).map(lambda v: None if v is None else str(v)),
                         type=pa.string())  # fmt: skip
        out = _CALCULATOR.compute_categorical(array)
    out["count"] = out["row_count"] - out["null_count"]
    return out


def table_statistics(table: pd.DataFrame, features: list[str]) -> dict[str, dict[str, Any]]:
    return {f: column_statistics(table[f]) for f in features if f in table.columns}


def _stamp(moment: pd.Timestamp) -> str:
    return moment.tz_convert("UTC").strftime("%Y%m%dT%H%M%S%fZ")


def save_statistics(folder: Path, view: str, version: str, materialized_at: pd.Timestamp, stats: dict[str, Any]) -> Path:
    path = folder / "statistics" / view / version / f"{_stamp(pd.Timestamp(materialized_at))}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"view": view, "version": version, "materialized_at": pd.Timestamp(materialized_at).isoformat(), "features": stats}
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=1, default=_plain))
    tmp.replace(path)
    return path


def _plain(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return str(value)


def _version_number(version: str) -> int:
    return int(version.lstrip("v")) if version.lstrip("v").isdigit() else -1


def statistics_versions(folder: Path, view: str) -> list[str]:
    """The versions of a view that have statistics, oldest first."""
    root = folder / "statistics" / view
    return sorted((p.name for p in root.iterdir() if p.is_dir()), key=_version_number) if root.exists() else []


def load_statistics(folder: Path, view: str, version: str | None = None) -> dict[str, Any] | None:
    """The latest materialisation's statistics of ``view`` at ``version`` (its latest version by default)."""
    versions = statistics_versions(folder, view)
    if version is None:
        if not versions:
            return None
        version = versions[-1]
    files = sorted((folder / "statistics" / view / version).glob("*.json"))
    return json.loads(files[-1].read_text()) if files else None
