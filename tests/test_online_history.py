"""The prediction service's history aggregates refreshed from Feast's online store through a real
``feast serve``: a Bento packed with old history answers new samples with the new history, a
feature server that is down leaves the last history, and cached answers follow the refresh."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from feast_support import clear_project, feature_server, materialized_store
from processes import free_port

from tracseq_dagster.entity_history import freezer_history, operator_history, site_history
from tracseq_dagster.feature_store import accepted_samples
from tracseq_dagster.features import HistorySnapshot, compute_features
from tracseq_dagster.generator import generate_samples
from tracseq_dagster.run_history import RunHistorySnapshot
from tracseq_dagster.serving.feature_server import FeatureServer
from tracseq_dagster.serving.online_history import AGGREGATES, HistoryRefresher, OnlineHistory, groups_from_online
from tracseq_dagster.serving.online_store import OfflineFeatureStore, open_feature_store

REPO = Path(__file__).resolve().parent.parent
AGGREGATE_FEATURES = ["operator_failure_rate", "operator_history_count", "site_failure_rate", "site_history_count",
                      "freezer_utilisation"]  # fmt: skip


def test_feast_values_convert_exactly_to_the_snapshot_groups() -> None:
    """Latest (rate, count) per key, as Feast keeps them, give the packed snapshot's (count, total)."""
    samples = generate_samples(1500, seed=21)
    snapshot = HistorySnapshot.build(samples)
    for kind, table in (("operator", operator_history(samples)), ("site", site_history(samples)),
                        ("freezer", freezer_history(samples))):  # fmt: skip
        aggregate = AGGREGATES[kind]
        latest = table.sort_values("event_timestamp").groupby(aggregate.join_key).last()
        keys = [str(k) for k in latest.index]
        columns = {aggregate.count: list(latest[aggregate.count]), aggregate.value: list(latest[aggregate.value])}
        got = groups_from_online(kind, keys, columns).loc[kind].sort_index()
        want = snapshot.groups.loc[kind].loc[got.index]
        assert len(got) == len(snapshot.groups.loc[kind]) > 3
        np.testing.assert_array_equal(got["count"], want["count"])
        np.testing.assert_allclose(got["total"], want["total"], rtol=1e-9, atol=1e-6)
    # a key Feast does not know (null values) is left to the packed snapshot
    assert groups_from_online("operator", ["OP-NEW"], {"operator_history_count": [None], "operator_failure_rate": [None]}).empty


served_runs: list[pd.DataFrame] = []  # the fixture lake's accepted runs


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[pd.DataFrame, str, Path]]:
    """A materialised store (Redis) and Feast's feature server over it: accepted samples, URL, lake folder."""
    lake, settings, _ = materialized_store(tmp_path_factory.mktemp("online_history"), rows=1200, seed=17)
    try:
        with feature_server(settings) as url:
            served_runs[:] = [lake.read_validated_runs()]
            yield accepted_samples(lake), url, lake.root
    finally:
        clear_project(settings)


