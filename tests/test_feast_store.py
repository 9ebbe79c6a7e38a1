"""The Feast repository end to end on a generated lake: apply, materialise into Redis, read
online, and build sample_quality's training set through Feast's point-in-time join."""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from feast_support import clear_project, feast_settings, feature_server, generated_lake

from tracseq_dagster.feature_repo.config import FeastSettings
from tracseq_dagster.feature_repo.definitions import definitions_hash, repo_objects
from tracseq_dagster.feature_repo.model_tables import model_table_path
from tracseq_dagster.feature_repo.queries import list_feature_views
from tracseq_dagster.feature_repo.services import feature_service
from tracseq_dagster.feature_repo.store import apply_repo, materialize_all, open_store
from tracseq_dagster.feature_repo.tables import write_feature_tables
from tracseq_dagster.feature_repo.training_rows import (
    NotInFeatureStore,
    TrainingSetSkew,
    catalog_training_set,
    feast_training_set,
)
from tracseq_dagster.features import FEATURE_NAMES
from tracseq_dagster.lake import Lake
from tracseq_dagster.models import ModelSpec, catalog, get_model
from tracseq_dagster.serving.feature_server import FeatureServer
from tracseq_dagster.training_set import load_training_set


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("feast")
    lake = generated_lake(root / "lake")
    write_feature_tables(lake)
    settings = feast_settings(root / "data")
    store = open_store(settings)
    applied = apply_repo(store, repo_objects(lake.root))
    materialize_all(store)
    yield lake, settings, store, applied
    clear_project(settings)


def test_apply_registers_the_entities_views_and_one_service_per_catalog_model(world) -> None:
    lake, _, store, applied = world
    assert {e.name for e in store.list_entities()} == {
        "sample",
        "operator",
        "site",
        "freezer",
        "instrument",
        "run",
        "freezer_day",
    }
    assert {v.name for v in store.list_feature_views()} == {
        "sample_features",
        "operator_history",
        "site_history",
        "freezer_history",
        "instrument_history",
        "sequencing_success_features",
        "turnaround_hours_features",
        "freezer_excursion_risk_features",
    }
    assert {s.name for s in store.list_feature_services()} == set(catalog())
    coverage = {s.name: s.tags["coverage"] for s in store.list_feature_services()}
    assert coverage == dict.fromkeys(catalog(), "complete")
    assert applied.views["sample_features"] == "v0"
    assert applied.definitions_hash == definitions_hash(repo_objects(lake.root))
    quality = store.get_feature_service("sample_quality")
    assert quality.tags["coverage"] == "complete"
    assert [f.name for p in quality.feature_view_projections for f in p.features] == list(FEATURE_NAMES)


def test_online_features_are_the_latest_rows(world) -> None:
    lake, _, store, _ = world
    features = lake.read_features().set_index("sample_id")
    ids = list(features.index[:5])
    online = (
        store.get_online_features(
            features=store.get_feature_service("sample_quality"), entity_rows=[{"sample_id": i} for i in ids]
        )
        .to_df()
        .set_index("sample_id")
    )
    np.testing.assert_allclose(online.loc[ids, "quality_risk_score"], features.loc[ids, "quality_risk_score"])
    assert list(online.loc[ids, "sample_type"]) == list(features.loc[ids, "sample_type"].astype(str))
    operators = lake.read_validated()["operator_id"].dropna().unique()[:3]
    rates = store.get_online_features(
        features=["operator_history:operator_failure_rate", "operator_history:operator_history_count"],
        entity_rows=[{"operator_id": o} for o in operators],
    ).to_dict()
    history = pd.read_parquet(lake.root / "feast" / "operator_history.parquet")
    latest = history.sort_values("event_timestamp").groupby("operator_id").last()
    np.testing.assert_allclose(rates["operator_failure_rate"], latest.loc[list(operators), "operator_failure_rate"])


@pytest.mark.parametrize("model", list(catalog()))
def test_training_set_through_feast_equals_todays(world, model: str) -> None:
    lake, _, store, _ = world
    spec = get_model(model)
    today = load_training_set(lake, spec)
    through_feast = feast_training_set(store, lake, spec)
    assert through_feast.rows == today.rows > 100
    pd.testing.assert_frame_equal(through_feast.frame.sort_index(), today.frame.sort_index())
    pd.testing.assert_series_equal(through_feast.holdout.sort_index(), today.holdout.sort_index())
    assert through_feast.fingerprint == today.fingerprint


def test_a_model_with_features_outside_the_store_is_refused(world) -> None:
    lake, _, store, _ = world
    partial = ModelSpec(
        "partial_model",
        "features the store lacks",
        "qc_status",
        "at QC",
        ("sample_id",),
        "now",
        ("purity_score", "not_in_the_store"),
        lambda lake_: None,
    )
    store.apply([feature_service(partial, store.list_feature_views())])
    assert store.get_feature_service("partial_model").tags["missing_features"] == "not_in_the_store"
    with pytest.raises(NotInFeatureStore, match="not_in_the_store"):
        feast_training_set(store, lake, partial)


