"""Where Feast keeps its registry and online store, from the platform's settings.

* Registry: a file under the data dir by default (``<data>/feast/registry.db``, Feast's
  protobuf file registry); a SQL registry when ``TRACSEQ_FEAST_REGISTRY`` is a database URL
  (``postgresql://…`` in the stack, ``sqlite:///…`` also works).
* Online store: Redis when ``TRACSEQ_REDIS_URL`` is set (Feast's Redis store; keys are
  namespaced by the Feast project, ``TRACSEQ_FEAST_PROJECT``), else Feast's SQLite online
  store under the data dir, so ``dagster dev`` without Redis still materialises and serves.
* Offline store: Feast's file (Dask) store over the lake's Parquet tables.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from feast import RepoConfig
from feast.infra.online_stores.redis import RedisOnlineStoreConfig
from feast.infra.online_stores.sqlite import SqliteOnlineStoreConfig
from feast.infra.registry.sql import SqlRegistryConfig
from feast.repo_config import RegistryConfig

from tracseq_dagster import settings

DEFAULT_PROJECT = "tracseq"
#: The folder of this repository (``feature_store.yaml`` and the definition modules).
REPO_PATH = Path(__file__).resolve().parent


def feast_project() -> str:
    return os.getenv("TRACSEQ_FEAST_PROJECT", DEFAULT_PROJECT)


def feast_registry_url() -> str | None:
    """A SQL registry's URL (``TRACSEQ_FEAST_REGISTRY``); None: the file registry under the data dir."""
    return os.getenv("TRACSEQ_FEAST_REGISTRY") or None


@dataclass(frozen=True)
class FeastSettings:
    """What a Feast store of the platform needs; ``data_dir`` holds the file registry (and the
    SQLite online store when there is no Redis)."""

    data_dir: str
    project: str = DEFAULT_PROJECT
    registry_url: str | None = None
    redis_url: str | None = None

    @classmethod
    def from_environment(cls) -> FeastSettings:
        return cls(str(settings.data_dir()), feast_project(), feast_registry_url(), settings.redis_url())

    @property
    def folder(self) -> Path:
        return Path(self.data_dir) / "feast"


def sqlalchemy_url(url: str) -> str:
    """A database URL as SQLAlchemy names its driver (``postgresql://`` → ``postgresql+psycopg2://``)."""
    scheme, _, rest = url.partition("://")
    if scheme in ("postgres", "postgresql"):
        return f"postgresql+psycopg2://{rest}"
    return url


def redis_connection_string(url: str, timeout_s: float | None = None) -> str:
    """``redis://[:password@]host:port/db`` as Feast's ``host:port,db=N[,password=…]``; Feast hands the
    parameters to redis-py, so ``timeout_s`` becomes its socket (connect) timeouts."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError(f"the Redis URL must start with redis:// or rediss://, got {settings.redact(url)}")
    out = f"{parts.hostname or 'localhost'}:{parts.port or 6379}"
    db = parts.path.strip("/")
    if db:
        out += f",db={int(db)}"
    if parts.password:
        out += f",password={parts.password}"
    if parts.scheme == "rediss":
        out += ",ssl=true"
    if timeout_s is not None:
        out += f",socket_timeout={timeout_s:g},socket_connect_timeout={timeout_s:g}"
    return out


def feast_config(feast: FeastSettings) -> RepoConfig:
    """The RepoConfig of the platform's feature store."""
    feast.folder.mkdir(parents=True, exist_ok=True)
    registry: RegistryConfig
    online: RedisOnlineStoreConfig | SqliteOnlineStoreConfig
    if feast.registry_url:
        registry = SqlRegistryConfig(registry_type="sql", path=sqlalchemy_url(feast.registry_url), cache_ttl_seconds=60)
    else:
        registry = RegistryConfig(path=str(feast.folder / "registry.db"), cache_ttl_seconds=60)
    if feast.redis_url:
        online = RedisOnlineStoreConfig(connection_string=redis_connection_string(feast.redis_url))
    else:
        online = SqliteOnlineStoreConfig(path=str(feast.folder / "online_store.db"))
    return RepoConfig(
        project=feast.project,
        provider="local",
        registry=registry,
        online_store=online,
        offline_store={"type": "dask"},
        entity_key_serialization_version=3,
        repo_path=str(REPO_PATH),
    )
