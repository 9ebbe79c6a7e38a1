"""Rollout: a build announces its model, a running worker switches to it (or refuses it and keeps
serving), and the sensor asks for a build exactly when a champion moved away from what is served,
or when the document index has a version other than the one the served build cited from."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
from control_support import add_version, registry_copy, template_registry

from assets.serving.rollout import ROLLOUT_TAG, champion_rollout_sensor
from resources import EmbedderResource, LanceDBResource, MLflowResource
from tracseq_dagster.serving.rollout import (
    RolloutWatcher,
    announce,
    announced,
    announced_champions,
    announced_document_index_version,
    documents_rollout_needed,
    rollout_needed,
)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "bentoml"))
    return tmp_path / "bentoml"


def test_an_announcement_round_trips_and_nothing_announced_is_none(home: Path) -> None:
    assert (announced(), announced_champions()) == (None, {})
    announce("tracseq_predictions:v2-abc", {"sample_quality": "2", "turnaround_hours": "1"})
    assert announced() == "tracseq_predictions:v2-abc"
    assert announced_champions() == {"sample_quality": "2", "turnaround_hours": "1"}
    (home / "tracseq_rollout.json").write_text("{not json")  # a torn or hand-edited file: nothing announced
    assert announced() is None


def test_the_watcher_switches_once_refuses_a_broken_model_and_tries_the_next_one(home: Path) -> None:
    switched: list[str] = []

    def switch(tag: str) -> None:
        if tag.endswith("broken"):
            raise RuntimeError("champion/model.pkl changed since the model was saved")
        switched.append(tag)

    watcher = RolloutWatcher("m:v1", switch, interval_s=0)
    assert watcher.check_once() is False  # nothing announced
    announce("m:v1", {})
    assert watcher.check_once() is False  # already served
    announce("m:v2", {})
    assert watcher.check_once() is True and watcher.check_once() is False
    assert (switched, watcher.serving, watcher.switches) == (["m:v2"], "m:v2", 1)
    announce("m:broken", {})
    assert watcher.check_once() is False and watcher.serving == "m:v2"
    assert "m:broken was announced but not served: champion/model.pkl changed" in str(watcher.status()["last_error"])
    assert watcher.check_once() is False and switched == ["m:v2"]  # not retried until another is announced
    announce("m:v3", {})
    assert watcher.check_once() is True and watcher.status()["last_error"] is None


def test_the_watcher_thread_switches_by_itself(home: Path) -> None:
    import time

    switched: list[str] = []
    watcher = RolloutWatcher("m:v1", switched.append, interval_s=0.05).start()
    try:
        announce("m:v2", {})
        deadline = time.monotonic() + 5
        while not switched and time.monotonic() < deadline:
            time.sleep(0.02)
        assert switched == ["m:v2"]
    finally:
        watcher.stop()


def test_rollout_is_needed_only_for_a_champion_the_build_does_not_serve() -> None:
    assert rollout_needed({"a": "2", "b": None}, {"a": "2"}) == []
    assert rollout_needed({"a": "3", "b": "1"}, {"a": "2"}) == ["a: v2 -> v3", "b: not served -> v1"]


def test_the_sensor_asks_for_one_build_when_a_champion_moved(tmp_path: Path, home: Path) -> None:
    (tmp_path / "template").mkdir()
    client = registry_copy(template_registry(tmp_path / "template"), tmp_path)
    for _ in range(2):
        add_version(client, "turnaround_hours", tmp_path, gate="promote", metrics={"holdout_score": 3.2})
    from tracseq_dagster.registry import ModelRegistry

    registry = ModelRegistry(client, "turnaround_hours")
    registry.promote("1", "first")
    resource = MLflowResource(tracking_uri=client.tracking_uri)
    with dg.instance_for_test() as instance:

        def evaluate() -> dg.SensorResult:
            return champion_rollout_sensor(dg.build_sensor_context(instance=instance), mlflow_tracking=resource,
                                           lancedb=LanceDBResource(uri=str(tmp_path / "no-db")), embedder=EmbedderResource())  # fmt: skip

        first = evaluate()
        assert [r.tags[ROLLOUT_TAG] for r in first.run_requests] == ["turnaround_hours: not served -> v1"]
        announce("tracseq_predictions:x", {"turnaround_hours": "1"})  # the build ran and announced its model
        assert evaluate().run_requests == []
        registry.promote("2", "the gate passed")
        [request] = evaluate().run_requests
        assert request.tags[ROLLOUT_TAG] == "turnaround_hours: v1 -> v2" and request.run_key != first.run_requests[0].run_key
        registry.rollback("back to v1")
        assert evaluate().run_requests == []  # the announced build serves v1 again
    assert not (tmp_path / "no-db").exists()  # without documents the sensor looked and created nothing


def test_the_announced_document_index_version_round_trips(home: Path) -> None:
    announce("m:v1", {"a": "1"})
    assert announced_document_index_version() is None  # a build that found no index
    announce("m:v2", {"a": "1"}, document_index_version=7)
    assert announced_document_index_version() == 7
    assert documents_rollout_needed(7, 7, announced_tag="m:v2") is None
    assert documents_rollout_needed(9, 7, announced_tag="m:v2") == "documents: index v7 -> index v9"
    assert documents_rollout_needed(3, None, announced_tag="m:v2") == "documents: no index -> index v3"
    assert documents_rollout_needed(3, None, announced_tag=None) is None  # no build yet: the champions decide
    assert documents_rollout_needed(None, None, announced_tag="m:v2") is None


def test_a_new_document_index_version_asks_for_one_rebuild(tmp_path: Path, home: Path) -> None:
    """The real index (unstructured, MiniLM, LanceDB) grows a version: the sensor asks once, per version."""
    from tracseq_dagster.documents.citation_pack import indexed_version
    from tracseq_dagster.documents.pipeline import index_folder

    (tmp_path / "template").mkdir()
    client = registry_copy(template_registry(tmp_path / "template"), tmp_path)
    add_version(client, "turnaround_hours", tmp_path, gate="promote", metrics={"holdout_score": 3.2})
    from tracseq_dagster.registry import ModelRegistry

    ModelRegistry(client, "turnaround_hours").promote("1", "first")
    db, sops = tmp_path / "db", tmp_path / "sops"
    sops.mkdir()
    resources = {"mlflow_tracking": MLflowResource(tracking_uri=client.tracking_uri),
                 "lancedb": LanceDBResource(uri=str(db)), "embedder": EmbedderResource(spec="minilm")}  # fmt: skip
    with dg.instance_for_test() as instance:

        def requests() -> list[dg.RunRequest]:
            return list(champion_rollout_sensor(dg.build_sensor_context(instance=instance), **resources).run_requests or [])

        announce("tracseq_predictions:v1", {"turnaround_hours": "1"})  # built before any SOP was indexed
        assert requests() == [] and indexed_version(str(db), "minilm") is None
        (sops / "SOP-031-storage.md").write_text("# Storage\n\nSamples are kept at -80 C and thawed at most three times.\n")
        index_folder(sops, lake_root=tmp_path / "lake", lancedb_uri=db, in_process=True)
        first = indexed_version(str(db), "minilm")
        assert first is not None
        [request] = requests()
        assert request.tags[ROLLOUT_TAG] == f"documents: no index -> index v{first}"
        assert [r.run_key for r in requests()] == [request.run_key]  # asked again until built: one run key, one run
        announce("tracseq_predictions:v1-s1", {"turnaround_hours": "1"}, document_index_version=first)  # the build ran
        assert requests() == []  # unchanged: nothing
        (sops / "SOP-032-thawing.md").write_text("# Thawing\n\nThaw on ice; never refreeze an aliquot.\n")
        index_folder(sops, lake_root=tmp_path / "lake", lancedb_uri=db, in_process=True)
        second = indexed_version(str(db), "minilm")
        assert second is not None and second > first
        [again] = requests()
        assert again.tags[ROLLOUT_TAG] == f"documents: index v{first} -> index v{second}"
        assert again.run_key != request.run_key
