"""Feature statistics: Feast's calculator on our columns (NaN is a null), kept per view version."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from tracseq_dagster.feature_repo.statistics import column_statistics, load_statistics, save_statistics, statistics_versions


def test_numeric_and_categorical_columns() -> None:
    numbers = column_statistics(pd.Series([1.0, 2.0, np.nan, 4.0, 3.0]))
    assert (numbers["row_count"], numbers["null_count"], numbers["count"]) == (5, 1, 4)
    assert (numbers["min_val"], numbers["max_val"], numbers["p50"]) == (1.0, 4.0, 2.5)
    assert sum(numbers["histogram"]["counts"]) == 4
    categories = column_statistics(pd.Series(["DNA", "RNA", None, "DNA"], dtype="category"))
    assert (categories["feature_type"], categories["null_count"], categories["count"]) == ("categorical", 1, 3)
    assert categories["histogram"]["values"][0] == {"value": "DNA", "count": 2}


def test_statistics_are_kept_per_version_and_materialisation(tmp_path: Path) -> None:
    stats = {"f": column_statistics(pd.Series([1.0, 2.0]))}
    for version, moment in (("v0", "2026-01-01"), ("v0", "2026-01-02"), ("v1", "2026-01-03"), ("v10", "2026-01-04")):
        save_statistics(tmp_path, "view", version, pd.Timestamp(moment, tz="UTC"), stats)
    assert statistics_versions(tmp_path, "view") == ["v0", "v1", "v10"]
    assert load_statistics(tmp_path, "view")["version"] == "v10"
    assert load_statistics(tmp_path, "view", "v0")["materialized_at"].startswith("2026-01-02")
    assert load_statistics(tmp_path, "other") is None
