"""Serialise the first use of an embedded SQLite database across processes.

MLflow and Optuna create or migrate their schema on first use. Parallel family partitions
start at the same moment and would race on it ("table already exists", "database is
locked"); a lock file beside the database makes the first use one at a time. Other URLs
(PostgreSQL, an MLflow server) are migrated once at deployment and need no lock.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from urllib.parse import urlparse

from filelock import FileLock


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///…`` URL, else None."""
    parsed = urlparse(uri)
    if parsed.scheme != "sqlite" or parsed.path in ("", "/", "/:memory:"):
        return None
    # SQLAlchemy: sqlite:///relative.db and sqlite:////absolute.db (the third slash separates).
    return Path(parsed.path[1:])


@contextmanager
def first_use_lock(uri: str) -> Iterator[None]:
    """Hold a lock file beside a SQLite database (creating its folder); no-op for other URLs."""
    database = sqlite_path(uri)
    if database is None:
        with nullcontext():
            yield
        return
    database.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(database) + ".lock"):
        yield
