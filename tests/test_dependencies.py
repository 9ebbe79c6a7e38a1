"""Serving without its dependencies, unit by unit: the circuit breaker, Redis (a real server on a
free port, killed and started again), the prediction log's retry queue, PostgreSQL behind a
proxy that is closed and reopened, and the /readyz answer. Fast: no Bento, a fake clock where
time matters."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pandas as pd
import psycopg2
import pytest
from degraded_support import RedisServer, TcpProxy
from prediction_log_helpers import prediction_rows
from processes import free_port
from serving_support import recent_samples
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from tracseq_dagster import settings
from tracseq_dagster.features import compute_features
from tracseq_dagster.lake import Lake
from tracseq_dagster.serving.dependencies import CircuitBreaker, Dependencies, ReadinessMiddleware
from tracseq_dagster.serving.online_store import OfflineFeatureStore, open_feature_store
from tracseq_dagster.serving.prediction_cache import RedisCache, open_cache
from tracseq_dagster.serving.prediction_log import BackgroundLogWriter, PostgresPredictionLog
from tracseq_dagster.settings import ConfigurationError

START = pd.Timestamp("2026-03-02T00:00:00Z")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_breaker_skips_a_down_dependency_and_lets_one_trial_through_per_interval() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("redis", retry_after_s=2.0, clock=clock)
    events: list[tuple[str, str, str]] = []
    breaker.listen(lambda *event: events.append(event))
    assert breaker.allow() and breaker.status() == "up"
    breaker.failed(ConnectionError("refused"), "prediction_cache")
    assert breaker.status() == "down: ConnectionError: refused"
    assert [breaker.allow("prediction_cache") for _ in range(5)] == [False] * 5  # no call at all while waiting
    clock.now += 1.999
    assert not breaker.allow()
    clock.now += 0.001
    assert breaker.allow()  # the trial
    assert not breaker.allow()  # only one per interval, even before the trial's outcome
    breaker.succeeded()
    assert breaker.up and breaker.allow() and breaker.recoveries == 1
    assert events.count(("failure", "redis", "prediction_cache")) == 1
    assert sum(1 for e in events if e[0] == "bypass") == 1 + 5 + 2  # the failed call, then the skipped ones
    assert events[-1] == ("recovery", "redis", "")


def test_breaker_call_answers_the_default_on_failure_and_never_raises() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("redis", retry_after_s=1.0, clock=clock)
    calls = []

    def broken() -> str:
        calls.append(1)
        raise OSError("connection reset")

    assert breaker.call(broken, "fallback", (OSError,)) == "fallback"
    assert breaker.call(broken, "fallback", (OSError,)) == "fallback"
    assert len(calls) == 1  # the second call did not touch the dependency
    clock.now += 1.0
    assert breaker.call(lambda: "value", "fallback", (OSError,)) == "value" and breaker.up
    with pytest.raises(ZeroDivisionError):  # errors that do not mean "down" are not swallowed
        breaker.call(lambda: 1 / 0, "fallback", (OSError,))


def test_retry_interval_setting_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACSEQ_DEPENDENCY_RETRY_S", "soon")
    with pytest.raises(ConfigurationError, match="TRACSEQ_DEPENDENCY_RETRY_S='soon' is not a number"):
        CircuitBreaker("redis")
    monkeypatch.setenv("TRACSEQ_DEPENDENCY_RETRY_S", "0.5")
    assert CircuitBreaker("redis").retry_after_s == 0.5
    monkeypatch.setenv("TRACSEQ_REDIS_TIMEOUT_S", "-1")
    with pytest.raises(ConfigurationError, match="TRACSEQ_REDIS_TIMEOUT_S=-1 is out of range"):
        settings.redis_timeout_s()
    monkeypatch.setenv("TRACSEQ_PREDICTION_LOG_QUEUE_ROWS", "1.5e3")
    with pytest.raises(ConfigurationError, match="TRACSEQ_PREDICTION_LOG_QUEUE_ROWS='1.5e3' is not a whole number"):
        settings.prediction_log_queue_rows()
    monkeypatch.setenv("TRACSEQ_PREDICTION_LOG_QUEUE_ROWS", "500")
    assert settings.prediction_log_queue_rows() == 500


@pytest.fixture
def redis_server(tmp_path: Path):  # type: ignore[no-untyped-def]
    server = RedisServer(tmp_path).start()
    yield server
    server.stop()


def test_the_redis_cache_goes_on_without_redis_and_comes_back(redis_server: RedisServer) -> None:
    clock = FakeClock()
    dependencies = Dependencies(clock=clock)
    breaker = dependencies.breaker("redis", retry_after_s=2.0)
    prefix = f"t-{uuid.uuid4().hex[:6]}:"
    cache = RedisCache(redis_server.url, prefix=prefix + "prediction:", ttl_s=60, breaker=breaker)
    cache.put("k", {"p": 0.5})
    assert cache.get("k") == {"p": 0.5}

    redis_server.stop()
    started = time.perf_counter()
    assert cache.get("k") is None  # a miss, not an exception
    cache.put("k2", {"p": 0.1})
    cache.put_blob("b", b"x")
    assert cache.get_blob("b") is None
    assert time.perf_counter() - started < 1.0
    assert breaker.failures == 1 and breaker.bypassed == 3  # one failed call, then no call at all
    assert dependencies.report() == {"status": "degraded", "dependencies": {"redis": f"down: {breaker.last_error}"}}
    assert "Connection refused" in breaker.last_error or "Error" in breaker.last_error

    redis_server.start()  # empty, on the same port
    assert cache.get("k") is None and breaker.bypassed == 4  # still waiting out the interval
    clock.now += 2.0
    cache.put("k3", {"p": 0.9})  # the trial: Redis answers, it is used again
    assert breaker.up and cache.get("k3") == {"p": 0.9}
    assert dependencies.report()["status"] == "ready"


def test_without_a_feature_server_features_come_from_the_lake(tmp_path: Path) -> None:
    samples = recent_samples(30, seed=5)
    features = compute_features(samples, samples).reset_index()
    lake = Lake(tmp_path / "lake")
    lake.write_table(lake.features_path, features)
    store = open_feature_store(tmp_path / "lake")
    assert isinstance(store, OfflineFeatureStore)
    wanted = features["sample_id"].iloc[[1, 4]].tolist()
    assert set(store.get_many([*wanted, "TS-1999-000001"])) == set(wanted)


def test_open_cache_without_redis_stays_in_process() -> None:
    assert not isinstance(open_cache(None), RedisCache)


def test_readiness_probes_only_what_was_not_heard_from_recently(redis_server: RedisServer) -> None:
    clock = FakeClock()
    dependencies = Dependencies(clock=clock)
    cache = RedisCache(redis_server.url, breaker=dependencies.breaker("redis", retry_after_s=2.0))
    dependencies.breaker("redis", probe=cache.ping)
    assert asyncio.run(dependencies.check()) == {"status": "ready", "dependencies": {"redis": "up"}}
    redis_server.stop()
    assert asyncio.run(dependencies.check())["status"] == "ready"  # probed a moment ago: not again
    clock.now += 1.5
    report = asyncio.run(dependencies.check())
    assert report["status"] == "degraded" and report["dependencies"]["redis"].startswith("down: ")
    redis_server.start()
    clock.now += 2.0
    assert asyncio.run(dependencies.check())["status"] == "ready"


class FlakyLog:
    def __init__(self) -> None:
        self.broken = False
        self.rows: list[dict] = []
        self.attempts = 0

    def append(self, rows: list[dict] | pd.DataFrame) -> None:
        self.attempts += 1
        if self.broken:
            raise ConnectionError("database is down")
        self.rows += rows.to_dict("records") if isinstance(rows, pd.DataFrame) else rows

    def read(self, since=None, until=None) -> pd.DataFrame:  # type: ignore[no-untyped-def]
        return pd.DataFrame(self.rows)


def test_log_rows_wait_in_a_bounded_queue_while_the_store_is_down() -> None:
    log = FlakyLog()
    breaker = CircuitBreaker("prediction_log", retry_after_s=60)
    dropped: list[int] = []
    writer = BackgroundLogWriter(
        log, flush_interval_s=3600, max_queue_rows=10, retry_s=60, breaker=breaker, on_dropped=dropped.append
    )
    log.broken = True
    writer.submit([{"request_id": f"r{i}"} for i in range(4)])
    writer.flush()  # fails: the rows stay queued
    assert writer.queued == 4 and writer.write_failures == 1 and writer.failed == 0 and not breaker.up
    writer.submit([{"request_id": f"r{i}"} for i in range(4, 10)])  # the queue is now full
    writer.submit([{"request_id": "r10"}, {"request_id": "r11"}])  # dropped and counted
    assert writer.queued == 10 and writer.dropped == 2 and dropped == [2]
    writer.flush()
    assert writer.queued == 10 and writer.write_failures == 2  # still kept, nothing duplicated
    log.broken = False
    writer.flush()
    assert [r["request_id"] for r in log.rows] == [f"r{i}" for i in range(10)]  # in order, once each
    assert writer.written == 10 and writer.queued == 0 and breaker.up
    writer.close()


def test_rows_that_arrive_during_a_failed_write_are_trimmed_to_the_bound() -> None:
    log = FlakyLog()
    writer = BackgroundLogWriter(log, flush_interval_s=3600, max_queue_rows=6, retry_s=60)
    writer.submit([{"request_id": f"old{i}"} for i in range(5)])
    original = log.append

    def fail_while_more_arrive(rows):  # type: ignore[no-untyped-def]
        writer.submit([{"request_id": f"new{i}"} for i in range(4)])  # the queue was emptied for this write
        raise ConnectionError("down")

    log.append = fail_while_more_arrive  # type: ignore[method-assign]
    writer.flush()
    assert writer.queued == 6 and writer.dropped == 3  # the 5 failed rows first, then 1 of the 4 newer
    log.append = original  # type: ignore[method-assign]
    writer.flush()
    assert [r["request_id"] for r in log.rows] == ["old0", "old1", "old2", "old3", "old4", "new0"]
    writer.close()


def test_postgres_log_through_a_proxy_that_goes_down(postgres_url: str) -> None:
    proxy = TcpProxy(("127.0.0.1", 5432)).open()
    try:
        log = PostgresPredictionLog(postgres_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}"))
        samples = recent_samples(30, seed=6)
        rows = prediction_rows(compute_features(samples, samples).reset_index(), start=START)
        log.append(rows[:10])
        log.ping()
        proxy.close()
        started = time.perf_counter()
        with pytest.raises(psycopg2.OperationalError):
            log.append(rows[10:20])
        with pytest.raises(psycopg2.OperationalError):
            log.ping()
        assert time.perf_counter() - started < 2.0  # refused at once, no long timeout
        proxy.open()
        log.append(rows[10:20])
        log.append(rows[5:20])  # a retried batch whose first write did commit: no repeated rows
        frame = log.read()
        assert len(frame) == 20 and frame["request_id"].is_unique
    finally:
        proxy.close()


def _app(status: int = 200) -> Starlette:
    async def readyz(request):  # type: ignore[no-untyped-def]
        return PlainTextResponse("\n", status_code=status)

    return Starlette(routes=[Route("/readyz", readyz), Route("/other", readyz)])


def test_readyz_body_reports_the_dependencies() -> None:
    dependencies = Dependencies()
    dependencies.breaker("redis")
    log = dependencies.breaker("prediction_log", required=False)

    async def report() -> dict:
        return dependencies.report()

    client = TestClient(ReadinessMiddleware(_app(), report=report))
    assert client.get("/readyz").json() == {"status": "ready", "dependencies": {"redis": "up", "prediction_log": "up"}}
    log.failed(ConnectionError("refused"))
    answer = client.get("/readyz")
    assert answer.status_code == 200
    assert answer.json() == {
        "status": "degraded",
        "dependencies": {"redis": "up", "prediction_log": "down: ConnectionError: refused"},
    }
    assert client.get("/other").text == "\n"  # other paths untouched
    dependencies.breaker("redis", required=True).failed(OSError("gone"))
    assert client.get("/readyz").status_code == 503  # a required dependency down: not ready
    not_started = TestClient(ReadinessMiddleware(_app(503), report=report))
    assert not_started.get("/readyz").status_code == 503  # the framework's own verdict stands


def test_a_service_can_start_while_redis_is_down(tmp_path: Path) -> None:
    """Nothing connects at construction: the first lookup finds Redis down and goes on without it."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    dependencies = Dependencies()
    breaker = dependencies.breaker("redis")
    cache = open_cache(url, breaker)
    started = time.perf_counter()
    assert cache.get("k") is None
    assert time.perf_counter() - started < 1.0
    assert dependencies.report()["status"] == "degraded" and breaker.failures == 1
