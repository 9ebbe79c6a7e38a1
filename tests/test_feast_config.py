"""The platform's URLs as Feast's configuration wants them (Redis connection strings, SQLAlchemy URLs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tracseq_dagster.feature_repo.config import FeastSettings, feast_config, redis_connection_string, sqlalchemy_url


def test_redis_urls_become_feast_connection_strings() -> None:
    assert redis_connection_string("redis://127.0.0.1:6379/13") == "127.0.0.1:6379,db=13"
    assert redis_connection_string("redis://:s3cret@redis:6379/0") == "redis:6379,db=0,password=s3cret"
    assert redis_connection_string("rediss://cache") == "cache:6379,ssl=true"
    assert redis_connection_string("redis://h:1/2", timeout_s=0.05) == "h:1,db=2,socket_timeout=0.05,socket_connect_timeout=0.05"
    with pytest.raises(ValueError, match="redis://"):
        redis_connection_string("http://:pw@h:6379")


def test_registries_by_url(tmp_path: Path) -> None:
    assert sqlalchemy_url("postgresql://u:p@db:5432/feast") == "postgresql+psycopg2://u:p@db:5432/feast"
    assert sqlalchemy_url("sqlite:////x/feast.db") == "sqlite:////x/feast.db"
    file = feast_config(FeastSettings(str(tmp_path), "p"))
    assert file.registry.path == str(tmp_path / "feast" / "registry.db") and file.online_store.type == "sqlite"
    sql = feast_config(FeastSettings(str(tmp_path), "p", "postgres://u@db/feast", "redis://r:6379/1"))
    assert sql.registry.registry_type == "sql" and sql.registry.path.startswith("postgresql+psycopg2://")
    assert sql.online_store.connection_string == "r:6379,db=1"
