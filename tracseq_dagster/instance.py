"""The Dagster instance the CLI uses: $DAGSTER_HOME, or an embedded SQLite one."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from tracseq_dagster import settings


def get_instance() -> dg.DagsterInstance:
    """The instance at $DAGSTER_HOME; without it, ``<data dir>/dagster_home`` on SQLite.

    The embedded default lets ``tracseq ingest`` and ``make demo`` run with no set-up;
    a deployment sets DAGSTER_HOME to a folder holding the repository's dagster.yaml
    (PostgreSQL storage).
    """
    if not os.getenv("DAGSTER_HOME"):
        home = settings.data_dir() / "dagster_home"
        ensure_embedded_home(home)
        os.environ["DAGSTER_HOME"] = str(home)
    return dg.DagsterInstance.get()


def ensure_embedded_home(home: Path) -> Path:
    """A DAGSTER_HOME whose dagster.yaml keeps Dagster's SQLite defaults."""
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text("# Embedded instance: SQLite storage in this folder (Dagster's defaults).\ntelemetry:\n  enabled: false\n")
    return home
