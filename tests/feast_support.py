"""A small lake with generated samples and runs, and Feast settings isolated per test
(a temporary data dir, a Redis db and a Feast project of their own)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pandas as pd
from feast import FeatureStore
from processes import free_port

from tracseq_dagster.feature_repo.config import FeastSettings
from tracseq_dagster.feature_repo.definitions import repo_objects
from tracseq_dagster.feature_repo.materialization import materialize_with_statistics
from tracseq_dagster.feature_repo.store import apply_repo, open_store
from tracseq_dagster.feature_repo.tables import write_feature_tables
from tracseq_dagster.feature_store import build_feature_table
from tracseq_dagster.generator import generate_samples
from tracseq_dagster.lake import RUNS, Lake
from tracseq_dagster.run_generator import generate_runs

#: Redis database of the Feast tests (keys are namespaced by a per-test Feast project too).
REDIS_URL = "redis://127.0.0.1:6379/13"


def generated_lake(root: Path, rows: int = 600, seed: int = 11, *, runs: bool = True) -> Lake:
    """A lake holding one accepted sample export, one accepted run export (unless ``runs`` is
    False: a lab before its first run export) and the feature table."""
    lake = Lake(root)
    samples = generate_samples(rows, seed=seed)
    lake.write_record("s" * 16, "samples.csv", len(samples))
    lake.write_table(lake.validated_path("s" * 16), samples)
    if runs:
        run_rows = generate_runs(samples, seed=seed)
        lake.write_record("r" * 16, "runs.csv", len(run_rows), kind=RUNS)
        lake.write_table(lake.validated_path("r" * 16), run_rows)
    lake.write_table(lake.features_path, build_feature_table(lake))
    return lake


def feast_settings(data_dir: Path, *, redis: bool = True, registry_url: str | None = None) -> FeastSettings:
    project = f"t{uuid.uuid4().hex[:10]}"
    return FeastSettings(str(data_dir), project, registry_url, REDIS_URL if redis else None)


def clear_project(settings: FeastSettings) -> None:
    """Delete the Redis keys of a test's Feast project (Feast prefixes keys with the project)."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    keys = [k for k in client.scan_iter(match=f"*{settings.project}*".encode(), count=1000)]
    if keys:
        client.delete(*keys)


def materialized_store(root: Path, rows: int, seed: int) -> tuple[Lake, FeastSettings, FeatureStore]:
    """A generated lake under ``root``, its tables applied and materialised into a Feast project
    of its own (Redis): what the online-store, query and management-API tests read. Call
    :func:`clear_project` on the settings afterwards."""
    lake = generated_lake(root / "lake", rows=rows, seed=seed)
    write_feature_tables(lake)
    settings = feast_settings(root / "data")
    store = open_store(settings)
    apply_repo(store, repo_objects(lake.root))
    materialize_with_statistics(store, settings.folder)
    return lake, settings, store


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


@contextmanager
def feature_server(settings: FeastSettings) -> Iterator[str]:
    """A real Feast feature server over the store of ``settings``, started as the stack starts it
    (``tracseq feature-server``: the platform's configuration from the environment); its URL, ready.
    Stopped on exit."""
    port = free_port()
    env = {**os.environ, "TRACSEQ_DATA_DIR": settings.data_dir, "TRACSEQ_FEAST_PROJECT": settings.project,
           "TRACSEQ_REDIS_URL": settings.redis_url or REDIS_URL}  # fmt: skip
    env.pop("TRACSEQ_FEAST_REGISTRY", None)
    if settings.registry_url:
        env["TRACSEQ_FEAST_REGISTRY"] = settings.registry_url
    command = [str(Path(sys.executable).parent / "tracseq"), "feature-server", "--host", "127.0.0.1", "--port", str(port)]
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None, server.stderr.read().decode() if server.stderr else "the feature server exited"
            assert time.monotonic() < deadline, "the feature server did not start in 120 s"
            time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)
