"""A small lake with generated samples and runs, and Feast settings isolated per test
(a temporary data dir, a Redis db and a Feast project of their own)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pandas as pd

from tracseq_dagster.feature_repo.config import FeastSettings
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


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")