@pytest.mark.slow
def test_a_bento_packed_with_old_history_serves_the_online_history(served: tuple[pd.DataFrame, str, Path]) -> None:
    samples, url, _ = served
    order = pd.to_datetime(samples["received_ts"], utc=True).sort_values().index
    packed = HistorySnapshot.build(samples.loc[order[: len(order) // 2]])  # a Bento built months ago
    full = HistorySnapshot.build(samples)  # what a rebuild today would pack
    new = generate_samples(200, seed=99, id_offset=900_000)
    as_of = pd.to_datetime(samples["received_ts"], utc=True).max() + pd.Timedelta(days=30)

    online = OnlineHistory(packed, FeatureServer(url))
    online.note_samples(new)  # their operators, sites and freezers
    refreshed = online.refresh()

    stale = compute_features(new, packed, as_of=as_of)[AGGREGATE_FEATURES]
    fresh = compute_features(new, refreshed, as_of=as_of)[AGGREGATE_FEATURES]
    rebuilt = compute_features(new, full, as_of=as_of)[AGGREGATE_FEATURES]
    pd.testing.assert_frame_equal(fresh, rebuilt, check_exact=False, rtol=1e-9)
    assert not np.allclose(stale["operator_history_count"], rebuilt["operator_history_count"])  # the refresh mattered
    assert refreshed.cutoff > packed.cutoff


@pytest.mark.slow
def test_a_feature_server_that_is_down_leaves_the_last_history(served: tuple[pd.DataFrame, str, Path]) -> None:
    samples, url, _ = served
    packed = HistorySnapshot.build(samples.iloc[:300])
    installed: list[HistorySnapshot] = []
    down = HistoryRefresher(OnlineHistory(packed, FeatureServer(f"http://127.0.0.1:{free_port()}", timeout_s=0.5)),
                            installed.append, interval_s=60)  # fmt: skip
    assert down.refresh_now() is False and installed == []
    assert down.status()["last_error"] and "get-online-features" in down.status()["last_error"]

    up = HistoryRefresher(OnlineHistory(packed, FeatureServer(url)), installed.append, interval_s=0.2).start()
    try:
        deadline = time.monotonic() + 30
        while up.refreshes < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        up.stop()
    assert up.refreshes >= 2 and up.status()["last_error"] is None and len(installed) >= 2
    assert installed[-1].groups.loc["operator", "count"].sum() > packed.groups.loc["operator", "count"].sum()


@pytest.mark.slow
def test_features_of_samples_come_from_the_feature_server_and_the_lake_when_it_is_down(
    served: tuple[pd.DataFrame, str, Path],
) -> None:
    samples, url, lake_dir = served
    ids = samples["sample_id"].astype(str).tolist()[:5] + ["TS-2099-999999"]
    store = open_feature_store(lake_dir, feature_server=FeatureServer(url))
    online, source = store.get_many_from(ids)  # type: ignore[attr-defined]
    offline = OfflineFeatureStore(lake_dir).get_many(ids)
    assert source == "online" and set(online) == set(offline) == set(ids[:5])  # the unknown sample is absent from both
    for sample_id in ids[:5]:
        for name, value in offline[sample_id].items():
            if name != "as_of" and isinstance(value, float):
                assert online[sample_id][name] == pytest.approx(value, rel=1e-9), name
            elif name != "as_of":
                assert online[sample_id][name] == value, name
    down = open_feature_store(lake_dir, feature_server=FeatureServer(f"http://127.0.0.1:{free_port()}", timeout_s=0.5))
    found, source = down.get_many_from(ids)  # type: ignore[attr-defined]
    assert source == "offline" and set(found) == set(ids[:5])


@pytest.mark.slow
def test_a_run_models_instrument_windows_and_sample_aggregates_are_refreshed(served: tuple[pd.DataFrame, str, Path]) -> None:
    samples, url, _ = served
    runs = served_runs[0]
    ends = pd.to_datetime(runs["run_end_ts"], utc=True)
    early = runs[ends < ends.quantile(0.5)]
    packed = RunHistorySnapshot.build(samples, early)  # a Bento packed when half the runs had ended
    full = RunHistorySnapshot.build(samples, runs)
    refreshed = OnlineHistory(packed, FeatureServer(url)).refresh()
    assert isinstance(refreshed, RunHistorySnapshot) and refreshed.cutoff >= packed.cutoff

    def instruments(snapshot: RunHistorySnapshot) -> pd.DataFrame:
        table = snapshot.failure_table
        return table[(table["kind"] == "instrument_id") & table["key"].notna()].set_index("key").sort_index()

    got, want, before = instruments(refreshed), instruments(full), instruments(packed)
    assert list(got.index) == list(before.index) and set(got.index) <= set(want.index)
    pd.testing.assert_frame_equal(got.drop(columns="kind"), want.loc[got.index].drop(columns="kind"), rtol=1e-9)
    assert not np.allclose(before["failure_rate"], want.loc[before.index, "failure_rate"])  # the refresh mattered
    assert refreshed.failure_table["key"].iloc[-1] is None  # the unknown key's row stays last
    kits = refreshed.failure_table[refreshed.failure_table["kind"] == "library_kit"]
    pd.testing.assert_frame_equal(kits, packed.failure_table[packed.failure_table["kind"] == "library_kit"])  # as packed
