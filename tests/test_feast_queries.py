"""The management API's feature functions over a materialised store: listings with owners and
versions, statistics per version, online features of many entities, time travel."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from feast_support import clear_project, materialized_store

from tracseq_dagster.feature_repo.queries import (
    UnknownFeature,
    feature_statistics,
    historical_features,
    list_feature_services,
    list_feature_views,
    online_features,
)
from tracseq_dagster.features import FEATURE_NAMES
from tracseq_dagster.models import catalog


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("queries")
    lake, settings, store = materialized_store(root, rows=400, seed=8)
    yield lake, settings, store
    clear_project(settings)


def test_listings_carry_descriptions_owners_and_versions(world) -> None:  # type: ignore[no-untyped-def]
    _, _, store = world
    views = {v["name"]: v for v in list_feature_views(store)}
    assert set(views) == {
        "sample_features",
        "operator_history",
        "site_history",
        "freezer_history",
        "instrument_history",
        "sequencing_success_features",
        "turnaround_hours_features",
        "freezer_excursion_risk_features",
    }
    assert views["sequencing_success_features"]["entities"] == ["run_id", "sample_id"]
    assert views["freezer_excursion_risk_features"]["entities"] == ["freezer_day"]
    sample = views["sample_features"]
    assert sample["owner"] and sample["description"] and sample["version"] == "v0" and sample["versions"][0]["version"] == "v0"
    assert sample["entities"] == ["sample_id"] and sample["timestamp_field"] == "as_of"
    risk = next(f for f in sample["features"] if f["name"] == "quality_risk_score")
    assert risk["unit"] == "score 0..1" and "sigmoid" in risk["description"]
    services = {s["name"]: s for s in list_feature_services(store)}
    assert set(services) == set(catalog())
    assert services["sample_quality"]["features"] == [f"sample_features:{f}" for f in FEATURE_NAMES]


def test_feature_statistics_by_name_and_ambiguity(world) -> None:  # type: ignore[no-untyped-def]
    lake, settings, store = world
    stats = feature_statistics(store, settings.folder, "freeze_thaw_cycles")
    table = lake.read_features()
    assert stats["version"] == "v0" and stats["count"] == table["freeze_thaw_cycles"].notna().sum()
    assert stats["max_val"] == table["freeze_thaw_cycles"].max()
    assert stats["null_count"] == table["freeze_thaw_cycles"].isna().sum()
    assert stats["p50"] == pytest.approx(table["freeze_thaw_cycles"].median())
    with pytest.raises(UnknownFeature, match="several views hold"):
        feature_statistics(store, settings.folder, "operator_failure_rate")  # the sample view and the operator history
    history = feature_statistics(store, settings.folder, "operator_history:operator_failure_rate")
    assert history["view"] == "operator_history" and 0 < history["p50"] < 1
    with pytest.raises(UnknownFeature):
        feature_statistics(store, settings.folder, "no_such_feature")
    kit = feature_statistics(store, settings.folder, "kit_failure_rate")  # only sequencing_success's view holds it
    assert kit["view"] == "sequencing_success_features" and kit["count"] > 0


def test_online_features_of_many_entities(world) -> None:  # type: ignore[no-untyped-def]
    lake, _, store = world
    table = lake.read_features().set_index("sample_id")
    ids = list(table.index[:100]) + ["TS-2099-999999"]
    rows = online_features(store, "sample_quality", [{"sample_id": i} for i in ids])
    assert [r["sample_id"] for r in rows] == ids
    np.testing.assert_allclose([r["purity_score"] for r in rows[:100]], table.loc[ids[:100], "purity_score"].to_numpy())
    assert rows[-1]["purity_score"] is None  # an unknown sample has no features


def test_historical_features_as_of_any_timestamp(world) -> None:  # type: ignore[no-untyped-def]
    lake, _, store = world
    history = pd.read_parquet(lake.root / "feast" / "operator_history.parquet")
    operator = history["operator_id"].value_counts().index[0]
    own = history[history["operator_id"] == operator].sort_values("event_timestamp")
    middle = own["event_timestamp"].iloc[len(own) // 2]
    for moment, expected in ((middle, own["operator_failure_rate"].iloc[len(own) // 2]),
                             (middle - pd.Timedelta(microseconds=1), own["operator_failure_rate"].iloc[len(own) // 2 - 1]),
                             (own["event_timestamp"].iloc[0] - pd.Timedelta(days=1), None)):  # fmt: skip
        (row,) = historical_features(store, ["operator_history:operator_failure_rate"], [{"operator_id": operator}], as_of=moment)
        assert row["operator_failure_rate"] == expected
    with pytest.raises(ValueError, match="as_of"):
        historical_features(store, "sample_quality", [{"sample_id": "TS-2025-000001"}])
