"""Rows of the prediction log, as the service writes them, for the log and monitoring tests."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from tracseq_dagster.features import FEATURE_NAMES


def prediction_rows(
    features: pd.DataFrame,
    *,
    start: pd.Timestamp,
    variant: str | list[str] = "champion",
    model_version: str | list[str] = "1",
    probability: np.ndarray | float = 0.7,
    status: np.ndarray | str = "pass",
    prefix: str = "req",
) -> list[dict[str, Any]]:
    """One log row per row of ``features`` (a ``compute_features`` frame with ``sample_id``), a second apart."""
    n = len(features)
    variants = [variant] * n if isinstance(variant, str) else variant
    versions = [model_version] * n if isinstance(model_version, str) else model_version
    probabilities = np.broadcast_to(np.asarray(probability, dtype=float), (n,))
    statuses = np.broadcast_to(np.asarray(status, dtype=object), (n,))
    rows = []
    for i, record in enumerate(features.to_dict("records")):
        p = float(probabilities[i])
        rows.append(
            {
                "request_id": f"{prefix}-{i}",
                "ts": start + pd.Timedelta(seconds=i),
                "sample_id": record["sample_id"],
                "variant": variants[i],
                "model_version": versions[i],
                "quality_probability": p,
                "category": "high" if p >= 0.8 else "medium" if p >= 0.5 else "low",
                "predicted_status": statuses[i],
                "latency_ms": 1.0 + i % 7,
                **{name: record[name] for name in FEATURE_NAMES},
            }
        )
    return rows
