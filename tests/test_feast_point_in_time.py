"""Point in time through Feast: rewriting every label known at or after a cutoff changes no
feature Feast joins as of an earlier moment; services follow the catalog; the definitions
hash moves exactly when a definition does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from feast import FeatureView, Field
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Float64
from feast_support import feast_settings, generated_lake

from tracseq_dagster.entity_history import label_times
from tracseq_dagster.feature_repo.definitions import RepoObjects, definitions_hash, repo_objects
from tracseq_dagster.feature_repo.entities import freezer
from tracseq_dagster.feature_repo.queries import historical_features, list_feature_views
from tracseq_dagster.feature_repo.services import feature_services
from tracseq_dagster.feature_repo.store import apply_repo, open_store
from tracseq_dagster.feature_repo.tables import write_feature_tables
from tracseq_dagster.feature_repo.training_rows import historical_labelled_rows, labelled_sample_entities, model_entities
from tracseq_dagster.feature_repo.views import sample_features_view
from tracseq_dagster.feature_store import build_feature_table
from tracseq_dagster.features import FEATURE_NAMES
from tracseq_dagster.models import ModelSpec, catalog, get_model

ENTITY_FEATURES = ["operator_history:operator_failure_rate", "site_history:site_failure_rate",
                   "freezer_history:freezer_utilisation"]  # fmt: skip


def _joined(store, lake, entities: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:  # type: ignore[no-untyped-def]
    rows = historical_labelled_rows(store, get_model("sample_quality"), entities)
    samples = lake.read_validated().set_index("sample_id")
    keyed = entities.assign(
        operator_id=samples.loc[entities["sample_id"], "operator_id"].astype(object).to_numpy(),
        site=samples.loc[entities["sample_id"], "site"].astype(object).to_numpy(),
        freezer=samples.loc[entities["sample_id"], "storage_location"].str.split("/").str[0].astype(object).to_numpy(),
    )
    aggregates = store.get_historical_features(entity_df=keyed.drop(columns=["qc_status"]), features=ENTITY_FEATURES).to_df()
    return rows.sort_index(), aggregates.set_index("sample_id").sort_index()[[f.split(":")[1] for f in ENTITY_FEATURES]]


def test_labels_known_at_or_after_the_cutoff_never_reach_an_earlier_join(tmp_path: Path) -> None:
    lake = generated_lake(tmp_path / "lake", rows=700, seed=3)
    write_feature_tables(lake)
    store = open_store(feast_settings(tmp_path / "data", redis=False))
    apply_repo(store, repo_objects(lake.root))
    entities = labelled_sample_entities(lake)
    cutoff = entities["event_timestamp"].quantile(0.6)
    earlier = entities[entities["event_timestamp"] <= cutoff].reset_index(drop=True)
    before_rows, before_aggregates = _joined(store, lake, earlier)
    last = entities[entities["event_timestamp"] > cutoff].reset_index(drop=True)
    last_before = historical_labelled_rows(store, get_model("sample_quality"), last)["operator_failure_rate"]

    # Rewrite the future: every label known at or after the cutoff flips, then the lake is rebuilt.
    samples = lake.read_validated()
    later = (label_times(samples) >= cutoff).to_numpy() & samples["qc_status"].notna().to_numpy()
    samples.loc[later, "qc_status"] = samples.loc[later, "qc_status"].map({"pass": "fail", "fail": "pass", "borderline": "fail"})
    lake.write_table(lake.validated_path("s" * 16), samples)
    lake.write_table(lake.features_path, build_feature_table(lake))
    write_feature_tables(lake)
    after_rows, after_aggregates = _joined(store, lake, earlier)

    assert later.sum() > 100 and len(before_rows) > 300
    pd.testing.assert_frame_equal(before_rows[list(FEATURE_NAMES)], after_rows[list(FEATURE_NAMES)])
    pd.testing.assert_frame_equal(before_aggregates, after_aggregates)
    # ... while a join after the cutoff does see the rewritten labels (the test can fail).
    last_after = historical_labelled_rows(store, get_model("sample_quality"), last)["operator_failure_rate"]
    assert (np.abs(last_after.sort_index().to_numpy() - last_before.sort_index().to_numpy()) > 1e-9).mean() > 0.5


def test_a_new_catalog_model_gets_its_service_without_edits(tmp_path: Path) -> None:
    objects = repo_objects(tmp_path)
    new = ModelSpec(
        "freezer_risk",
        "a model added to the catalog",
        "qc_status",
        "at QC",
        ("sample_id",),
        "received_ts",
        ("freezer_utilisation", "purity_score", "instrument_failure_rate"),
        lambda lake: None,
    )
    services = feature_services(objects.views, {**catalog(), "freezer_risk": new})
    service = {s.name: s for s in services}["freezer_risk"]
    assert {p.name: [f.name for f in p.features] for p in service.feature_view_projections} == {
        "sample_features": ["freezer_utilisation", "purity_score"],
        "instrument_history": ["instrument_failure_rate"],
    }
    assert service.tags["coverage"] == "complete" and service.description == "a model added to the catalog"
    grown = RepoObjects(objects.entities, objects.views, services)
    assert definitions_hash(grown) != definitions_hash(objects)
    assert definitions_hash(repo_objects(tmp_path / "elsewhere")) == definitions_hash(objects)  # the lake folder is no definition


def test_a_changed_view_is_a_new_version_in_the_registry(tmp_path: Path) -> None:
    store = open_store(feast_settings(tmp_path / "data", redis=False))
    objects = repo_objects(tmp_path / "lake")
    first = apply_repo(store, objects)
    again = apply_repo(store, repo_objects(tmp_path / "lake"))  # unchanged: same versions
    old = next(v for v in objects.views if v.name == "freezer_history")
    smaller = FeatureView(
        name=old.name,
        entities=[freezer],
        schema=[f for f in old.schema if f.name != "freezer_sample_count"],
        source=old.batch_source,
        ttl=old.ttl,
        description="changed",
        owner=old.owner,
    )
    views = tuple(smaller if v.name == old.name else v for v in objects.views)
    changed = apply_repo(store, RepoObjects(objects.entities, views, objects.services))
    assert first.views == again.views and first.views["freezer_history"] == "v0"
    assert changed.views["freezer_history"] == "v1" and changed.definitions_hash != first.definitions_hash
    assert [r["version"] for r in store.list_feature_view_versions("freezer_history")] == ["v0", "v1"]


def test_run_outcomes_known_at_or_after_the_cutoff_never_reach_an_earlier_library(tmp_path: Path) -> None:
    lake = generated_lake(tmp_path / "lake", rows=700, seed=6)
    write_feature_tables(lake)
    store = open_store(feast_settings(tmp_path / "data", redis=False))
    apply_repo(store, repo_objects(lake.root))
    spec = get_model("sequencing_success")
    entities = model_entities(lake, spec)
    cutoff = entities["event_timestamp"].quantile(0.6)
    earlier = entities[entities["event_timestamp"] <= cutoff].reset_index(drop=True)
    later_rows = entities[entities["event_timestamp"] > cutoff].reset_index(drop=True)
    before, before_later = (historical_labelled_rows(store, spec, e)[list(spec.features)] for e in (earlier, later_rows))

    runs = lake.read_validated_runs()
    later = (runs["run_end_ts"].isna() | (runs["run_end_ts"] >= cutoff)).to_numpy()
    runs.loc[later, "run_status"] = runs.loc[later, "run_status"].map({"pass": "fail", "fail": "pass"})
    lake.write_table(lake.validated_path("r" * 16), runs)
    write_feature_tables(lake)
    after, after_later = (historical_labelled_rows(store, spec, e)[list(spec.features)] for e in (earlier, later_rows))

    assert later.sum() > 50 and len(before) > 100
    pd.testing.assert_frame_equal(before, after)
    moved = ~np.isclose(before_later["instrument_failure_rate"], after_later["instrument_failure_rate"])
    assert moved.mean() > 0.2  # the rewrite is visible after the cutoff: the test can fail


@on_demand_feature_view(
    sources=[sample_features_view("/unused")],
    schema=[Field(name="purity_x_integrity", dtype=Float64)],
    mode="pandas",
    description="A request-time transformation registered in code: purity_score * integrity_score.",
    owner="tests",
)
def sample_purity_x_integrity(inputs: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"purity_x_integrity": inputs["purity_score"] * inputs["integrity_score"]})


def test_an_on_demand_transformation_added_in_code_is_applied_listed_and_versioned(tmp_path: Path) -> None:
    lake = generated_lake(tmp_path / "lake", rows=120, seed=2)
    write_feature_tables(lake)
    store = open_store(feast_settings(tmp_path / "data", redis=False))
    objects = repo_objects(lake.root)
    applied = apply_repo(store, RepoObjects(objects.entities, objects.views, objects.services, (sample_purity_x_integrity,)))
    assert applied.views["sample_purity_x_integrity"] == "v0"
    listed = {v["name"]: v for v in list_feature_views(store)}["sample_purity_x_integrity"]
    assert listed["kind"] == "on_demand" and listed["entities"] == ["sample_id"] and listed["versions"][0]["version"] == "v0"
    entities = labelled_sample_entities(lake).iloc[:20]
    (row, *_) = historical_features(
        store,
        ["sample_purity_x_integrity:purity_x_integrity", "sample_features:purity_score", "sample_features:integrity_score"],
        entities.drop(columns="qc_status").to_dict("records"),
    )
    assert row["purity_x_integrity"] == pytest.approx(row["purity_score"] * row["integrity_score"])
    removed = apply_repo(store, objects)  # dropped from the code: removed from the registry
    assert removed.removed == ("sample_purity_x_integrity",)
    assert "sample_purity_x_integrity" not in {v["name"] for v in list_feature_views(store)}
