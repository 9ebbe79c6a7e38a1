"""Shared fixtures: real folders, real Dagster instances, real PostgreSQL databases."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")

POSTGRES_ADMIN_URL = os.getenv("TRACSEQ_TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


@contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """A new database on the local PostgreSQL server (its URL), dropped afterwards."""
    import psycopg2

    name = f"tracseq_test_{uuid.uuid4().hex[:10]}"

    def as_admin(statement: str) -> None:
        # A connection per statement: the server may have been restarted in between (the stack test does).
        admin = psycopg2.connect(POSTGRES_ADMIN_URL)
        admin.autocommit = True
        try:
            with admin.cursor() as cursor:
                cursor.execute(statement)
        finally:
            admin.close()

    as_admin(f'CREATE DATABASE "{name}"')
    try:
        yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        as_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh database on the local PostgreSQL server, dropped afterwards."""
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture
def second_postgres_url() -> Iterator[str]:
    """Another fresh database: MLflow and Optuna each keep an alembic_version table, so they cannot share one."""
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture
def sqlite_instance(tmp_path: Path):
    """A real, persistent Dagster instance on SQLite in a temporary DAGSTER_HOME."""
    import dagster as dg

    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        yield instance


@pytest.fixture(autouse=True)
def _no_dead_instance_in_the_definitions_state() -> None:
    """Each test starts without a Dagster definitions-state storage left in the process's context.

    A Dagster instance used as a context manager puts its defs-state storage in a context variable
    (``DefsStateStorage.get()``) and takes it out on exit; an instance left entered (or exited from
    another context) leaves a storage whose weak reference to its instance is dead, and the next
    test that builds a repository in this process fails with "Attempted to resolve undefined
    DagsterInstance weakref" (seen on a full run only, after the session's new Dagster tests). The
    project's definitions use no state-backed components, so no state is the right start.
    """
    from dagster._core.storage.defs_state.base import _current_storage

    _current_storage.set(None)
