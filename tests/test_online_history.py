"""The prediction service's history aggregates refreshed from Feast's online store through a real
``feast serve``: a Bento packed with old history answers new samples with the new history, a
feature server that is down leaves the last history, and cached answers follow the refresh."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from feast_support import REDIS_URL, clear_project, materialized_store

from tracseq_dagster.entity_history import freezer_history, operator_history, site_history
from tracseq_dagster.feature_store import accepted_samples
from tracseq_dagster.features import HistorySnapshot, compute_features
from tracseq_dagster.generator import generate_samples
from tracseq_dagster.serving.online_history import (
    AGGREGATES,
    FeatureServer,
    HistoryRefresher,
    OnlineHistory,
    groups_from_online,
)

REPO = Path(__file__).resolve().parent.parent
AGGREGATE_FEATURES = ["operator_failure_rate", "operator_history_count", "site_failure_rate", "site_history_count",
                      "freezer_utilisation"]  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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


@pytest.fixture(scope="module")
def feature_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[pd.DataFrame, str]]:
    root = tmp_path_factory.mktemp("online_history")
    lake, settings, _ = materialized_store(root, rows=1200, seed=17)
    port = _free_port()
    env = {**os.environ, "TRACSEQ_DATA_DIR": settings.data_dir, "TRACSEQ_FEAST_PROJECT": settings.project,
           "TRACSEQ_FEAST_REDIS": REDIS_URL.removeprefix("redis://").replace("/13", ",db=13")}  # fmt: skip
    feast = Path(sys.executable).parent / "feast"
    server = subprocess.Popen(
        [str(feast), "-c", str(REPO / "tracseq_dagster" / "feature_repo"), "serve", "-h", "127.0.0.1", "-p", str(port),
         "--no-access-log"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None, server.stderr.read().decode() if server.stderr else "feast serve exited"
            assert time.monotonic() < deadline, "feast serve did not start in 120 s"
            time.sleep(0.5)
        yield accepted_samples(lake), url
    finally:
        server.terminate()
        server.wait(timeout=30)
        clear_project(settings)


@pytest.mark.slow
def test_a_bento_packed_with_old_history_serves_the_online_history(feature_server: tuple[pd.DataFrame, str]) -> None:
    samples, url = feature_server
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
def test_a_feature_server_that_is_down_leaves_the_last_history(feature_server: tuple[pd.DataFrame, str]) -> None:
    samples, url = feature_server
    packed = HistorySnapshot.build(samples.iloc[:300])
    installed: list[HistorySnapshot] = []
    down = HistoryRefresher(OnlineHistory(packed, FeatureServer(f"http://127.0.0.1:{_free_port()}", timeout_s=0.5)),
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