def test_sql_registry_on_postgresql(tmp_path: Path, postgres_url: str) -> None:
    lake = generated_lake(tmp_path / "lake", rows=80)
    write_feature_tables(lake)
    settings = feast_settings(tmp_path / "data", redis=False, registry_url=postgres_url)
    applied = apply_repo(open_store(settings), repo_objects(lake.root))
    again = open_store(settings)  # a new process would see the same registry
    assert {s.name for s in again.list_feature_services()} == set(catalog())
    assert applied.views == {v.name: "v0" for v in again.list_feature_views()}
    assert not (tmp_path / "data" / "feast" / "registry.db").exists()
    listed = {v["name"]: v for v in list_feature_views(again)}  # the version history lives in PostgreSQL too
    assert listed["sample_features"]["versions"][0]["version"] == "v0" and listed["sample_features"]["owner"]


def test_training_assets_join_through_feast_only_when_it_serves_this_lake(world, tmp_path: Path) -> None:
    lake, settings, store, _ = world
    spec = get_model("turnaround_hours")
    sourced = catalog_training_set(store, lake, spec)
    assert sourced.source.startswith("feast get_historical_features (service turnaround_hours")
    assert sourced.training_set.fingerprint == load_training_set(lake, spec).fingerprint

    # A store that never applied the repository: the feature code, saying why.
    empty = open_store(FeastSettings(str(tmp_path / "data"), settings.project, None, None))
    assert catalog_training_set(empty, lake, spec).source.startswith("feature code (Feast project")
    # The store reads another lake (e.g. the demo's data folder under a test's lake): the feature code.
    other = generated_lake(tmp_path / "other", rows=200, seed=3)
    assert "not this lake" in catalog_training_set(store, other, spec).source


def test_a_feature_store_older_than_the_exports_stops_training(tmp_path: Path) -> None:
    lake = generated_lake(tmp_path / "lake", rows=300, seed=5)
    write_feature_tables(lake)
    settings = feast_settings(tmp_path / "data", redis=False)
    store = open_store(settings)
    apply_repo(store, repo_objects(lake.root))
    table = model_table_path(lake.root, "turnaround_hours")
    pd.read_parquet(table).iloc[::2].to_parquet(table)  # the table as it stood before half the samples arrived
    with pytest.raises(TrainingSetSkew, match="older than the exports.*feast_entity_tables"):
        catalog_training_set(store, lake, get_model("turnaround_hours"))
    assert catalog_training_set(store, lake, get_model("sample_quality")).source.startswith("feast")  # its tables are current


def _rows_through_feast(queue: Any, settings: FeastSettings, lake_root: Path, model: str) -> None:
    queue.put(catalog_training_set(open_store(settings), Lake(lake_root), get_model(model)).training_set.rows)


def test_a_process_forked_after_a_join_joins_again(world) -> None:
    """tracseq train forks its sweep workers after the parent joined a training set through Feast:
    Dask's default thread pool does not survive a fork (the child waited forever), its synchronous one does."""
    lake, settings, store, _ = world
    rows = catalog_training_set(store, lake, get_model("turnaround_hours")).training_set.rows
    fork = multiprocessing.get_context("fork")
    queue = fork.Queue()
    child = fork.Process(target=_rows_through_feast, args=(queue, settings, lake.root, "turnaround_hours"))
    child.start()
    child.join(120)
    hung = child.is_alive()
    if hung:
        child.kill()
    assert not hung, "the forked process never finished its join"
    assert queue.get(timeout=10) == rows


def test_a_model_labelled_by_something_else_than_qc_trains_from_the_feature_code(world) -> None:
    """A new catalog model over the sample features with a label of its own: Feast's entity rows carry
    the QC status, so its training set comes from the feature code, saying why (README's example model)."""
    lake, _, store, _ = world
    columns = ["purity_score", "integrity_score", "freeze_thaw_cycles"]
    spec = ModelSpec("own_label_model", "a label of its own", "freeze_thaw_cycles", "at receipt", ("sample_id",), "now",
                     tuple(columns[:2]), lambda lake_: lake_.read_features().set_index("sample_id")[columns], task="regression")  # fmt: skip
    store.apply([feature_service(spec, store.list_feature_views())])
    assert store.get_feature_service("own_label_model").tags["coverage"] == "complete"
    sourced = catalog_training_set(store, lake, spec)
    assert sourced.source.startswith("feature code (no Feast table holds its label freeze_thaw_cycles")
    assert sourced.training_set.rows == len(lake.read_features())


def test_the_feature_server_serves_a_postgresql_registry(tmp_path: Path, postgres_url: str) -> None:
    """The stack's feature server: `tracseq feature-server` over the SQL registry the code location applied."""
    lake = generated_lake(tmp_path / "lake", rows=120)
    write_feature_tables(lake)
    settings = feast_settings(tmp_path / "data", registry_url=postgres_url)
    store = open_store(settings)
    apply_repo(store, repo_objects(lake.root))
    materialize_all(store)
    operator = str(lake.read_validated()["operator_id"].iloc[0])
    try:
        with feature_server(settings) as url:
            rows = FeatureServer(url).online(["operator_history:operator_history_count"], "operator_id", [operator])
        expected = store.get_online_features(
            features=["operator_history:operator_history_count"], entity_rows=[{"operator_id": operator}]
        ).to_dict()
        assert (
            rows.columns["operator_history_count"] == expected["operator_history_count"] and expected["operator_history_count"][0]
        )
        assert not (tmp_path / "data" / "feast" / "registry.db").exists()  # read from PostgreSQL
    finally:
        clear_project(settings)
