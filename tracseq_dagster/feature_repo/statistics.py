"""Feature statistics computed at each materialisation and kept per feature view version.

For every feature of a view: rows, nulls, and for numbers quantiles and a 10-bin histogram,
for categories the counts of each value (the 20 most frequent). They are computed from the
view's table as materialised, stored as JSON under
``<feast folder>/statistics/<view>/<version>/<materialised at>.json`` (one file per
materialisation, so the history of a version stays), and read back per feature: the latest
materialisation of the view's latest version, or of a given version.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

QUANTILES = (0.0, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99, 1.0)
HISTOGRAM_BINS = 10
TOP_CATEGORIES = 20


def column_statistics(values: pd.Series) -> dict[str, Any]:
    """count (non-null), nulls, and quantiles + histogram (numbers) or value counts (categories)."""
    nulls = int(values.isna().sum())
    known = values.dropna()
    out: dict[str, Any] = {"rows": int(len(values)), "count": int(len(known)), "nulls": nulls}
    if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype):
        numbers = known.to_numpy(dtype=np.float64)
        numbers = numbers[np.isfinite(numbers)]
        out["kind"] = "numeric"
        if len(numbers):
            out["mean"] = float(numbers.mean())
            out["quantiles"] = {f"{q:g}": float(v) for q, v in zip(QUANTILES, np.quantile(numbers, QUANTILES), strict=True)}
            counts, edges = np.histogram(numbers, bins=HISTOGRAM_BINS)
            out["histogram"] = {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]}
        else:
            out["quantiles"], out["histogram"] = {}, {"edges": [], "counts": []}
    else:
        out["kind"] = "categorical"
        counts = known.astype(str).value_counts()
        out["distinct"] = int(len(counts))
        out["histogram"] = {str(k): int(v) for k, v in counts.head(TOP_CATEGORIES).items()}
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
