"""The retraining sensor's labelled-row count is rebuilt only when the lake's tables change."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd

from tracseq_dagster.features import compute_features
from tracseq_dagster.generator import generate_samples
from tracseq_dagster.lake import Lake
from tracseq_dagster.models import get_model
from tracseq_dagster.monitoring.retraining import labelled_row_count


def test_the_count_is_kept_until_a_table_changes(tmp_path: Path) -> None:
    samples = generate_samples(300, seed=4)
    features = compute_features(samples, samples, as_of=None).reset_index()
    lake = Lake(tmp_path / "lake")
    lake.write_table(lake.features_path, features)
    builds: list[int] = []
    spec = get_model("sample_quality")

    def counted(lake_: Lake) -> pd.DataFrame:
        builds.append(1)
        return spec.labelled_rows(lake_)

    watched = dataclasses.replace(spec, labelled_rows=counted)
    expected = int(features["qc_status"].notna().sum())
    assert labelled_row_count(lake, watched) == expected and len(builds) == 1
    assert labelled_row_count(lake, watched) == expected and len(builds) == 1  # nothing changed: kept

    more = generate_samples(120, seed=5, id_offset=50_000)
    grown = pd.concat([features, compute_features(more, more, as_of=None).reset_index()], ignore_index=True)
    lake.write_table(lake.features_path, grown)
    assert labelled_row_count(lake, watched) == int(grown["qc_status"].notna().sum()) > expected
    assert len(builds) == 2

    other = Lake(tmp_path / "other")  # another lake has its own count
    assert labelled_row_count(other, watched) == 0 and len(builds) == 3
