"""The Dagster instance the CLI uses: $DAGSTER_HOME, or an embedded SQLite one."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from tracseq_dagster import settings
from tracseq_dagster.settings import ConfigurationError

_FIX_HOME = "create it with a dagster.yaml (the repository's, for PostgreSQL storage), or unset DAGSTER_HOME to use the embedded instance in $TRACSEQ_DATA_DIR/dagster_home"


def get_instance() -> dg.DagsterInstance:
    """The instance at $DAGSTER_HOME; without it, ``<data dir>/dagster_home`` on SQLite.

    The embedded default lets ``tracseq ingest`` and ``make demo`` run with no set-up;
    a deployment sets DAGSTER_HOME to a folder holding the repository's dagster.yaml
    (PostgreSQL storage). A DAGSTER_HOME that is not an existing, writable folder, a
    dagster.yaml Dagster refuses, or an instance database that cannot be reached raises
    :class:`~tracseq_dagster.settings.ConfigurationError` (one line saying how to fix it).
    """
    if not os.getenv("DAGSTER_HOME"):
        home = settings.data_dir() / "dagster_home"
        ensure_embedded_home(home)
        os.environ["DAGSTER_HOME"] = str(home)
    else:
        check_dagster_home(os.environ["DAGSTER_HOME"])
    try:
        return dg.DagsterInstance.get()
    except Exception as error:  # Dagster's config errors, or the storage's driver failing to connect
        clear = _instance_error(error)
        if clear is error:
            raise
        raise clear from error


def check_dagster_home(value: str) -> Path:
    """``value`` as a DAGSTER_HOME: an absolute path to an existing folder this user can write."""
    home = Path(value)
    if not home.is_absolute():
        raise ConfigurationError(
            f"DAGSTER_HOME={value} is a relative path: Dagster needs an absolute one, e.g. DAGSTER_HOME={home.resolve()}"
        )
    if not home.exists():
        raise ConfigurationError(f"DAGSTER_HOME={value} does not exist: {_FIX_HOME}")
    if not home.is_dir():
        raise ConfigurationError(
            f"DAGSTER_HOME={value} is a file, not a folder: point DAGSTER_HOME at the folder holding dagster.yaml"
        )
    if not os.access(home, os.W_OK | os.X_OK):
        raise ConfigurationError(
            f"DAGSTER_HOME={value} is not writable by this user (Dagster keeps logs and local state there): "
            "make it writable (chown/chmod) or point DAGSTER_HOME at a writable folder"
        )
    config = home / "dagster.yaml"
    if config.exists() and not os.access(config, os.R_OK):
        raise ConfigurationError(f"{config} is not readable by this user: make it readable (chmod a+r)")
    return home


def _instance_error(error: Exception) -> Exception:
    """A one-line ConfigurationError for the failures an operator can fix, else ``error`` itself."""
    home = os.environ.get("DAGSTER_HOME", "")
    first_line = next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)
    module = type(error).__module__
    if isinstance(error, (dg.DagsterInvalidConfigError, dg.DagsterInvariantViolationError)) or "yaml" in module:
        return ConfigurationError(
            f"{home}/dagster.yaml is not a valid Dagster instance configuration ({first_line}): fix it or compare it with the repository's dagster.yaml"
        )
    if module.startswith(("sqlalchemy", "psycopg2", "psycopg")) or isinstance(error, OSError):
        return ConfigurationError(
            f"the Dagster instance's storage configured in {home}/dagster.yaml cannot be used ({type(error).__name__}: {first_line}): "
            "start its database or fix the storage section of dagster.yaml"
        )
    return error


def ensure_embedded_home(home: Path) -> Path:
    """A DAGSTER_HOME whose dagster.yaml keeps Dagster's SQLite defaults."""
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(
            "# Embedded instance: SQLite storage in this folder (Dagster's defaults).\ntelemetry:\n  enabled: false\n"
        )
    return home
