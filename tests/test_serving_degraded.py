"""The prediction Bento keeps answering while its dependencies go away and come back.

A real ``bentoml serve`` under a steady load, with a real Redis (prediction cache and online
feature store) on a free port that the test kills and starts again, the prediction log in
PostgreSQL behind a TCP proxy the test closes and reopens, and MLflow at an address where
nothing listens (the service never needs it: the models are packed in the Bento). During each
outage every request is answered, ``/readyz`` names the dependency that is down, ``/metrics``
counts the failures, and once it is back the service uses it again without a restart.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from typing import Any

import pandas as pd
import pytest
from conftest import fresh_postgres_database
from degraded_support import Bento, Load, RedisServer, TcpProxy, save_bundle_in_store
from processes import free_port
from serving_support import recent_samples, request_records, trained_registry

from tracseq_dagster.lake import Lake
from tracseq_dagster.serving.bundle import export_bundle
from tracseq_dagster.serving.prediction_log import PostgresPredictionLog

pytestmark = pytest.mark.slow

RATE = 30.0  # requests per second during every outage


class Served:
    def __init__(self, bento: Bento, redis_server: RedisServer, proxy: TcpProxy, log_url: str, features: pd.DataFrame) -> None:
        self.bento = bento
        self.redis = redis_server
        self.proxy = proxy
        self.log_url = log_url
        self.features = features

    def log_rows(self) -> pd.DataFrame:
        return PostgresPredictionLog(self.log_url).read()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    folder = tmp_path_factory.mktemp("degraded")
    trained = trained_registry(folder / "registry", rows=2000)
    trained.train("lightgbm", "run-1")
    export_bundle(trained.registry, trained.samples, trained.features, folder / "bundle")
    model_tag = save_bundle_in_store(folder / "bundle", folder / "bentoml")
    lake = Lake(folder / "data" / "lake")  # the offline feature table, the online store's fallback
    lake.write_table(lake.features_path, trained.features)
    redis_server = RedisServer(folder).start()
    with fresh_postgres_database() as log_url:
        proxy = TcpProxy(("127.0.0.1", 5432)).open()
        proxied = log_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
        env = {
            **os.environ,
            "TRACSEQ_MODEL_TAG": model_tag,
            "BENTOML_HOME": str(folder / "bentoml"),
            "TRACSEQ_DATA_DIR": str(folder / "data"),
            "TRACSEQ_REDIS_URL": redis_server.url,
            "TRACSEQ_REDIS_PREFIX": f"tracseq-test-{uuid.uuid4().hex[:8]}:",
            "TRACSEQ_PREDICTION_LOG": proxied,
            # Nothing listens there: serving must not need the tracking server.
            "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}",
            "TRACSEQ_BENTO_WORKERS": "1",
            "TRACSEQ_DEPENDENCY_RETRY_S": "0.5",
            # Small, so that a few seconds of log outage fill it and rows are dropped (and counted).
            "TRACSEQ_PREDICTION_LOG_QUEUE_ROWS": "100",
            "DO_NOT_TRACK": "1",
        }
        bento = Bento(folder, env).start()
        try:
            yield Served(bento, redis_server, proxy, log_url, trained.features)
        finally:
            bento.stop()
            proxy.close()
            redis_server.stop()


@pytest.fixture(scope="module")
def records() -> list[dict[str, Any]]:
    return request_records(recent_samples(3000, seed=41, id_offset=700_000))


def _wait_for(predicate, timeout_s: float = 20.0, every_s: float = 0.2) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every_s)
    return predicate()


def test_redis_outage_bypasses_the_cache_and_the_online_store_and_recovers(served: Served, records) -> None:  # type: ignore[no-untyped-def]
    bento, server = served.bento, served.redis
    known = str(served.features["sample_id"].iloc[3])
    repeated = records[:40]  # a small set, so that most answers can come from the cache
    assert bento.readyz() == (200, {"status": "ready", "dependencies": {"redis": "up", "prediction_log": "up"}})
    failures_before = bento.metric("tracseq_dependency_failures_total", dependency="redis")
    with Load(bento.url + "/predict", repeated, rate=RATE) as load:
        time.sleep(3)
        assert any(True for _ in server.client().scan_iter(match="*prediction:*"))  # the cache is in Redis
        server.stop()
        down = load.mark("redis down")
        assert _wait_for(lambda: bento.readyz()[1].get("status") == "degraded", timeout_s=10)
        status, body = bento.readyz()
        assert status == 200 and body["dependencies"]["redis"].startswith("down: "), body
        status, features = bento.get(f"/features/{known}")  # the offline table answers instead
        assert status == 200 and json.loads(features)["source"] == "offline", features
        time.sleep(5)
        server.start()  # empty, on the same port
        up = load.mark("redis up")
        assert _wait_for(lambda: bento.readyz()[1].get("status") == "ready", timeout_s=10), bento.readyz()
        assert _wait_for(lambda: any(True for _ in server.client().scan_iter(match="*prediction:*")), timeout_s=10)
        time.sleep(3)
    result = load.result
    during, errors_during = result.between(down, up)
    print(f"\nRELIABILITY redis outage: {up - down:.1f} s down, {during} requests answered and {errors_during} errors "
          f"during it (p50 {result.latency_ms(down, up, 0.5):.0f} ms, p99 {result.latency_ms(down, up, 0.99):.0f} ms; before it "
          f"p50 {result.latency_ms(0, down, 0.5):.0f} ms); {result.sent} requests in all, {len(result.errors)} errors")  # fmt: skip
    assert not result.errors, result.errors[:5]
    assert during >= RATE * (up - down) * 0.7  # the rate held
    cached_after = [c for t, _, c in result.answered if t > up + 1]
    assert any(cached_after)  # answers come from the cache again, without a restart
    assert bento.metric("tracseq_dependency_failures_total", dependency="redis") > failures_before
    assert bento.metric("tracseq_dependency_bypassed_total", dependency="redis", use="prediction_cache") > 0


REQUIRED_LOG_COLUMNS = ["request_id", "ts", "sample_id", "variant", "model_version", "quality_probability", "category",
                        "predicted_status", "latency_ms"]  # fmt: skip


def test_prediction_log_outage_queues_rows_then_drops_and_counts_them(served: Served, records) -> None:  # type: ignore[no-untyped-def]
    bento = served.bento
    fresh = records[100:1500]  # never asked before: every answer is computed and logged
    dropped_before = bento.metric("tracseq_prediction_log_dropped_rows_total")
    failures_before = bento.metric("tracseq_dependency_failures_total", dependency="prediction_log")
    logged_before = set(served.log_rows()["request_id"])
    with Load(bento.url + "/predict", fresh, rate=RATE) as load:
        time.sleep(3)
        served.proxy.close()
        down = load.mark("log down")
        assert _wait_for(lambda: bento.readyz()[1].get("status") == "degraded", timeout_s=10)
        status, body = bento.readyz()
        assert (
            status == 200
            and body["dependencies"]["prediction_log"].startswith("down: ")
            and body["dependencies"]["redis"] == "up"
        )
        time.sleep(6)  # 180 answers at 30/s: the 100-row queue overflows
        served.proxy.open()
        up = load.mark("log up")
        assert _wait_for(lambda: bento.readyz()[1].get("status") == "ready", timeout_s=10), bento.readyz()
        time.sleep(3)
    result = load.result
    answered = {request_id for _, request_id, cached in result.answered if not cached}
    assert not result.errors, result.errors[:5]

    def settled() -> bool:
        logged = set(served.log_rows()["request_id"]) - logged_before
        return len(logged) + bento.metric("tracseq_prediction_log_dropped_rows_total") - dropped_before == len(answered)

    assert _wait_for(settled, timeout_s=15)  # every answer is either logged or counted as dropped
    rows = served.log_rows()
    new = rows[~rows["request_id"].isin(logged_before)]
    dropped = bento.metric("tracseq_prediction_log_dropped_rows_total") - dropped_before
    during, errors_during = result.between(down, up)
    print(f"\nRELIABILITY prediction log outage: {up - down:.1f} s down, {during} requests answered and {errors_during} "
          f"errors during it (p99 {result.latency_ms(down, up, 0.99):.0f} ms); {result.sent} requests in all; "
          f"{len(new)} rows logged, {dropped:.0f} dropped "
          f"(queue of 100 rows)")  # fmt: skip
    assert rows["request_id"].is_unique  # nothing logged twice
    assert set(new["request_id"]) <= answered
    assert new[REQUIRED_LOG_COLUMNS].notna().all().all()  # no half-written rows
    assert 0 < dropped < during  # the queue kept some of the outage's rows, dropped the rest
    outage_rows = new[(new["ts"] >= pd.Timestamp.now(tz="UTC") - pd.Timedelta(seconds=load.now() - down))]
    assert len(outage_rows) >= 100  # the queued rows were written once the database was back
    assert bento.metric("tracseq_dependency_failures_total", dependency="prediction_log") > failures_before
    assert during >= RATE * (up - down) * 0.7


def test_mlflow_is_not_needed_at_serve_time(served: Served, records) -> None:  # type: ignore[no-untyped-def]
    """The fixture points MLFLOW_TRACKING_URI at a closed port: the models are in the Bento."""
    bento = served.bento
    assert served.bento.env["MLFLOW_TRACKING_URI"].startswith("http://127.0.0.1:")
    status, info = bento.get("/model")
    assert status == 200 and '"champion"' in info
    status, body = bento.readyz()
    assert status == 200 and "mlflow" not in body["dependencies"]
    with Load(bento.url + "/predict", records[2000:2100], rate=RATE) as load:
        time.sleep(3)
    assert load.result.sent > 50 and not load.result.errors
    print(f"\nRELIABILITY mlflow unreachable for the whole run: {load.result.sent} requests, {len(load.result.errors)} errors")
