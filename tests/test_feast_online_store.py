"""The Feast SDK's reader of the online store answers what the offline table holds (the same documents);
the service's own reader goes through the feature server (tests/test_online_history.py, with its fallback)."""

from __future__ import annotations

import pytest
from feast_support import clear_project, materialized_store

from tracseq_dagster.feature_repo.store import open_store
from tracseq_dagster.serving.online_store import (
    FeastFeatureStore,
    OfflineFeatureStore,
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
    online = FeastFeatureStore(open_store(settings)).get_many(ids)  # the Feast SDK's reader
    offline = OfflineFeatureStore(lake.root).get_many(ids)
    assert set(online) == set(offline) == set(ids[:60])
    for sample_id in ids[:60]:
        assert online[sample_id].keys() == offline[sample_id].keys()
        for name, value in offline[sample_id].items():
            assert (
                online[sample_id][name] == pytest.approx(value) if isinstance(value, float) else online[sample_id][name] == value
            )
