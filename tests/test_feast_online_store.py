"""The service's feature reader over Feast's online store answers what the offline table
holds (the same documents as before Feast), and falls back to the offline table when Redis is down."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest
from feast_support import clear_project, materialized_store

from tracseq_dagster.serving.online_store import (
    FeastFeatureStore,
    OfflineFeatureStore,
    OnlineOrOfflineStore,
    open_feature_store,
)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("online")
    lake, settings, _ = materialized_store(root, rows=300, seed=4)
    yield lake, settings
    clear_project(settings)


def test_feast_documents_equal_the_offline_documents(world) -> None:  # type: ignore[no-untyped-def]
    lake, settings = world
    ids = list(lake.read_features()["sample_id"][:60]) + ["TS-2099-000001"]
    reader = open_feature_store(lake.root, feast=settings)
    assert isinstance(reader, OnlineOrOfflineStore) and isinstance(reader.online, FeastFeatureStore)
    online, where = reader.get_many_from(ids)
    offline = OfflineFeatureStore(lake.root).get_many(ids)
    assert where == "online" and set(online) == set(offline) == set(ids[:60])
    for sample_id in ids[:60]:
        assert online[sample_id].keys() == offline[sample_id].keys()
        for name, value in offline[sample_id].items():
            assert (
                online[sample_id][name] == pytest.approx(value) if isinstance(value, float) else online[sample_id][name] == value
            )


def test_redis_down_falls_back_to_the_offline_table_quickly(world) -> None:  # type: ignore[no-untyped-def]
    lake, settings = world
    down = replace(settings, redis_url="redis://127.0.0.1:1/0")  # nothing listens on port 1
    reader = open_feature_store(lake.root, feast=down)
    ids = list(lake.read_features()["sample_id"][:3])
    started = time.perf_counter()
    found, where = reader.get_many_from(ids)
    assert where == "offline" and set(found) == set(ids)
    assert time.perf_counter() - started < 5
