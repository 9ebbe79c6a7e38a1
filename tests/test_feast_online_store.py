"""The service's feature reader over Feast's online store answers what the offline table
holds (the same documents as before Feast), and falls back to the offline table when Redis is down."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest
from feast_support import clear_project, materialized_store

from tracseq_dagster.feature_repo.store import open_store
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
    reader = open_feature_store(None, lake.root, feast=settings)
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
    reader = open_feature_store(None, lake.root, feast=down)
    ids = list(lake.read_features()["sample_id"][:3])
    started = time.perf_counter()
    found, where = reader.get_many_from(ids)
    assert where == "offline" and set(found) == set(ids)
    assert time.perf_counter() - started < 5


def test_online_aggregates_equal_the_features_of_a_new_sample_now_and_are_cached(world) -> None:  # type: ignore[no-untyped-def]
    import numpy as np
    import pandas as pd

    from tracseq_dagster.features import FAILURE_PRIOR, compute_features
    from tracseq_dagster.serving.online_store import OnlineAggregates

    lake, settings = world
    history = lake.read_validated()
    probes = history.iloc[:30].copy()
    probes["sample_id"] = [f"TS-2099-{i:06d}" for i in range(len(probes))]  # new samples, as a request brings them
    now = pd.Timestamp.now(tz="UTC").floor("s")
    probes["received_ts"] = now - pd.Timedelta(minutes=5)
    expected = compute_features(probes, history, as_of=now).reindex(probes["sample_id"])
    aggregates = OnlineAggregates(open_store(settings), ttl_s=60)
    for key, feature, fallback in (("operator_id", "operator_failure_rate", FAILURE_PRIOR), ("site", "site_failure_rate", FAILURE_PRIOR),
                                   ("freezer", "freezer_utilisation", None)):  # fmt: skip
        values = probes["storage_location"].str.split("/").str[0] if key == "freezer" else probes[key]
        answer = aggregates.get(key, values)
        got = np.array([answer[str(v)][feature] for v in values], dtype=float)
        if fallback is not None:
            got = np.where(np.isnan(got), fallback, got)
        np.testing.assert_allclose(got, expected[feature].to_numpy(), rtol=0, atol=1e-12)
    reads = aggregates.reads
    aggregates.get("operator_id", probes["operator_id"])
    assert aggregates.reads == reads == 3  # the second ask is answered from the cache
    with pytest.raises(KeyError, match="no aggregates by"):
        aggregates.get("kit", ["x"])


def test_sample_aggregates_equal_compute_features_with_its_fallbacks(world) -> None:  # type: ignore[no-untyped-def]
    import numpy as np
    import pandas as pd

    from tracseq_dagster.features import compute_features
    from tracseq_dagster.serving.online_store import OnlineAggregates

    lake, settings = world
    history = lake.read_validated()
    probes = history.iloc[:25].copy()
    probes["sample_id"] = [f"TS-2099-{i:06d}" for i in range(len(probes))]
    probes.iloc[0, probes.columns.get_loc("operator_id")] = "OP-NEW"  # no history: the prior
    probes.iloc[1, probes.columns.get_loc("site")] = "SITE-NEW"
    probes.iloc[2, probes.columns.get_loc("storage_location")] = "FRZ-99/R1/B1/A1"  # no history: its own box
    now = pd.Timestamp.now(tz="UTC").floor("s")
    probes["received_ts"] = now - pd.Timedelta(minutes=5)
    expected = compute_features(probes, history, as_of=now).reindex(probes["sample_id"])
    got = OnlineAggregates(open_store(settings)).sample_aggregates(
        probes["operator_id"], probes["site"], probes["storage_location"], probes["box_occupancy"]
    )
    for feature, values in got.items():
        np.testing.assert_allclose(values, expected[feature].to_numpy(), rtol=0, atol=1e-12, err_msg=feature)
    assert got["operator_history_count"][0] == 0 and got["freezer_utilisation"][2] == probes["box_occupancy"].iloc[2] / 100
