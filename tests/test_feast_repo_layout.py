"""The folder is a Feast feature repository the feast CLI reads: its feature_store.yaml says what
the platform's own configuration says, and Feast's parser finds exactly the platform's objects."""

from __future__ import annotations

from pathlib import Path

import pytest
from feast.repo_config import load_repo_config
from feast.repo_operations import parse_repo

from tracseq_dagster.feature_repo.config import REPO_PATH, FeastSettings, feast_config
from tracseq_dagster.feature_repo.definitions import repo_objects

ROOT = Path(__file__).resolve().parents[1]


def test_feature_store_yaml_matches_the_platform_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACSEQ_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("TRACSEQ_FEAST_PROJECT", "tracseq")
    monkeypatch.setenv("TRACSEQ_FEAST_REDIS", "127.0.0.1:6379,db=13")
    from_yaml = load_repo_config(REPO_PATH, REPO_PATH / "feature_store.yaml")
    from_code = feast_config(FeastSettings(str(tmp_path), "tracseq", None, "redis://127.0.0.1:6379/13"))
    assert from_yaml.project == from_code.project
    assert from_yaml.registry.path == from_code.registry.path
    assert from_yaml.online_store.connection_string == from_code.online_store.connection_string
    assert from_yaml.offline_store.type == from_code.offline_store.type
    assert from_yaml.entity_key_serialization_version == from_code.entity_key_serialization_version


def test_feasts_parser_finds_the_platforms_objects(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACSEQ_DATA_DIR", str(tmp_path))
    monkeypatch.chdir(ROOT)  # the CLI runs from the project root
    parsed = parse_repo(REPO_PATH)
    expected = repo_objects(tmp_path / "lake")
    assert sorted(e.name for e in parsed.entities if e.name != "__dummy") == sorted(
        e.name for e in expected.entities
    )  # Feast adds its own
    assert sorted(v.name for v in parsed.feature_views) == sorted(v.name for v in expected.views)
    assert sorted(s.name for s in parsed.feature_services) == sorted(s.name for s in expected.services)
