"""The Feast assets in Dagster: apply when the definitions change, the entity tables, and the
materialisation into Redis with its metadata and feature statistics."""

from __future__ import annotations

import re
from pathlib import Path

import dagster as dg
import pytest
from feast_support import REDIS_URL, clear_project, feast_settings, generated_lake

from assets.features import feast_entity_tables, feast_online_features, feast_registry
from assets.features.feast_registry import DEFINITIONS_VERSION
from resources import LakeResource
from resources.feast import FeastResource
from tracseq_dagster.feature_repo.definitions import definitions_hash, repo_objects
from tracseq_dagster.feature_repo.statistics import load_statistics
from tracseq_dagster.models import catalog


@pytest.fixture
def resources(tmp_path: Path):  # type: ignore[no-untyped-def]
    lake = generated_lake(tmp_path / "lake", rows=300)
    settings = feast_settings(tmp_path / "data")
    yield (
        lake,
        settings,
        {
            "lake": LakeResource(root=str(lake.root)),
            "feast": FeastResource(data_dir=settings.data_dir, project=settings.project, redis_url=REDIS_URL),
        },
    )
    clear_project(settings)


def test_apply_entity_tables_and_materialisation_with_metadata(resources) -> None:  # type: ignore[no-untyped-def]
    lake, settings, bound = resources
    assert definitions_hash(repo_objects(lake.root)) == DEFINITIONS_VERSION  # the code version follows the definitions
    assert feast_registry.code_versions_by_key[dg.AssetKey("feast_registry")] == DEFINITIONS_VERSION
    result = dg.materialize([feast_registry, feast_entity_tables, feast_online_features], resources=bound)
    assert result.success
    by_asset = {e.asset_key.to_user_string(): e.materialization.metadata for e in result.get_asset_materialization_events()}
    registry = by_asset["feast_registry"]
    assert registry["definitions_hash"].value == DEFINITIONS_VERSION
    assert all(name in registry["services"].value for name in catalog())
    assert by_asset["feast_entity_tables"]["rows_operator_history"].value > 10
    online = by_asset["feast_online_features"]
    assert online["online_store"].value == "redis"
    assert online["dagster/row_count"].value >= 300
    assert re.search(r"\| sample_features\s+\| v0\s+\|\s+300 \|", online["views"].value)
    assert re.search(r"\| sample_features\s+\| quality_risk_score\s+\|\s+300 \|\s+0 \|", online["feature_statistics"].value)

    stats = load_statistics(Path(settings.data_dir) / "feast", "sample_features")
    assert stats is not None and stats["version"] == "v0"
    risk = stats["features"]["quality_risk_score"]
    assert risk["row_count"] == 300 and risk["count"] + risk["null_count"] == 300 and 0 <= risk["p50"] <= 1
    assert sum(risk["histogram"]["counts"]) == risk["count"] and len(risk["histogram"]["bins"]) == 11
    types = stats["features"]["sample_type"]["histogram"]
    assert {v["value"] for v in types["values"]} <= {"DNA", "RNA", "cfDNA", "tissue", "blood", "saliva", "FFPE"}
    assert sum(v["count"] for v in types["values"]) + types["other_count"] == stats["features"]["sample_type"]["count"]


def test_feast_registry_is_requested_again_only_when_the_definitions_change(resources) -> None:  # type: ignore[no-untyped-def]
    _, _, bound = resources
    with dg.instance_for_test() as instance:
        assert dg.materialize([feast_registry], resources=bound, instance=instance).success
        same = dg.evaluate_automation_conditions(defs=dg.Definitions(assets=[feast_registry], resources=bound), instance=instance)
        assert same.total_requested == 0
        changed = feast_registry.map_asset_specs(lambda spec: spec.replace_attributes(code_version="a-new-definitions-hash"))
        after = dg.evaluate_automation_conditions(
            defs=dg.Definitions(assets=[changed], resources=bound), instance=instance, cursor=same.cursor
        )
        assert after.total_requested == 1


def test_a_lab_without_runs_yet_materialises_what_it_has(tmp_path: Path) -> None:
    lake = generated_lake(tmp_path / "lake", rows=120, runs=False)
    settings = feast_settings(tmp_path / "data", redis=False)
    bound = {
        "lake": LakeResource(root=str(lake.root)),
        "feast": FeastResource(data_dir=settings.data_dir, project=settings.project),
    }
    result = dg.materialize([feast_registry, feast_entity_tables, feast_online_features], resources=bound)
    assert result.success
    online = next(e.materialization.metadata for e in result.get_asset_materialization_events()
                  if e.asset_key.to_user_string() == "feast_online_features")  # fmt: skip
    assert online["online_store"].value == "sqlite"
    assert online["waiting_for_tables"].value == "sequencing_success_features, turnaround_hours_features"
    assert re.search(r"\| sample_features\s+\| v0\s+\|\s+120 \|", online["views"].value)
